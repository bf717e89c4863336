r"""The training loop behind :meth:`Model.fit <pixyz_like.models.Model.fit>`: callbacks, logging,
weight schedules, resumable checkpoints, ``torch.compile``, mixed precision, gradient accumulation and
data-parallel training.

The loop, per epoch: for each batch of ``train_loader`` (a dict ``{name: tensor}``, or a tuple named by
``keys``), add the scheduled values (``schedules``), evaluate the loss, back-propagate, and every
``accumulate`` batches average the gradients (over batches and, under ``torchrun``, over processes),
clip them and take one optimizer step; then evaluate the test loss over ``test_loader``, call the
callbacks and write a checkpoint.

Callback protocol (subclass :class:`Callback`, override any of)::

    on_fit_start(model, state)          # once, before the first epoch (also after a resume)
    on_epoch_start(model, state)        # before an epoch's first batch (not when resuming mid-epoch)
    on_step_end(model, state, logs)     # after each optimizer step; logs = {"loss": float, term: float,
                                        #   "lr/optimizer": float, "schedule/beta": float, ...}
    on_epoch_end(model, state, logs)    # after the test pass; logs = {"train/loss", "train/<term>",
                                        #   "test/loss", "test/<term>", "epoch", "step"}
    on_fit_end(model, state)            # once, after the last epoch (also after a stop)

``state`` is the :class:`FitState` (epoch, step, batch counters); a callback stops training after the
current step by setting ``state.stop = True``. Callbacks run on every process under ``torchrun`` (so
they may use collectives); check ``state.is_main_process`` before writing files.
"""

from __future__ import annotations

import math
import random
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from ..errors import (
    CheckpointError,
    MissingVariableError,
    NonFiniteLossError,
    OptionError,
    PixyzLikeError,
    missing_variable_error,
)
from . import distributed as pdist
from ._checkpoint import check_number, read_checkpoint, write_checkpoint
from .model import Model

__all__ = ["Callback", "FitState", "TensorBoardLogger", "NonFiniteLossError", "fit"]


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

    def on_step_end(self, model: Model, state: FitState, logs: Mapping[str, float]) -> None:
        """Called after each optimizer step with that step's loss, terms, learning rates and schedules."""

    def on_epoch_end(self, model: Model, state: FitState, logs: Mapping[str, float]) -> None:
        """Called after each epoch's test pass with the epoch means."""

    def on_fit_end(self, model: Model, state: FitState) -> None:
        """Called once when training ends."""


def _tb_tag(tag: str) -> str:
    """A term's tag as TensorBoard accepts it: ``KL[q(z|x)||p_prior(z)]`` becomes ``KL_q_z_x_p_prior_z``."""
    return "/".join(re.sub(r"[^-\w.]+", "_", part).strip("_") for part in tag.split("/"))


