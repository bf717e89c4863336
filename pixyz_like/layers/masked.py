r"""Causal layers for autoregressive models: masked and gated convolutions, causal 1-D convolutions.

An autoregressive network computes, for every element :math:`x_i` of its input at once, something
that depends only on the elements before it, :math:`x_{<i}`. Images are ordered row by row (raster
order); within a pixel, the channels may be ordered too (R before G before B).

* :class:`MaskedConv2d` (van den Oord et al., 2016a, "Pixel Recurrent Neural Networks"): a 2-D
  convolution whose kernel is zeroed below and to the right of its centre. A **type-A** mask also
  zeroes the centre (output ``i`` sees inputs ``j < i``: the first layer), a **type-B** mask keeps it
  (``j <= i``: every later layer). With ``channel_groups=3`` the channels are split into three
  contiguous groups (R, G, B) and, at the centre, group ``g`` of the output sees the groups ``< g``
  (type A) or ``<= g`` (type B) of the input.
* :class:`GatedPixelCNNBlock` and :class:`GatedPixelCNN` (van den Oord et al., 2016b, "Conditional
  Image Generation with PixelCNN Decoders"): a vertical stack (the rows above) and a horizontal stack
  (the pixels to the left in the row) with gated activations
  :math:`\tanh(W_f * x) \odot \sigma(W_g * x)`. A stack of masked 3x3 convolutions has a *blind spot*
  (pixels above and to the right that it never sees); the two stacks together see the whole causal
  half-plane.
* :class:`CausalConv1d` and :class:`WaveNet` (van den Oord et al., 2016c; Paine et al., 2016, "Fast
  WaveNet Generation"): left-padded, dilated 1-D convolutions. Each also evaluates one step at a time
  with a :class:`StepCache` that holds the inputs it will need again, so generating ``L`` steps costs
  ``O(L)`` layer evaluations instead of the ``O(L^2)`` of re-running the network on the whole prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ParameterError, ShapeError

__all__ = [
    "causal_mask",
    "MaskedConv2d",
    "GatedPixelCNNBlock",
    "GatedPixelCNN",
    "StepCache",
    "CausalConv1d",
    "WaveNet",
]


def _check_mask_type(owner: str, mask_type: str) -> str:
    if mask_type not in ("A", "B"):
        raise ParameterError(f"{owner}: mask_type must be 'A' (excludes the current element) or 'B' "
                             f"(includes it), got {mask_type!r}")
    return mask_type


def _channel_group(n: int, groups: int, owner: str, what: str) -> torch.Tensor:
    """The group (0 .. groups-1) of each of ``n`` channels: contiguous blocks of ``n // groups``."""
    if groups < 1 or n % groups:
        raise ParameterError(f"{owner}: {what}={n} must be a multiple of channel_groups={groups}")
    return torch.arange(n) * groups // n


def _pair(k: int | Sequence[int]) -> tuple[int, int]:
    return (k, k) if isinstance(k, int) else (int(k[0]), int(k[1]))


def causal_mask(out_channels: int, in_channels: int, kernel_size: int | Sequence[int], mask_type: str = "B",
                channel_groups: int = 1) -> torch.Tensor:
    r"""The ``(out, in, kh, kw)`` 0/1 mask of a raster-order causal 2-D convolution (odd kernel).

    Rows above the centre are kept, in the centre row the columns left of the centre, and at the
    centre itself output group ``g`` keeps input groups ``h < g`` (type A) or ``h <= g`` (type B).

    >>> causal_mask(1, 1, 3, "A")[0, 0]
    tensor([[1., 1., 1.],
            [1., 0., 0.],
            [0., 0., 0.]])
    >>> causal_mask(3, 3, 1, "B", channel_groups=3)[:, :, 0, 0]  # R sees R; G sees R, G; B all
    tensor([[1., 0., 0.],
            [1., 1., 0.],
            [1., 1., 1.]])
    """
    owner = "causal_mask"
    _check_mask_type(owner, mask_type)
    kh, kw = _pair(kernel_size)
    if kh % 2 == 0 or kw % 2 == 0:
        raise ParameterError(f"{owner}: the kernel size must be odd (it has a centre), got {(kh, kw)}")
    g_out = _channel_group(out_channels, channel_groups, owner, "out_channels")
    g_in = _channel_group(in_channels, channel_groups, owner, "in_channels")
    mask = torch.zeros(out_channels, in_channels, kh, kw)
    ch, cw = kh // 2, kw // 2
    mask[:, :, :ch, :] = 1
    mask[:, :, ch, :cw] = 1
    centre = g_in[None, :] < g_out[:, None] if mask_type == "A" else g_in[None, :] <= g_out[:, None]
    mask[:, :, ch, cw] = centre.to(mask.dtype)
    return mask


