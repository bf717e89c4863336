r"""The training loop behind :meth:`Model.fit <pixyz_like.models.Model.fit>`.

:func:`fit` checks its arguments and assembles a :class:`Trainer` from parts that each live in their
own module:

==============================  ==================================================================
the step                        :mod:`~pixyz_like.models.step` (shared with ``Model.train``):
                                evaluate, back-propagate, accumulate, check, clip, step
mixed precision                 :mod:`~pixyz_like.models.precision` (``amp=``)
``torch.compile``               :mod:`~pixyz_like.models.compiled` (``compile=``)
data-parallel training          :mod:`~pixyz_like.models.distributed` (``torchrun``)
batches, schedules, loaders     :mod:`~pixyz_like.models.batches` (``keys=``, ``schedules=``,
                                :class:`~pixyz_like.models.batches.ZipLoader`)
checkpoints and resumption      :mod:`~pixyz_like.models.resume` (``checkpoint=``, ``resume=``)
callbacks and counters          :mod:`~pixyz_like.models.callbacks` (``callbacks=``)
logging                         :mod:`~pixyz_like.models.tensorboard_logger` (``log_dir=``)
==============================  ==================================================================

The loop, per epoch: for each batch of ``train_loader`` (a dict ``{name: tensor}``, or a tuple named
by ``keys``), add the scheduled values, evaluate the loss and back-propagate; every ``accumulate``
batches take one optimizer step (gradients averaged over the batches and, under ``torchrun``, over
processes); then evaluate the test loss over ``test_loader``, call the callbacks and write a
checkpoint. A model whose class defines its own ``train`` (a GAN stepping a critic and a generator)
is stepped through that ``train`` instead, one call per batch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import torch

from ..errors import NonFiniteLossError, OptionError
from . import distributed as pdist
from .batches import Batches, Keys, batch_size, loaders_of
from .callbacks import Callback, CallbackList, EpochPrinter, EveryEpoch, FitState
from .compiled import CompiledLoss
from .precision import precision
from .resume import Checkpointer, EpochSums, Resumption, rng_state
from .step import BatchResult, Stepper
from .tensorboard_logger import TensorBoardLogger

if TYPE_CHECKING:
    from .model import Model

# Callback, FitState, TensorBoardLogger and NonFiniteLossError are re-exported: callbacks import them from here.
__all__ = ["Callback", "EpochPrinter", "EveryEpoch", "FitState", "TensorBoardLogger", "NonFiniteLossError",
           "ModelStep", "OwnStep", "Trainer", "fit"]

StepLogs = tuple[dict[str, float], int]  # the loss and terms of one optimizer step, and its data points


def _value_names(model: Model, count: int) -> list[str]:
    """The names of the values a model's own ``train``/``test`` returns (``loss_names``, else
    ``loss``, ``loss_2``...)."""
    names = list(getattr(model, "loss_names", ()))
    return names or ["loss"] + [f"loss_{i + 2}" for i in range(count - 1)]


def _own_values(model: Model, out: Any) -> dict[str, float]:
    losses = out if isinstance(out, tuple) else (out,)
    return {nm: float(v) for nm, v in zip(_value_names(model, len(losses)), losses, strict=False)}


def _step_means(batches: list[BatchResult]) -> StepLogs:
    """The step's loss and terms, averaged over its batches weighted by size, read in one transfer."""
    keys = list(batches[0].terms or {})
    if len(batches) == 1:  # one batch: its values as they are
        row = torch.stack([batches[0].loss.float(), *(batches[0].terms[k].float() for k in keys)])  # type: ignore[index]
        return dict(zip(["loss", *keys], row.tolist(), strict=True)), batches[0].n
    rows = torch.stack([torch.stack([b.loss.float(), *(b.terms[k].float() for k in keys)])  # type: ignore[index]
                        for b in batches]).tolist()
    sizes = [b.n for b in batches]
    total = sum(sizes)
    means = [sum(r[j] * n for r, n in zip(rows, sizes, strict=True)) / total for j in range(len(keys) + 1)]
    return dict(zip(["loss", *keys], means, strict=True)), total


