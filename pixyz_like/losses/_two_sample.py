"""Shared plumbing of the losses that compare samples of two distributions (MMD, Wasserstein, adversarial)."""

from __future__ import annotations

from typing import Any

import torch

from .._batch import infer_batch_n
from .._context import EvalContext
from ..distributions.distributions import Distribution
from ..distributions.protocol import SampleSpec
from ..errors import GraphError, MissingVariableError, VariableMismatchError

__all__ = ["check_pair", "batch_size", "draw_all", "draw_pair"]


def check_pair(owner: str, p: Distribution, q: Distribution, single: bool = True) -> None:
    """Refuse two distributions over different variables (or over several, when ``single``)."""
    if set(p.var) != set(q.var):
        raise VariableMismatchError(
            f"{owner}: {p.prob_text} is over {p.var} but {q.prob_text} is over {q.var}; "
            "the two distributions must be over the same variables"
        )
    if single and len(p.var) != 1:
        raise GraphError(f"{owner}: compares distributions over one variable, got {p.var}")


def batch_size(owner: str, p: Distribution, q: Distribution, x_dict: dict[str, Any], ctx: EvalContext) -> int:
    """How many samples to draw from a distribution without inputs: the batch size of the inputs.

    It is read from either distribution's inputs (by :func:`pixyz_like._batch.infer_batch_n`), or from
    the ``batch_n`` option when neither distribution has any; with neither, the two samples could not be
    paired, so it refuses (where ``infer_batch_n`` answers ``None``).
    """
    n = infer_batch_n(x_dict, p.input_var + q.input_var)
    if n is None:
        n = ctx.options.get("batch_n")
    if n is None:
        raise MissingVariableError(
            f"{owner}: neither {p.prob_text} nor {q.prob_text} takes an input to give the batch size; "
            "pass eval(..., batch_n=N)"
        )
    return int(n)


def draw_all(p: Distribution, x_dict: dict[str, Any], ctx: EvalContext, batch_n: int,
             reparam: bool = True) -> dict[str, Any]:
    """One sample of each of ``p``'s variables per data point, each ``(batch, *features)``.

    Only ``p``'s own inputs are passed on: a generator ``p(x)`` must draw ``x`` even when the data
    ``x`` is in the input dict (a joint keeps the value of a variable it is given).
    """
    inputs = {v: x_dict[v] for v in p.input_var}
    spec = SampleSpec(None if p.input_var else batch_n, reparam=reparam and p.has_reparam)
    return p._sample(inputs, ctx=ctx, spec=spec)


def draw_pair(
    owner: str, p: Distribution, q: Distribution, x_dict: dict[str, Any], ctx: EvalContext
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A sample of ``p`` and one of ``q`` (every variable, see :func:`draw_all`), reparameterised where they
    can be, each of the batch size :func:`batch_size` finds: the two samples a two-sample loss compares."""
    n = batch_size(owner, p, q, x_dict, ctx)
    return draw_all(p, x_dict, ctx, n), draw_all(q, x_dict, ctx, n)
