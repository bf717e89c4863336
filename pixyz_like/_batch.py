"""The batch dimension of input dicts: its size, and folding copies of a batch into it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

__all__ = ["infer_batch_n", "repeat_batch"]


def infer_batch_n(x_dict: Mapping[str, Any], names: Iterable[str]) -> int | None:
    """Return the leading (batch) size of the first tensor among ``names`` in ``x_dict``, if any.

    >>> infer_batch_n({"x": torch.zeros(5, 3), "beta": 0.5}, ["beta", "x"]), infer_batch_n({}, ["x"])
    (5, None)
    """
    for name in names:
        value = x_dict.get(name)
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            return value.shape[0]
    return None


def repeat_batch(x: torch.Tensor, n: int) -> torch.Tensor:
    """Repeat a batch-first tensor ``n`` times, merged into the batch dimension: ``(n * batch, ...)``.

    This is how ``n`` samples per data point are "folded into the batch", so that a network runs once
    on ``n * batch`` rows; row ``i * batch + b`` is data point ``b`` of copy ``i``.

    >>> repeat_batch(torch.tensor([[1], [2]]), 3).flatten().tolist()
    [1, 2, 1, 2, 1, 2]
    """
    return x.unsqueeze(0).expand(n, *x.shape).reshape(n * x.shape[0], *x.shape[1:])
