"""The per-evaluation memo of distributions' parameters.

``q(z|x)`` read by both the KL term and the expectation of one loss runs its network once: the first
read stores the parameters under the distribution and the identity of its input tensors, the second
finds them. One memo lives in each :class:`~pixyz_like._context.EvalContext` of a formula's
evaluation (a one-shot ``sample()`` or ``get_log_prob()``, which reads each distribution once, keeps
none), made by the top-level call and dropped when it returns, so nothing is ever reused across calls
(the defect of Pixyz's process-wide LRU cache: training twice on one tensor, refilling an input
buffer in place or switching train/test mode saw stale values).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ParamMemo"]


class ParamMemo:
    """Parameters of each distribution for the very input tensors of one evaluation.

    >>> import torch
    >>> memo, x = ParamMemo(), torch.zeros(2)
    >>> owner = object()
    >>> memo.put(owner, (x,), {"loc": x})
    >>> memo.get(owner, (x,))["loc"] is x, memo.get(owner, (torch.zeros(2),))
    (True, None)
    """

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[tuple[int, ...], tuple[tuple[Any, ...], Any]] = {}

    def get(self, owner: object, inputs: tuple[Any, ...]) -> Any:
        """What :meth:`put` stored for ``owner`` and these very ``inputs`` (compared by identity), or ``None``."""
        return self.find(owner, inputs)[0]

    def put(self, owner: object, inputs: tuple[Any, ...], value: Any) -> None:
        """Store ``value`` for ``owner`` given ``inputs``."""
        self.store(self.find(owner, inputs)[1], inputs, value)

    def find(self, owner: object, inputs: tuple[Any, ...]) -> tuple[Any, tuple[int, ...]]:
        """:meth:`get`, and the key under which :meth:`store` stores a value for these inputs (made once,
        not twice, on a distribution's hot path: a miss is looked up, then stored)."""
        key = (id(owner), id(inputs[0])) if len(inputs) == 1 else (id(owner), *map(id, inputs))
        hit = self._entries.get(key)
        if hit is None:
            return None, key
        # The memo keeps the input tensors alive, so their ids cannot be reused within the call;
        # the identity check is a second guard.
        for a, b in zip(hit[0], inputs):
            if a is not b:
                return None, key
        return hit[1], key

    def store(self, key: tuple[int, ...], inputs: tuple[Any, ...], value: Any) -> None:
        """Store ``value`` under a key :meth:`find` gave for these ``inputs``."""
        self._entries[key] = (inputs, value)