class TensorBoardLogger(Callback):
    """Write every step's loss, named terms, learning rates and schedules, the epoch means of the
    train and test losses and terms, and image grids, to TensorBoard (tensorboardX). Rank 0 only.

    Args:
        log_dir: the run's folder (``tensorboard --logdir`` its parent).
        images: ``images(model) -> {tag: tensor}`` called at each epoch end under ``torch.no_grad()``;
            each tensor is a batch of images ``(N, C, H, W)`` in ``[0, 1]`` (or ``(N, D)`` with
            ``image_shape``), drawn as one grid with :func:`torchvision.utils.make_grid`, e.g.
            samples ``p.sample(...)["x"]`` and reconstructions.
        image_shape: the ``(C, H, W)`` shape flat images are reshaped to, e.g. ``(1, 28, 28)``.
        every_n_steps: write step scalars every this many steps.

    Tags: ``train/<name>`` and ``lr/...``, ``schedule/...`` per step; ``train_epoch/<name>`` and
    ``test/<name>`` per epoch; all against the global step. A term's name is its tag from
    ``Loss.eval(..., return_terms=True)`` with the characters TensorBoard refuses replaced by ``_``
    (``train/KL_q_z_x_p_prior_z``).

    >>> import tempfile
    >>> logger = TensorBoardLogger(tempfile.mkdtemp(), image_shape=(1, 28, 28))
    """

    def __init__(
        self,
        log_dir: str,
        images: Callable[[Model], Mapping[str, torch.Tensor]] | None = None,
        image_shape: Sequence[int] | None = None,
        every_n_steps: int = 1,
    ) -> None:
        self.log_dir = log_dir
        self.images = images
        self.image_shape = tuple(image_shape) if image_shape is not None else None
        self.every_n_steps = max(1, int(every_n_steps))
        self.writer = None

    def on_fit_start(self, model, state):
        if state.is_main_process and self.writer is None:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(self.log_dir)

    def on_step_end(self, model, state, logs):
        if self.writer is None or state.step % self.every_n_steps:
            return
        for k, v in logs.items():
            tag = k if k.startswith(("lr/", "schedule/")) else f"train/{k}"
            self.writer.add_scalar(_tb_tag(tag), v, state.step)

    def on_epoch_end(self, model, state, logs):
        if self.writer is None:
            return
        for k, v in logs.items():
            if k.startswith("train/"):
                self.writer.add_scalar(_tb_tag("train_epoch/" + k[len("train/") :]), v, state.step)
            elif k.startswith("test/"):
                self.writer.add_scalar(_tb_tag(k), v, state.step)
        if self.images is not None:
            import torchvision

            with torch.no_grad():
                grids = self.images(model)
            for tag, imgs in grids.items():
                imgs = imgs.detach().float().cpu()
                if self.image_shape is not None:
                    imgs = imgs.reshape(-1, *self.image_shape)
                if imgs.ndim == 3:  # (N, H, W): one channel
                    imgs = imgs.unsqueeze(1)
                nrow = max(1, int(math.sqrt(imgs.shape[0])))
                self.writer.add_image(tag, torchvision.utils.make_grid(imgs.clamp(0, 1), nrow=nrow), state.step)
        self.writer.flush()

    def on_fit_end(self, model, state):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# ---------------------------------------------------------------------- random states
def _rng_state(loader: Any) -> dict[str, Any]:
    """Every random state the loop and the loader read: torch (CPU, CUDA), Python, NumPy, sampler."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np

        name, key, pos, has_gauss, gauss = np.random.get_state()
        # As tensors and numbers: checkpoints are read with weights_only=True, which refuses arrays.
        state["numpy"] = {
            "name": name,
            "key": torch.from_numpy(key.astype("int64")),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        }
    except ImportError:
        pass
    gen = getattr(getattr(loader, "sampler", None), "generator", None)
    if isinstance(gen, torch.Generator):
        state["sampler"] = gen.get_state()
    return state


def _set_rng_state(state: Mapping[str, Any], loader: Any) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy as np

        s = state["numpy"]
        np.random.set_state((s["name"], s["key"].numpy().astype("uint32"), s["pos"], s["has_gauss"], s["gauss"]))
    gen = getattr(getattr(loader, "sampler", None), "generator", None)
    if "sampler" in state and isinstance(gen, torch.Generator):
        gen.set_state(state["sampler"])


def _gather(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (a one-element list on one process)."""
    if not pdist.is_distributed():
        return [obj]
    out: list[Any] = [None] * pdist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


# ---------------------------------------------------------------------- batches
def _batch_to_dict(batch: Any, keys: Sequence[str | None] | None) -> dict[str, Any]:
    if isinstance(batch, Mapping):
        return dict(batch)
    if keys is None:
        raise TypeError(
            f"Model.fit(): the loader yields {type(batch).__name__}, not a dict {{name: tensor}}; give "
            "keys=(...) naming each element, e.g. keys=('x', None) for torchvision's (image, label) pairs"
        )
    if isinstance(batch, torch.Tensor):
        batch = (batch,)
    if not isinstance(batch, (tuple, list)) or len(batch) != len(keys):
        n = len(batch) if isinstance(batch, (tuple, list)) else type(batch).__name__
        raise ValueError(f"Model.fit(): keys={tuple(keys)} names {len(keys)} element(s) but each batch has {n}")
    return {k: v for k, v in zip(keys, batch, strict=True) if k is not None}


def _batch_size(x_dict: Mapping[str, Any]) -> int:
    for v in x_dict.values():
        if isinstance(v, torch.Tensor) and v.ndim:
            return int(v.shape[0])
    return 1