class ModelStep:
    """``fit``'s step for a model trained by ``Model.train``'s computation: a :class:`Stepper`
    with the run's precision, compilation and accumulation.

    >>> from pixyz_like.distributions import Normal
    >>> from pixyz_like.models import Model
    >>> p = Normal(loc=torch.zeros(1), scale=1., var=["x"], name="p")
    >>> p.loc = torch.nn.Parameter(p.loc.clone())
    >>> step = ModelStep(Model(-p.log_prob().mean(), distributions=[p]), {}, False, False, accumulate=2)
    >>> step.batch({"x": torch.zeros(2, 1)}, FitState()) is None   # half a group: no step yet
    True
    >>> logs, n = step.batch({"x": torch.zeros(2, 1)}, FitState())
    >>> sorted(logs), n
    (['log p(x)', 'loss'], 4)
    """

    def __init__(self, model: Model, options: Mapping[str, Any], amp: bool | str,
                 compile: bool | Mapping[str, Any], accumulate: int) -> None:
        compile_options = (dict(compile) if isinstance(compile, Mapping) else {}) if compile else None
        loss_fn = CompiledLoss(model, options, compile_options) if compile_options is not None else None
        self.model, self.options, self.accumulate = model, dict(options), accumulate
        self.stepper = Stepper(model, precision(amp, model._device()), loss_fn, accumulate)

    @property
    def scaler(self) -> torch.amp.GradScaler | None:
        return self.stepper.scaler

    def hooks(self) -> AbstractContextManager[object]:
        return nullcontext()

    def batch(self, x_dict: dict[str, Any], state: FitState) -> StepLogs | None:
        """Back-propagate one batch; take the step when the group is complete (its logs, else None)."""
        x_dict = self.model._to_device(x_dict, "Model.fit()")
        self.stepper.backward(x_dict, state.where(), self.options, True, batch_size(x_dict))
        if len(self.stepper.pending) < self.accumulate:
            return None
        return _step_means(self.stepper.update(state.where()))

    def flush(self, state: FitState) -> StepLogs | None:
        """Step on the batches of a group left short by the end of an epoch."""
        return _step_means(self.stepper.update(state.where())) if self.stepper.pending else None


class OwnStep:
    """``fit``'s step for a model whose class defines its own ``train`` (e.g. a GAN), one call per
    batch; its optimizers average their gradients over processes just before they step. The values
    ``train`` returns are named by the class's ``loss_names``.

    >>> from pixyz_like.distributions import Normal
    >>> from pixyz_like.models import Model
    >>> class Twice(Model):
    ...     loss_names = ("loss", "double")
    ...     def train(self, x_dict, **options):
    ...         loss = super().train(x_dict, **options)
    ...         return loss, 2 * loss
    >>> p = Normal(loc=torch.zeros(1), scale=1., var=["x"], name="p")
    >>> p.loc = torch.nn.Parameter(p.loc.clone())
    >>> logs, n = OwnStep(Twice(-p.log_prob().mean(), distributions=[p]), {}).batch(
    ...     {"x": torch.zeros(3, 1)}, FitState())
    >>> round(logs["double"] / logs["loss"], 6), n
    (2.0, 3)
    """

    scaler = None

    def __init__(self, model: Model, options: Mapping[str, Any]) -> None:
        self.model, self.options = model, dict(options)

    def hooks(self) -> AbstractContextManager[object]:
        return pdist.averaged_before_steps(self.model._named_optimizers().values())

    def batch(self, x_dict: dict[str, Any], state: FitState) -> StepLogs | None:
        values = _own_values(self.model, self.model.train(x_dict, **self.options))
        bad = [nm for nm, v in values.items() if not math.isfinite(v)]
        if bad:
            raise NonFiniteLossError(f"{state.where()} {bad} of {type(self.model).__name__}.train() are not finite")
        return values, batch_size(x_dict)

    def flush(self, state: FitState) -> StepLogs | None:
        return None


def _test_values(model: Model, x_dict: dict[str, Any], options: Mapping[str, Any]) -> dict[str, float]:
    if model._overrides("test"):
        return _own_values(model, model.test(x_dict, **options))
    loss, terms = model.test(x_dict, return_terms=True, **options)
    return {"loss": float(loss), **{k: float(v) for k, v in terms.items()}}


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


