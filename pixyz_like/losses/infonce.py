r"""The InfoNCE bound of contrastive predictive coding (van den Oord, Li & Vinyals, 2018).

For a batch of :math:`N` positive pairs :math:`(x_i, c_i)` (a future latent and the context that
predicts it) and a critic :math:`f`, the other data points' :math:`x_j` serve as negatives:

.. math:: \hat I_i = \log \frac{e^{f(x_i, c_i)}}{\frac1N \sum_{j=1}^{N} e^{f(x_j, c_i)}}
          = f(x_i, c_i) - \log\sum_{j=1}^N e^{f(x_j, c_i)} + \log N .

Its batch mean is a lower bound on the mutual information :math:`I(x; c)`, and it never exceeds
:math:`\log N` (the numerator is one of the :math:`N` terms of the sum): maximise it, i.e. train
with ``-InfoNCE(...).mean()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .._context import EvalContext
from .._latex import convert_latex_name
from ..errors import ShapeError
from .losses import Loss

__all__ = ["InfoNCE"]


class InfoNCE(Loss):
    r"""The InfoNCE bound :math:`\hat I_i`, one value per data point, negatives from the batch.

    Args:
        critic: the score :math:`f`; an :class:`~torch.nn.Module` is registered (so trained and saved
            with the loss). By default it is called once on the :math:`N^2` pairs, row-wise:
            ``critic(x_rows, c_rows)`` with row ``i * N + j`` holding :math:`(x_j, c_i)`, returning
            :math:`N^2` scores (shape ``(N*N,)`` or ``(N*N, 1)``).
        x: the variable predicted (each data point's positive; the other rows are its negatives).
        c: the context variable.
        pairwise: the critic computes the whole score matrix itself: ``critic(x, c)`` returns
            ``(N, N)`` with entry ``[i, j]`` :math:`= f(x_j, c_i)` (e.g. ``c @ W @ x.T``, cheaper).
        name: the critic's symbol in the formula.

    >>> bilinear = lambda x, c: c @ x.t()                     # f(x_j, c_i) = c_i . x_j
    >>> nce = InfoNCE(bilinear, x="z", c="c", pairwise=True)
    >>> print(nce)
    \log \frac{e^{f(z_i, c_i)}}{\frac{1}{N} \sum_{j=1}^{N} e^{f(z_j, c_i)}}
    >>> z = torch.eye(3) * 5
    >>> nce.eval({"z": z, "c": z})                            # near log 3 = 1.0986 for each point
    tensor([1.0986, 1.0986, 1.0986])
    """

    def __init__(self, critic: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: str = "x", c: str = "c",
                 pairwise: bool = False, name: str = "f") -> None:
        if not callable(critic):
            raise TypeError(f"InfoNCE: critic must be callable, got {type(critic).__name__}")
        for what, v in (("x", x), ("c", c), ("name", name)):
            if not isinstance(v, str) or not v:
                raise TypeError(f"InfoNCE: {what} must be a non-empty string, got {v!r}")
        if x == c:
            raise ValueError(f"InfoNCE: x and c must be two different variables, got {x!r} twice")
        super().__init__([x, c])
        self.critic = critic
        self.x, self.c, self.pairwise = x, c, bool(pairwise)
        self._texts = (convert_latex_name(name), convert_latex_name(x), convert_latex_name(c))

    def _latex(self) -> str:
        f, x, c = self._texts
        return (f"\\log \\frac{{e^{{{f}({x}_i, {c}_i)}}}}"
                f"{{\\frac{{1}}{{N}} \\sum_{{j=1}}^{{N}} e^{{{f}({x}_j, {c}_i)}}}}")

    def scores(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The ``(N, N)`` score matrix, entry ``[i, j]`` :math:`= f(x_j, c_i)`.

        >>> nce = InfoNCE(lambda x, c: (x * c).sum(-1))             # row-wise critic
        >>> nce.scores(torch.tensor([[1.0], [2.0]]), torch.tensor([[1.0], [3.0]]))
        tensor([[1., 2.],
                [3., 6.]])
        """
        for name, v in ((self.x, x), (self.c, c)):
            if not isinstance(v, torch.Tensor) or v.ndim < 1:
                raise ShapeError(f"loss {self._latex()}: variable {name!r} must be a batch tensor, got "
                                 f"{tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__}")
        n = x.shape[0]
        if c.shape[0] != n:
            raise ShapeError(f"loss {self._latex()}: {self.x!r} has {n} data points and {self.c!r} has "
                             f"{c.shape[0]}; the pairs must match")
        if self.pairwise:
            s = self.critic(x, c)
        else:
            xs = x.unsqueeze(0).expand(n, *x.shape).reshape(n * n, *x.shape[1:])    # row i*N+j: x_j
            cs = c.unsqueeze(1).expand(n, n, *c.shape[1:]).reshape(n * n, *c.shape[1:])  # row i*N+j: c_i
            s = self.critic(xs, cs)
            if isinstance(s, torch.Tensor) and s.shape in ((n * n,), (n * n, 1)):
                s = s.reshape(n, n)
        if not isinstance(s, torch.Tensor) or s.shape != (n, n):
            got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
            want = f"({n}, {n})" if self.pairwise else f"({n * n},) or ({n * n}, 1) for the {n * n} pairs"
            raise ShapeError(f"loss {self._latex()}: the critic returned {got}; expected {want}")
        return s

    def _eval(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
        s = self.scores(x_dict[self.x], x_dict[self.c])
        n = s.shape[0]
        return s.diagonal() - torch.logsumexp(s, dim=1) + math.log(n), {}
