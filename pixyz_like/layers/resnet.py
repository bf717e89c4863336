r"""A residual convolutional network for the scale and translation of RealNVP coupling layers.

Follows the architecture of Dinh et al. (2017) as Pixyz 0.3.3's ``ResNet`` lays it out, with weight
normalisation (Salimans & Kingma, 2016: :math:`w = g\, v / \lVert v\rVert`) by
:class:`~pixyz_like.layers.norm_util.WNConv2d`, which keeps Pixyz's parameter names
(``in_conv.conv.weight_g``, ``in_conv.conv.weight_v``...): a state dict saved from Pixyz's ``ResNet``
loads into this one, and gives the same outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ShapeError
from .norm_util import WNConv2d

__all__ = ["ResNet", "ResidualBlock", "WNConv2d"]


class ResidualBlock(nn.Module):
    r"""Pre-activation residual block.

    .. math:: x + \mathrm{conv}(\mathrm{relu}(\mathrm{BN}(\mathrm{conv}(\mathrm{relu}(\mathrm{BN}(x))))))

    >>> ResidualBlock(4, 4)(torch.randn(2, 4, 5, 5)).shape
    torch.Size([2, 4, 5, 5])
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_norm = nn.BatchNorm2d(in_channels)
        self.in_conv = WNConv2d(in_channels, out_channels, 3, 1, bias=False)
        self.out_norm = nn.BatchNorm2d(out_channels)
        self.out_conv = WNConv2d(out_channels, out_channels, 3, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.in_conv(F.relu(self.in_norm(x)))
        return x + self.out_conv(F.relu(self.out_norm(h)))


class ResNet(nn.Module):
    r"""Residual network mapping ``(batch, in_channels, H, W)`` to ``(batch, out_channels, H, W)``.

    The input is batch-normalised (and doubled with ``double_after_norm``), concatenated with its
    negation (so a ReLU keeps both signs), passed through ``num_blocks`` :class:`ResidualBlock` s whose
    outputs are summed through 1x1 skip convolutions, then normalised and projected by a 1x1 convolution.

    Args:
        in_channels, mid_channels, out_channels: channel counts of input, hidden layers and output.
        num_blocks: number of residual blocks.
        kernel_size, padding: of the first convolution (keep ``padding = kernel_size // 2`` to keep H, W).
        double_after_norm: multiply the normalised input by 2.

    >>> net = ResNet(3, 8, 6, num_blocks=1, kernel_size=3, padding=1, double_after_norm=True)
    >>> net(torch.randn(2, 3, 4, 4)).shape
    torch.Size([2, 6, 4, 4])
    """

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        num_blocks: int,
        kernel_size: int,
        padding: int,
        double_after_norm: bool,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.in_norm = nn.BatchNorm2d(in_channels)
        self.double_after_norm = double_after_norm
        self.in_conv = WNConv2d(2 * in_channels, mid_channels, kernel_size, padding, bias=True)
        self.in_skip = WNConv2d(mid_channels, mid_channels, 1, 0, bias=True)
        self.blocks = nn.ModuleList([ResidualBlock(mid_channels, mid_channels) for _ in range(num_blocks)])
        self.skips = nn.ModuleList([WNConv2d(mid_channels, mid_channels, 1, 0, bias=True) for _ in range(num_blocks)])
        self.out_norm = nn.BatchNorm2d(mid_channels)
        self.out_conv = WNConv2d(mid_channels, out_channels, 1, 0, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(
                f"ResNet(in_channels={self.in_channels}): expected input of shape "
                f"(batch, {self.in_channels}, height, width), got {tuple(x.shape)}"
            )
        x = self.in_norm(x)
        if self.double_after_norm:
            x = 2.0 * x
        x = self.in_conv(F.relu(torch.cat((x, -x), dim=1)))
        skip = self.in_skip(x)
        for block, conv in zip(self.blocks, self.skips, strict=True):
            x = block(x)
            skip = skip + conv(x)
        return self.out_conv(F.relu(self.out_norm(skip)))
