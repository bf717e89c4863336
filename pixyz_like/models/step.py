r"""The training step: the one code path of :meth:`Model.train <pixyz_like.models.Model.train>` and of
every optimizer step :meth:`Model.fit <pixyz_like.models.Model.fit>` takes.

A step is two phases of a :class:`Stepper`:

1. :meth:`Stepper.backward`, once per batch: zero the gradients (first batch of the step), evaluate
   the loss (in the autocast region of the :mod:`precision <pixyz_like.models.precision>`, through
   the :mod:`compiled <pixyz_like.models.compiled>` function when asked), check it is a scalar and
   back-propagate ``loss / accumulate`` (scaled for float16);
2. :meth:`Stepper.update`, once per optimizer step: average a short group's gradients over its own
   size, agree across processes that every loss is finite and average the gradients
   (:mod:`distributed <pixyz_like.models.distributed>`), unscale, clip, check that the losses and
   the gradients are finite — one fused norm and one host synchronisation — and step.

A step whose loss or gradients are not finite is never taken: the gradients are cleared and
:class:`~pixyz_like.errors.NonFiniteLossError` (or :class:`~pixyz_like.errors.NonFiniteGradientError`)
raised, naming the inputs, terms and parameters that are not finite; the parameters and the
optimizer's state are unchanged. ``Model.train`` is ``backward`` then ``update`` on one batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.nn.utils import clip_grad_norm_, clip_grad_value_, get_total_norm

from ..errors import NonFiniteGradientError, NonFiniteLossError, ShapeError
from . import distributed as pdist
from .compiled import CompiledLoss
from .precision import Precision

if TYPE_CHECKING:
    from .model import Model

__all__ = ["Stepper", "BatchResult", "clip_gradients"]


@dataclass
class BatchResult:
    """One batch back-propagated in a step: its loss and terms (detached), size and inputs.

    >>> BatchResult(torch.tensor(1.5), None, 4, {}).n
    4
    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] | None
    n: int
    x_dict: Mapping[str, Any]


def clip_gradients(model: Model) -> torch.Tensor | None:
    """Clip as the model is configured; return the gradients' total norm when clipping by norm
    computed it.

    >>> from pixyz_like.distributions import Normal
    >>> from pixyz_like.models import Model
    >>> p = Normal(loc=torch.zeros(1), scale=1., var=["x"], name="p")
    >>> p.loc = torch.nn.Parameter(p.loc.clone())
    >>> model = Model(-p.log_prob().mean(), distributions=[p], clip_grad_norm=0.5)
    >>> p.loc.grad = torch.full_like(p.loc, 2.0)
    >>> clip_gradients(model).item(), round(p.loc.grad.item(), 4)
    (2.0, 0.5)
    """
    norm = None
    if model.clip_norm is not None:
        norm = clip_grad_norm_(model.distributions.parameters(), model.clip_norm)
    if model.clip_value is not None:
        clip_grad_value_(model.distributions.parameters(), model.clip_value)
    return norm


def _stepped_params(model: Model) -> list[torch.Tensor]:
    """The parameters the optimizer steps, from its own lists (no module traversal)."""
    return [p for g in model.optimizer.param_groups for p in g["params"]]


def _non_finite_entries(tensors: Mapping[str, Any]) -> list[str]:
    """``name (n non-finite of N, first at index i)`` for each floating tensor holding NaN or inf."""
    found = []
    for name, t in tensors.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            bad = ~torch.isfinite(t.detach())
            if bool(bad.any()):
                first = tuple(int(i) for i in bad.nonzero()[0]) if t.ndim else ()
                found.append(f"{name!r} ({int(bad.sum())} non-finite of {t.numel()}, first at index {first})")
    return found


def _non_finite_loss_message(model: Model, where: str, batch: BatchResult) -> str:
    detail = []
    inputs = _non_finite_entries(batch.x_dict)
    if inputs:
        detail.append(f"inputs {', '.join(inputs)}")
    bad_terms = [k for k, v in (batch.terms or {}).items() if not math.isfinite(float(v))]
    if bad_terms:
        detail.append(f"terms {bad_terms}")
    weights = _non_finite_entries(dict(model.distributions.named_parameters()))
    if weights:
        detail.append(f"parameters {', '.join(weights[:4])}")
    found = f" (not finite: {'; '.join(detail)})" if detail else ""
    return (
        f"{where}: the loss {model.loss_cls} is {float(batch.loss)}{found}; the optimizer step was not "
        "taken, the parameters and the optimizer's state are unchanged"
    )