class _Batches:
    """Turns loader items into the dicts the loss reads, with the checks ``fit`` promises."""

    def __init__(self, model: Model, keys, schedules: Mapping[str, Callable[[int], float]], device) -> None:
        self.model, self.keys, self.schedules, self.device = model, keys, schedules, device

    def prepare(self, batch: Any, step: int, loss, what: str) -> dict[str, Any]:
        x_dict = _batch_to_dict(batch, self.keys)
        clash = sorted(set(x_dict) & set(self.schedules))
        if clash:
            raise ValueError(f"Model.fit(): {clash} come both from the loader and from schedules")
        missing = [v for v in loss.input_var if v not in x_dict and v not in self.schedules]
        if missing:
            err = missing_variable_error(f"Model.fit(): the {what} loss {loss}", "each batch", missing, x_dict)
            hint = "" if isinstance(batch, Mapping) else f" (named by keys={tuple(self.keys)})"
            raise MissingVariableError(f"{err}{hint}")
        for name, schedule in self.schedules.items():
            x_dict[name] = torch.tensor(float(schedule(step)), dtype=torch.get_default_dtype(), device=self.device)
        return x_dict


# ---------------------------------------------------------------------- mixed precision, compile
def _model_device(model: Model) -> torch.device:
    if model.device is not None:
        return model.device
    return next(model.distributions.parameters()).device


def _amp_setup(amp: bool | str, device: torch.device):
    """Return ``(autocast context factory, GradScaler or None, dtype name)`` for ``amp``."""
    if amp is False or amp is None:
        return nullcontext, None, None
    if amp not in (True, "bf16", "fp16"):
        raise ValueError(f"Model.fit(): amp must be False, True, 'bf16' or 'fp16', got {amp!r}")
    if device.type == "cuda":
        if amp is True:
            amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        # float16's narrow range needs loss scaling; bfloat16 has float32's range and does not.
        scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        return (lambda: torch.autocast("cuda", dtype=dtype)), scaler, amp
    if device.type == "cpu" and amp == "bf16":
        return (lambda: torch.autocast("cpu", dtype=torch.bfloat16)), None, amp
    raise ValueError(
        f"Model.fit(amp={amp!r}): automatic mixed precision needs a CUDA device and the model is on "
        f"{device.type}. On CPU pass amp='bf16' to opt in to bfloat16 autocast explicitly (often slower "
        "than float32 without bfloat16 hardware), or amp=False"
    )


class _LossFn:
    """The training loss as a function of the batch, compiled with ``torch.compile`` when asked.

    If compilation fails (unsupported platform or Python, an operation dynamo cannot trace), it warns
    once with the reason and evaluates eagerly from then on.
    """

    def __init__(self, model: Model, options: Mapping[str, Any], compile: bool | Mapping[str, Any]) -> None:
        self.model, self.options = model, dict(options)
        self.compiled = None
        if compile:
            kwargs = dict(compile) if isinstance(compile, Mapping) else {}
            try:
                self.compiled = torch.compile(self.eager, **kwargs)
            except Exception as e:  # noqa: BLE001 - any failure means: run eagerly, say why
                self._fall_back(e)

    def eager(self, x_dict):
        return self.model.loss_cls.eval(x_dict, return_terms=True, **self.options)

    def _fall_back(self, e: BaseException) -> None:
        warnings.warn(
            f"Model.fit(compile=True): torch.compile is unavailable here ({type(e).__name__}: {e}); training eagerly",
            RuntimeWarning,
            stacklevel=4,
        )
        self.compiled = None

    def __call__(self, x_dict):
        if self.compiled is not None:
            try:
                return self.compiled(x_dict)
            except (MissingVariableError, PixyzLikeError):
                raise
            except Exception as e:  # noqa: BLE001
                self._fall_back(e)
        return self.eager(x_dict)


# ---------------------------------------------------------------------- checkpoints
def _read_checkpoint(path, model: Model) -> dict[str, Any]:
    """Read a ``fit`` checkpoint and check its training state (the model's part is checked when loaded)."""
    state, layout, source = read_checkpoint(path, "Model.fit(resume=...)")
    if "fit" not in state:
        raise CheckpointError(
            f"{source} holds no training state (it was written by Model.save, not by fit); load it with "
            "Model.load to start a new run from its weights"
        )
    _check_fit_state(state["fit"], source)
    model._load_state(state, source, layout)
    return state


