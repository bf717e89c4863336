"""Private numerical helpers shared by the flows."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["solve_increasing"]


def solve_increasing(
    g: Callable[[torch.Tensor], torch.Tensor],
    target: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    iters: int = 64,
) -> torch.Tensor:
    """Solve ``g(a) = target`` elementwise for an increasing ``g`` with the root in ``[lo, hi]``.

    Bisection: it cannot diverge, which Newton's method can for the flat regions of ``tanh``; 64
    halvings shrink the bracket below float64 resolution. Runs without building a graph.

    >>> solve_increasing(lambda a: a ** 3, torch.tensor([8.0]), torch.tensor([0.0]), torch.tensor([5.0]))
    tensor([2.])
    """
    with torch.no_grad():
        lo, hi = torch.broadcast_tensors(lo.clone(), hi.clone())
        lo, hi = lo.clone(), hi.clone()
        for _ in range(iters):
            mid = (lo + hi) / 2
            below = g(mid) < target
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        return (lo + hi) / 2
