"""Losses: formulas over distributions that print as LaTeX and evaluate to tensors."""

from .divergences import KL, KullbackLeibler
from .elbo import ELBO
from .entropy import CrossEntropy, Entropy
from .losses import (
    AbsLoss,
    AddLoss,
    BatchMean,
    BatchSum,
    ConstantVar,
    DetachLoss,
    DivLoss,
    Expectation,
    Loss,
    MaxLoss,
    MinLoss,
    MulLoss,
    NegLoss,
    Parameter,
    SubLoss,
    ValueLoss,
)
from .pdf import LogProb, Prob

__all__ = [
    "Loss",
    "LogProb",
    "Prob",
    "Expectation",
    "KullbackLeibler",
    "KL",
    "Entropy",
    "CrossEntropy",
    "ELBO",
    "Parameter",
    "ValueLoss",
    "ConstantVar",
    "MinLoss",
    "MaxLoss",
    "AddLoss",
    "SubLoss",
    "MulLoss",
    "DivLoss",
    "NegLoss",
    "AbsLoss",
    "BatchMean",
    "BatchSum",
    "DetachLoss",
]

# Losses beyond the core algebra: score-function gradients, two-sample and adversarial divergences,
# sequences, data parallelism and importance-weighted bounds.
from .adversarial import (  # noqa: E402
    AdversarialJensenShannon,
    AdversarialKullbackLeibler,
    AdversarialLoss,
    AdversarialWassersteinDistance,
)
from .iteration import IterativeLoss  # noqa: E402
from .iw import IWAE, log_marginal  # noqa: E402
from .mmd import MMD  # noqa: E402
from .parallel import DataParalleledLoss  # noqa: E402
from .reinforce import REINFORCE  # noqa: E402
from .wasserstein import WassersteinDistance  # noqa: E402

__all__ += [
    "REINFORCE",
    "MMD",
    "WassersteinDistance",
    "AdversarialLoss",
    "AdversarialJensenShannon",
    "AdversarialKullbackLeibler",
    "AdversarialWassersteinDistance",
    "IterativeLoss",
    "DataParalleledLoss",
    "IWAE",
    "log_marginal",
]

# Weight schedules fed to a Parameter each step by Model.fit (e.g. a KL warm-up).
from .schedules import Schedule, constant, linear_warmup, sigmoid_warmup  # noqa: E402

__all__ += ["Schedule", "constant", "linear_warmup", "sigmoid_warmup"]

# VQ-VAE's codebook and commitment terms, GECO's constrained objective and the InfoNCE bound.
from .geco import GECO, LagrangeMultiplier  # noqa: E402
from .infonce import InfoNCE  # noqa: E402
from .schedules import sigmoid_annealing  # noqa: E402
from .vq import CodebookLoss, CommitmentLoss  # noqa: E402

__all__ += ["CodebookLoss", "CommitmentLoss", "GECO", "LagrangeMultiplier", "InfoNCE", "sigmoid_annealing"]
