r"""A loss summed over the steps of a sequence: :class:`IterativeLoss`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .._context import EvalContext
from .._latex import convert_latex_name
from ..distributions.distributions import Distribution
from ..errors import MissingVariableError, ShapeError
from ..utils import tolist
from .losses import _ADD, Expectation, Loss

__all__ = ["IterativeLoss"]


class IterativeLoss(Loss):
    r"""The sum of a step loss over time steps, :math:`\mathcal{L} = \sum_{t=0}^{T-1} \mathcal{L}_{step}(x_t, h_t)`.

    At each step ``t``:

    1. every variable of ``series_var`` (shape ``(T, batch, ...)``, time first) is replaced by its
       slice ``x[t]`` (unless ``slice_step`` is given: then the step loss is taken in expectation
       under the distribution ``slice_step``, which produces the step's inputs itself);
    2. the variable named in ``timestep_var`` (if any) is set to ``t``;
    3. the step loss is evaluated; the variables it sampled join the dict;
    4. each ``update_value`` pair ``{new: old}`` copies the value of ``new`` into ``old`` for the next
       step (``{"h": "h_prev"}`` carries a recurrent state).

    The loop runs ``max_iter`` steps, or the length of the first series variable. The option
    ``mask`` (a ``(T, batch)`` tensor) weights each step's loss, for sequences of unequal length.
    The caller's dict is never modified (Pixyz wrote the samples and updated states into it).
    It returns the sum, and with ``return_dict`` the final values of the updated variables.

    Args:
        step_loss: the loss of one step.
        max_iter: the number of steps ``T`` (default: the length of the first series variable).
        series_var: variables given as sequences, sliced along their first dimension.
        update_value: ``{new: old}`` renaming applied after each step.
        slice_step: a distribution producing the step's inputs (alternative to slicing).
        timestep_var: the name (one-element list, as in Pixyz) of the variable holding ``t``.

    >>> from pixyz_like.distributions import Normal
    >>> p = Normal(loc="h_prev", scale=1., var=["x"], cond_var=["h_prev"], name="p")
    >>> step = p.log_prob()
    >>> loss = IterativeLoss(step, series_var=["x"], update_value={"x": "h_prev"})
    >>> print(loss)
    \sum_{t=0}^{t_{max} - 1} \log p(x|h_{prev})
    >>> x = torch.zeros(5, 2, 3)  # (time, batch, features)
    >>> loss.eval({"x": x, "h_prev": torch.zeros(2, 3)}).shape
    torch.Size([2])
    >>> print(IterativeLoss(step, max_iter=10, series_var=["x"], update_value={"x": "h_prev"}))
    \sum_{t=0}^{9} \log p(x|h_{prev})
    >>> print(IterativeLoss(step - p.log_prob().detach(), max_iter=3, series_var=["x"], update_value={"x": "h_prev"}))
    \sum_{t=0}^{2} \left(\log p(x|h_{prev}) - detach \left(\log p(x|h_{prev}) \right)\right)
    """

    _options = ("mask",)
    _greedy = True  # \sum_t f extends to the right: a parent brackets it unless it stands last

    def __init__(self, step_loss: Loss, max_iter: int | None = None, series_var: Sequence[str] = (),
                 update_value: Mapping[str, str] | None = None, slice_step: Distribution | None = None,
                 timestep_var: Sequence[str] | str = ()) -> None:
        series_var = tolist(series_var)
        update_value = dict(update_value or {})
        timestep_var = tolist(timestep_var)
        if not series_var and max_iter is None:
            raise ValueError("IterativeLoss: give max_iter, or series_var to take the number of steps from")
        if max_iter is not None and (not isinstance(max_iter, int) or max_iter < 1):
            raise ValueError(f"IterativeLoss: max_iter must be a positive integer, got {max_iter!r}")
        if len(timestep_var) > 1:
            raise ValueError(f"IterativeLoss: timestep_var names one variable, got {timestep_var}")
        if slice_step is not None:
            step_loss = Expectation(slice_step, step_loss)
        inputs = step_loss.input_var + series_var + list(update_value.values())
        super().__init__([v for v in inputs if v not in timestep_var])
        self.step_loss = step_loss
        self.max_iter = max_iter
        self.series_var = series_var
        self.update_value = update_value
        self.slice_step = slice_step
        self.timestep_var = timestep_var

    def _latex(self) -> str:
        t = convert_latex_name(self.timestep_var[0]) if self.timestep_var else "t"
        upper = str(self.max_iter - 1) if self.max_iter is not None else f"{t}_{{max}} - 1"
        step = self.step_loss._render()
        # A sum of terms is bracketed (\sum_t (a + b), not (\sum_t a) + b); a product or a negated
        # term is not, as Pixyz prints them: \sum_t - \log p.
        step_text = f"\\left({step.full()}\\right)" if step.prec <= _ADD else step.full()
        return f"\\sum_{{{t}=0}}^{{{upper}}} {step_text}"

    def _eval(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
        work = dict(x_dict)  # a private copy: the caller's dict is never written to
        series = {v: x_dict[v] for v in self.series_var}
        max_iter = self.max_iter
        if max_iter is None:
            first = series[self.series_var[0]]
            max_iter = first.shape[0]
        for v, s in series.items():
            if not isinstance(s, torch.Tensor) or s.ndim == 0 or (self.slice_step is None and s.shape[0] < max_iter):
                got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
                raise ShapeError(
                    f"IterativeLoss: series variable {v!r} must be a tensor of shape (time >= {max_iter}, batch, ...), "
                    f"got {got}"
                )
        mask = ctx.options.get("mask")
        total: torch.Tensor | None = None
        samples: dict[str, Any] = {}
        for t in range(max_iter):
            if self.timestep_var:
                work[self.timestep_var[0]] = t
            if self.slice_step is None:
                work.update({v: s[t] for v, s in series.items()})
            value, samples = self.step_loss._evaluate(work, ctx)
            work.update(samples)
            if mask is not None:
                value = value * mask[t]
            total = value if total is None else total + value
            missing = [new for new in self.update_value if new not in work]
            if missing:
                raise MissingVariableError(
                    f"IterativeLoss: update_value reads {missing} after step {t}, but neither the inputs nor the "
                    f"step's samples have them (available: {sorted(work)})"
                )
            work.update({old: work[new] for new, old in self.update_value.items()})
        if total is None:  # a series of length 0 (the inputs' check refuses an empty first dimension)
            raise ShapeError(f"IterativeLoss: no steps to sum: the series {self.series_var} have length 0")
        final = {old: work[old] for old in self.update_value.values()}
        return total, {**samples, **final}
