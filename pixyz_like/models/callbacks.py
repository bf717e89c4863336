r"""The callback protocol of :meth:`Model.fit <pixyz_like.models.Model.fit>`, its counters, and the
callback list the loop calls.

Hooks, in the order the loop calls them (subclass :class:`Callback`, override any of)::

    on_fit_start(model, state)          # once, before the first epoch (also after a resume)
    on_epoch_start(model, state)        # before an epoch's first batch (not when resuming mid-epoch)
    step_metrics(model, state, logs) -> dict   # after each optimizer step: values added to its logs
    on_step_end(model, state, logs)            # then, with logs = {"loss": float, term: float,
                                               #   "lr/optimizer": float, "schedule/beta": float, ...}
    epoch_metrics(model, state, logs) -> dict  # after the test pass: values added to the epoch's logs
    on_epoch_end(model, state, logs)           # then, with logs = {"train/loss", "train/<term>",
                                               #   "test/loss", "test/<term>", <metrics>, "epoch", "step"}
    on_fit_end(model, state)            # once, after the last epoch (also after a stop or an error)

Every callback's metrics are gathered before any ``on_step_end``/``on_epoch_end`` runs, so a logger
sees the values of callbacks placed after it too, and the epoch metrics are in the history ``fit``
returns. The ``logs`` a metrics hook receives hold the values found so far (the losses and the
metrics of the callbacks before it). :class:`EveryEpoch` turns a function (figures, an accuracy) into such a callback.

``state`` is the :class:`FitState` (epoch, step, batch counters); a callback stops training after the
current step by setting ``state.stop = True``. Callbacks run on every process under ``torchrun`` (so
they may use collectives); check ``state.is_main_process`` before writing files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .model import Model

__all__ = ["Callback", "CallbackList", "EpochPrinter", "EveryEpoch", "FitState"]


@dataclass
class FitState:
    """Counters of a ``fit`` run, passed to callbacks and saved in checkpoints.

    Attributes:
        epoch: the current epoch, counted from 0.
        step: optimizer steps taken so far (across resumes); schedules are evaluated at it.
        batch: batches consumed in the current epoch.
        epochs: the number of epochs ``fit`` runs to.
        stop: set it to ``True`` to stop after the current step.
        history: one dict of epoch means per finished epoch (what ``fit`` returns).
        is_main_process: whether this process is rank 0 (the one that logs and saves).

    >>> FitState(epochs=3).epoch
    0
    """

    epoch: int = 0
    step: int = 0
    batch: int = 0
    epochs: int = 0
    stop: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    is_main_process: bool = True

    def where(self) -> str:
        """``Model.fit(): at step S (epoch E)``, for messages about the step being taken.

        >>> FitState(step=4, epoch=1).where()
        'Model.fit(): at step 5 (epoch 2)'
        """
        return f"Model.fit(): at step {self.step + 1} (epoch {self.epoch + 1})"


class Callback:
    """Base class of ``fit`` callbacks: every hook does nothing; override the ones you need.

    >>> class PrintLoss(Callback):
    ...     def on_epoch_end(self, model, state, logs):
    ...         print(f"epoch {state.epoch + 1}: {logs['train/loss']:.3f}")
    """

    def on_fit_start(self, model: Model, state: FitState) -> None:
        """Called once before the first epoch."""

    def on_epoch_start(self, model: Model, state: FitState) -> None:
        """Called before the first batch of an epoch."""

    def step_metrics(self, model: Model, state: FitState, logs: Mapping[str, float]) -> Mapping[str, float]:
        """Values to add to the logs of the optimizer step just taken (none by default)."""
        return {}

    def on_step_end(self, model: Model, state: FitState, logs: Mapping[str, float]) -> None:
        """Called after each optimizer step with that step's loss, terms, learning rates, schedules
        and every callback's step metrics."""

    def epoch_metrics(self, model: Model, state: FitState, logs: Mapping[str, float]) -> Mapping[str, float]:
        """Values to add to the logs (and the history) of the epoch just finished (none by default)."""
        return {}

    def on_epoch_end(self, model: Model, state: FitState, logs: Mapping[str, float]) -> None:
        """Called after each epoch's test pass with the epoch means and every callback's epoch metrics."""

    def on_fit_end(self, model: Model, state: FitState) -> None:
        """Called once when training ends."""


