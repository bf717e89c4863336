"""Option keywords: every entry point refuses the ones it does not know, naming the valid ones."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["check_options"]


def check_options(where: str | Callable[[], str], options: Mapping[str, Any], valid: Iterable[str]) -> None:
    """Refuse unknown option keywords with a ``TypeError`` that lists the valid ones.

    Pixyz silently ignored unknown options (``model.train(batch_size=128)`` trained on one sample);
    here a misspelt or misplaced option always fails loudly. ``where`` may be a function giving the text
    (called only to word the error: a distribution's formula is not rendered on every call).

    >>> check_options("Model.train()", {"batch_size": 128}, ["return_terms"])
    Traceback (most recent call last):
    ...
    TypeError: Model.train() got unknown option(s) ['batch_size']; valid options: return_terms
    """
    if not options:
        return
    valid = sorted(set(valid))
    unknown = sorted(k for k in options if k not in valid)
    if unknown:
        listed = ", ".join(valid) if valid else "none"
        where = where() if callable(where) else where
        raise TypeError(f"{where} got unknown option(s) {unknown}; valid options: {listed}")
