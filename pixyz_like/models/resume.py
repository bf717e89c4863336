r"""``fit``'s checkpoints and exact resumption.

A ``fit`` checkpoint is the model's state (:meth:`Model.state_dict
<pixyz_like.models.Model.state_dict>`, written by :mod:`pixyz_like.models._checkpoint`: atomic, with a
digest) plus a ``"fit"`` section: the counters (epoch, step, batch), the history, the running sums
of the epoch, the float16 gradient scaler, and every random state the loop and the loader read —
torch (CPU, CUDA), Python, NumPy and each loader's sampler generator — per process, both now and at
the start of the epoch.

Resuming mid-epoch replays the epoch's start (the same shuffle order), skips the batches already
used, then continues from the random state saved with the checkpoint; the result is the run that
was never interrupted, bit for bit, with the same number of processes.
"""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from ..errors import CheckpointError
from . import distributed as pdist
from ._checkpoint import check_number, write_checkpoint
from .batches import loaders_of
from .callbacks import FitState

if TYPE_CHECKING:
    from .model import Model

__all__ = ["rng_state", "set_rng_state", "read_fit_checkpoint", "EpochSums", "Checkpointer", "Resumption"]

_NEED = ("epoch", "step", "batch", "history", "sums", "count", "rng", "epoch_rng", "scaler", "world_size")


# ---------------------------------------------------------------------- random states
def _generators(loader: Any) -> list[torch.Generator]:
    found = []
    for part in loaders_of(loader):
        gen = getattr(getattr(part, "sampler", None), "generator", None)
        if isinstance(gen, torch.Generator):
            found.append(gen)
    return found


def rng_state(loader: Any) -> dict[str, Any]:
    """Every random state the loop and the loader read: torch (CPU, CUDA), Python, NumPy, samplers.

    >>> sorted(rng_state([]))[:2]
    ['numpy', 'python']
    """
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np

        name, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
        # As tensors and numbers: checkpoints are read with weights_only=True, which refuses arrays.
        state["numpy"] = {"name": name, "key": torch.from_numpy(np.asarray(key).astype("int64")), "pos": int(pos),
                          "has_gauss": int(has_gauss), "gauss": float(gauss)}
    except ImportError:
        pass
    gens = _generators(loader)
    if gens:
        state["samplers"] = [g.get_state() for g in gens]
    return state


def set_rng_state(state: Mapping[str, Any], loader: Any) -> None:
    """Restore a state from :func:`rng_state`.

    >>> s = rng_state([]); a = torch.rand(1); set_rng_state(s, []); bool(torch.rand(1) == a)
    True
    """
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy as np

        s = state["numpy"]
        np.random.set_state((s["name"], s["key"].numpy().astype("uint32"), s["pos"], s["has_gauss"], s["gauss"]))
    for gen, saved in zip(_generators(loader), _sampler_states(state), strict=False):
        gen.set_state(saved)


def _sampler_states(state: Mapping[str, Any]) -> list[Any]:
    """The saved sampler generators (checkpoints written before ZipLoader held one, as ``"sampler"``)."""
    if "samplers" in state:
        return list(state["samplers"])
    return [state["sampler"]] if "sampler" in state else []


def _check_rng_state(state: Any, what: str, source: str) -> None:
    """A saved random state that :func:`set_rng_state` can restore: tried on fresh generators."""
    if not isinstance(state, Mapping) or "torch" not in state or "python" not in state:
        raise CheckpointError(f"{source}: {what} must be a dict with 'torch' and 'python' states")
    try:
        torch.Generator().set_state(state["torch"])
        random.Random().setstate(state["python"])
        for saved in _sampler_states(state):
            torch.Generator().set_state(saved)
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