class EveryEpoch(Callback):
    """Call ``fn(epoch, logs)`` after each epoch's test pass (``epoch`` counted from 1, ``logs`` the
    epoch's means so far), under ``torch.no_grad()``; a dict it returns joins the epoch's logs and the
    history.

    For figures and metrics computed once per epoch, e.g. a test accuracy::

        EveryEpoch(lambda epoch, logs: {"test/accuracy": accuracy(classifier, test_loader)})

    Args:
        fn: the function; it may return ``None`` (nothing to log) or ``{name: number}``.
        main_process_only: call it on rank 0 only under ``torchrun`` (figures are written once).

    >>> seen = []
    >>> cb = EveryEpoch(lambda epoch, logs: seen.append(epoch) or {"test/half": logs["test/loss"] / 2})
    >>> cb.epoch_metrics(None, FitState(epoch=2), {"test/loss": 3.0}), seen
    ({'test/half': 1.5}, [3])
    """

    def __init__(self, fn: Callable[[int, Mapping[str, float]], Mapping[str, float] | None],
                 main_process_only: bool = False) -> None:
        if not callable(fn):
            raise TypeError(f"EveryEpoch: expected a function of the epoch, got {type(fn).__name__}")
        self.fn, self.main_process_only = fn, main_process_only

    def epoch_metrics(self, model: Model, state: FitState, logs: Mapping[str, float]) -> Mapping[str, float]:
        if self.main_process_only and not state.is_main_process:
            return {}
        with torch.no_grad():
            out = self.fn(state.epoch + 1, logs)
        if out is None:
            return {}
        if not isinstance(out, Mapping):
            raise TypeError(f"EveryEpoch: the function returned {type(out).__name__}; return None or {{name: number}}")
        return {str(k): float(v) for k, v in out.items()}


class EpochPrinter(Callback):
    """Print one line per epoch: ``Epoch 3: train loss 101.2345, test loss 103.4567, accuracy 0.9120``.

    Args:
        metrics: other names of the epoch's logs to print after the losses (``"test/accuracy"``
            prints as ``accuracy``), when present.
        file: where to print (``None``: standard output).

    >>> EpochPrinter("test/accuracy").on_epoch_end(None, FitState(epoch=2),
    ...     {"train/loss": 1.5, "test/loss": 2.0, "test/accuracy": 0.75})
    Epoch 3: train loss 1.5000, test loss 2.0000, accuracy 0.7500
    """

    def __init__(self, *metrics: str, file: Any = None) -> None:
        self.metrics, self.file = metrics, file

    def on_epoch_end(self, model: Model, state: FitState, logs: Mapping[str, float]) -> None:
        if not state.is_main_process:
            return
        parts = [f"{label} {logs[key]:.4f}" for key, label in (("train/loss", "train loss"), ("test/loss", "test loss"))
                 if key in logs]
        parts += [f"{key.removeprefix('test/')} {logs[key]:.4f}" for key in self.metrics if key in logs]
        print(f"Epoch {state.epoch + 1}: " + ", ".join(parts), file=self.file)


class CallbackList:
    """The callbacks of one ``fit`` run, called in order; metrics are gathered before the hooks that
    read the logs.

    >>> calls = []
    >>> class Hi(Callback):
    ...     def on_fit_start(self, model, state):
    ...         calls.append("start")
    ...     def on_fit_end(self, model, state):
    ...         calls.append("end")
    >>> with CallbackList([Hi()]).running(None, FitState()):
    ...     calls.append("loop")
    >>> calls
    ['start', 'loop', 'end']
    """

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"Model.fit(): callbacks must be Callback objects, got {type(cb).__name__}")

    @contextmanager
    def running(self, model: Model, state: FitState) -> Iterator[None]:
        """``on_fit_start`` before the block and ``on_fit_end`` after it, also after an error (so that
        loggers close their files)."""
        for cb in self.callbacks:
            cb.on_fit_start(model, state)
        try:
            yield
        finally:
            for cb in self.callbacks:
                cb.on_fit_end(model, state)

    def epoch_start(self, model: Model, state: FitState) -> None:
        for cb in self.callbacks:
            cb.on_epoch_start(model, state)

    def step_end(self, model: Model, state: FitState, logs: dict[str, float]) -> None:
        for cb in self.callbacks:
            logs.update(cb.step_metrics(model, state, logs))
        for cb in self.callbacks:
            cb.on_step_end(model, state, logs)

    def epoch_end(self, model: Model, state: FitState, logs: dict[str, Any]) -> None:
        for cb in self.callbacks:
            logs.update(cb.epoch_metrics(model, state, logs))
        for cb in self.callbacks:
            cb.on_epoch_end(model, state, logs)
