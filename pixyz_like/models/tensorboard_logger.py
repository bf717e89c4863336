r"""A :meth:`Model.fit <pixyz_like.models.Model.fit>` callback writing TensorBoard event files
(``fit(log_dir=...)`` adds one; view them with ``tensorboard --logdir <parent folder>``).

Tags are the names in ``fit``'s logs, readable as they are — ``train/KL[q(z|x)||p_prior(z)]``, or
the name given with :meth:`Loss.named <pixyz_like.losses.Loss.named>` (``train/kl``) — not the
mangled ``train/KL_q_z_x___p_prior_z__`` a TensorFlow op name would need: the event records are
written with tensorboardX's :class:`~tensorboardX.FileWriter`, which takes any tag.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from .callbacks import Callback, FitState

if TYPE_CHECKING:
    from .model import Model

__all__ = ["TensorBoardLogger", "step_tag", "epoch_tag", "image_grid"]

_COUNTERS = ("epoch", "step")


def step_tag(name: str) -> str:
    """The tag of a step's log entry: ``train/<name>``; learning rates and schedules as they are.

    >>> step_tag("KL[q(z|x)||p_prior(z)]"), step_tag("lr/optimizer")
    ('train/KL[q(z|x)||p_prior(z)]', 'lr/optimizer')
    """
    return name if name.startswith(("lr/", "schedule/")) else f"train/{name}"


def epoch_tag(name: str) -> str | None:
    """The tag of an epoch's log entry: ``train/...`` means become ``train_epoch/...`` (apart from the
    step values), the counters are not logged, the rest (``test/...``, metrics) as it is.

    >>> epoch_tag("train/loss"), epoch_tag("test/loss"), epoch_tag("epoch")
    ('train_epoch/loss', 'test/loss', None)
    """
    if name in _COUNTERS:
        return None
    return "train_epoch/" + name[len("train/"):] if name.startswith("train/") else name


def image_grid(images: torch.Tensor, image_shape: Sequence[int] | None = None) -> torch.Tensor:
    """A batch of images in ``[0, 1]`` — ``(N, C, H, W)``, ``(N, H, W)``, or flat ``(N, D)`` with
    ``image_shape`` — as one ``(C, H', W')`` grid of ``sqrt(N)`` columns (what the loggers write).

    >>> image_grid(torch.rand(16, 784), (1, 28, 28)).shape   # 4 x 4 digits, 2-pixel padding
    torch.Size([3, 122, 122])
    """
    import torchvision

    imgs = images.detach().float().cpu()
    if image_shape is not None:
        imgs = imgs.reshape(-1, *image_shape)
    if imgs.ndim == 3:  # (N, H, W): one channel
        imgs = imgs.unsqueeze(1)
    return torchvision.utils.make_grid(imgs.clamp(0, 1), nrow=max(1, math.isqrt(imgs.shape[0])))


class TensorBoardLogger(Callback):
    """Write every step's loss, named terms, learning rates and schedules, the epoch means of the
    train and test losses and terms (and every metric a callback adds), and image grids, to
    TensorBoard. Rank 0 only.

    Args:
        log_dir: the run's folder (``tensorboard --logdir`` its parent).
        images: ``images(model) -> {tag: tensor}`` called at each epoch end under ``torch.no_grad()``;
            each tensor is a batch of images ``(N, C, H, W)`` in ``[0, 1]`` (or ``(N, D)`` with
            ``image_shape``), drawn as one grid of ``sqrt(N)`` columns, e.g. 16 samples
            ``p.sample(...)["x"]`` as a 4x4 grid.
        image_shape: the ``(C, H, W)`` shape flat images are reshaped to, e.g. ``(1, 28, 28)``.
        every_n_steps: write step scalars every this many steps.

    Tags (see :func:`step_tag`, :func:`epoch_tag`): ``train/<name>``, ``lr/...``, ``schedule/...``
    per step; ``train_epoch/<name>``, ``test/<name>`` per epoch; all against the global step.

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
        self.log_dir = str(log_dir)
        self.images = images
        self.image_shape = tuple(image_shape) if image_shape is not None else None
        self.every_n_steps = max(1, int(every_n_steps))
        self.writer: Any = None

    def on_fit_start(self, model: Model, state: FitState) -> None:
        if state.is_main_process and self.writer is None:
            from tensorboardX import FileWriter

            self.writer = FileWriter(self.log_dir)

    def _scalars(self, tagged: Mapping[str, float], step: int) -> None:
        from tensorboardX.proto.summary_pb2 import Summary

        values = [Summary.Value(tag=tag, simple_value=float(v)) for tag, v in tagged.items()]
        if values:
            self.writer.add_summary(Summary(value=values), step)

    def on_step_end(self, model: Model, state: FitState, logs: Mapping[str, float]) -> None:
        if self.writer is None or state.step % self.every_n_steps:
            return
        self._scalars({step_tag(k): v for k, v in logs.items()}, state.step)

    def on_epoch_end(self, model: Model, state: FitState, logs: Mapping[str, float]) -> None:
        if self.writer is None:
            return
        tagged = {epoch_tag(k): v for k, v in logs.items()}
        self._scalars({tag: v for tag, v in tagged.items() if tag is not None}, state.step)
        if self.images is not None:
            with torch.no_grad():
                grids = self.images(model)
            for tag, imgs in grids.items():
                self.writer.add_summary(self._image(tag, imgs), state.step)
        self.writer.flush()

    def _image(self, tag: str, imgs: torch.Tensor) -> Any:
        from tensorboardX import summary

        return summary.image(tag, image_grid(imgs, self.image_shape), dataformats="CHW")

    def on_fit_end(self, model: Model, state: FitState) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