def _check_fit_state(fs: Any, source: str) -> None:
    """Every entry of a checkpoint's ``fit`` section, of the kind the loop writes."""
    if not isinstance(fs, Mapping):
        raise CheckpointError(f"{source}: its training state must be a dict, got {type(fs).__name__}")
    need = ("epoch", "step", "batch", "history", "sums", "count", "rng", "epoch_rng", "scaler", "world_size")
    missing = [k for k in need if k not in fs]
    if missing:
        raise CheckpointError(f"{source}: its training state lacks the entries {missing}")
    for k in ("epoch", "step", "batch", "count"):
        check_number(fs[k], f"the training state's {k!r}", source)
    check_number(fs["world_size"], "the training state's 'world_size'", source, minimum=1)
    history, sums = fs["history"], fs["sums"]
    if not isinstance(history, list) or not all(isinstance(h, Mapping) for h in history):
        raise CheckpointError(f"{source}: the training state's 'history' must be a list of dicts")
    for i, logs in enumerate([sums, *history]):
        what = "'sums'" if i == 0 else f"'history'[{i - 1}]"
        if not isinstance(logs, Mapping):
            raise CheckpointError(f"{source}: the training state's {what} must be a dict")
        for k, v in logs.items():
            if not isinstance(k, str):
                raise CheckpointError(f"{source}: the training state's {what} has a key {k!r} that is not a name")
            check_number(v, f"the training state's {what}[{k!r}]", source, integer=False)
    if not isinstance(fs["rng"], list) or not (fs["epoch_rng"] is None or isinstance(fs["epoch_rng"], list)):
        raise CheckpointError(f"{source}: the training state's random states must be lists (one per process)")
    if fs["epoch_rng"] is not None and len(fs["epoch_rng"]) != len(fs["rng"]):
        raise CheckpointError(f"{source}: the training state has {len(fs['rng'])} random states but "
                              f"{len(fs['epoch_rng'])} epoch-start states")
    for i, rng in enumerate(fs["rng"] + (fs["epoch_rng"] or [])):
        _check_rng_state(rng, f"random state {i}", source)
    if fs["scaler"] is not None and not isinstance(fs["scaler"], Mapping):
        raise CheckpointError(f"{source}: the training state's 'scaler' must be a dict or None")


def _check_rng_state(state: Any, what: str, source: str) -> None:
    """A saved random state that :func:`_set_rng_state` can restore: tried on fresh generators."""
    if not isinstance(state, Mapping) or "torch" not in state or "python" not in state:
        raise CheckpointError(f"{source}: {what} must be a dict with 'torch' and 'python' states")
    try:
        torch.Generator().set_state(state["torch"])
        random.Random().setstate(state["python"])
        if "sampler" in state:
            torch.Generator().set_state(state["sampler"])
        if "cuda" in state and not (
            isinstance(state["cuda"], list) and all(isinstance(t, torch.Tensor) for t in state["cuda"])
        ):
            raise TypeError("the CUDA states must be a list of tensors")
        if "numpy" in state:
            import numpy as np

            s = state["numpy"]
            np.random.RandomState().set_state(
                (s["name"], s["key"].numpy().astype("uint32"), s["pos"], s["has_gauss"], s["gauss"])
            )
    except Exception as e:  # noqa: BLE001 - any failure to restore it means a malformed state
        raise CheckpointError(f"{source}: {what} cannot be restored ({type(e).__name__}: {e})") from e


def _term_values(terms: Mapping[str, torch.Tensor] | None) -> dict[str, float]:
    return {k: float(v) for k, v in (terms or {}).items()}


def _non_finite_message(step: int, epoch: int, loss, terms) -> str:
    bad = [k for k, v in (terms or {}).items() if not math.isfinite(float(v))]
    which = f"the term(s) {bad} are" if bad else "the loss is"
    return (
        f"Model.fit(): at step {step + 1} (epoch {epoch + 1}) {which} not finite (loss = {float(loss.detach())}); "
        "training stopped without taking the step; the last checkpoint is untouched"
    )


# ---------------------------------------------------------------------- the loop
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


