"""The ResNet coupling network: shapes, Pixyz's constructor, maintained weight norm, clear errors."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.nn.utils import parametrize

from pixyz_like.errors import ShapeError
from pixyz_like.layers import ResidualBlock, ResNet


def test_shapes_and_pixyz_constructor():
    net = ResNet(
        in_channels=3, mid_channels=8, out_channels=6, num_blocks=2, kernel_size=3, padding=1, double_after_norm=False
    )
    assert net(torch.randn(4, 3, 5, 5)).shape == (4, 6, 5, 5)
    assert ResidualBlock(8, 8)(torch.randn(2, 8, 3, 3)).shape == (2, 8, 3, 3)


def test_weight_norm_uses_parametrizations_without_deprecation_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = ResNet(2, 4, 4, 1, 3, 1, True)
        net(torch.randn(2, 2, 4, 4))
    assert parametrize.is_parametrized(net.in_conv, "weight")
    conv = net.out_conv
    g, v = conv.parametrizations.weight.original0, conv.parametrizations.weight.original1
    expected = g * v / v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)  # w = g v / ||v||
    torch.testing.assert_close(conv.weight, expected)


def test_gradients_reach_every_parameter():
    net = ResNet(2, 4, 4, 1, 3, 1, True)
    net(torch.randn(3, 2, 4, 4)).square().sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_wrong_channels_is_a_shape_error():
    with pytest.raises(ShapeError, match=r"ResNet\(in_channels=2\).*\(batch, 2, height, width\).*\(3, 5, 4, 4\)"):
        ResNet(2, 4, 4, 1, 3, 1, True)(torch.randn(3, 5, 4, 4))
