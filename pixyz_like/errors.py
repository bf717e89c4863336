"""Named exceptions.

Every error pixyz_like raises on bad input derives from :class:`PixyzLikeError` and says which
distribution or loss was involved, which variable, and what was expected, so a user never has to
decode a raw torch error raised deep inside a network.
"""

from __future__ import annotations

__all__ = [
    "PixyzLikeError",
    "MissingVariableError",
    "ParameterError",
    "ShapeError",
    "GraphError",
    "VariableMismatchError",
    "NotDefinedError",
    "missing_variable_error",
]


class PixyzLikeError(Exception):
    """Base class of every error raised by pixyz_like on bad input."""


class MissingVariableError(PixyzLikeError, KeyError):
    """A variable a distribution or loss needs is absent from the input dict."""

    def __str__(self) -> str:  # KeyError would quote the message; show it plainly.
        return str(self.args[0]) if self.args else ""


class ParameterError(PixyzLikeError, ValueError):
    """A distribution's ``forward`` returned parameters other than the family's."""


class ShapeError(PixyzLikeError, ValueError):
    """Tensors whose shapes do not fit the distribution, network or flow they are given to."""


class GraphError(PixyzLikeError, ValueError):
    """A product of distributions that is not a valid directed acyclic graph."""


class VariableMismatchError(PixyzLikeError, ValueError):
    """Two distributions compared (e.g. by a KL divergence) are over different variables."""


class NotDefinedError(PixyzLikeError, NotImplementedError):
    """The quantity asked for is not defined for this distribution (e.g. log-density of a Deterministic)."""


def missing_variable_error(owner: str, action: str, missing, given) -> MissingVariableError:
    """The one message format for a variable absent from an input dict."""
    missing = list(missing)
    noun = "variable" if len(missing) == 1 else "variables"
    return MissingVariableError(
        f"{owner}: {action} needs {noun} {missing}, but the input dict has {sorted(given)}"
    )