def fit(
    model: Model,
    train_loader: Iterable,
    epochs: int = 1,
    test_loader: Iterable | None = None,
    *,
    keys: Sequence[str | None] | None = None,
    schedules: Mapping[str, Callable[[int], float]] | None = None,
    callbacks: Sequence[Callback] = (),
    log_dir: str | None = None,
    progress: bool = True,
    checkpoint: str | None = None,
    checkpoint_every: int | None = None,
    resume: str | None = None,
    max_steps: int | None = None,
    compile: bool | Mapping[str, Any] = False,
    amp: bool | str = False,
    accumulate: int = 1,
    options: Mapping[str, Any] | None = None,
) -> list[dict[str, float]]:
    r"""Train ``model`` for ``epochs`` epochs; return one dict of epoch means per epoch.

    See :meth:`Model.fit <pixyz_like.models.Model.fit>` for the arguments.
    """
    _check_counts(epochs=(epochs, 0), accumulate=(accumulate, 1), checkpoint_every=(checkpoint_every, 1),
                  max_steps=(max_steps, 1))
    schedules = dict(schedules or {})
    options = dict(options or {})
    model._check_options("Model.fit()", model.loss_cls, options)
    known = set(model.loss_cls.input_var) | set(model.test_loss_cls.input_var)
    for name, schedule in schedules.items():
        if name not in known:
            raise ValueError(
                f"Model.fit(): schedule {name!r} names no variable of the loss; its variables are {sorted(known)}"
            )
        if not callable(schedule):
            raise TypeError(f"Model.fit(): schedule {name!r} must be a function of the step, got {schedule!r}")
    custom_step = type(model).train is not Model.train
    if custom_step and (accumulate != 1 or amp or compile):
        raise ValueError(
            f"Model.fit(): {type(model).__name__} defines its own train(); the options accumulate, amp and "
            "compile apply to Model.train's step only"
        )
    device = _model_device(model)
    autocast, scaler, _ = (nullcontext, None, None) if custom_step else _amp_setup(amp, device)
    loss_fn = None if custom_step else _LossFn(model, options, compile)
    custom_test = type(model).test is not Model.test
    batches = _Batches(model, keys, schedules, device)
    callbacks = list(callbacks)
    if log_dir is not None:
        callbacks.append(TensorBoardLogger(log_dir))

    distributed = pdist.is_distributed()
    rank, world = pdist.get_rank(), pdist.get_world_size()
    main = rank == 0
    if distributed:
        train_loader = pdist.shard_loader(train_loader)
        if test_loader is not None:
            test_loader = pdist.shard_loader(test_loader)
    optimizers = model._named_optimizers()
    params = [p for g in model.optimizer.param_groups for p in g["params"]]

    state = FitState(epochs=epochs, is_main_process=main)
    run: dict[str, Any] = {"sums": {}, "count": 0}  # running sums of the current epoch's train logs
    resume_rng = resume_epoch_rng = None
    if resume is not None:
        saved = _read_checkpoint(resume, model)
        fs = saved["fit"]
        state.epoch, state.step, state.batch = fs["epoch"], fs["step"], fs["batch"]
        state.history = [dict(h) for h in fs["history"]]
        run = {"sums": dict(fs["sums"]), "count": fs["count"]}
        if scaler is not None and fs.get("scaler"):
            scaler.load_state_dict(fs["scaler"])
        if len(fs["rng"]) == world:
            resume_rng = fs["rng"][rank]
            resume_epoch_rng = fs["epoch_rng"][rank] if fs["epoch_rng"] is not None else None
        else:
            warnings.warn(
                f"Model.fit(resume=...): the checkpoint was written by {len(fs['rng'])} processes and "
                f"{world} run now; random states are not restored, so the run is not an exact "
                "continuation",
                RuntimeWarning,
                stacklevel=3,
            )
            state.batch = 0
    # All processes start from rank 0's parameters (a fresh run may have initialised them differently).
    pdist.broadcast_state(model.distributions)
    for m in model._extra_modules().values():
        pdist.broadcast_state(m)

    hooks = []
    if distributed and custom_step:
        # A subclass's own train() steps its optimizers itself: average the gradients just before
        # each optimizer step.
        for opt in optimizers.values():

            def pre_hook(o, args, kwargs):
                pdist.all_reduce_gradients([p for g in o.param_groups for p in g["params"]])

            hooks.append(opt.register_step_pre_hook(pre_hook))

    epoch_rng: dict[str, Any] | None = None

    def save() -> None:
        if checkpoint is None:
            return
        all_rng = _gather(_rng_state(train_loader))
        all_epoch_rng = _gather(epoch_rng) if state.batch else None
        if main:
            ckpt = model.state_dict()
            ckpt["fit"] = {
                "epoch": state.epoch,
                "step": state.step,
                "batch": state.batch,
                "history": state.history,
                "sums": run["sums"],
                "count": run["count"],
                "rng": all_rng,
                "epoch_rng": all_epoch_rng,
                "scaler": scaler.state_dict() if scaler is not None else None,
                "world_size": world,
            }
            write_checkpoint(ckpt, checkpoint)
        if distributed:
            dist.barrier()

    def log_step(loss_value: float, terms: dict[str, float], n: int) -> dict[str, float]:
        logs = {"loss": loss_value, **terms}
        for k, v in logs.items():
            run["sums"][k] = run["sums"].get(k, 0.0) + v * n
        run["count"] += n
        for name, opt in optimizers.items():
            for i, g in enumerate(opt.param_groups):
                logs[f"lr/{name}" + (f"/{i}" if len(opt.param_groups) > 1 else "")] = float(g["lr"])
        for name, schedule in schedules.items():  # the value this step used (the step before the increment)
            logs[f"schedule/{name}"] = float(schedule(state.step - 1))
        return logs

    def optimizer_step(group: int) -> None:
        """Average the gradients of the ``group`` batches just back-propagated, then step."""
        if group < accumulate:  # a short last group of an epoch: it is averaged over its own size
            for p in params:
                if p.grad is not None:
                    p.grad.mul_(accumulate / group)
        pdist.all_reduce_gradients(params)
        if scaler is not None:
            scaler.unscale_(model.optimizer)
        norm = model._clip_gradients()
        if scaler is None:  # with float16 loss scaling, inf gradients are expected: the scaler skips those steps
            model._check_step(None, norm, {}, where=f"Model.fit(): at step {state.step + 1} (epoch {state.epoch + 1})")
        if scaler is not None:
            scaler.step(model.optimizer)
            scaler.update()
        else:
            model.optimizer.step()

    def check_finite(bad: str | None) -> None:
        flag = torch.tensor([0.0 if bad is None else 1.0])
        if distributed:  # every process must stop together, or the others would wait forever
            flag = pdist.all_reduce_sum(flag)
        if flag.item() > 0:
            raise NonFiniteLossError(
                bad
                or f"Model.fit(): at step {state.step + 1} another process's loss is "
                "not finite; training stopped without taking the step"
            )

    for cb in callbacks:
        cb.on_fit_start(model, state)
    try:
        while state.epoch < epochs and not state.stop and (max_steps is None or state.step < max_steps):
            sampler = getattr(train_loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(state.epoch)
            skip = state.batch
            if skip and resume_epoch_rng is not None:
                # Mid-epoch resume: replay the epoch's start (same shuffle order), skip the batches
                # already used, then continue from the random state saved with the checkpoint.
                _set_rng_state(resume_epoch_rng, train_loader)
                epoch_rng = resume_epoch_rng
            else:
                if resume_rng is not None:
                    _set_rng_state(resume_rng, train_loader)
                    resume_rng = None
                skip = 0
                state.batch = 0
                run = {"sums": {}, "count": 0}
                epoch_rng = _rng_state(train_loader)
                for cb in callbacks:
                    cb.on_epoch_start(model, state)
            iterator = iter(train_loader)
            for _ in range(skip):
                next(iterator)
            if skip:
                _set_rng_state(resume_rng, train_loader)
                resume_rng = resume_epoch_rng = None
            total = len(train_loader) if hasattr(train_loader, "__len__") else None
            bar = None
            if progress and main:
                from tqdm.auto import tqdm

                bar = tqdm(total=total, initial=skip, desc=f"epoch {state.epoch + 1}/{epochs}", leave=False)

            group, group_loss, group_terms, group_n, bad = 0, 0.0, {}, 0, None
            model.distributions.train()
            for batch in iterator:
                x_dict = batches.prepare(batch, state.step, model.loss_cls, "training")
                n = _batch_size(x_dict)
                state.batch += 1
                if bar is not None:
                    bar.update(1)
                if custom_step:
                    out = model.train(x_dict, **options)
                    losses = out if isinstance(out, tuple) else (out,)
                    names = list(getattr(model, "loss_names", ())) or ["loss"] + [
                        f"loss_{i + 2}" for i in range(len(losses) - 1)
                    ]
                    values = {nm: float(v) for nm, v in zip(names, losses, strict=False)}
                    bad_names = [nm for nm, v in values.items() if not math.isfinite(v)]
                    if bad_names:
                        raise NonFiniteLossError(
                            f"Model.fit(): at step {state.step + 1} (epoch {state.epoch + 1}) "
                            f"{bad_names} of {type(model).__name__}.train() are not finite"
                        )
                    loss_value, terms = values.pop(names[0]), values
                    state.step += 1
                    logs = log_step(loss_value, terms, n)
                else:
                    x_dict = model._to_device(x_dict)
                    if group == 0:
                        model.optimizer.zero_grad(set_to_none=True)
                    with autocast():
                        loss, terms = model._train_loss(x_dict, options, True, loss_fn)
                    if bad is None and not bool(torch.isfinite(loss)):
                        bad = _non_finite_message(state.step, state.epoch, loss, terms)
                        if not distributed:
                            check_finite(bad)
                    scaled = loss / accumulate
                    (scaler.scale(scaled) if scaler is not None else scaled).backward(retain_graph=model.retain_graph)
                    group += 1
                    group_loss += float(loss.detach()) * n
                    for k, v in _term_values(terms).items():
                        group_terms[k] = group_terms.get(k, 0.0) + v * n
                    group_n += n
                    if group < accumulate:
                        continue
                    check_finite(bad)
                    optimizer_step(group)
                    state.step += 1
                    logs = log_step(group_loss / group_n, {k: v / group_n for k, v in group_terms.items()}, group_n)
                    group, group_loss, group_terms, group_n = 0, 0.0, {}, 0
                if bar is not None:
                    bar.set_postfix(loss=f"{logs['loss']:.4g}")
                for cb in callbacks:
                    cb.on_step_end(model, state, logs)
                if checkpoint_every and state.step % checkpoint_every == 0:
                    save()
                if state.stop or (max_steps is not None and state.step >= max_steps):
                    break
            else:
                if group:  # the epoch ended inside an accumulation group
                    check_finite(bad)
                    optimizer_step(group)
                    state.step += 1
                    logs = log_step(group_loss / group_n, {k: v / group_n for k, v in group_terms.items()}, group_n)
                    for cb in callbacks:
                        cb.on_step_end(model, state, logs)
                if bar is not None:
                    bar.close()
                epoch_logs = _epoch_logs(run, state)
                if test_loader is not None:
                    epoch_logs.update(_test(model, test_loader, batches, state.step, options, custom_test))
                state.history.append(epoch_logs)
                for cb in callbacks:
                    cb.on_epoch_end(model, state, epoch_logs)
                state.epoch += 1
                state.batch = 0
                run = {"sums": {}, "count": 0}
                save()
                continue
            # Stopped inside the epoch (max_steps or a callback): keep a checkpoint to resume from.
            if bar is not None:
                bar.close()
            save()
            break
    finally:
        for h in hooks:
            h.remove()
        # Also after an error, so that loggers close their files.
        for cb in callbacks:
            cb.on_fit_end(model, state)
    return state.history


def _epoch_logs(run: Mapping[str, Any], state: FitState) -> dict[str, float]:
    sums = torch.tensor([float(run["count"])] + [float(v) for v in run["sums"].values()], dtype=torch.float64)
    sums = pdist.all_reduce_sum(sums)
    count = max(sums[0].item(), 1.0)
    logs: dict[str, float] = {"epoch": float(state.epoch + 1), "step": float(state.step)}
    for k, v in zip(run["sums"], sums[1:].tolist(), strict=True):
        if not k.startswith(("lr/", "schedule/")):
            logs[f"train/{k}"] = v / count
    return logs


def _test(model: Model, loader: Iterable, batches: _Batches, step: int, options, custom_test: bool) -> dict[str, float]:
    """Mean test loss and terms over the loader, weighted by batch size (and summed over processes)."""
    sums: dict[str, float] = {}
    count = 0
    for batch in loader:
        x_dict = batches.prepare(batch, step, model.test_loss_cls, "test")
        n = _batch_size(x_dict)
        if custom_test:
            out = model.test(x_dict, **options)
            losses = out if isinstance(out, tuple) else (out,)
            names = list(getattr(model, "loss_names", ())) or ["loss"] + [
                f"loss_{i + 2}" for i in range(len(losses) - 1)
            ]
            values = {nm: float(v) for nm, v in zip(names, losses, strict=False)}
        else:
            loss, terms = model.test(x_dict, return_terms=True, **options)
            values = {"loss": float(loss), **_term_values(terms)}
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v * n
        count += n
    total = pdist.all_reduce_sum(torch.tensor([float(count)] + list(sums.values()), dtype=torch.float64)).tolist()
    return {f"test/{k}": v / max(total[0], 1.0) for k, v in zip(sums, total[1:], strict=True)}
