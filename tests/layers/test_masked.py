"""Causal layers: every layer's dependencies, read off gradients, are exactly the causal ones.

For a layer ``f`` and input ``x`` the set of input elements output ``i`` depends on is the set where
``d f(x)_i / d x_j != 0`` (float64, random weights: a dependency that exists is never exactly zero
by accident, except through a ReLU that is off — hence the union over several random inputs where a
ReLU is involved). Raster order: position ``(r, c)`` comes before ``(r', c')`` when ``r < r'`` or
``r == r'`` and ``c < c'``.
"""

from __future__ import annotations

import pytest
import torch

from pixyz_like.errors import ParameterError, ShapeError
from pixyz_like.layers import (
    CausalConv1d,
    GatedPixelCNN,
    GatedPixelCNNBlock,
    MaskedConv2d,
    StepCache,
    WaveNet,
    causal_mask,
)


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)


def dependencies(f, shape, n_inputs: int = 1) -> torch.Tensor:
    """Boolean ``(*out_shape, *in_shape)``: output element depends on input element (union over inputs)."""
    dep = None
    for _ in range(n_inputs):
        x = torch.randn(*shape)
        jac = torch.autograd.functional.jacobian(lambda x: f(x[None])[0], x)
        d = jac.abs() > 0
        dep = d if dep is None else dep | d
    return dep


def raster_before(h: int, w: int, strict: bool = True) -> torch.Tensor:
    """``(h, w, h, w)``: input position comes before (or, non-strict, is) the output position."""
    idx = torch.arange(h * w)
    before = idx[None, :] < idx[:, None] if strict else idx[None, :] <= idx[:, None]
    return before.reshape(h, w, h, w)


def window(h: int, w: int, k: int) -> torch.Tensor:
    """``(h, w, h, w)``: input position inside the ``k x k`` window centred on the output position."""
    r = torch.arange(h)
    c = torch.arange(w)
    rows = (r[:, None] - r[None, :]).abs() <= k // 2
    cols = (c[:, None] - c[None, :]).abs() <= k // 2
    return rows[:, None, :, None] & cols[None, :, None, :]


# ----------------------------------------------------------------------------- masked convolutions
@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_masked_conv_dependencies_are_the_causal_window(mask_type):
    h = w = 6
    conv = MaskedConv2d(2, 3, 3, mask_type=mask_type)
    dep = dependencies(conv, (2, h, w))  # (3, h, w, 2, h, w)
    expected = window(h, w, 3) & raster_before(h, w, strict=mask_type == "A")
    for o in range(3):
        for i in range(2):
            assert torch.equal(dep[o, :, :, i], expected)


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_masked_conv_channel_groups_order_the_channels_of_a_pixel(mask_type):
    h = w = 4
    conv = MaskedConv2d(3, 6, 3, mask_type=mask_type, channel_groups=3)  # out groups {0,1}, {2,3}, {4,5}
    dep = dependencies(conv, (3, h, w))
    other = window(h, w, 3) & raster_before(h, w, strict=True)
    for o in range(6):
        g = o // 2
        for i in range(3):
            same_pixel_allowed = i < g if mask_type == "A" else i <= g
            expected = other | (torch.eye(h * w, dtype=torch.bool).reshape(h, w, h, w) & same_pixel_allowed)
            assert torch.equal(dep[o, :, :, i], expected), (o, i)


def test_masked_conv_stack_has_the_blind_spot_the_gated_stacks_remove():
    """A stack of masked 3x3 convolutions never sees part of the causal region above and to the right."""
    h = w = 7
    layers = [MaskedConv2d(1, 4, 3, "A")] + [MaskedConv2d(4, 4 if i < 4 else 1, 3, "B") for i in range(5)]

    def stack(x):
        for layer in layers:
            x = torch.tanh(layer(x))
        return x

    dep = dependencies(stack, (1, h, w))[0, 4, 3, 0]  # output pixel (4, 3)
    causal = raster_before(h, w)[4, 3]
    assert not (dep & ~causal).any()
    assert (causal & ~dep).any(), "the plain masked stack should have a blind spot"
    assert not dep[3, 5] and not dep[2, 6]  # up and to the right, inside its nominal 13x13 reach


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_gated_block_is_causal_in_both_stacks(mask_type):
    h = w = 6
    block = GatedPixelCNNBlock(2, 2, kernel_size=3, mask_type=mask_type)
    dep_h = dependencies(lambda x: block(x, x)[1], (2, h, w))
    allowed = raster_before(h, w, strict=mask_type == "A")
    for o in range(2):
        for i in range(2):
            assert not (dep_h[o, :, :, i] & ~allowed).any()
    # the vertical stack may see the current row (it reaches the horizontal one only shifted down)
    dep_v = dependencies(lambda x: block(x, x)[0], (2, h, w))
    rows_up_to = (torch.arange(h)[None, :] <= torch.arange(h)[:, None])[:, None, :, None].expand(h, w, h, w)
    assert not (dep_v[0, :, :, 0] & ~rows_up_to).any()


