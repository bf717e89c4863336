r"""Logging a vector quantiser's codebook usage during ``Model.fit``.

:class:`CodebookUsage` reads the running code usage that a
:class:`~pixyz_like.distributions.VectorQuantizer` keeps while training and adds to ``fit``'s logs:

* after each step, ``<prefix>/perplexity`` (the number of codes in effective use, from 1 to ``K``)
  and ``<prefix>/usage`` (perplexity / ``K``) to the step's logs, which a
  :class:`~pixyz_like.models.TensorBoardLogger` placed after it writes as ``train/vq/...``;
* at each epoch end, ``train/<prefix>/perplexity`` and ``train/<prefix>/usage`` to the epoch's logs
  (so to the history ``fit`` returns).

A falling perplexity means codes are dying (no encoder output is nearest to them).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

from .model import Model
from .training import Callback, FitState

__all__ = ["CodebookUsage"]


class CodebookUsage(Callback):
    r"""Log the perplexity and usage of a vector quantiser's codebook at each step and epoch.

    Args:
        quantizer: the :class:`~pixyz_like.distributions.VectorQuantizer`.
        prefix: the logs' prefix.

    ``history`` keeps ``(step, perplexity)`` of every step.

    >>> import torch
    >>> from pixyz_like.distributions import VectorQuantizer
    >>> vq = VectorQuantizer(4, 1)
    >>> vq.codebook.data = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    >>> _ = vq.sample({"z_e": torch.tensor([[0.0], [1.0], [2.0], [3.0]])})   # a training call
    >>> logs = {"loss": 0.0}
    >>> CodebookUsage(vq).on_step_end(None, FitState(step=1), logs)
    >>> round(logs["vq/perplexity"], 4), logs["vq/usage"]
    (4.0, 1.0)
    """

    def __init__(self, quantizer, prefix: str = "vq") -> None:
        from ..distributions.vq import VectorQuantizer

        if not isinstance(quantizer, VectorQuantizer):
            raise TypeError(f"CodebookUsage: expected a VectorQuantizer, got {type(quantizer).__name__}")
        self.quantizer, self.prefix = quantizer, str(prefix)
        self.history: list[tuple[int, float]] = []

    def _values(self) -> dict[str, float]:
        ppl = float(self.quantizer.perplexity())
        return {"perplexity": ppl, "usage": ppl / self.quantizer.num_embeddings}

    def on_step_end(self, model: Model, state: FitState, logs: Mapping[str, float]) -> None:
        values = self._values()
        self.history.append((state.step, values["perplexity"]))
        if isinstance(logs, MutableMapping):
            logs.update({f"{self.prefix}/{k}": v for k, v in values.items()})

    def on_epoch_end(self, model: Model, state: FitState, logs: Mapping[str, float]) -> None:
        if isinstance(logs, MutableMapping):
            logs.update({f"train/{self.prefix}/{k}": v for k, v in self._values().items()})
