"""The ResNet coupling network: shapes, Pixyz's constructor and parameter names, weight norm without
deprecated hooks, parity with Pixyz's ResNet on the same state dict, clear errors."""

from __future__ import annotations

import warnings

import pixyz.layers as pixyz_layers  # the oracle: Pixyz 0.3.3 is installed in the test environment
import pytest
import torch

from pixyz_like.errors import ShapeError
from pixyz_like.layers import ResidualBlock, ResNet
from pixyz_like.layers.norm_util import WeightNormConv2d, WNConv2d


def test_shapes_and_pixyz_constructor():
    net = ResNet(
        in_channels=3, mid_channels=8, out_channels=6, num_blocks=2, kernel_size=3, padding=1, double_after_norm=False
    )
    assert net(torch.randn(4, 3, 5, 5)).shape == (4, 6, 5, 5)
    assert ResidualBlock(8, 8)(torch.randn(2, 8, 3, 3)).shape == (2, 8, 3, 3)


def test_weight_norm_without_deprecation_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = ResNet(2, 4, 4, 1, 3, 1, True)
        net(torch.randn(2, 2, 4, 4))
    conv = net.out_conv.conv
    g, v = conv.weight_g, conv.weight_v
    assert g.shape == (4, 1, 1, 1) and v.shape == conv.weight.shape
    expected = g * v / v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)  # w = g v / ||v||
    torch.testing.assert_close(conv.weight, expected)
    # The weight is the direction's rescaling: scaling v leaves it unchanged, scaling g scales it.
    with torch.no_grad():
        before = conv.weight.clone()
        v.mul_(3.0)
        torch.testing.assert_close(conv.weight, before)
        g.mul_(2.0)
        torch.testing.assert_close(conv.weight, 2.0 * before)


def test_initial_weight_is_the_plain_convolutions():
    torch.manual_seed(0)
    plain = torch.nn.Conv2d(3, 5, 3, padding=1)
    torch.manual_seed(0)
    wn = WeightNormConv2d(3, 5, 3, padding=1)
    torch.testing.assert_close(wn.weight, plain.weight)
    torch.testing.assert_close(wn.bias, plain.bias)
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(wn(x), plain(x))


def test_gradients_reach_every_parameter():
    net = ResNet(2, 4, 4, 1, 3, 1, True)
    net(torch.randn(3, 2, 4, 4)).square().sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert {n.rsplit(".", 1)[-1] for n, _ in net.named_parameters()} >= {"weight_g", "weight_v", "bias"}


def test_wrong_channels_is_a_shape_error():
    with pytest.raises(ShapeError, match=r"ResNet\(in_channels=2\).*\(batch, 2, height, width\).*\(3, 5, 4, 4\)"):
        ResNet(2, 4, 4, 1, 3, 1, True)(torch.randn(3, 5, 4, 4))


def test_module_paths_as_pixyz():
    import pixyz_like.layers.norm_util as norm_util
    import pixyz_like.layers.resnet as resnet

    assert resnet.WNConv2d is norm_util.WNConv2d is WNConv2d
    assert sorted(WNConv2d(2, 3, 1, 0, bias=False).state_dict()) == ["conv.weight_g", "conv.weight_v"]


def test_loads_state_dicts_of_earlier_versions():
    """Earlier pixyz_like versions stored weight norm as torch parametrizations, without the conv level."""
    torch.manual_seed(0)
    old = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv2d(2, 3, 3, padding=1))
    new = WNConv2d(2, 3, 3, 1)
    new.load_state_dict(old.state_dict())
    x = torch.randn(2, 2, 4, 4)
    torch.testing.assert_close(new(x), old(x))


# ---------------------------------------------------------------------- parity with Pixyz
def _pixyz_resnet(*args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # Pixyz uses the deprecated torch weight_norm
        warnings.simplefilter("ignore", DeprecationWarning)
        return pixyz_layers.ResNet(*args)


@pytest.mark.parametrize("args", [(3, 8, 6, 2, 3, 1, True), (2, 4, 4, 1, 1, 0, False)])
def test_same_names_same_init_same_outputs_as_pixyz(args):
    torch.manual_seed(0)
    theirs = _pixyz_resnet(*args)
    torch.manual_seed(0)
    ours = ResNet(*args)
    # The same names and shapes, and the same initial values under the same seed.
    s_theirs, s_ours = theirs.state_dict(), ours.state_dict()
    assert set(s_theirs) == set(s_ours)
    for k, v in s_theirs.items():
        assert torch.equal(v, s_ours[k]), k


@pytest.mark.parametrize("args", [(3, 8, 6, 2, 3, 1, True), (2, 4, 4, 1, 1, 0, False)])
def test_pixyz_state_dict_gives_pixyz_outputs(args, tmp_path):
    torch.manual_seed(1)
    theirs = _pixyz_resnet(*args)
    x = torch.randn(16, args[0], 6, 6)
    # Train Pixyz's network a little, so that g, v, biases and BatchNorm statistics move off their start.
    opt = torch.optim.Adam(theirs.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        theirs(x.clone()).square().mean().backward()
        opt.step()
    torch.save(theirs.state_dict(), tmp_path / "resnet.pt")
    torch.manual_seed(2)
    ours = ResNet(*args)
    ours.load_state_dict(torch.load(tmp_path / "resnet.pt", weights_only=True))
    for mode in ("eval", "train"):
        getattr(theirs, mode)()
        getattr(ours, mode)()
        torch.testing.assert_close(ours(x), theirs(x.clone()), rtol=1e-5, atol=1e-5)
    # And back: our state dict loads into Pixyz's network.
    back = _pixyz_resnet(*args)
    back.load_state_dict(ours.state_dict())
    back.eval()
    ours.eval()
    torch.testing.assert_close(back(x.clone()), ours(x), rtol=1e-5, atol=1e-5)
