"""The :class:`Model`: a loss, the distributions it trains, an optimizer and a device."""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn, optim
from torch.nn.utils import clip_grad_norm_, clip_grad_value_

from ..distributions.distributions import Distribution
from ..errors import PixyzLikeError, ShapeError
from ..utils import check_options, tolist

__all__ = ["Model", "CheckpointError"]

_CHECKPOINT_FORMAT = "pixyz_like.Model/1"


class CheckpointError(PixyzLikeError, ValueError):
    """A checkpoint that is not a pixyz_like checkpoint, or belongs to another model."""


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename it over ``path``.

    A crash mid-write leaves the previous file intact: the rename is atomic on POSIX and Windows.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class Model:
    r"""Trains a loss with respect to the parameters of the given distributions.

    Args:
        loss: the training loss (must evaluate to a scalar, e.g. end with ``.mean()``).
        test_loss: the loss ``test`` reports (defaults to ``loss``).
        distributions: the distributions (or any ``nn.Module``) whose parameters are trained.
        optimizer: an optimizer class; ``optimizer_params`` are its keyword arguments.
        clip_grad_norm: clip the gradients' total norm to this value before each step.
        clip_grad_value: clip each gradient element to ``[-value, value]`` before each step.
        retain_graph: passed to ``backward``.
        device: where the distributions live; each batch is moved there.

    >>> from pixyz_like.distributions import Normal
    >>> p = Normal(loc=torch.zeros(1), scale=1., var=["x"], name="p")
    >>> p.loc = torch.nn.Parameter(p.loc.clone())  # a learnable mean
    >>> model = Model(-p.log_prob().mean(), distributions=[p], optimizer_params={"lr": 0.1})
    >>> loss = model.train({"x": torch.full((8, 1), 2.0)})
    >>> loss.requires_grad
    False
    """

    def __init__(
        self,
        loss,
        test_loss=None,
        distributions: Sequence[nn.Module] | nn.Module = (),
        optimizer: type[optim.Optimizer] = optim.Adam,
        optimizer_params: Mapping[str, Any] | None = None,
        clip_grad_norm: float | None = None,
        clip_grad_value: float | None = None,
        retain_graph: bool = False,
        device: str | torch.device | None = None,
    ) -> None:
        self.loss_cls = None
        self.test_loss_cls = None
        self.set_loss(loss, test_loss)
        modules = tolist(distributions)
        for m in modules:
            if not isinstance(m, nn.Module):
                raise TypeError(f"Model: distributions must be Distributions or nn.Modules, got {type(m).__name__}")
        self.distributions = nn.ModuleList(modules)
        self.device = torch.device(device) if device is not None else None
        if self.device is not None:
            self.distributions.to(self.device)
            self.loss_cls.to(self.device)
            self.test_loss_cls.to(self.device)
        params = list(self.distributions.parameters())
        if not params:
            raise ValueError("Model: the distributions given have no trainable parameters")
        self.optimizer = optimizer(params, **dict(optimizer_params or {}))
        self.clip_norm = clip_grad_norm
        self.clip_value = clip_grad_value
        self.retain_graph = retain_graph

    def set_loss(self, loss, test_loss=None) -> None:
        """Replace the training (and test) loss."""
        self.loss_cls = loss
        self.test_loss_cls = test_loss if test_loss is not None else loss

    # ------------------------------------------------------------------ text
    def __str__(self) -> str:
        probs = [m.prob_text for m in self.distributions if isinstance(m, Distribution)]
        funcs = [str(m) for m in self.distributions if not isinstance(m, Distribution)]
        text = f"Distributions (for training):\n  {', '.join(probs)}\n"
        if funcs:
            text += f"Deterministic functions (for training):\n  {', '.join(funcs)}\n"
        text += f"Loss function:\n  {self.loss_cls}\n"
        text += "Optimizer:\n" + re.sub("^", "  ", str(self.optimizer), flags=re.MULTILINE)
        return text

    def _repr_latex_(self) -> str:
        return f"${self.loss_cls.loss_text}$"

    # ------------------------------------------------------------------ steps
    def _to_device(self, x_dict: Mapping[str, Any] | None) -> dict[str, Any]:
        x_dict = {} if x_dict is None else x_dict
        if not isinstance(x_dict, Mapping):
            raise TypeError(f"Model: expected a dict of tensors {{name: tensor}}, got {type(x_dict).__name__}")
        if self.device is None:
            return dict(x_dict)
        return {
            k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in x_dict.items()
        }

    def _check_options(self, where: str, loss, options: Mapping[str, Any]) -> None:
        check_options(where, options, loss._valid_options() | {"return_terms"})

    def train(self, train_x_dict: Mapping[str, Any] | None = None, **options: Any):
        """One optimisation step on a batch; returns the loss, detached (and the terms if asked).

        ``return_terms=True`` returns ``(loss, {term: value})`` with each named term's batch mean.
        """
        self._check_options("Model.train()", self.loss_cls, options)
        return_terms = options.pop("return_terms", False)
        x_dict = self._to_device(train_x_dict)
        self.distributions.train()
        self.optimizer.zero_grad(set_to_none=True)
        result = self.loss_cls.eval(x_dict, return_terms=return_terms, **options)
        loss, terms = result if return_terms else (result, None)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ShapeError(
                f"Model.train(): the loss {self.loss_cls} evaluated to shape {shape}; a training loss must be "
                "a scalar: end the formula with .mean() or .sum()"
            )
        loss.backward(retain_graph=self.retain_graph)
        if self.clip_norm:
            clip_grad_norm_(self.distributions.parameters(), self.clip_norm)
        if self.clip_value:
            clip_grad_value_(self.distributions.parameters(), self.clip_value)
        self.optimizer.step()
        loss = loss.detach()
        return (loss, terms) if return_terms else loss

    def test(self, test_x_dict: Mapping[str, Any] | None = None, **options: Any):
        """Evaluate the test loss without gradients, networks in eval mode; returns it detached."""
        self._check_options("Model.test()", self.test_loss_cls, options)
        return_terms = options.pop("return_terms", False)
        x_dict = self._to_device(test_x_dict)
        self.distributions.eval()
        try:
            with torch.no_grad():
                result = self.test_loss_cls.eval(x_dict, return_terms=return_terms, **options)
        finally:
            self.distributions.train()
        return result

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: the distributions' and the optimizer's state."""
        return {
            "format": _CHECKPOINT_FORMAT,
            "distributions": self.distributions.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping) or state.get("format") != _CHECKPOINT_FORMAT:
            raise CheckpointError("Model.load(): not a pixyz_like Model checkpoint")
        own = self.distributions.state_dict()
        theirs = state["distributions"]
        missing = sorted(set(own) - set(theirs))
        unexpected = sorted(set(theirs) - set(own))
        shapes = sorted(k for k in set(own) & set(theirs) if own[k].shape != theirs[k].shape)
        if missing or unexpected or shapes:
            detail = []
            if missing:
                detail.append(f"missing {missing[:5]}")
            if unexpected:
                detail.append(f"unexpected {unexpected[:5]}")
            if shapes:
                detail.append(
                    "shape mismatch " + ", ".join(f"{k}: {tuple(theirs[k].shape)} vs {tuple(own[k].shape)}" for k in shapes[:5])
                )
            raise CheckpointError("Model.load(): the checkpoint belongs to another model (" + "; ".join(detail) + ")")
        self.distributions.load_state_dict(theirs)
        self.optimizer.load_state_dict(state["optimizer"])

    def save(self, path: str | os.PathLike) -> None:
        """Save the distributions' and optimizer's state to ``path`` (atomically)."""
        atomic_save(self.state_dict(), path)

    def load(self, path: str | os.PathLike) -> None:
        """Load a checkpoint written by :meth:`save`. Only tensors and plain data are unpickled."""
        map_location = self.device if self.device is not None else "cpu"
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as e:
            if isinstance(e, FileNotFoundError):
                raise
            raise CheckpointError(f"Model.load(): {path} is not a readable checkpoint: {e}") from e
        self.load_state_dict(state)
