"""A :meth:`Model.fit <pixyz_like.models.Model.fit>` callback that logs a run to Weights & Biases.

``wandb`` is an optional dependency (``pip install "pixyz_like[wandb]"``), imported when training
starts. W&B's own settings apply: ``WANDB_MODE=offline`` (or ``mode="offline"``) writes the run
under ``dir`` without an account or a network, for ``wandb sync`` later; ``WANDB_MODE=disabled``
turns logging off.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..errors import OptionError
from .model import Model
from .tensorboard_logger import epoch_tag, image_grid, step_tag
from .training import Callback, FitState

__all__ = ["WandbLogger"]


class WandbLogger(Callback):
    """Log every step's loss, named terms, learning rates and schedules, the epoch means of the train
    and test losses and terms, and image grids, to a Weights & Biases run. Rank 0 only.

    Keys: ``train/<name>``, ``lr/...`` and ``schedule/...`` per step; ``train_epoch/<name>``,
    ``test/<name>``, any metric a callback adds, and ``epoch`` per epoch; all against the global
    optimizer step. A term's name is
    its tag from ``Loss.eval(..., return_terms=True)`` (``train/KL[q(z|x)||p_prior(z)]``). The run's
    config records the loss formula and the optimizer (with its learning rate), plus ``config``.

    Args:
        project: the W&B project (``None``: W&B's default, or ``$WANDB_PROJECT``).
        name: the run's name (``None``: W&B picks one).
        config: extra hyperparameters to record in the run's config.
        mode: ``"online"``, ``"offline"`` or ``"disabled"`` (``None``: ``$WANDB_MODE``, else online).
        dir: the folder W&B writes the run under (``None``: ``$WANDB_DIR``, else the current one).
        images: ``images(model) -> {tag: tensor}`` called at each epoch end under ``torch.no_grad()``;
            each tensor is a batch of images ``(N, C, H, W)`` in ``[0, 1]`` (or ``(N, D)`` with
            ``image_shape``), logged as one grid.
        image_shape: the ``(C, H, W)`` shape flat images are reshaped to, e.g. ``(1, 28, 28)``.
        every_n_steps: log step values every this many steps.
        init_kwargs: further keyword arguments of ``wandb.init`` (``tags``, ``group``, ``resume``...).

    >>> logger = WandbLogger(project="vae", mode="offline", config={"z_dim": 64}, image_shape=(1, 28, 28))
    >>> logger.run is None                     # wandb is imported and the run started by fit
    True
    """

    def __init__(
        self,
        project: str | None = None,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        mode: str | None = None,
        dir: str | None = None,  # noqa: A002 - wandb.init's own name for it
        images: Callable[[Model], Mapping[str, torch.Tensor]] | None = None,
        image_shape: Sequence[int] | None = None,
        every_n_steps: int = 1,
        **init_kwargs: Any,
    ) -> None:
        if mode not in (None, "online", "offline", "disabled"):
            raise OptionError(f"WandbLogger: mode must be 'online', 'offline', 'disabled' or None, got {mode!r}")
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise OptionError(f"WandbLogger: every_n_steps must be a positive integer, got {every_n_steps!r}")
        self.project, self.name, self.mode, self.dir = project, name, mode, dir
        self.config = dict(config or {})
        self.images = images
        self.image_shape = tuple(image_shape) if image_shape is not None else None
        self.every_n_steps = every_n_steps
        self.init_kwargs = init_kwargs
        self.run: Any = None

    def on_fit_start(self, model: Model, state: FitState) -> None:
        if not state.is_main_process or self.run is not None:
            return
        try:
            import wandb
        except ImportError as e:
            raise ImportError('WandbLogger needs wandb: pip install "pixyz_like[wandb]"') from e
        optimizer = model.optimizer
        config = {
            "loss": str(model.loss_cls),
            "optimizer": type(optimizer).__name__,
            "lr": optimizer.param_groups[0].get("lr"),
            "epochs": state.epochs,
            **self.config,
        }
        kwargs: dict[str, Any] = {k: v for k, v in (("project", self.project), ("name", self.name),
                                                    ("mode", self.mode), ("dir", self.dir)) if v is not None}
        self.run = wandb.init(config=config, **kwargs, **self.init_kwargs)

    def on_step_end(self, model: Model, state: FitState, logs: Mapping[str, float]) -> None:
        if self.run is None or state.step % self.every_n_steps:
            return
        self.run.log({step_tag(k): v for k, v in logs.items()}, step=state.step)

    def on_epoch_end(self, model: Model, state: FitState, logs: Mapping[str, float]) -> None:
        if self.run is None:
            return
        values: dict[str, Any] = {"epoch": logs.get("epoch", state.epoch + 1)}
        for k, v in logs.items():  # train/ means become train_epoch/; test/ and other metrics as they are
            tag = epoch_tag(k)
            if tag is not None:
                values[tag] = v
        if self.images is not None:
            values.update(self._grids(model))
        self.run.log(values, step=state.step)

    def _grids(self, model: Model) -> dict[str, Any]:
        import wandb

        if self.images is None:
            return {}
        with torch.no_grad():
            batches = self.images(model)
        return {tag: wandb.Image(image_grid(imgs, self.image_shape).permute(1, 2, 0).numpy())
                for tag, imgs in batches.items()}

    def on_fit_end(self, model: Model, state: FitState) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