def _gather(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (a one-element list on one process)."""
    if not pdist.is_distributed():
        return [obj]
    out: list[Any] = [None] * pdist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


# ---------------------------------------------------------------------- the fit section
def _check_logs(logs: Any, what: str, source: str) -> None:
    if not isinstance(logs, Mapping):
        raise CheckpointError(f"{source}: the training state's {what} must be a dict")
    for k, v in logs.items():
        if not isinstance(k, str):
            raise CheckpointError(f"{source}: the training state's {what} has a key {k!r} that is not a name")
        check_number(v, f"the training state's {what}[{k!r}]", source, integer=False)


def _check_fit_state(fs: Any, source: str) -> None:
    """Every entry of a checkpoint's ``fit`` section, of the kind the loop writes."""
    if not isinstance(fs, Mapping):
        raise CheckpointError(f"{source}: its training state must be a dict, got {type(fs).__name__}")
    missing = [k for k in _NEED if k not in fs]
    if missing:
        raise CheckpointError(f"{source}: its training state lacks the entries {missing}")
    for k in ("epoch", "step", "batch", "count"):
        check_number(fs[k], f"the training state's {k!r}", source)
    check_number(fs["world_size"], "the training state's 'world_size'", source, minimum=1)
    history = fs["history"]
    if not isinstance(history, list) or not all(isinstance(h, Mapping) for h in history):
        raise CheckpointError(f"{source}: the training state's 'history' must be a list of dicts")
    _check_logs(fs["sums"], "'sums'", source)
    for i, logs in enumerate(history):
        _check_logs(logs, f"'history'[{i}]", source)
    rngs, epoch_rngs = fs["rng"], fs["epoch_rng"]
    if not isinstance(rngs, list) or not (epoch_rngs is None or isinstance(epoch_rngs, list)):
        raise CheckpointError(f"{source}: the training state's random states must be lists (one per process)")
    if epoch_rngs is not None and len(epoch_rngs) != len(rngs):
        raise CheckpointError(f"{source}: the training state has {len(rngs)} random states but "
                              f"{len(epoch_rngs)} epoch-start states")
    for i, rng in enumerate(rngs + (epoch_rngs or [])):
        _check_rng_state(rng, f"random state {i}", source)
    if fs["scaler"] is not None and not isinstance(fs["scaler"], Mapping):
        raise CheckpointError(f"{source}: the training state's 'scaler' must be a dict or None")


def read_fit_checkpoint(path: str | os.PathLike, model: Model) -> dict[str, Any]:
    """Read a ``fit`` checkpoint into ``model`` and return its ``fit`` section (checked).

    Raises :class:`~pixyz_like.errors.CheckpointError` for a file ``Model.save`` wrote (no training
    state), and as :meth:`Model.load <pixyz_like.models.Model.load>` does; the model is unchanged then.

    >>> import os, tempfile
    >>> from pixyz_like.distributions import Normal
    >>> from pixyz_like.models import Model
    >>> p = Normal(loc=torch.zeros(1), scale=1., var=["x"], name="p")
    >>> p.loc = torch.nn.Parameter(p.loc.clone())
    >>> model = Model(-p.log_prob().mean(), distributions=[p])
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.pt")
    >>> _ = model.fit([{"x": torch.zeros(2, 1)}] * 2, 1, progress=False, checkpoint=path)
    >>> fs = read_fit_checkpoint(path, model)
    >>> fs["epoch"], fs["step"]
    (1, 2)
    """

    def check(state: Mapping[str, Any], source: str) -> None:
        if "fit" not in state:
            raise CheckpointError(
                f"{source} holds no training state (it was written by Model.save, not by fit); load it with "
                "Model.load to start a new run from its weights"
            )
        _check_fit_state(state["fit"], source)

    state = model._load_file(path, "Model.fit(resume=...)", check)
    return dict(state["fit"])


# ---------------------------------------------------------------------- during a run
@dataclass
class EpochSums:
    """Running sums of the current epoch's step logs, weighted by batch size (saved in checkpoints).

    >>> sums = EpochSums({})
    >>> sums.add({"loss": 1.0}, 2); sums.add({"loss": 4.0}, 1)
    >>> sums.means(FitState(epoch=0, step=2))["train/loss"]
    2.0
    """

    sums: dict[str, float]
    count: int = 0

    def add(self, logs: Mapping[str, float], n: int) -> None:
        for k, v in logs.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * n
        self.count += n

    def means(self, state: FitState) -> dict[str, float]:
        """The epoch's ``train/<name>`` means over every process, with ``epoch`` and ``step``."""
        total = torch.tensor([float(self.count), *map(float, self.sums.values())], dtype=torch.float64)
        total = pdist.all_reduce_sum(total)
        count = max(total[0].item(), 1.0)
        logs: dict[str, float] = {"epoch": float(state.epoch + 1), "step": float(state.step)}
        for k, v in zip(self.sums, total[1:].tolist(), strict=True):
            if not k.startswith(("lr/", "schedule/")):
                logs[f"train/{k}"] = v / count
        return logs


class Resumption:
    """The random states of a resumed run, restored once each: at the start of the epoch it stopped
    in (to replay its shuffle order) and after the batches already used.

    >>> Resumption().start_epoch(FitState(batch=3), [])   # nothing to restore: a fresh epoch
    (0, None)
    """

    def __init__(self, rng: Mapping[str, Any] | None = None, epoch_rng: Mapping[str, Any] | None = None) -> None:
        self.rng, self.epoch_rng = rng, epoch_rng

    def start_epoch(self, state: FitState, loader: Any) -> tuple[int, dict[str, Any] | None]:
        """Set the random state an epoch starts from; return ``(batches to skip, its epoch-start
        state)``, where the state is ``None`` for a fresh epoch (the caller records one)."""
        if state.batch and self.epoch_rng is not None:
            set_rng_state(self.epoch_rng, loader)
            return state.batch, dict(self.epoch_rng)
        if self.rng is not None:
            set_rng_state(self.rng, loader)
            self.rng = None
        state.batch = 0
        return 0, None

    def after_skip(self, loader: Any) -> None:
        """Continue from the random state saved with the checkpoint, once the used batches are skipped."""
        if self.rng is not None:
            set_rng_state(self.rng, loader)
        self.rng = self.epoch_rng = None


class Checkpointer:
    """Writes ``fit``'s checkpoints (rank 0; every rank contributes its random states) and restores them.

    >>> Checkpointer(None).every is None
    True
    """

    def __init__(self, path: str | os.PathLike | None, every: int | None = None) -> None:
        self.path, self.every = path, every

    def due(self, state: FitState) -> bool:
        """Whether a checkpoint is due after the step just taken (``checkpoint_every``)."""
        return self.every is not None and state.step % self.every == 0

    def save(self, model: Model, state: FitState, sums: EpochSums, scaler: torch.amp.GradScaler | None,
             loader: Any, epoch_rng: Mapping[str, Any] | None) -> None:
        if self.path is None:
            return
        all_rng = _gather(rng_state(loader))
        all_epoch_rng = _gather(epoch_rng) if state.batch else None
        if state.is_main_process:
            ckpt = model.state_dict()
            ckpt["fit"] = {
                "epoch": state.epoch, "step": state.step, "batch": state.batch, "history": state.history,
                "sums": sums.sums, "count": sums.count, "rng": all_rng, "epoch_rng": all_epoch_rng,
                "scaler": scaler.state_dict() if scaler is not None else None,
                "world_size": pdist.get_world_size(),
            }
            write_checkpoint(ckpt, self.path)
        if pdist.is_distributed():
            dist.barrier()

    @staticmethod
    def restore(path: str | os.PathLike, model: Model, state: FitState,
                scaler: torch.amp.GradScaler | None) -> tuple[EpochSums, Resumption]:
        """Load ``path`` into the model and ``state``; return the epoch's sums and the random states."""
        fs = read_fit_checkpoint(path, model)
        state.epoch, state.step, state.batch = fs["epoch"], fs["step"], fs["batch"]
        state.history = [dict(h) for h in fs["history"]]
        sums = EpochSums(dict(fs["sums"]), fs["count"])
        if scaler is not None and fs.get("scaler"):
            scaler.load_state_dict(fs["scaler"])
        rank, world = pdist.get_rank(), pdist.get_world_size()
        if len(fs["rng"]) == world:
            epoch_rng = fs["epoch_rng"][rank] if fs["epoch_rng"] is not None else None
            return sums, Resumption(fs["rng"][rank], epoch_rng)
        warnings.warn(
            f"Model.fit(resume=...): the checkpoint was written by {len(fs['rng'])} processes and {world} run "
            "now; random states are not restored, so the run is not an exact continuation",
            RuntimeWarning,
            stacklevel=4,
        )
        state.batch = 0
        return sums, Resumption()
