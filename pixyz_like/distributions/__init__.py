"""Distributions over named random variables."""

from ._validation import set_validation, validation_enabled
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
    "set_validation",
    "validation_enabled",
]

# The remaining families (RelaxedBernoulli ... Gamma) and the composite distributions.
from .families import (  # noqa: E402
    Beta,
    Dirichlet,
    FactorizedBernoulli,
    Gamma,
    Laplace,
    Multinomial,
    RelaxedBernoulli,
    RelaxedCategorical,
)

__all__ += [
    "RelaxedBernoulli",
    "FactorizedBernoulli",
    "RelaxedCategorical",
    "Multinomial",
    "Dirichlet",
    "Beta",
    "Laplace",
    "Gamma",
]

# Flow-based distributions (pixyz_like.flows).
from .flow_distribution import InverseTransformedDistribution, TransformedDistribution  # noqa: E402

__all__ += ["TransformedDistribution", "InverseTransformedDistribution"]

from .custom import CustomProb  # noqa: E402
from .mixture import MixtureModel, MixtureOfNormal, PosteriorMixtureModel  # noqa: E402
from .poe import ElementWiseProductOfNormal, ProductOfNormal  # noqa: E402
from .vamp import VampPrior  # noqa: E402

__all__ += [
    "CustomProb",
    "ProductOfNormal",
    "ElementWiseProductOfNormal",
    "MixtureOfNormal",
    "MixtureModel",
    "PosteriorMixtureModel",
    "VampPrior",
]

# Autoregressive distributions (pixyz_like.autoregressions), from their modules so that either package
# can be imported first.
from ..autoregressions.base import AutoregressiveDistribution  # noqa: E402
from ..autoregressions.families import (  # noqa: E402
    AutoregressiveBernoulli,
    AutoregressiveCategorical,
    DiscretizedLogisticMixture,
)

__all__ += ["AutoregressiveDistribution", "AutoregressiveBernoulli", "AutoregressiveCategorical",
            "DiscretizedLogisticMixture"]

# torch.distributions bridges, distribution layers, vector quantisation and Gen-style traces.
from .layers import IndependentBernoulli, IndependentCategorical, IndependentNormal  # noqa: E402
from .torch_wrap import ModuleDeterministic, TorchDistribution, from_module, from_torch, to_torch  # noqa: E402
from .traces import ImportanceSamples, Trace, generate, importance_sample, simulate  # noqa: E402
from .vq import VectorQuantizer  # noqa: E402

__all__ += ["TorchDistribution", "ModuleDeterministic", "from_torch", "from_module", "to_torch",
            "IndependentBernoulli", "IndependentNormal", "IndependentCategorical",
            "Trace", "ImportanceSamples", "simulate", "generate", "importance_sample", "VectorQuantizer"]
