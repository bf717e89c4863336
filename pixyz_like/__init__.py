"""pixyz_like: deep generative models written the way papers write them.

Subpackages: :mod:`pixyz_like.distributions`, :mod:`pixyz_like.losses`, :mod:`pixyz_like.models`.
"""

from . import distributions, losses, models, utils
from ._display import print_latex
from .distributions._validation import set_validation, validation_enabled

__version__ = "0.1.0"
__all__ = ["distributions", "losses", "models", "utils", "print_latex", "set_validation", "validation_enabled",
           "__version__"]
