r"""Polyak averaging: an exponential moving average of the weights ``Model.fit`` trains.

:class:`EMA` is a ``fit`` callback. After every optimizer step it moves a shadow copy of the weights
of ``model.distributions`` toward the current ones,

.. math:: \bar\theta_t = \delta\,\bar\theta_{t-1} + (1 - \delta)\,\theta_t

(floating-point buffers too, e.g. batch-norm statistics; integer buffers are copied), the averaging
of PopGen's ``EMA`` and PyGenBrix. The average usually evaluates better than the last iterate.

* **Evaluation.** ``with ema.swapped(): ...`` runs a block with the averaged weights in the model and
  puts the trained ones back after it. Given a ``test_loader``, the callback also evaluates the test
  loss with the averaged weights at each epoch end and adds ``test/ema/loss`` and ``test/ema/<term>``
  to that epoch's logs (so to the history ``fit`` returns, and to TensorBoard).
* **Checkpoints.** The shadow weights are buffers of a module set on the model as
  ``model.ema_weights``; a model's state holds every module set on it, so ``Model.save``, ``load``
  and ``fit``'s checkpoints and ``resume`` carry them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

from ..errors import OptionError
from .batches import as_dict, batch_size
from .callbacks import Callback, FitState
from .model import Model

__all__ = ["EMA"]


def _key(name: str) -> str:
    return name.replace(".", "/")  # buffer names may not hold dots


class _Shadow(nn.Module):
    """The averaged copy of a module's parameters and buffers, as buffers (one per tensor)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        for name, t in self._tensors(module):
            self.register_buffer(_key(name), t.detach().clone())
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @staticmethod
    def _tensors(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
        yield from module.named_parameters()
        yield from module.named_buffers()

    @torch.no_grad()
    def update(self, module: nn.Module, decay: float) -> None:
        for name, t in self._tensors(module):
            avg = getattr(self, _key(name))
            if avg.is_floating_point():
                avg.lerp_(t.detach().to(avg.dtype), 1.0 - decay)
            else:
                avg.copy_(t)
        self.get_buffer("num_updates").add_(1)

    @torch.no_grad()
    def swap(self, module: nn.Module) -> None:
        """Exchange the module's tensors with the averaged ones, in place."""
        for name, t in self._tensors(module):
            avg = getattr(self, _key(name))
            tmp = t.detach().clone()
            t.copy_(avg)
            avg.copy_(tmp)


class EMA(Callback):
    r"""Exponential moving average (Polyak averaging) of the weights trained by ``Model.fit``.

    Args:
        model: the model whose ``distributions`` are averaged; the shadow weights are set on it as
            ``model.ema_weights`` (so create the callback before resuming or loading a checkpoint
            that holds them).
        decay: :math:`\delta`; the average spans about :math:`1/(1-\delta)` steps.
        test_loader: evaluate the test loss with the averaged weights at each epoch end
            (``test/ema/loss`` and ``test/ema/<term>`` in the epoch's logs).
        keys: names of the elements of the test loader's tuples, as for ``fit``.

    >>> from pixyz_like.distributions import Normal
    >>> p = Normal(loc=torch.zeros(1), scale=1., var=["x"], name="p")
    >>> p.loc = torch.nn.Parameter(p.loc.clone())
    >>> model = Model(-p.log_prob().mean(), distributions=[p], optimizer=torch.optim.SGD,
    ...               optimizer_params={"lr": 0.5})
    >>> ema = EMA(model, decay=0.5)
    >>> _ = model.fit([{"x": torch.full((4, 1), 2.0)}] * 3, epochs=1, callbacks=[ema], progress=False)
    >>> round(p.loc.item(), 4), round(ema.averaged()["0.loc"].item(), 4)   # iterates 1, 1.5, 1.75
    (1.75, 1.375)
    >>> with ema.swapped():                       # 0.5 * (0.5 * (0.5 * 0 + 0.5 * 1) + 0.5 * 1.5) + 0.5 * 1.75
    ...     round(p.loc.item(), 4)
    1.375
    >>> round(p.loc.item(), 4)
    1.75
    """

    attribute = "ema_weights"

    def __init__(self, model: Model, decay: float = 0.999, test_loader: Iterable | None = None,
                 keys: Sequence[str | None] | None = None) -> None:
        if not isinstance(model, Model):
            raise TypeError(f"EMA: expected a Model, got {type(model).__name__}")
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay < 1.0:
            raise OptionError(f"EMA: decay must be a number in [0, 1), got {decay!r}")
        if isinstance(getattr(model, self.attribute, None), nn.Module):
            raise OptionError(f"EMA: the model already has {self.attribute!r} (one EMA callback per model)")
        self.model, self.decay = model, float(decay)
        self.test_loader, self.keys = test_loader, keys
        self.shadow = _Shadow(model.distributions)
        setattr(model, self.attribute, self.shadow)

    @property
    def num_updates(self) -> int:
        """Optimizer steps averaged so far (restored with the shadow weights)."""
        return int(self.shadow.get_buffer("num_updates"))

    def averaged(self) -> dict[str, torch.Tensor]:
        """The averaged tensors, named as in ``model.distributions.state_dict()``."""
        return {name: getattr(self.shadow, _key(name)).detach().clone()
                for name, _ in _Shadow._tensors(self.model.distributions)}

    def on_step_end(self, model: Model, state: FitState, logs: Mapping[str, float]) -> None:
        self.shadow.update(self.model.distributions, self.decay)

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """Put the averaged weights in the model for the block, and the trained ones back after it."""
        self.shadow.swap(self.model.distributions)
        try:
            yield
        finally:
            self.shadow.swap(self.model.distributions)

    def copy_to_model(self) -> None:
        """Replace the model's weights by the averaged ones for good (e.g. after training, to save them)."""
        with torch.no_grad():
            for name, t in _Shadow._tensors(self.model.distributions):
                t.copy_(getattr(self.shadow, _key(name)))

    def evaluate(self, loader: Iterable, keys: Sequence[str | None] | None = None) -> dict[str, float]:
        """The test loss and its terms with the averaged weights, averaged over the data points.

        Returns ``{"loss": ..., term: ...}`` (batch means weighted by batch size).
        """
        sums: dict[str, float] = {}
        count = 0
        with self.swapped():
            for batch in loader:
                x_dict = as_dict(batch, keys, "EMA")
                n = batch_size(x_dict)
                loss, terms = self.model.test(x_dict, return_terms=True)
                for k, v in {"loss": loss, **terms}.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * n
                count += n
        return {k: v / max(count, 1) for k, v in sums.items()}

    def epoch_metrics(self, model: Model, state: FitState, logs: Mapping[str, float]) -> Mapping[str, float]:
        if self.test_loader is None:
            return {}
        return {f"test/ema/{k}": v for k, v in self.evaluate(self.test_loader, self.keys).items()}
