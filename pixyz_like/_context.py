"""The per-evaluation context.

One :class:`EvalContext` is made by each top-level call (``Loss.eval``, ``Distribution.sample``,
``Distribution.get_log_prob``...) and dropped when it returns. It memoises a distribution's
parameters for the exact input tensors of this evaluation, so ``q(z|x)`` used by both the KL term and
the expectation of one loss runs its network once. Nothing outlives the call: training twice on the
same tensor, refilling an input buffer in place, or switching train/test never sees stale values
(the defect of Pixyz's process-wide LRU cache).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["EvalContext"]


class EvalContext:
    """Memo and bookkeeping that live for one evaluation only."""

    __slots__ = ("_params", "terms", "watch", "options")

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self._params: dict[tuple[int, ...], tuple[tuple[torch.Tensor, ...], Any]] = {}
        # Values of the named terms of a loss (KL, reconstruction...), filled as they are computed.
        self.terms: dict[int, torch.Tensor] = {}
        # ids of the losses whose values are to be recorded in ``terms`` (None: record nothing).
        self.watch: set[int] | None = None
        self.options = options or {}

    def get_params(self, dist: Any, inputs: tuple[torch.Tensor, ...]):
        """Return memoised parameters of ``dist`` for these very input tensors, or ``None``."""
        hit = self._params.get((id(dist), *map(id, inputs)))
        # The memo keeps the input tensors alive, so their ids cannot be reused within the call;
        # the identity check is a second guard.
        if hit is None:
            return None
        for a, b in zip(hit[0], inputs):
            if a is not b:
                return None
        return hit[1]

    def put_params(self, dist: Any, inputs: tuple[torch.Tensor, ...], params: Any) -> None:
        self._params[(id(dist), *map(id, inputs))] = (inputs, params)
