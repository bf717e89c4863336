r"""Masked autoregressive flows: :class:`MADE`, :class:`MAF` and :class:`IAF`.

References: Germain et al., "MADE: Masked Autoencoder for Distribution Estimation", 2015;
Papamakarios et al., "Masked Autoregressive Flow for Density Estimation", 2017;
Kingma et al., "Improved Variational Inference with Inverse Autoregressive Flow", 2016.

Both flows are an affine autoregressive map whose shift and log-scale for feature :math:`i` depend
only on the features before it (in the MADE's order). They differ in which direction is one network
pass:

* :class:`MAF` — ``forward`` (data :math:`x` to noise :math:`u`) is one pass: the cheap direction for
  density evaluation, use it in an :class:`~pixyz_like.distributions.InverseTransformedDistribution`;
  ``inverse`` (sampling) takes :math:`D` passes.
* :class:`IAF` — ``forward`` (noise to sample) is one pass: the cheap direction for sampling, use it in
  a :class:`~pixyz_like.distributions.TransformedDistribution` (e.g. a VAE posterior, whose samples
  come with their log-density); ``inverse`` (density of an arbitrary value) takes :math:`D` passes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ParameterError, ShapeError
from .flows import Flow, FlowOutput

__all__ = ["MADE", "MAF", "IAF"]


class _MaskedLinear(nn.Linear):
    mask: torch.Tensor

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor) -> None:
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    r"""Masked autoencoder: output block :math:`k`, feature :math:`i` depends only on inputs before :math:`i`.

    Input :math:`i` gets degree :math:`m(i)` (``1..D``, or ``D..1`` with ``reverse``); hidden units get
    degrees cycling through ``1..D-1``. A weight from a unit of degree :math:`a` to a hidden unit of
    degree :math:`b` is kept iff :math:`b \ge a`, and to an output of degree :math:`b` iff
    :math:`b > a`, so :math:`\partial\, \mathrm{out}_{k,i} / \partial x_j = 0` unless
    :math:`m(j) < m(i)`. A condition ``y`` of ``cond_features`` enters every unit of the first hidden
    layer unmasked (it does not break the autoregressive property in :math:`x`).

    Returns a tensor of shape ``(batch, out_multiplier, in_features)``.

    >>> made = MADE(3, hidden_features=(8,))
    >>> x = torch.randn(1, 3, requires_grad=True)
    >>> out = made(x)
    >>> out.shape
    torch.Size([1, 2, 3])
    >>> torch.autograd.grad(out[0, :, 0].sum(), x)[0]  # the first output sees no input
    tensor([[0., 0., 0.]])
    """

    degrees: torch.Tensor

    def __init__(
        self,
        in_features: int,
        hidden_features: Sequence[int] = (64, 64),
        out_multiplier: int = 2,
        cond_features: int | None = None,
        reverse: bool = False,
    ) -> None:
        super().__init__()
        hidden_features = list(hidden_features)
        if not hidden_features or any(h < 1 for h in hidden_features):
            raise ParameterError(
                f"MADE: hidden_features must be a non-empty list of positive ints, got {hidden_features}"
            )
        d = in_features
        self.in_features, self.out_multiplier, self.cond_features = d, out_multiplier, cond_features
        deg_in = torch.arange(d, 0, -1) if reverse else torch.arange(1, d + 1)
        self.register_buffer("degrees", deg_in)
        layers: list[nn.Module] = []
        prev_deg, prev_n = deg_in, d
        for h in hidden_features:
            deg_h = torch.arange(h) % max(d - 1, 1) + 1
            layers.append(_MaskedLinear(prev_n, h, deg_h.unsqueeze(1) >= prev_deg.unsqueeze(0)))
            prev_deg, prev_n = deg_h, h
        deg_out = deg_in.repeat(out_multiplier)
        self.hidden = nn.ModuleList(layers)
        self.output = _MaskedLinear(prev_n, d * out_multiplier, deg_out.unsqueeze(1) > prev_deg.unsqueeze(0))
        self.cond = nn.Linear(cond_features, hidden_features[0], bias=False) if cond_features else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.hidden[0](x)
        if self.cond is not None:
            if y is None:
                raise ShapeError(f"MADE: it is conditional and needs y of shape (batch, {self.cond_features})")
            h = h + self.cond(y)
        for layer in self.hidden[1:]:
            h = layer(torch.relu(h))
        out = self.output(torch.relu(h))
        return out.view(x.shape[0], self.out_multiplier, self.in_features)


class _AutoregressiveAffine(Flow):
    """Shared machinery of MAF and IAF: a MADE giving a shift and a log-scale."""

    vector_only = True

    def __init__(
        self,
        in_features: int,
        hidden_features: Sequence[int] = (64, 64),
        cond_features: int | None = None,
        reverse: bool = False,
        max_log_scale: float | None = 3.0,
    ) -> None:
        super().__init__(in_features)
        if max_log_scale is not None and max_log_scale <= 0:
            raise ParameterError(f"{self._name()}: max_log_scale must be positive or None, got {max_log_scale}")
        self.cond_features = cond_features
        self.reverse = reverse
        self.max_log_scale = max_log_scale
        self.made = MADE(in_features, hidden_features, 2, cond_features, reverse)

    def _shift_logscale(self, h: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cond_features is not None:
            if y is None or y.ndim != 2 or y.shape != (h.shape[0], self.cond_features):
                got = None if y is None else tuple(y.shape)
                raise ShapeError(
                    f"{self._name()}: the condition y must have shape ({h.shape[0]}, {self.cond_features}), got {got}"
                )
        out = self.made(h, y if self.cond_features is not None else None)
        log_scale = out[:, 1]
        if self.max_log_scale is not None:
            # A ReLU network extrapolates linearly, so far from the data an unbounded log-scale overflows
            # exp() (inf/NaN densities); c * tanh(s / c) is the identity near 0 and bounded by c.
            log_scale = self.max_log_scale * torch.tanh(log_scale / self.max_log_scale)
        return out[:, 0], log_scale

    @staticmethod
    def _undo(v: torch.Tensor, shift: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        """Solve the subclass's map for its input, given the shift and log-scale."""
        raise NotImplementedError

    def _solve(self, target: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The other direction: D passes, each fixing one more feature in the autoregressive order."""
        self._check_input(target, "inverse", (2,))
        h = torch.zeros_like(target)
        for _ in range(target.shape[1]):  # in_features, checked above
            shift, log_scale = self._shift_logscale(h, y)
            h = self._undo(target, shift, log_scale)
        return h, log_scale

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, cond_features={self.cond_features}, reverse={self.reverse}, "
            f"max_log_scale={self.max_log_scale}"
        )


class MAF(_AutoregressiveAffine):
    r"""Masked autoregressive flow layer, cheap in the density direction.

    .. math:: z_i = (x_i - \mu_i(x_{<i}, y))\, e^{-\alpha_i(x_{<i}, y)}, \qquad
        \log\left|\det\frac{\partial z}{\partial x}\right| = -\sum_i \alpha_i(x_{<i}, y),

    with :math:`(\mu, \alpha)` from one :class:`MADE` pass (the MADE's raw log-scale :math:`a` enters as
    :math:`\alpha = c \tanh(a / c)`, :math:`c` = ``max_log_scale``, so densities stay finite far from
    the data; ``None`` leaves it unbounded). The inverse
    :math:`x_i = z_i e^{\alpha_i} + \mu_i` is sequential (``in_features`` passes). ``reverse`` flips
    the autoregressive order (alternate it, or put a :class:`Reverse` between layers, when stacking).
    ``cond_features`` makes it conditional on ``y`` of shape ``(batch, cond_features)``.

    >>> f = MAF(3, hidden_features=(16,)).double()
    >>> x = torch.randn(4, 3, dtype=torch.float64)
    >>> z, logdet = f.transform(x)
    >>> torch.allclose(f.inverse(z), x)
    True
    """

    def transform(self, x: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True) -> FlowOutput:
        self._check_input(x, "forward", (2,))
        shift, log_scale = self._shift_logscale(x, y)
        z = (x - shift) * (-log_scale).exp()
        return z, (-log_scale.sum(-1) if compute_jacobian else None)

    @staticmethod
    def _undo(z: torch.Tensor, shift: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        return z * log_scale.exp() + shift

    def inverse_transform(
        self, z: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True
    ) -> FlowOutput:
        x, log_scale = self._solve(z, y)
        return x, (log_scale.sum(-1) if compute_jacobian else None)


class IAF(_AutoregressiveAffine):
    r"""Inverse autoregressive flow layer, cheap in the sampling direction.

    .. math:: x_i = z_i\, e^{s_i(z_{<i}, y)} + m_i(z_{<i}, y), \qquad
        \log\left|\det\frac{\partial x}{\partial z}\right| = \sum_i s_i(z_{<i}, y),

    with :math:`(m, s)` from one :class:`MADE` pass on the noise :math:`z` (:math:`s` bounded by
    ``max_log_scale`` as in :class:`MAF`), so a sample and its
    log-density come together. As an amortised VAE posterior, pass the encoder's context as ``y``
    (``cond_features``). The inverse is sequential (``in_features`` passes).

    >>> f = IAF(3, hidden_features=(16,)).double()
    >>> z = torch.randn(4, 3, dtype=torch.float64)
    >>> x, logdet = f.transform(z)
    >>> torch.allclose(f.inverse(x), z)
    True
    """

    def transform(self, x: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True) -> FlowOutput:
        self._check_input(x, "forward", (2,))
        shift, log_scale = self._shift_logscale(x, y)
        out = x * log_scale.exp() + shift
        return out, (log_scale.sum(-1) if compute_jacobian else None)

    @staticmethod
    def _undo(x: torch.Tensor, shift: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        return (x - shift) * (-log_scale).exp()

    def inverse_transform(
        self, z: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True
    ) -> FlowOutput:
        out, log_scale = self._solve(z, y)
        return out, (-log_scale.sum(-1) if compute_jacobian else None)