class MaskedConv2d(nn.Conv2d):
    r"""A 2-D convolution with a PixelCNN mask (``"same"`` padding, odd kernel).

    Args:
        in_channels, out_channels: as for :class:`torch.nn.Conv2d`.
        kernel_size: an odd size (or pair of odd sizes).
        mask_type: ``"A"`` (the first layer: output ``i`` sees inputs before ``i``) or ``"B"``
            (later layers: before ``i`` and ``i`` itself).
        channel_groups: split the channels into this many contiguous groups ordered within a pixel
            (3 for RGB); both channel counts must be multiples of it.

    >>> conv = MaskedConv2d(1, 4, 5, mask_type="A")
    >>> conv(torch.randn(2, 1, 8, 8)).shape
    torch.Size([2, 4, 8, 8])
    >>> int(conv.mask.sum())  # of the 25 taps, the 12 before the centre, for each of 4 outputs
    48
    """

    mask: torch.Tensor

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int], mask_type: str = "B",
                 channel_groups: int = 1, bias: bool = True) -> None:
        kh, kw = _pair(kernel_size)
        mask = causal_mask(out_channels, in_channels, (kh, kw), mask_type, channel_groups)
        super().__init__(in_channels, out_channels, (kh, kw), padding=(kh // 2, kw // 2), bias=bias)
        self.mask_type = mask_type
        self.channel_groups = channel_groups
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", mask_type={self.mask_type}, channel_groups={self.channel_groups}"


def _gate(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedPixelCNNBlock(nn.Module):
    r"""One layer of the gated PixelCNN: a vertical and a horizontal stack.

    ``forward(v, h, cond=None) -> (v, h)``. The vertical stack convolves a ``(k//2 + 1) x k`` window
    of the rows up to the current one; shifted down by one row, it feeds the horizontal stack, which
    convolves the ``k//2 + 1`` pixels of the row up to the current one (type A: before it). So the
    horizontal output at ``(r, c)`` sees exactly the rows above ``r`` and the pixels left of ``c``
    — no blind spot. Both stacks are gated, :math:`\tanh(a)\odot\sigma(b)`; the horizontal stack has a
    residual connection (type B with ``in_channels == channels``).

    Args:
        in_channels: channels of ``v`` and ``h`` coming in (the image's for the first block).
        channels: channels going out.
        kernel_size: odd ``k``.
        mask_type: ``"A"`` for the first block, ``"B"`` after.
        channel_groups: ordered channel groups within a pixel (3 for RGB), as in :class:`MaskedConv2d`.
        cond_channels: size of an optional condition ``cond``, a vector ``(batch, cond_channels)`` or a
            map ``(batch, cond_channels, H, W)``, added to both stacks' pre-activations (0: none).

    >>> block = GatedPixelCNNBlock(1, 8, kernel_size=3, mask_type="A", cond_channels=2)
    >>> x = torch.randn(4, 1, 6, 6)
    >>> v, h = block(x, x, cond=torch.randn(4, 2))
    >>> v.shape, h.shape
    (torch.Size([4, 8, 6, 6]), torch.Size([4, 8, 6, 6]))
    """

    h_mask: torch.Tensor
    out_mask: torch.Tensor

    def __init__(self, in_channels: int, channels: int, kernel_size: int = 3, mask_type: str = "B",
                 channel_groups: int = 1, cond_channels: int = 0) -> None:
        super().__init__()
        owner = type(self).__name__
        _check_mask_type(owner, mask_type)
        if kernel_size % 2 == 0 or kernel_size < 1:
            raise ParameterError(f"{owner}: kernel_size must be odd, got {kernel_size}")
        self.mask_type, self.channel_groups, self.pad = mask_type, channel_groups, kernel_size // 2
        p = self.pad
        self.v_conv = nn.Conv2d(in_channels, 2 * channels, (p + 1, kernel_size))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_conv = nn.Conv2d(in_channels, 2 * channels, (1, p + 1))
        self.h_out = nn.Conv2d(channels, channels, 1)
        # In the horizontal stack only the last column (the current pixel) needs a channel mask; the
        # gate's two halves each hold the groups in the same order.
        h_mask = torch.ones(2 * channels, in_channels, 1, p + 1)
        h_mask[:, :, 0, p] = torch.cat([causal_mask(channels, in_channels, 1, mask_type, channel_groups)] * 2)[
            :, :, 0, 0]
        self.register_buffer("h_mask", h_mask)
        self.register_buffer("out_mask", causal_mask(channels, channels, 1, "B", channel_groups))
        self.residual = mask_type == "B" and in_channels == channels
        self.cond_channels = cond_channels
        if cond_channels:
            self.cond_v = nn.Conv2d(cond_channels, 2 * channels, 1, bias=False)
            self.cond_h = nn.Conv2d(cond_channels, 2 * channels, 1, bias=False)

    def forward(self, v: torch.Tensor, h: torch.Tensor,
                cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.pad
        v_pre = self.v_conv(F.pad(v, (p, p, p, 0)))  # row r sees rows r-p .. r
        h_pre = F.conv2d(F.pad(h, (p, 0, 0, 0)), self.h_conv.weight * self.h_mask, self.h_conv.bias)
        v_down = F.pad(v_pre, (0, 0, 1, 0))[:, :, :-1]  # row r sees rows before r only
        h_pre = h_pre + self.v_to_h(v_down)
        if cond is not None:
            if not self.cond_channels:
                raise ShapeError(f"{type(self).__name__}: got a condition but was built with cond_channels=0")
            c = cond[:, :, None, None] if cond.ndim == 2 else cond
            v_pre = v_pre + self.cond_v(c)
            h_pre = h_pre + self.cond_h(c)
        h_new = F.conv2d(_gate(h_pre), self.h_out.weight * self.out_mask, self.h_out.bias)
        return _gate(v_pre), (h + h_new if self.residual else h_new)


class GatedPixelCNN(nn.Module):
    r"""A gated PixelCNN network: ``(batch, in_channels, H, W) -> (batch, out_channels, H, W)``.

    A type-A :class:`GatedPixelCNNBlock`, ``n_layers - 1`` type-B blocks, and a head of two masked
    1x1 convolutions with a ReLU before each. Output ``(c, r, w)`` depends only on the pixels before
    ``(r, w)`` in raster order and, with ``channel_groups``, on the earlier channel groups of pixel
    ``(r, w)`` itself. The parameters of an autoregressive likelihood
    (:mod:`pixyz_like.autoregressions`) are read off its output.

    >>> net = GatedPixelCNN(1, 2, channels=8, n_layers=3)
    >>> net(torch.randn(2, 1, 5, 5)).shape
    torch.Size([2, 2, 5, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, channels: int = 64, n_layers: int = 5,
                 kernel_size: int = 3, first_kernel_size: int = 7, channel_groups: int = 1,
                 cond_channels: int = 0, head_channels: int | None = None) -> None:
        super().__init__()
        if n_layers < 1:
            raise ParameterError(f"{type(self).__name__}: n_layers must be at least 1, got {n_layers}")
        head = head_channels or channels
        self.blocks = nn.ModuleList(
            [GatedPixelCNNBlock(in_channels, channels, first_kernel_size, "A", channel_groups, cond_channels)]
            + [GatedPixelCNNBlock(channels, channels, kernel_size, "B", channel_groups, cond_channels)
               for _ in range(n_layers - 1)]
        )
        self.head = nn.Sequential(
            nn.ReLU(), MaskedConv2d(channels, head, 1, "B", channel_groups),
            nn.ReLU(), MaskedConv2d(head, out_channels, 1, "B", channel_groups),
        )

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 4:
            raise ShapeError(f"{type(self).__name__}: expects images (batch, channels, H, W), got {tuple(x.shape)}")
        v = h = x
        for block in self.blocks:
            v, h = block(v, h, cond)
        return self.head(h)


class StepCache:
    r"""The state of one incremental generation: each causal layer's recent inputs.

    Make a fresh one per generated batch and pass it to every ``step`` call of that generation;
    nothing is kept on the layers themselves, so two generations never share state.

    >>> conv = CausalConv1d(1, 1, kernel_size=2)
    >>> cache = StepCache()
    >>> _ = conv.step(torch.ones(3, 1, 1), cache)
    >>> len(cache), cache.steps(conv)
    (1, 1)
    """

    def __init__(self) -> None:
        self._state: dict[int, tuple[nn.Module, torch.Tensor, int]] = {}

    def get(self, layer: nn.Module) -> tuple[torch.Tensor, int] | None:
        """The ``(buffer, steps taken)`` of ``layer``, or ``None`` before its first step."""
        entry = self._state.get(id(layer))
        return None if entry is None else (entry[1], entry[2])

    def put(self, layer: nn.Module, buffer: torch.Tensor, steps: int) -> None:
        """Store ``layer``'s buffer after ``steps`` steps (the layer is kept alive with it)."""
        self._state[id(layer)] = (layer, buffer, steps)

    def steps(self, layer: nn.Module) -> int:
        """How many steps ``layer`` has taken in this generation."""
        entry = self._state.get(id(layer))
        return 0 if entry is None else entry[2]

    def __len__(self) -> int:
        return len(self._state)


class CausalConv1d(nn.Conv1d):
    r"""A causal (left-padded), optionally dilated 1-D convolution with one-step evaluation.

    ``forward(x)`` maps ``(batch, in, L)`` to ``(batch, out, L)``; output ``t`` sees inputs
    ``t, t-d, ..., t-(k-1)d`` (type B) or the same taps one step earlier, ``t-1, ...`` (type A: the
    input shifted right by one, for the first layer of an autoregressive network).

    ``step(x_t, cache)`` computes output ``t`` alone from the layer's input at ``t`` — for type A the
    previous element, zeros at ``t = 0`` — and its last ``(k-1)d`` inputs, kept in ``cache``: each
    step costs the same however long the sequence is (Paine et al., 2016).

    >>> conv = CausalConv1d(2, 3, kernel_size=2, dilation=2)
    >>> x = torch.randn(4, 2, 10)
    >>> y = conv(x)
    >>> cache = StepCache()
    >>> steps = torch.cat([conv.step(x[:, :, t:t + 1], cache) for t in range(10)], dim=-1)
    >>> torch.allclose(y, steps, atol=1e-6)
    True
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 2, dilation: int = 1,
                 mask_type: str = "B", bias: bool = True) -> None:
        _check_mask_type(type(self).__name__, mask_type)
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias)
        self.mask_type = mask_type
        self.history = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3:
            raise ShapeError(f"{type(self).__name__}: expects (batch, channels, length), got {tuple(x.shape)}")
        if self.mask_type == "A":
            x = F.pad(x, (1, 0))[..., :-1]
        return super().forward(F.pad(x, (self.history, 0)))

    def step(self, x_t: torch.Tensor, cache: StepCache) -> torch.Tensor:
        """Output at the next step, ``(batch, out, 1)``, from this layer's input there, ``(batch, in, 1)``."""
        if x_t.ndim != 3 or x_t.shape[-1] != 1 or x_t.shape[1] != self.in_channels:
            raise ShapeError(f"{type(self).__name__}.step: expects one step (batch, {self.in_channels}, 1), "
                             f"got {tuple(x_t.shape)}")
        entry = cache.get(self)
        if entry is None:  # zeros stand for the left padding
            past, t = x_t.new_zeros(x_t.shape[0], self.in_channels, self.history), 0
        else:
            past, t = entry
        window = torch.cat([past, x_t], dim=-1)  # the last (k-1)d + 1 inputs, oldest first
        d = self.dilation[0]
        taps = window[:, :, ::d] if d > 1 else window  # the k inputs the kernel reads, oldest first
        out = F.linear(taps.reshape(x_t.shape[0], -1), self.weight.reshape(self.out_channels, -1), self.bias)
        cache.put(self, window[:, :, 1:], t + 1)
        return out.unsqueeze(-1)


class WaveNet(nn.Module):
    r"""A WaveNet-style causal network: ``(batch, in_channels, L) -> (batch, out_channels, L)``.

    A type-A :class:`CausalConv1d`, then one residual block per dilation (a dilated type-B causal
    convolution, the gate :math:`\tanh(a)\odot\sigma(b)`, 1x1 residual and skip convolutions), then
    ReLU, 1x1, ReLU, 1x1 on the sum of the skips. Output ``t`` depends on inputs ``< t`` only; its
    receptive field is ``k + (k-1) * sum(dilations)`` steps back.

    ``step(x_prev, cache, cond=None)`` returns output ``t`` (``(batch, out, 1)``) from the previous
    element ``x_prev`` (``(batch, in, 1)``, zeros at ``t = 0``), keeping every layer's history in the
    :class:`StepCache`. ``cond`` is an optional vector ``(batch, cond_channels)`` or sequence
    ``(batch, cond_channels, L)`` (for ``step``, its ``t``-th slice ``(batch, cond_channels, 1)``).

    >>> net = WaveNet(1, 4, channels=8, dilations=(1, 2, 4))
    >>> x = torch.randn(2, 1, 12)
    >>> full = net(x)
    >>> cache, prev, outs = StepCache(), torch.zeros(2, 1, 1), []
    >>> for t in range(12):
    ...     outs.append(net.step(prev, cache))
    ...     prev = x[:, :, t:t + 1]
    >>> torch.allclose(full, torch.cat(outs, -1), atol=1e-5)
    True
    """

    def __init__(self, in_channels: int, out_channels: int, channels: int = 32, kernel_size: int = 2,
                 dilations: Sequence[int] = (1, 2, 4, 8), cond_channels: int = 0) -> None:
        super().__init__()
        self.input = CausalConv1d(in_channels, channels, kernel_size, mask_type="A")
        self.dilated = nn.ModuleList(CausalConv1d(channels, 2 * channels, kernel_size, d) for d in dilations)
        self.residual = nn.ModuleList(nn.Conv1d(channels, channels, 1) for _ in dilations)
        self.skip = nn.ModuleList(nn.Conv1d(channels, channels, 1) for _ in dilations)
        self.cond_channels = cond_channels
        if cond_channels:
            self.cond = nn.ModuleList(nn.Conv1d(cond_channels, 2 * channels, 1, bias=False) for _ in dilations)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv1d(channels, channels, 1), nn.ReLU(),
                                  nn.Conv1d(channels, out_channels, 1))

    def _run(self, x: torch.Tensor, cond: torch.Tensor | None, conv: Any) -> torch.Tensor:
        if cond is not None:
            if not self.cond_channels:
                raise ShapeError(f"{type(self).__name__}: got a condition but was built with cond_channels=0")
            cond = cond.unsqueeze(-1) if cond.ndim == 2 else cond
        h = conv(self.input, x)
        skips = 0
        for i, layer in enumerate(self.dilated):
            pre = conv(layer, h)
            if cond is not None:
                pre = pre + self.cond[i](cond)
            g = _gate(pre)
            skips = skips + self.skip[i](g)
            h = h + self.residual[i](g)
        return self.head(skips)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(x, cond, lambda layer, h: layer(h))

    def step(self, x_prev: torch.Tensor, cache: StepCache, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Output at the next step from the previous element (zeros at the first step)."""
        return self._run(x_prev, cond, lambda layer, h: layer.step(h, cache))