class Trainer:
    """One ``fit`` run: the parts, assembled once, and the loop over epochs, batches and steps.

    Args:
        model: the model trained.
        step: :class:`ModelStep` or :class:`OwnStep`.
        batches: turns loader items into input dicts (keys, schedules).
        callbacks: the run's callbacks (loggers included).
        checkpointer: where and how often checkpoints are written.
        options: the loss options of the test pass.
        progress: show a tqdm bar (rank 0).
        max_steps: stop after this many optimizer steps in all.

    >>> from pixyz_like.distributions import Normal
    >>> from pixyz_like.models import Model
    >>> p = Normal(loc=torch.zeros(1), scale=1., var=["x"], name="p")
    >>> p.loc = torch.nn.Parameter(p.loc.clone())
    >>> model = Model(-p.log_prob().mean(), distributions=[p], optimizer_params={"lr": 0.1})
    >>> trainer = Trainer(model, ModelStep(model, {}, False, False, 1), Batches(None, {}, None),
    ...                   CallbackList([]), Checkpointer(None), {}, progress=False)
    >>> len(trainer.run([{"x": torch.ones(4, 1)}] * 3, epochs=2))
    2
    """

    def __init__(self, model: Model, step: ModelStep | OwnStep, batches: Batches, callbacks: CallbackList,
                 checkpointer: Checkpointer, options: Mapping[str, Any], progress: bool = True,
                 max_steps: int | None = None) -> None:
        self.model, self.step, self.batches, self.callbacks = model, step, batches, callbacks
        self.checkpointer, self.options = checkpointer, dict(options)
        self.progress, self.max_steps = progress, max_steps
        self.sums, self.resumption = EpochSums({}), Resumption()
        self.epoch_rng: dict[str, Any] | None = None

    # ------------------------------------------------------------------ the run
    def run(self, train_loader: Iterable, epochs: int, test_loader: Iterable | None = None,
            resume: str | os.PathLike | None = None) -> list[dict[str, float]]:
        """Train up to ``epochs`` epochs (from the checkpoint ``resume``); return the history."""
        model = self.model
        state = FitState(epochs=epochs, is_main_process=pdist.is_main_process())
        train_loader = pdist.shard(train_loader)
        test_loader = pdist.shard(test_loader) if test_loader is not None else None
        if resume is not None:
            self.sums, self.resumption = self.checkpointer.restore(resume, model, state, self.step.scaler)
        # All processes start from rank 0's parameters (a fresh run may have initialised them differently).
        pdist.broadcast_state(model.distributions)
        for m in model._extra_modules().values():
            pdist.broadcast_state(m)
        with self.callbacks.running(model, state), self.step.hooks():
            while state.epoch < epochs and not self._should_stop(state):
                if not self._epoch(state, train_loader, test_loader):
                    self._save(state, train_loader)  # stopped inside the epoch: a checkpoint to resume from
                    break
        return state.history

    def _should_stop(self, state: FitState) -> bool:
        return state.stop or (self.max_steps is not None and state.step >= self.max_steps)

    def _save(self, state: FitState, loader: Any) -> None:
        self.checkpointer.save(self.model, state, self.sums, self.step.scaler, loader, self.epoch_rng)

    # ------------------------------------------------------------------ an epoch
    def _batches(self, state: FitState, loader: Iterable) -> Iterator[Any]:
        """The epoch's batches: a fresh epoch (its start recorded), or the rest of a resumed one."""
        for part in loaders_of(loader):
            set_epoch = getattr(getattr(part, "sampler", None), "set_epoch", None)
            if callable(set_epoch):
                set_epoch(state.epoch)
        skip, epoch_rng = self.resumption.start_epoch(state, loader)
        if epoch_rng is None:
            self.sums, epoch_rng = EpochSums({}), rng_state(loader)
            self.callbacks.epoch_start(self.model, state)
        self.epoch_rng = epoch_rng
        iterator = iter(loader)
        for _ in range(skip):
            next(iterator)
        if skip:
            self.resumption.after_skip(loader)
        return iterator

    def _bar(self, loader: Iterable, state: FitState) -> Any:
        if not (self.progress and state.is_main_process):
            return _NoBar()
        from tqdm.auto import tqdm

        total = len(loader) if isinstance(loader, Sized) else None
        return tqdm(total=total, initial=state.batch, desc=f"epoch {state.epoch + 1}/{state.epochs}", leave=False)

    def _epoch(self, state: FitState, loader: Iterable, test_loader: Iterable | None) -> bool:
        """One epoch (or the rest of one); ``False`` if training stopped inside it."""
        iterator = self._batches(state, loader)
        bar = self._bar(loader, state)
        self.model.distributions.train()
        try:
            for batch in iterator:
                state.batch += 1
                bar.update(1)
                x_dict = self.batches.prepare(batch, state.step, self.model.loss_cls, "training")
                out = self.step.batch(x_dict, state)
                if out is not None and self._stepped(state, out, bar, loader):
                    return False
            out = self.step.flush(state)  # the epoch ended inside an accumulation group
            if out is not None:
                self._stepped(state, out, bar, None)
        finally:
            bar.close()
        self._end_epoch(state, loader, test_loader)
        return True

    def _stepped(self, state: FitState, out: StepLogs, bar: Any, loader: Any) -> bool:
        """Count, log and checkpoint (``loader`` given) the step just taken; whether to stop now."""
        values, n = out
        state.step += 1
        self.sums.add(values, n)
        logs = dict(values)
        for name, opt in self.model._named_optimizers().items():
            for i, g in enumerate(opt.param_groups):
                logs[f"lr/{name}" + (f"/{i}" if len(opt.param_groups) > 1 else "")] = float(g["lr"])
        for name, schedule in self.batches.schedules.items():  # the value this step used
            logs[f"schedule/{name}"] = float(schedule(state.step - 1))
        bar.set_postfix(loss=f"{logs['loss']:.4g}")
        self.callbacks.step_end(self.model, state, logs)
        if loader is None:
            return False
        if self.checkpointer.due(state):
            self._save(state, loader)
        return self._should_stop(state)

    def _end_epoch(self, state: FitState, loader: Any, test_loader: Iterable | None) -> None:
        logs: dict[str, float] = self.sums.means(state)
        if test_loader is not None:
            logs.update(self._test(test_loader, state))
        state.history.append(logs)
        self.callbacks.epoch_end(self.model, state, logs)
        state.epoch += 1
        state.batch = 0
        self.sums = EpochSums({})
        self._save(state, loader)

    def _test(self, loader: Iterable, state: FitState) -> dict[str, float]:
        """Mean test loss and terms over the loader, weighted by batch size (and summed over processes)."""
        sums: dict[str, float] = {}
        count = 0
        for batch in loader:
            x_dict = self.batches.prepare(batch, state.step, self.model.test_loss_cls, "test")
            n = batch_size(x_dict)
            for k, v in _test_values(self.model, x_dict, self.options).items():
                sums[k] = sums.get(k, 0.0) + v * n
            count += n
        total = pdist.all_reduce_sum(torch.tensor([float(count), *sums.values()], dtype=torch.float64)).tolist()
        return {f"test/{k}": v / max(total[0], 1.0) for k, v in zip(sums, total[1:], strict=True)}