def test_gated_pixelcnn_sees_the_whole_causal_half_plane():
    """No blind spot: with enough layers, pixel i depends on every pixel before it and on no other."""
    h = w = 5
    net = GatedPixelCNN(1, 1, channels=4, n_layers=6, kernel_size=3, first_kernel_size=3)
    blocks_only = dependencies(lambda x: _stack_h(net, x), (1, h, w))
    causal = raster_before(h, w)
    for o in range(4):
        assert torch.equal(blocks_only[o, :, :, 0], causal)
    full = dependencies(net, (1, h, w), n_inputs=6)[0, :, :, 0]  # through the ReLU head
    assert torch.equal(full, causal)


def _stack_h(net, x):
    v = h = x
    for block in net.blocks:
        v, h = block(v, h)
    return h


def test_gated_pixelcnn_with_rgb_groups_orders_the_channels():
    """Channel group g of pixel i sees every channel of the pixels before i and the groups < g of pixel i."""
    h = w = 4
    net = GatedPixelCNN(3, 6, channels=6, n_layers=5, kernel_size=3, first_kernel_size=3, channel_groups=3)
    causal = raster_before(h, w)
    same = torch.eye(h * w, dtype=torch.bool).reshape(h, w, h, w)
    blocks = dependencies(lambda x: _stack_h(net, x), (3, h, w))  # (6, h, w, 3, h, w)
    full = dependencies(net, (3, h, w), n_inputs=4)  # through the ReLU head: never more
    for o in range(6):
        for i in range(3):
            expected = causal | (same & (i < o // 2))
            assert torch.equal(blocks[o, :, :, i], expected), (o, i)
            assert not (full[o, :, :, i] & ~expected).any(), (o, i)


def test_gated_block_condition_reaches_every_pixel_and_breaks_no_causality():
    h = w = 4
    block = GatedPixelCNNBlock(1, 3, 3, "A", cond_channels=2)
    cond = torch.randn(1, 2, requires_grad=True)
    _, out = block(torch.randn(1, 1, h, w), torch.randn(1, 1, h, w), cond)
    (grad,) = torch.autograd.grad(out[0, 0].sum(), cond)
    assert (grad.abs() > 0).all()
    dep = dependencies(lambda x: block(x, x, cond.detach())[1], (1, h, w))
    assert not (dep[0, :, :, 0] & ~raster_before(h, w)).any()


# ----------------------------------------------------------------------------- causal 1-D convolutions
@pytest.mark.parametrize("mask_type,kernel,dilation", [("A", 2, 1), ("B", 2, 1), ("A", 3, 2), ("B", 3, 4)])
def test_causal_conv1d_dependencies_are_its_taps(mask_type, kernel, dilation):
    length = 16
    conv = CausalConv1d(1, 1, kernel, dilation, mask_type=mask_type)
    dep = dependencies(conv, (1, length))[0, :, 0]  # (L_out, L_in)
    shift = 1 if mask_type == "A" else 0
    for t in range(length):
        taps = {t - shift - m * dilation for m in range(kernel)} & set(range(length))
        assert set(torch.nonzero(dep[t]).flatten().tolist()) == taps


def test_wavenet_output_depends_on_exactly_its_receptive_field_before_t():
    length, dilations, k = 24, (1, 2, 4), 2
    net = WaveNet(1, 1, channels=4, kernel_size=k, dilations=dilations)
    dep = dependencies(net, (1, length), n_inputs=6)[0, :, 0]
    field = k + (k - 1) * sum(dilations)  # steps back
    for t in range(length):
        assert set(torch.nonzero(dep[t]).flatten().tolist()) == set(range(max(0, t - field), t)), t


@pytest.mark.parametrize("mask_type,kernel,dilation", [("A", 2, 1), ("B", 3, 2), ("B", 2, 8)])
def test_causal_conv1d_step_equals_forward(mask_type, kernel, dilation):
    conv = CausalConv1d(3, 2, kernel, dilation, mask_type=mask_type)
    x = torch.randn(4, 3, 20)
    full = conv(x)
    cache, outs = StepCache(), []
    for t in range(20):
        if mask_type == "A":  # a type-A layer is stepped with the previous element
            step_in = x[:, :, t - 1 : t] if t else torch.zeros(4, 3, 1)
        else:
            step_in = x[:, :, t : t + 1]
        outs.append(conv.step(step_in, cache))
    torch.testing.assert_close(torch.cat(outs, -1), full, rtol=0, atol=1e-12)
    assert cache.steps(conv) == 20


@pytest.mark.parametrize("cond_kind", [None, "vector", "sequence"])
def test_wavenet_step_equals_forward(cond_kind):
    n, length = 3, 15
    net = WaveNet(2, 5, channels=6, kernel_size=3, dilations=(1, 2, 4), cond_channels=4 if cond_kind else 0)
    x = torch.randn(n, 2, length)
    cond = {None: None, "vector": torch.randn(n, 4), "sequence": torch.randn(n, 4, length)}[cond_kind]
    full = net(x, cond)
    cache, prev, outs = StepCache(), torch.zeros(n, 2, 1), []
    for t in range(length):
        c = cond[:, :, t : t + 1] if cond_kind == "sequence" else cond
        outs.append(net.step(prev, cache, c))
        prev = x[:, :, t : t + 1]
    torch.testing.assert_close(torch.cat(outs, -1), full, rtol=0, atol=1e-12)


def test_step_caches_are_independent_and_layers_keep_no_state():
    conv = CausalConv1d(1, 1, 2)
    before = {k: v.clone() for k, v in conv.state_dict().items()}
    attrs = set(vars(conv))
    a, b = StepCache(), StepCache()
    ya = [conv.step(torch.full((1, 1, 1), 1.0), a) for _ in range(3)]
    yb = conv.step(torch.full((1, 1, 1), 1.0), b)
    assert torch.equal(yb, ya[0]) and not torch.equal(ya[1], ya[0])  # b starts afresh; a moved on
    assert set(vars(conv)) == attrs
    assert all(torch.equal(v, before[k]) for k, v in conv.state_dict().items())


# ----------------------------------------------------------------------------- errors
def test_bad_constructions_raise_named_errors():
    with pytest.raises(ParameterError, match="mask_type"):
        MaskedConv2d(1, 1, 3, mask_type="C")
    with pytest.raises(ParameterError, match="odd"):
        MaskedConv2d(1, 1, 4)
    with pytest.raises(ParameterError, match="multiple of channel_groups"):
        causal_mask(4, 3, 3, "A", channel_groups=3)
    with pytest.raises(ParameterError, match="odd"):
        GatedPixelCNNBlock(1, 2, kernel_size=2)
    with pytest.raises(ParameterError, match="mask_type"):
        CausalConv1d(1, 1, mask_type="b")
    with pytest.raises(ParameterError, match="n_layers"):
        GatedPixelCNN(1, 1, n_layers=0)


def test_bad_inputs_raise_named_errors():
    with pytest.raises(ShapeError, match="one step"):
        CausalConv1d(2, 1).step(torch.zeros(3, 2, 4), StepCache())
    with pytest.raises(ShapeError, match=r"\(batch, channels, length\)"):
        CausalConv1d(2, 1)(torch.zeros(3, 2))
    with pytest.raises(ShapeError, match="cond_channels=0"):
        GatedPixelCNNBlock(1, 2)(torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 3, 3), torch.zeros(1, 2))
    with pytest.raises(ShapeError, match="cond_channels=0"):
        WaveNet(1, 1, channels=2)(torch.zeros(1, 1, 4), torch.zeros(1, 3))
    with pytest.raises(ShapeError, match="images"):
        GatedPixelCNN(1, 1, channels=2, n_layers=1)(torch.zeros(1, 4, 4))


def test_masked_weights_receive_no_gradient():
    conv = MaskedConv2d(1, 1, 3, "A")
    conv(torch.randn(2, 1, 5, 5)).sum().backward()
    assert torch.equal(conv.weight.grad[conv.mask == 0], torch.zeros(int((conv.mask == 0).sum())))
    assert (conv.weight.grad[conv.mask == 1] != 0).all()