def _all_finite(model: Model, losses: torch.Tensor, norm: torch.Tensor | None, grads: bool) -> bool:
    """Whether the losses (and, if ``grads``, every gradient) are finite, read by one ``bool``.

    With the clipping's total norm, that norm stands for the gradients. Otherwise, when every gradient
    is a dense floating tensor of one device and dtype, one fused kernel (the one
    :class:`torch.amp.GradScaler` uses to find an overflow, with a scale of 1: the gradients are
    unchanged) checks them all with a copy of the losses: about a tenth of the cost of a norm per
    gradient on small models; else a norm per gradient (or one total norm) is stacked with the losses.
    """
    parts = [losses.reshape(-1)]
    if grads and norm is not None:
        parts.append(norm.detach().reshape(1).to(losses.device))
    elif grads:
        found = [p.grad for p in _stepped_params(model) if p.grad is not None]
        kinds = {(g.device, g.dtype) for g in found}
        dense = not any(g.is_sparse for g in found)
        if len(kinds) == 1 and dense:
            fused = _fused_all_finite(found, losses)
            if fused is not None:
                return fused
        same_device = len({device for device, _ in kinds}) == 1 and dense
        norms = list(torch._foreach_norm(found)) if same_device else [get_total_norm(found)] if found else []
        parts += [n.reshape(1).to(losses.device) for n in norms]
    return bool(torch.isfinite(torch.cat(parts)).all())


def _fused_all_finite(grads: list[torch.Tensor], losses: torch.Tensor) -> bool | None:
    """Whether ``grads`` (dense, one device and dtype) and ``losses`` are finite, by the fused kernel;
    ``None`` where it does not apply (another device than the losses', not floating, differentiable)."""
    first = grads[0]
    if first.device != losses.device or not first.dtype.is_floating_point or any(g.requires_grad for g in grads):
        return None
    # The losses are checked in their own dtype (a float32 loss of 1e5 is no float16 overflow); flag
    # and scale are made like the losses (new_* skips parsing a device: a fifth of the cost).
    copy, flag, one = losses.clone(), losses.new_zeros(1), losses.new_ones(())
    same = copy.dtype is first.dtype
    torch._amp_foreach_non_finite_check_and_unscale_([*grads, copy] if same else grads, flag, one)
    if not same:
        torch._amp_foreach_non_finite_check_and_unscale_([copy], flag, one)
    return not flag.item()


