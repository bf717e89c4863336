r"""Multi-scale factor-out layer (Dinh et al., 2017, section 3.6; Kingma & Dhariwal, 2018, "split").

:class:`Split` lets a RealNVP/Glow stack factor out half of its channels at each scale: the
factored-out half :math:`x_2` is scored immediately under a Normal and leaves the flow; only the kept
half :math:`x_1` goes on to the next layers. Writing the whole model as
:math:`p(x) = p(x_2 | x_1)\, p(x_1)`, the score :math:`\log p(x_2|x_1)` is added to the flow's
log-determinant, so an :class:`~pixyz_like.distributions.InverseTransformedDistribution` whose prior
scores only the final (smaller) variable still gives the exact log-density of :math:`x`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..errors import ParameterError, ShapeError
from .flows import Flow, FlowOutput

__all__ = ["Split"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class _ZeroConv(nn.Module):
    """A 3x3 convolution started at zero (so the learned prior starts as N(0, I)); ignores ``y``.

    Vectors ``(batch, C)`` are treated as 1x1 images, where it reduces to a linear layer.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        assert self.conv.bias is not None  # Conv2d's default bias=True
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim == 2:
            return self.conv(x[:, :, None, None])[:, :, 0, 0]
        return self.conv(x)


class Split(Flow):
    r"""Factor out channels ``in_features // 2 ..`` and score them: ``forward(x) -> (x_1, log p(x_2|x_1))``.

    .. math:: x = [x_1, x_2], \qquad \text{forward: } x \mapsto x_1, \qquad
        \mathrm{logdet} = \log \mathcal{N}\big(x_2;\ \mu(x_1, y),\ \sigma(x_1, y)\big)

    summed over the factored-out features. With ``prior="standard"``, :math:`\mu = 0, \sigma = 1`;
    with ``prior="learned"`` (default), :math:`(\mu, \log\sigma)` = ``net(x_1)`` (or ``net(x_1, y)``
    with a condition), by default a zero-initialised 3x3 convolution, as in Glow.

    It is not a bijection: :meth:`inverse` draws :math:`x_2 \sim \mathcal{N}(\mu, \sigma \cdot
    \text{temperature})` and returns ``([x_1, x_2], -log N(x_2; mu, sigma))`` (the value that keeps
    ``log p(x) = log p_0(z) - logdet_inverse`` exact). ``forward(inverse(z)[0])[0] == z`` holds.

    >>> f = Split(4, prior="standard")
    >>> x = torch.randn(2, 4, 3, 3)
    >>> z, logdet = f.transform(x)
    >>> z.shape
    torch.Size([2, 2, 3, 3])
    >>> expected = torch.distributions.Normal(0., 1.).log_prob(x[:, 2:]).sum((1, 2, 3))
    >>> torch.allclose(logdet, expected)
    True
    """

    bijective = False

    def __init__(
        self, in_features: int, prior: str = "learned", net: Callable | None = None, temperature: float = 1.0
    ) -> None:
        super().__init__(in_features)
        if in_features < 2:
            raise ParameterError(f"Split(in_features={in_features}): needs at least 2 channels to factor out half")
        if prior not in ("learned", "standard"):
            raise ParameterError(f"Split: prior must be 'learned' or 'standard', got {prior!r}")
        if prior == "standard" and net is not None:
            raise ParameterError("Split: a net is only used with prior='learned'")
        self.kept = in_features - in_features // 2
        self.factored = in_features // 2
        self.prior = prior
        self.temperature = float(temperature)
        self.net = (
            None if prior == "standard" else (net if net is not None else _ZeroConv(self.kept, 2 * self.factored))
        )

    @property
    def out_features(self) -> int:
        """Channels left after the split."""
        return self.kept

    def _loc_logscale(self, x1: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.net is None:
            zero = x1.new_zeros((x1.shape[0], self.factored, *x1.shape[2:]))
            return zero, zero
        out = self._call_net(self.net, x1, y)
        expected = (x1.shape[0], 2 * self.factored, *x1.shape[2:])
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ShapeError(f"{self._name()}: the prior net must return shape {expected} (loc, log-scale), got {got}")
        return out[:, : self.factored], out[:, self.factored :]

    @staticmethod
    def _log_normal(x: torch.Tensor, loc: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        return (-0.5 * ((x - loc) * (-log_scale).exp()) ** 2 - log_scale - _HALF_LOG_2PI).flatten(1).sum(-1)

    def transform(self, x: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True) -> FlowOutput:
        self._check_input(x, "forward")
        x1, x2 = x[:, : self.kept], x[:, self.kept :]
        if not compute_jacobian:
            return x1, None
        loc, log_scale = self._loc_logscale(x1, y)
        return x1, self._log_normal(x2, loc, log_scale)

    def inverse_transform(
        self, z: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True
    ) -> FlowOutput:
        if not isinstance(z, torch.Tensor) or z.ndim not in (2, 4) or z.shape[1] != self.kept:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ShapeError(
                f"{self._name()}.inverse: expected input of shape (batch, {self.kept}) or "
                f"(batch, {self.kept}, height, width), got {got}"
            )
        loc, log_scale = self._loc_logscale(z, y)
        x2 = loc + log_scale.exp() * self.temperature * torch.randn_like(loc)
        x = torch.cat([z, x2], dim=1)
        return x, (-self._log_normal(x2, loc, log_scale) if compute_jacobian else None)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, prior={self.prior}, temperature={self.temperature}"
