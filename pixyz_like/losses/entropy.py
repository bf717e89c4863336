r"""Entropy :math:`H[p]` and cross-entropy :math:`H[p\|q]`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .._context import EvalContext
from ..distributions.distributions import Distribution, DistributionBase
from ..distributions.joint import underlying
from ..distributions.protocol import SUMMED
from ..errors import NotDefinedError
from .divergences import KullbackLeibler
from .losses import Expectation, Loss

__all__ = ["Entropy", "CrossEntropy", "AnalyticalEntropy", "StochasticReconstructionLoss"]


class Entropy(Loss):
    r"""The entropy :math:`H[p] = -\mathbb{E}_p[\log p]`, one value per data point.

    Closed form with ``analytical=True``; otherwise a Monte Carlo estimate from ``sample_shape`` draws.

    >>> from pixyz_like.distributions import Normal
    >>> p = Normal(loc=0., scale=1., var=["x"], features_shape=[1])
    >>> print(Entropy(p))
    H \left[ {p(x)} \right]
    >>> Entropy(p).eval()
    tensor([1.4189])
    """

    def __init__(self, p: Distribution, analytical: bool = True,
                 sample_shape: Sequence[int] | torch.Size = torch.Size([1])) -> None:
        super().__init__(p.input_var)
        self.p = p
        self.analytical = analytical
        self._under = underlying(p)  # the family under any renaming views, resolved once
        self._mc = None if analytical else -Expectation(p, p.log_prob(), sample_shape=sample_shape)

    def _latex(self) -> str:
        if self._mc is not None:
            return self._mc._latex()
        return f"H \\left[ {{{self.p.prob_text}}} \\right]"

    @property
    def _precedence(self) -> int:
        return self._mc._precedence if self._mc is not None else super()._precedence

    def _eval(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
        if self._mc is not None:
            return self._mc._eval(x_dict, ctx)

        fam = self._under.base
        if not isinstance(fam, DistributionBase):  # refused when evaluated, as KullbackLeibler does
            raise NotDefinedError(
                f"Entropy({self.p.prob_text}): {fam.distribution_name or type(fam).__name__} is not a parametric "
                "family, so its entropy has no closed form; use analytical=False (Monte Carlo)"
            )
        params, shape = self._under.params_and_shape(x_dict, ctx)
        return fam._entropy_per_point(params, shape, SUMMED), {}


def CrossEntropy(p: Distribution, q: Distribution, analytical: bool = False,
                 sample_shape: Sequence[int] | torch.Size = torch.Size([1])) -> Loss:
    r"""The cross-entropy :math:`H[p\|q] = -\mathbb{E}_p[\log q]`.

    Analytically :math:`H[p] + D_{KL}[p\|q]`; otherwise a Monte Carlo estimate from draws of ``p``.

    >>> from pixyz_like.distributions import Normal
    >>> p = Normal(loc=0., scale=1., var=["x"], features_shape=[1], name="p")
    >>> q = Normal(loc=1., scale=1., var=["x"], features_shape=[1], name="q")
    >>> print(CrossEntropy(p, q, analytical=True))
    H \left[ {p(x)} \right] + D_{KL} \left[p(x)||q(x) \right]
    >>> print(CrossEntropy(p, q))
    - \mathbb{E}_{p(x)} \left[\log q(x) \right]
    """
    if analytical:
        return Entropy(p) + KullbackLeibler(p, q)
    return -Expectation(p, q.log_prob(), sample_shape=sample_shape)


class AnalyticalEntropy(Entropy):
    r"""The closed-form entropy (Pixyz's class; ``Entropy(p)`` is the same).

    >>> from pixyz_like.distributions import Normal
    >>> AnalyticalEntropy(Normal(loc=0., scale=1., var=["x"], features_shape=[1])).eval()
    tensor([1.4189])
    """

    def __init__(self, p: Distribution) -> None:
        super().__init__(p, analytical=True)


class StochasticReconstructionLoss(Loss):
    """Pixyz's obsolete reconstruction loss: building it raises, pointing to the formula to write instead.

    >>> StochasticReconstructionLoss(None, None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    NotImplementedError: StochasticReconstructionLoss is obsolete (as in Pixyz); write ...
    """

    def __init__(self, encoder: object, decoder: object,
                 sample_shape: Sequence[int] | torch.Size = torch.Size([1])) -> None:
        raise NotImplementedError(
            "StochasticReconstructionLoss is obsolete (as in Pixyz); write -decoder.log_prob().expectation(encoder)"
        )
