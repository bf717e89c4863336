"""Pixyz's module path ``pixyz.distributions.custom_distributions``.

>>> from pixyz_like.distributions.custom_distributions import CustomProb
>>> CustomProb.__name__
'CustomProb'
"""

from .custom import CustomProb
from .distributions import Distribution

__all__ = ["Distribution", "CustomProb"]
