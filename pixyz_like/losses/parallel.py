r"""Evaluate a loss with its batch split over several GPUs: :class:`DataParalleledLoss`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._context import EvalContext
from .losses import Loss, _PrintedAs

__all__ = ["DataParalleledLoss"]


class DataParalleledLoss(_PrintedAs):
    r"""A loss evaluated with :class:`torch.nn.DataParallel` (or ``DistributedDataParallel``).

    The input dict's tensors are split along the batch dimension over the devices, each replica
    evaluates the wrapped loss on its share, and the per-data-point values are gathered back, so the
    result is the same as the wrapped loss's (one value per data point; add ``.mean()`` outside the
    wrapper, since a batch mean inside would give one value per device). Prints as the wrapped loss.
    Without GPUs it simply evaluates the loss. Attributes not found on the wrapper (``loss_train``,
    ``p``...) are looked up on the wrapped loss.

    Args:
        loss: the loss to parallelise.
        distributed: use ``DistributedDataParallel`` (the process group must be initialised).
        kwargs: passed to the wrapper, e.g. ``device_ids``.

    >>> import torch
    >>> from pixyz_like.distributions import Normal
    >>> p = Normal(loc="z", scale=1., var=["x"], cond_var=["z"], name="p")
    >>> loss = DataParalleledLoss(-p.log_prob()).mean()
    >>> print(loss)
    mean \left(- \log p(x|z) \right)
    >>> loss.eval({"x": torch.zeros(4, 2), "z": torch.zeros(4, 2)})
    tensor(1.8379)
    """

    def __init__(self, loss: Loss, distributed: bool = False, **kwargs: Any) -> None:
        if not isinstance(loss, Loss):
            raise TypeError(f"DataParalleledLoss wraps a Loss, got {type(loss).__name__}")
        super().__init__(loss.input_var)
        self.paralleled: nn.DataParallel[Loss] | nn.parallel.DistributedDataParallel
        if distributed:
            self.paralleled = nn.parallel.DistributedDataParallel(loss, **kwargs)
        else:
            self.paralleled = nn.DataParallel(loss, **kwargs)

    @property
    def module(self) -> Loss:
        """The wrapped loss."""
        return self.paralleled.module

    def _children(self) -> list[Loss]:
        return [self.module]

    @property
    def _shown(self) -> Loss:
        return self.module

    @property
    def _is_term(self) -> bool:  # type: ignore[override]
        return self.module._is_term

    def terms(self) -> list[Loss]:
        # The replicas record nothing in this evaluation's context: no term values to report.
        return []

    def _eval(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
        # Loss.forward is eval(x_dict, return_dict=True): DataParallel scatters the dict's tensors
        # along dim 0, runs the replicas and gathers (value, samples) back onto the output device.
        value, out = self.paralleled(x_dict, **ctx.options)
        samples = {k: v for k, v in out.items() if k not in x_dict}
        return value, samples

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("paralleled", "_modules", "_parameters", "_buffers"):
                raise
            return getattr(self.paralleled.module, name)

