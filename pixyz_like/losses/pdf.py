r"""Log-density and density of a distribution as losses: :class:`LogProb`, :class:`Prob`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .._context import EvalContext
from ..distributions.distributions import Distribution
from ..distributions.protocol import ScoreSpec
from .losses import Loss

__all__ = ["LogProb", "Prob"]


class LogProb(Loss):
    r"""The log-density :math:`\log p(x|z)`, one value per data point (features summed).

    >>> import torch
    >>> from pixyz_like.distributions import Normal
    >>> p = Normal(loc="z", scale=1., var=["x"], cond_var=["z"])
    >>> loss = LogProb(p)
    >>> print(loss)
    \log p(x|z)
    >>> loss.eval({"x": torch.zeros(2, 1), "z": torch.zeros(2, 1)})
    tensor([-0.9189, -0.9189])
    """

    def __init__(self, p: Distribution, sum_features: bool = True, feature_dims: Sequence[int] | None = None) -> None:
        super().__init__(p.scoring_var)
        self.p = p
        self.sum_features = sum_features
        self.feature_dims = feature_dims

    def _latex(self) -> str:
        return f"\\log {self.p.prob_text}"

    def _eval(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
        return self.p._log_prob(x_dict, ctx=ctx, spec=ScoreSpec.of(self.sum_features, self.feature_dims)), {}


class Prob(LogProb):
    r"""The density :math:`p(x|z)` (``exp`` of :class:`LogProb`).

    >>> import torch
    >>> from pixyz_like.distributions import Bernoulli
    >>> p = Bernoulli(probs=torch.tensor([0.2, 0.9]), var=["x"])
    >>> print(Prob(p))
    p(x)
    >>> Prob(p).eval({"x": torch.tensor([[0., 1.]])})  # 0.8 * 0.9
    tensor([0.7200])
    """

    def _latex(self) -> str:
        return self.p.prob_text

    def _eval(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
        value, samples = super()._eval(x_dict, ctx)
        return value.exp(), samples
