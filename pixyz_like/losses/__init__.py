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
