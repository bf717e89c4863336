r"""Affine coupling (Dinh et al., "Density estimation using Real NVP", 2017) and its masks."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import ParameterError, ShapeError
from .flows import Flow, FlowOutput

__all__ = ["AffineCoupling", "checkerboard_mask", "channel_wise_mask"]


def checkerboard_mask(height: int, width: int, inverse_mask: bool = False) -> torch.Tensor:
    """A ``(height, width)`` checkerboard of ones and zeros; a one at the top-left unless ``inverse_mask``.

    >>> checkerboard_mask(3, 4)
    tensor([[1., 0., 1., 0.],
            [0., 1., 0., 1.],
            [1., 0., 1., 0.]])
    >>> checkerboard_mask(2, 2, inverse_mask=True)
    tensor([[0., 1.],
            [1., 0.]])
    """
    parity = (torch.arange(height).unsqueeze(1) + torch.arange(width)) % 2
    return (parity == int(inverse_mask)).to(torch.get_default_dtype())


def channel_wise_mask(channels: int, inverse_mask: bool = False) -> torch.Tensor:
    """Ones on the first ``channels // 2`` entries (on the last ``channels - channels // 2`` with
    ``inverse_mask``).

    >>> channel_wise_mask(5)
    tensor([1., 1., 0., 0., 0.])
    >>> channel_wise_mask(5, inverse_mask=True)
    tensor([0., 0., 1., 1., 1.])
    """
    mask = torch.zeros(channels)
    if inverse_mask:
        mask[channels // 2 :] = 1
    else:
        mask[: channels // 2] = 1
    return mask


class AffineCoupling(Flow):
    r"""Affine coupling layer: the masked part conditions an affine map of the rest.

    With a binary mask :math:`b` (ones mark the part passed through unchanged),

    .. math:: z = b \odot x + (1 - b) \odot \left(x \odot e^{s(b \odot x,\, y)} + t(b \odot x,\, y)\right),
        \qquad \log\left|\det\frac{\partial z}{\partial x}\right| = \sum_i (1 - b_i)\, s_i(b \odot x,\, y),

    and :math:`x = b \odot z + (1 - b) \odot (z - t)\, e^{-s}` with :math:`s, t` evaluated at
    :math:`b \odot z = b \odot x`.

    Args:
        in_features: number of features (channels for images).
        mask_type: ``"channel_wise"`` (first half of the features/channels pass through) or
            ``"checkerboard"`` (alternate pixels for images, alternate features for vectors).
        scale_net, translate_net: networks giving :math:`s` and :math:`t`, each the shape of the input;
        scale_translate_net: or one network returning the pair ``(s, t)``.
        inverse_mask: swap the roles of the two parts (stack layers with alternating masks).

    The networks are called as ``net(b * x)``, or ``net(b * x, y)`` when a condition ``y`` is given
    (conditional coupling). Bounding :math:`s` (e.g. with ``tanh``) keeps training stable.

    >>> net = lambda h: (torch.tanh(h.flip(1)), h.flip(1))
    >>> f = AffineCoupling(4, scale_translate_net=net)
    >>> x = torch.randn(3, 4)
    >>> z = f(x)  # Pixyz's convention; f.transform(x) returns (z, logdet) instead
    >>> torch.equal(z[:, :2], x[:, :2]), torch.allclose(f.inverse(z), x, atol=1e-6)
    (True, True)
    >>> torch.allclose(f.logdet_jacobian, f.transform(x)[1])
    True
    """

    def __init__(
        self,
        in_features: int,
        mask_type: str = "channel_wise",
        scale_net: Callable | None = None,
        translate_net: Callable | None = None,
        scale_translate_net: Callable | None = None,
        inverse_mask: bool = False,
    ) -> None:
        super().__init__(in_features)
        if mask_type not in ("channel_wise", "checkerboard"):
            raise ParameterError(
                f"AffineCoupling: mask_type must be 'channel_wise' or 'checkerboard', got {mask_type!r}"
            )
        if mask_type == "channel_wise" and in_features < 2:
            raise ParameterError(
                f"AffineCoupling(in_features={in_features}): a channel-wise mask needs in_features >= 2, "
                "or one of the two parts is empty and the layer is not a coupling"
            )
        if scale_translate_net is not None and (scale_net is not None or translate_net is not None):
            raise ParameterError("AffineCoupling: give either scale_translate_net or (scale_net and translate_net)")
        if scale_translate_net is None and (scale_net is None or translate_net is None):
            raise ParameterError("AffineCoupling: needs both scale_net and translate_net, or scale_translate_net")
        self.mask_type = mask_type
        self.inverse_mask = inverse_mask
        # nn.Modules are registered as submodules; plain callables (lambdas) are kept as attributes.
        self.scale_net = scale_net
        self.translate_net = translate_net
        self.scale_translate_net = scale_translate_net

    def build_mask(self, x: torch.Tensor) -> torch.Tensor:
        """The mask :math:`b` for an input shaped like ``x``, broadcastable against it.

        >>> f = AffineCoupling(2, mask_type="checkerboard", scale_translate_net=lambda h: (h, h))
        >>> f.build_mask(torch.zeros(1, 2, 2, 2))
        tensor([[[[1., 0.],
                  [0., 1.]]]])
        """
        self._check_input(x, "build_mask")
        if self.mask_type == "checkerboard":
            if x.ndim == 4:
                h, w = x.shape[2:]
                if h * w < 2:
                    raise ShapeError(
                        f"{self._name()}: a checkerboard mask needs at least 2 pixels, got a {h}x{w} image "
                        f"(expected (batch, {self.in_features}, height, width) with height * width >= 2)"
                    )
                mask = checkerboard_mask(h, w, self.inverse_mask).view(1, 1, h, w)
            else:
                mask = checkerboard_mask(1, x.shape[1], self.inverse_mask).view(1, -1)
        else:
            mask = channel_wise_mask(x.shape[1], self.inverse_mask)
            mask = mask.view(1, -1, 1, 1) if x.ndim == 4 else mask.view(1, -1)
        return mask.to(dtype=x.dtype, device=x.device)

    def get_parameters(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the networks on the masked input: return ``(s, t)``."""
        if self.scale_translate_net is not None:
            out = self._call_net(self.scale_translate_net, x, y)
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise ShapeError(f"{self._name()}: scale_translate_net must return a pair (s, t)")
            log_s, t = out
        else:
            # __init__ requires both networks when there is no scale_translate_net.
            assert self.scale_net is not None and self.translate_net is not None
            log_s, t = self._call_net(self.scale_net, x, y), self._call_net(self.translate_net, x, y)
        for what, v in (("s", log_s), ("t", t)):
            if not isinstance(v, torch.Tensor) or v.shape != x.shape:
                got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                raise ShapeError(
                    f"{self._name()}: the network's {what} has shape {got}; expected the input's shape {tuple(x.shape)}"
                )
        return log_s, t

    def _coupling(
        self, x: torch.Tensor, y: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mask = self.build_mask(x)
        log_s, t = self.get_parameters(x * mask, y)
        return mask, log_s * (1 - mask), t * (1 - mask)

    def transform(self, x: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True) -> FlowOutput:
        mask, log_s, t = self._coupling(x, y)
        z = x * mask + (x * (1 - mask)) * log_s.exp() + t
        return z, (log_s.flatten(1).sum(-1) if compute_jacobian else None)

    def inverse_transform(
        self, z: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True
    ) -> FlowOutput:
        mask, log_s, t = self._coupling(z, y)
        x = z * mask + (z * (1 - mask) - t) * (-log_s).exp()
        return x, (-log_s.flatten(1).sum(-1) if compute_jacobian else None)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, mask_type={self.mask_type}, inverse_mask={self.inverse_mask}"
