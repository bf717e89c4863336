r"""Weight-normalised convolution, with Pixyz 0.3.3's parameter names.

Weight normalisation (Salimans & Kingma, 2016) writes each output channel's filter as
:math:`w = g\, v / \lVert v\rVert`: a direction ``v`` and a length ``g``, trained separately. Pixyz built it
with the deprecated ``torch.nn.utils.weight_norm``, whose parameters are named ``weight_g`` and
``weight_v``; :class:`WNConv2d` computes the same weight itself (no deprecated hook) and keeps those
names, so a state dict saved from Pixyz's networks loads here unchanged, and back.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["WNConv2d", "WeightNormConv2d"]


def _norm_except_first(v: torch.Tensor) -> torch.Tensor:
    """The Euclidean norm of each output channel's filter, shaped to broadcast against ``v``."""
    return torch.linalg.vector_norm(v, dim=tuple(range(1, v.ndim)), keepdim=True)


class WeightNormConv2d(nn.Conv2d):
    r"""An ``nn.Conv2d`` whose weight is :math:`g\, v / \lVert v\rVert`, from parameters ``weight_g``
    (one length per output channel, shape ``(out, 1, 1, 1)``) and ``weight_v`` (the filters).

    At construction ``v`` is the convolution's usual initial weight and ``g`` its norm, so the initial
    weight is the plain convolution's. ``weight`` is computed from ``g`` and ``v`` at each access.

    >>> conv = WeightNormConv2d(2, 3, 3, padding=1)
    >>> sorted(name for name, _ in conv.named_parameters())
    ['bias', 'weight_g', 'weight_v']
    >>> conv(torch.randn(1, 2, 4, 4)).shape
    torch.Size([1, 3, 4, 4])
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        weight = self._parameters.pop("weight")
        assert weight is not None  # nn.Conv2d always registers a weight
        v = weight.detach()
        self.weight_g = nn.Parameter(_norm_except_first(v).clone())
        self.weight_v = nn.Parameter(v.clone())

    @property
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        """The normalised weight :math:`g\\, v / \\lVert v\\rVert`."""
        plain = self._parameters.get("weight")
        if plain is not None:  # inside nn.Conv2d's own construction, before g and v exist
            return plain
        return self.weight_v * (self.weight_g / _norm_except_first(self.weight_v))


class WNConv2d(nn.Module):
    """Weight-normalised 2-d convolution, as Pixyz's ``norm_util.WNConv2d``: a
    :class:`WeightNormConv2d` held as ``conv`` (parameters ``conv.weight_g``, ``conv.weight_v``,
    ``conv.bias``).

    State dicts of earlier pixyz_like versions (``parametrizations.weight.original0/1`` and ``bias``,
    without the ``conv.`` level) are read too.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: side of the square kernel.
        padding: zero padding on each side.
        bias: add a learnable bias.

    >>> conv = WNConv2d(2, 3, kernel_size=3, padding=1)
    >>> sorted(conv.state_dict())
    ['conv.bias', 'conv.weight_g', 'conv.weight_v']
    >>> conv(torch.randn(1, 2, 5, 5)).shape
    torch.Size([1, 3, 5, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int, bias: bool = True) -> None:
        super().__init__()
        self.conv = WeightNormConv2d(in_channels, out_channels, kernel_size, padding=padding, bias=bias)
        self.register_load_state_dict_pre_hook(_from_parametrization_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


_OLD_NAMES = {
    "parametrizations.weight.original0": "conv.weight_g",
    "parametrizations.weight.original1": "conv.weight_v",
    "bias": "conv.bias",
}


def _from_parametrization_names(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Rename the parameters of a ``torch.nn.utils.parametrizations.weight_norm`` convolution (how
    earlier pixyz_like versions stored it) to :class:`WNConv2d`'s."""
    if f"{prefix}parametrizations.weight.original1" not in state_dict:
        return
    for old, new in _OLD_NAMES.items():
        if prefix + old in state_dict and prefix + new not in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)