# ---------------------------------------------------------------------- fit
def _check_counts(**counts: tuple[Any, int]) -> None:
    """Each ``name=(value, least)``: ``value`` must be ``None`` (where allowed) or an integer >= ``least``."""
    optional = {"checkpoint_every", "max_steps"}
    for name, (value, least) in counts.items():
        if value is None and name in optional:
            continue
        if type(value) is not int or value < least:
            what = "a non-negative" if least == 0 else "a positive"
            none = " (or None)" if name in optional else ""
            raise OptionError(f"Model.fit(): {name} must be {what} integer{none}, got {value!r}")


def _check_schedules(model: Model, schedules: Mapping[str, Any]) -> None:
    known = set(model.loss_cls.input_var) | set(model.test_loss_cls.input_var)
    for name, schedule in schedules.items():
        if name not in known:
            raise ValueError(
                f"Model.fit(): schedule {name!r} names no variable of the loss; its variables are {sorted(known)}"
            )
        if not callable(schedule):
            raise TypeError(f"Model.fit(): schedule {name!r} must be a function of the step, got {schedule!r}")


def _make_step(model: Model, options: Mapping[str, Any], amp: bool | str, compile: bool | Mapping[str, Any],
               accumulate: int) -> ModelStep | OwnStep:
    """``Model.train``'s step with the run's options, or the model's own ``train`` (which they do not reach)."""
    if not model._overrides("train"):
        return ModelStep(model, options, amp, compile, accumulate)
    if accumulate != 1 or amp or compile:
        raise ValueError(
            f"Model.fit(): {type(model).__name__} defines its own train(); the options accumulate, amp and "
            "compile apply to Model.train's step only"
        )
    return OwnStep(model, options)


