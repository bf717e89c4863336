"""Normalising flows: invertible maps with a tractable log-determinant.

Every flow has Pixyz's calling convention — ``flow(x, y=None, compute_jacobian=True)`` returns ``z``
and keeps the log-det in ``flow.logdet_jacobian``, ``flow.inverse(z, y=None)`` returns ``x`` — and the
stateless pair the library uses, ``transform(x, y=None, compute_jacobian=True) -> (z, logdet)`` and
``inverse_transform(z, y=None, compute_jacobian=True) -> (x, logdet_inverse)``; see
:mod:`pixyz_like.flows.flows`.
"""

from .autoregressive import IAF, MADE, MAF
from .conv import ChannelConv
from .coupling import AffineCoupling, channel_wise_mask, checkerboard_mask
from .flows import Flow, FlowList
from .multiscale import Split
from .normalizations import ActNorm2d, BatchNorm1d, BatchNorm2d
from .normalizing_flows import PlanarFlow, RadialFlow
from .operations import Flatten, Permutation, Preprocess, Reverse, Shuffle, Squeeze, Unsqueeze
from .spline import NeuralSplineCoupling, rational_quadratic_spline
from .sylvester import HouseholderFlow, SylvesterFlow

__all__ = [
    "Flow",
    "FlowList",
    "PlanarFlow",
    "RadialFlow",
    "AffineCoupling",
    "checkerboard_mask",
    "channel_wise_mask",
    "ChannelConv",
    "Squeeze",
    "Unsqueeze",
    "Permutation",
    "Shuffle",
    "Reverse",
    "Flatten",
    "Preprocess",
    "BatchNorm1d",
    "BatchNorm2d",
    "ActNorm2d",
    "MADE",
    "MAF",
    "IAF",
    "HouseholderFlow",
    "SylvesterFlow",
    "NeuralSplineCoupling",
    "rational_quadratic_spline",
    "Split",
]
