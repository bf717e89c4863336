r"""Logging a vector quantiser's codebook usage during ``Model.fit``.

:class:`CodebookUsage` reads the running code usage that a
:class:`~pixyz_like.distributions.VectorQuantizer` keeps while training and adds to ``fit``'s logs:

* after each step, ``<prefix>/perplexity`` (the number of codes in effective use, from 1 to ``K``)
  and ``<prefix>/usage`` (perplexity / ``K``) to the step's logs, which a
  :class:`~pixyz_like.models.TensorBoardLogger` writes as ``train/vq/...``;
* at each epoch end, ``train/<prefix>/perplexity`` and ``train/<prefix>/usage`` to the epoch's logs
  (so to the history ``fit`` returns).

A falling perplexity means codes are dying (no encoder output is nearest to them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .callbacks import Callback, FitState
from .model import Model

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
    >>> logs = CodebookUsage(vq).step_metrics(None, FitState(step=1), {"loss": 0.0})
    >>> round(logs["vq/perplexity"], 4), logs["vq/usage"]
    (4.0, 1.0)
    """

    def __init__(self, quantizer: Any, prefix: str = "vq") -> None:
        from ..distributions.vq import VectorQuantizer

        if not isinstance(quantizer, VectorQuantizer):
            raise TypeError(f"CodebookUsage: expected a VectorQuantizer, got {type(quantizer).__name__}")
        self.quantizer, self.prefix = quantizer, str(prefix)
        self.history: list[tuple[int, float]] = []

    def _values(self) -> dict[str, float]:
        ppl = float(self.quantizer.perplexity())
        return {"perplexity": ppl, "usage": ppl / self.quantizer.num_embeddings}

    def step_metrics(self, model: Model, state: FitState, logs: Mapping[str, float]) -> Mapping[str, float]:
        values = self._values()
        self.history.append((state.step, values["perplexity"]))
        return {f"{self.prefix}/{k}": v for k, v in values.items()}

    def epoch_metrics(self, model: Model, state: FitState, logs: Mapping[str, float]) -> Mapping[str, float]:
        return {f"train/{self.prefix}/{k}": v for k, v in self._values().items()}
