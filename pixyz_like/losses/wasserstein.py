r"""An upper bound of the Wasserstein distance from paired samples."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .._context import EvalContext
from ..distributions.distributions import Distribution
from ..errors import ShapeError
from ._two_sample import check_pair, draw_pair
from .losses import Divergence

__all__ = ["WassersteinDistance"]


class WassersteinDistance(Divergence):
    r"""The upper bound :math:`W'(p, q) = \mathbb{E}_{x_p \sim p, x_q \sim q}[d(x_p, x_q)] \ge W(p, q)`.

    The Wasserstein distance :math:`W(p,q) = \inf_{\Gamma} \mathbb{E}_{(x_p, x_q)\sim\Gamma}[d(x_p, x_q)]`
    is an infimum over couplings; drawing the two samples independently is one coupling, so
    :math:`W'` bounds it from above, with equality when both distributions are point masses (e.g.
    :class:`~pixyz_like.distributions.Deterministic`). One value per data point: the distance between
    one sample of each (reparameterised where possible).

    Args:
        p, q: distributions over the same single variable.
        metric: ``d(x, y)`` on two ``(batch, ...)`` tensors returning ``(batch,)``; the default is
            the Euclidean distance over all features (:class:`torch.nn.PairwiseDistance` on the
            flattened samples).

    >>> from pixyz_like.distributions import Normal
    >>> p = Normal(loc="x", scale=1., var=["z"], cond_var=["x"], name="p")
    >>> q = Normal(loc="x", scale=1., var=["z"], cond_var=["x"], name="q")
    >>> loss = WassersteinDistance(p, q)
    >>> print(loss)
    W^{upper} \left(p(z|x), q(z|x) \right)
    >>> loss.eval({"x": torch.zeros(4, 3)}).shape
    torch.Size([4])
    """

    _options = ("batch_n",)

    def __init__(self, p: Distribution, q: Distribution,
                 metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> None:
        check_pair("WassersteinDistance", p, q)
        if metric is not None and not callable(metric):
            raise TypeError(f"WassersteinDistance: metric must be callable, got {type(metric).__name__}")
        super().__init__(p.input_var + q.input_var)
        self.p = p
        self.q = q
        self._flatten = metric is None
        self.metric = nn.PairwiseDistance(p=2) if metric is None else metric

    def _latex(self) -> str:
        return f"W^{{upper}} \\left({self.p.prob_text}, {self.q.prob_text} \\right)"

    def _eval(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
        sp, sq = draw_pair("WassersteinDistance", self.p, self.q, x_dict, ctx)
        xp, xq = sp[self.p.var[0]], sq[self.q.var[0]]
        if xp.shape != xq.shape:
            raise ShapeError(
                f"WassersteinDistance: samples of {self.p.prob_text} have shape {tuple(xp.shape)} and samples "
                f"of {self.q.prob_text} {tuple(xq.shape)}; they must match"
            )
        if self._flatten:
            xp, xq = xp.reshape(xp.shape[0], -1), xq.reshape(xq.shape[0], -1)
        return self.metric(xp, xq), {}