def fit(
    model: Model, train_loader: Iterable, epochs: int = 1, test_loader: Iterable | None = None, *,
    keys: Keys | None = None, schedules: Mapping[str, Callable[[int], float]] | None = None,
    callbacks: Sequence[Callback] = (), log_dir: str | os.PathLike | None = None, progress: bool = True,
    checkpoint: str | os.PathLike | None = None, checkpoint_every: int | None = None,
    resume: str | os.PathLike | None = None, max_steps: int | None = None,
    compile: bool | Mapping[str, Any] = False, amp: bool | str = False, accumulate: int = 1,
    options: Mapping[str, Any] | None = None,
) -> list[dict[str, float]]:
    r"""Train for ``epochs`` epochs over ``train_loader``; return one dict of epoch means per epoch.

    Each optimizer step minimises the mean loss over ``accumulate`` batches (and, under
    ``torchrun``, over all processes):
    :math:`\theta \leftarrow \mathrm{step}\big(\nabla_\theta \frac{1}{A W}\sum_{a,r} L(x_{a,r})\big)`.

    Args:
        train_loader: an iterable of batches: dicts ``{name: tensor}``, or tuples named by ``keys``;
            a :class:`~pixyz_like.models.batches.ZipLoader` reads several loaders as one.
        epochs: the total number of epochs (a resumed run continues up to it).
        test_loader: batches for the test loss, evaluated after each epoch.
        keys: names of the elements of tuple batches, ``None`` to drop one (e.g. ``("x", None)``
            for torchvision's ``(image, label)``).
        schedules: ``{name: schedule(step) -> float}``: each value enters the input dict under its
            name at every step, e.g. ``{"beta": linear_warmup(0, 1, 1000)}`` for a loss using
            ``Parameter("beta")`` (see :mod:`pixyz_like.losses.schedules`).
        callbacks: :class:`~pixyz_like.models.Callback` objects (``on_step_end``, ``on_epoch_end``,
            ``epoch_metrics``...; :class:`~pixyz_like.models.EveryEpoch` for figures and metrics).
        log_dir: write TensorBoard logs there (a :class:`~pixyz_like.models.TensorBoardLogger`; add
            one to ``callbacks`` yourself for image grids).
        progress: show a tqdm progress bar.
        checkpoint: path of the checkpoint written (atomically) after each epoch, every
            ``checkpoint_every`` steps and when training stops early.
        checkpoint_every: also write the checkpoint every this many optimizer steps.
        resume: a checkpoint written by ``fit`` to continue from exactly: parameters, optimizers,
            counters, the epoch's shuffle order and every random state.
        max_steps: stop after this many optimizer steps in all (counted across resumes).
        compile: ``torch.compile`` the loss evaluation (``True``, or a dict of ``torch.compile``
            arguments); where torch.compile cannot run it falls back to eager with a warning (see
            :mod:`pixyz_like.models.compiled`); other errors propagate.
        amp: mixed precision on CUDA: ``True`` (bfloat16 where supported, else float16 with
            gradient scaling), ``"bf16"`` or ``"fp16"``. On CPU, ``amp=True`` raises an error
            rather than silently doing nothing; ``amp="bf16"`` opts in to CPU bfloat16 autocast.
        accumulate: average the gradients of this many batches before each optimizer step.
        options: options passed to the loss at each evaluation (e.g. ``{"batch_n": 8}``).

    Raises:
        MissingVariableError: a batch lacks a variable the loss needs (the message names it).
        NonFiniteLossError: the loss became NaN/inf; the message names the step and the term.
        NonFiniteGradientError: a gradient became NaN/inf (the step is not taken either).
        CheckpointError: ``resume`` is unreadable, corrupted, or not a ``fit`` checkpoint of
            this model.
        OptionError: a count that means nothing (``max_steps=-1``, ``accumulate=0``...).

    A subclass with its own ``train`` (e.g. a GAN stepping a critic) is trained through that
    ``train``; ``accumulate``, ``amp`` and ``compile`` then do not apply. Under ``torchrun`` see
    :mod:`pixyz_like.models.distributed`.

    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> from pixyz_like.distributions import Normal
    >>> from pixyz_like.models import Model
    >>> p = Normal(loc=torch.zeros(1), scale=1., var=["x"], name="p")
    >>> p.loc = torch.nn.Parameter(p.loc.clone())
    >>> model = Model(-p.log_prob().mean(), distributions=[p], optimizer_params={"lr": 0.1})
    >>> loader = DataLoader(TensorDataset(torch.full((64, 1), 2.0)), batch_size=16)
    >>> history = model.fit(loader, epochs=20, keys=("x",), progress=False)
    >>> round(p.loc.item(), 1), len(history)
    (2.0, 20)
    """
    _check_counts(epochs=(epochs, 0), accumulate=(accumulate, 1), checkpoint_every=(checkpoint_every, 1),
                  max_steps=(max_steps, 1))
    schedules, options = dict(schedules or {}), dict(options or {})
    model._check_options("Model.fit()", model.loss_cls, options)
    _check_schedules(model, schedules)
    loggers = [TensorBoardLogger(str(log_dir))] if log_dir is not None else []
    trainer = Trainer(model, _make_step(model, options, amp, compile, accumulate),
                      Batches(keys, schedules, model._device()), CallbackList([*callbacks, *loggers]),
                      Checkpointer(checkpoint, checkpoint_every), options, progress, max_steps)
    return trainer.run(train_loader, epochs, test_loader, resume)
