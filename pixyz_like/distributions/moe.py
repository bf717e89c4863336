"""Pixyz's module path ``pixyz.distributions.moe`` (mixture of experts).

>>> from pixyz_like.distributions.moe import MixtureOfNormal
>>> MixtureOfNormal.__name__
'MixtureOfNormal'
"""

from .families import Normal
from .mixture import MixtureOfNormal

__all__ = ["Normal", "MixtureOfNormal"]
