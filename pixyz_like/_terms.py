"""Recording the values of a formula's named terms during one evaluation (``return_terms=True``).

``loss.eval(x, return_terms=True)`` reports each named term (the KL, the reconstruction...) for
logging. The terms to watch are chosen before the evaluation; each one stores its value when it is
computed, and the caller reads them back afterwards. One recorder per evaluation, never reused.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["TermRecorder"]


class TermRecorder:
    """The values of the watched terms of one evaluation.

    >>> a, b = object(), object()
    >>> rec = TermRecorder([a])
    >>> rec.record(a, 1.0); rec.record(b, 2.0)
    >>> rec.value(a), rec.value(b)
    (1.0, None)
    """

    __slots__ = ("_watch", "_values")

    def __init__(self, terms: Iterable[object]) -> None:
        self._watch = {id(t) for t in terms}
        self._values: dict[int, Any] = {}

    def record(self, term: object, value: Any) -> None:
        """Keep ``value`` if ``term`` is watched."""
        if id(term) in self._watch:
            self._values[id(term)] = value

    def value(self, term: object) -> Any:
        """The value recorded for ``term``, or ``None`` when it was not computed (or not watched)."""
        return self._values.get(id(term))
