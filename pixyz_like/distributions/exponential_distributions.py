"""Pixyz's module path ``pixyz.distributions.exponential_distributions``: the parametric families.

The families live in :mod:`pixyz_like.distributions.families`; this module re-exports them under
Pixyz's path, with Pixyz's two torch-distribution helpers.

>>> from pixyz_like.distributions.exponential_distributions import Normal
>>> Normal(loc=0., scale=1., var=["x"]).prob_text
'p(x)'
"""

from __future__ import annotations

import torch
from torch.distributions import Bernoulli as _TorchBernoulli
from torch.distributions import OneHotCategorical as _TorchOneHotCategorical
from torch.nn.functional import binary_cross_entropy_with_logits

from .distributions import DistributionBase
from .families import (
    Bernoulli,
    Beta,
    Categorical,
    Dirichlet,
    FactorizedBernoulli,
    Gamma,
    Laplace,
    Multinomial,
    Normal,
    RelaxedBernoulli,
    RelaxedCategorical,
)

__all__ = [
    "DistributionBase",
    "Normal",
    "Bernoulli",
    "RelaxedBernoulli",
    "FactorizedBernoulli",
    "Categorical",
    "RelaxedCategorical",
    "Multinomial",
    "Dirichlet",
    "Beta",
    "Laplace",
    "Gamma",
    "BernoulliTorchOld",
    "CategoricalTorchOld",
]


class BernoulliTorchOld(_TorchBernoulli):
    """A torch Bernoulli whose ``log_prob`` accepts any value in [0, 1] (the cross-entropy with the logits).

    Pixyz kept it for grey-level data, which newer torch refuses to score under validation.

    >>> d = BernoulliTorchOld(probs=torch.tensor([0.5]), validate_args=False)
    >>> round(d.log_prob(torch.tensor([0.3])).item(), 4)
    -0.6931
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        logits, value = torch.broadcast_tensors(self.logits, value)
        return -binary_cross_entropy_with_logits(logits, value, reduction="none")


class CategoricalTorchOld(_TorchOneHotCategorical):
    """A torch one-hot categorical whose ``log_prob`` scores the class at the argmax of the value.

    >>> d = CategoricalTorchOld(probs=torch.tensor([0.2, 0.8]), validate_args=False)
    >>> round(d.log_prob(torch.tensor([0.1, 0.9])).item(), 4)
    -0.2231
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self._categorical.log_prob(value.argmax(-1))
