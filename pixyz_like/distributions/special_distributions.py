"""Pixyz's module path ``pixyz.distributions.special_distributions``.

>>> from pixyz_like.distributions.special_distributions import Deterministic, EmpiricalDistribution
>>> EmpiricalDistribution(["x"]).prob_text
'p_{data}(x)'
"""

from .distributions import Distribution
from .special import Deterministic, EmpiricalDistribution

__all__ = ["Distribution", "Deterministic", "EmpiricalDistribution"]
