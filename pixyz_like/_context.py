"""The state of one evaluation.

One :class:`EvalContext` is made by each top-level call (``Loss.eval``, ``Distribution.sample``,
``Distribution.get_log_prob``...) and dropped when it returns. It gathers three separate things, each
defined in its own module: the parameter memo (:class:`~pixyz_like._memo.ParamMemo`), the recorder of
named terms (:class:`~pixyz_like._terms.TermRecorder`, only with ``return_terms=True``) and the
evaluation's options. Nothing outlives the call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._memo import ParamMemo
from ._terms import TermRecorder

__all__ = ["EvalContext"]

_NO_OPTIONS: Mapping[str, Any] = {}


class EvalContext:
    """Memo, term recorder and options of one evaluation.

    ``drawn(owner)`` is the list in which a distribution keeps what it learnt while drawing in this
    call (a flow distribution keeps each sample's log-density, so scoring that sample later in the
    same formula needs no inversion).

    >>> ctx = EvalContext({"batch_n": 3})
    >>> ctx.options["batch_n"], ctx.recorder is None, ctx.drawn("q") is ctx.drawn("q")
    (3, True, True)
    """

    __slots__ = ("memo", "recorder", "options", "_drawn", "scoring_factor", "deferred_checks", "sampling_factor",
                 "deferred_draws")

    def __init__(self, options: Mapping[str, Any] | None = None, recorder: TermRecorder | None = None,
                 memo: bool = True) -> None:
        #: ``None`` for a call that evaluates each distribution once (a public ``sample()`` or
        #: ``get_log_prob()``): nothing could be found again, so nothing is stored.
        self.memo: ParamMemo | None = ParamMemo() if memo else None
        self.recorder = recorder
        self.options: Mapping[str, Any] = options or _NO_OPTIONS
        self._drawn: dict[int, tuple[object, list[Any]]] | None = None
        #: While a joint adds up its factors' log-densities: the factor it is scoring, and the checks
        #: its factors left to the total (a self-checking score, see ``DistributionBase``: the sum is
        #: finite only if each part is, so one check of the total does for all of them).
        self.scoring_factor: object | None = None
        self.deferred_checks: list[Any] | None = None
        #: The same while a joint draws its factors: a factor whose draw shows an invalid parameter (a
        #: Normal's sample is NaN or infinite whenever its loc is) leaves that check to the joint, which
        #: checks all such draws at once.
        self.sampling_factor: object | None = None
        self.deferred_draws: list[Any] | None = None

    def drawn(self, owner: object) -> list[Any]:
        """The list of records ``owner`` made while drawing in this evaluation (empty at first)."""
        if self._drawn is None:
            self._drawn = {}
        entry = self._drawn.get(id(owner))
        if entry is None:
            entry = self._drawn[id(owner)] = (owner, [])
        return entry[1]
