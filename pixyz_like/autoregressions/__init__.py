"""Autoregressive models (Pixyz's ``pixyz.autoregressions``, which Pixyz left empty).

:class:`AutoregressiveDistribution` is the base: ``forward`` maps the variable (and the conditioning
variables) to the parameters of every conditional :math:`p(x_i \\mid x_{<i}, z)` at once, so the
log-density is one pass, and ``sample`` generates element by element (with a
:class:`~pixyz_like.layers.StepCache` where the network has ``forward_step``). The families:
:class:`AutoregressiveBernoulli`, :class:`AutoregressiveCategorical` (256-way per subpixel) and
:class:`DiscretizedLogisticMixture` (PixelCNN++). The causal layers are in :mod:`pixyz_like.layers`.
"""

from .base import AutoregressiveDistribution
from .families import AutoregressiveBernoulli, AutoregressiveCategorical, DiscretizedLogisticMixture

__all__ = [
    "AutoregressiveDistribution",
    "AutoregressiveBernoulli",
    "AutoregressiveCategorical",
    "DiscretizedLogisticMixture",
]
