"""Pixyz's module path ``pixyz.distributions.mixture_distributions``.

>>> from pixyz_like.distributions.mixture_distributions import MixtureModel, PosteriorMixtureModel
>>> MixtureModel.__name__, PosteriorMixtureModel.__name__
('MixtureModel', 'PosteriorMixtureModel')
"""

from .._latex import convert_latex_name
from .distributions import Distribution
from .mixture import MixtureModel, PosteriorMixtureModel

__all__ = ["Distribution", "MixtureModel", "PosteriorMixtureModel", "convert_latex_name"]
