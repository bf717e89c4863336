"""Distributions over named random variables."""

from .distributions import Distribution, DistributionBase
from .families import Bernoulli, Categorical, Normal
from .graph import DistributionGraph
from .joint import MarginalizeVarDistribution, MultiplyDistribution, ReplaceVarDistribution
from .kl import has_closed_form_kl, kl_elementwise, register_kl
from .special import Deterministic, EmpiricalDistribution

__all__ = [
    "Distribution",
    "DistributionBase",
    "Normal",
    "Bernoulli",
    "Categorical",
    "Deterministic",
    "EmpiricalDistribution",
    "MultiplyDistribution",
    "ReplaceVarDistribution",
    "MarginalizeVarDistribution",
    "DistributionGraph",
    "register_kl",
    "kl_elementwise",
    "has_closed_form_kl",
]
