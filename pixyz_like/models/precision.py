r"""Mixed precision for ``fit(amp=...)``: the autocast region of the loss evaluation and, for float16,
the gradient scaler.

* ``amp=False``: float32 (nothing changes).
* CUDA: ``amp=True`` picks bfloat16 where the GPU supports it, else float16; ``"bf16"``/``"fp16"``
  choose. float16's narrow range needs loss scaling (:class:`torch.amp.GradScaler`); bfloat16 has
  float32's range and does not.
* CPU: only ``amp="bf16"``, an explicit opt-in (often slower than float32 without bfloat16
  hardware); ``amp=True`` raises rather than silently doing nothing.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

__all__ = ["Precision", "precision"]


@dataclass(frozen=True)
class Precision:
    """How the loss is evaluated: autocast to ``dtype`` on ``device_type`` (``None``: float32), and
    the gradient scaler float16 needs.

    >>> Precision().dtype is None and Precision().scaler is None
    True
    """

    dtype: torch.dtype | None = None
    device_type: str = "cpu"
    scaler: torch.amp.GradScaler | None = None

    def autocast(self) -> AbstractContextManager[object]:
        """The context the loss is evaluated in.

        >>> with Precision(torch.bfloat16).autocast():
        ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
        torch.bfloat16
        """
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def precision(amp: bool | str | None, device: torch.device) -> Precision:
    """The :class:`Precision` ``fit(amp=amp)`` trains with on ``device``.

    >>> precision("bf16", torch.device("cpu")).dtype
    torch.bfloat16
    >>> precision(True, torch.device("cpu"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Model.fit(amp=True): automatic mixed precision needs a CUDA device ...
    """
    if amp is False or amp is None:
        return Precision()
    if amp not in (True, "bf16", "fp16"):
        raise ValueError(f"Model.fit(): amp must be False, True, 'bf16' or 'fp16', got {amp!r}")
    if device.type == "cuda":
        if amp is True:
            amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        return Precision(dtype, "cuda", scaler)
    if device.type == "cpu" and amp == "bf16":
        return Precision(torch.bfloat16, "cpu")
    raise ValueError(
        f"Model.fit(amp={amp!r}): automatic mixed precision needs a CUDA device and the model is on "
        f"{device.type}. On CPU pass amp='bf16' to opt in to bfloat16 autocast explicitly (often slower "
        "than float32 without bfloat16 hardware), or amp=False"
    )