def _check_finite(model: Model, batches: list[BatchResult], losses: torch.Tensor, norm: torch.Tensor | None,
                  grads: bool, where: str) -> None:
    """Raise (clearing the gradients) if a loss or a gradient is not finite."""
    if _all_finite(model, losses, norm, grads):
        return
    bad = [b for b in batches if not bool(torch.isfinite(b.loss))]
    if bad:
        model.optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLossError(_non_finite_loss_message(model, where, bad[0]))
    names = [n for n, p in model.distributions.named_parameters()
             if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
    if not names:
        return  # only the norm overflowed: every gradient is finite
    model.optimizer.zero_grad(set_to_none=True)
    raise NonFiniteGradientError(
        f"{where}: the loss is finite but the gradients of {names[:8]} are not (NaN or infinite); the optimizer "
        "step was not taken, the parameters and the optimizer's state are unchanged"
    )


class Stepper:
    """Takes a model's optimizer steps: :meth:`backward` per batch, :meth:`update` per step.

    Args:
        model: the :class:`~pixyz_like.models.Model` (its loss, optimizer, clipping, ``retain_graph``
            and distributions are read at each step, so changing them takes effect at once).
        precision: the autocast region and gradient scaler (``fit(amp=...)``).
        loss_fn: a :class:`~pixyz_like.models.compiled.CompiledLoss` evaluating the loss and its terms
            (``fit(compile=...)``); by default the loss is evaluated with the options of each call.
        accumulate: the number of batches averaged per step (a short last group is averaged over its
            own size).

    >>> from pixyz_like.distributions import Normal
    >>> from pixyz_like.models import Model
    >>> p = Normal(loc=torch.zeros(1), scale=1., var=["x"], name="p")
    >>> p.loc = torch.nn.Parameter(p.loc.clone())
    >>> model = Model(-p.log_prob().mean(), distributions=[p], optimizer=torch.optim.SGD,
    ...               optimizer_params={"lr": 1.0})
    >>> stepper = Stepper(model, accumulate=2)
    >>> stepper.backward({"x": torch.full((2, 1), 1.0)}, "doc")
    >>> stepper.backward({"x": torch.full((2, 1), 3.0)}, "doc")
    >>> [round(b.loss.item(), 4) for b in stepper.update("doc")], p.loc.item()  # gradient -(1 + 3) / 2
    ([1.4189, 5.4189], 2.0)
    """

    def __init__(self, model: Model, precision: Precision | None = None, loss_fn: CompiledLoss | None = None,
                 accumulate: int = 1) -> None:
        self.model, self.loss_fn, self.accumulate = model, loss_fn, accumulate
        self.precision = precision if precision is not None else Precision()
        self.pending: list[BatchResult] = []

    @property
    def scaler(self) -> torch.amp.GradScaler | None:
        """The float16 gradient scaler (its state goes into ``fit``'s checkpoints)."""
        return self.precision.scaler

    def evaluate(self, x_dict: dict[str, Any], options: Mapping[str, Any], return_terms: bool,
                 where: str) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """The training loss (checked to be a scalar) and, if asked, its terms."""
        model = self.model
        terms: dict[str, torch.Tensor] | None
        if self.loss_fn is not None:
            loss, terms = self.loss_fn(x_dict)
        else:
            result = model.loss_cls.eval(x_dict, return_terms=return_terms, **options)
            loss, terms = result if return_terms else (result, None)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ShapeError(
                f"{where}: the loss {model.loss_cls} evaluated to shape {shape}; a training loss must be "
                "a scalar: end the formula with .mean() or .sum()"
            )
        return loss, terms

    def backward(self, x_dict: dict[str, Any], where: str, options: Mapping[str, Any] | None = None,
                 return_terms: bool = True, n: int = 1) -> None:
        """Evaluate the loss on one batch and back-propagate it into the step's gradients."""
        model = self.model
        if not self.pending:
            model.optimizer.zero_grad(set_to_none=True)
        with self.precision.autocast():
            loss, terms = self.evaluate(x_dict, options or {}, return_terms, where)
        scaled = loss / self.accumulate if self.accumulate != 1 else loss
        if self.scaler is not None:
            scaled = self.scaler.scale(scaled)
        scaled.backward(retain_graph=model.retain_graph)
        self.pending.append(BatchResult(loss.detach(), terms, n, x_dict))

    def update(self, where: str) -> list[BatchResult]:
        """Take the optimizer step for the batches back-propagated since the last one; return them."""
        batches, self.pending = self.pending, []
        if not batches:
            return batches
        model, scaler = self.model, self.scaler
        if len(batches) < self.accumulate:  # a short last group of an epoch: averaged over its own size
            for p in _stepped_params(model):
                if p.grad is not None:
                    p.grad.mul_(self.accumulate / len(batches))
        losses = torch.stack([b.loss.float() for b in batches])
        if pdist.is_distributed():
            self._agree_finite(batches, losses, where)
            pdist.all_reduce_gradients(_stepped_params(model))
        if scaler is not None:
            scaler.unscale_(model.optimizer)
        norm = clip_gradients(model)
        # With float16 loss scaling, inf gradients are expected: the scaler skips those steps.
        _check_finite(model, batches, losses, norm, grads=scaler is None, where=where)
        if scaler is not None:
            scaler.step(model.optimizer)
            scaler.update()
        else:
            model.optimizer.step()
        return batches

    def _agree_finite(self, batches: list[BatchResult], losses: torch.Tensor, where: str) -> None:
        """Every process stops together (the others would wait forever) when one's loss is not finite."""
        local = bool(torch.isfinite(losses).all())
        flag = pdist.all_reduce_sum(torch.tensor([0.0 if local else 1.0]))
        if flag.item() > 0:
            if not local:
                _check_finite(self.model, batches, losses, None, grads=False, where=where)
            self.model.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(f"{where}: another process's loss is not finite; training stopped "
                                     "without taking the step")

    def step(self, x_dict: dict[str, Any], options: Mapping[str, Any], return_terms: bool,
             where: str) -> BatchResult:
        """One optimizer step on one batch (what :meth:`Model.train` does)."""
        self.backward(x_dict, where, options, return_terms)
        return self.update(where)[0]
