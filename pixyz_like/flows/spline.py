r"""Rational-quadratic neural spline coupling (Durkan, Bekasov, Murray & Papamakarios, "Neural Spline
Flows", 2019)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ParameterError, ShapeError
from .coupling import channel_wise_mask, checkerboard_mask
from .flows import Flow, FlowOutput

__all__ = ["rational_quadratic_spline", "NeuralSplineCoupling"]


def _knots(raw: torch.Tensor, bound: float, min_size: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin sizes (softmax, at least ``min_size`` of the range) and the ``K + 1`` knot positions."""
    k = raw.shape[-1]
    size = min_size + (1 - min_size * k) * torch.softmax(raw, dim=-1)
    knots = F.pad(torch.cumsum(size, dim=-1), (1, 0)) * 2 * bound - bound
    # Pin the ends exactly to the interval (the cumulative sum can miss by rounding).
    knots = torch.cat(
        [
            knots.new_full(knots[..., :1].shape, -bound),
            knots[..., 1:-1],
            knots.new_full(knots[..., :1].shape, bound),
        ],
        dim=-1,
    )
    return knots[..., 1:] - knots[..., :-1], knots


def rational_quadratic_spline(
    x: torch.Tensor,
    raw_widths: torch.Tensor,
    raw_heights: torch.Tensor,
    raw_derivatives: torch.Tensor,
    inverse: bool = False,
    tail_bound: float = 3.0,
    min_bin_width: float = 1e-3,
    min_bin_height: float = 1e-3,
    min_derivative: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Elementwise monotone rational-quadratic spline on :math:`[-B, B]`, identity outside.

    ``raw_widths`` and ``raw_heights`` (``x.shape + (K,)``) become bin sizes by a softmax;
    ``raw_derivatives`` (``x.shape + (K - 1,)``) the interior knot slopes by a softplus (slopes at
    :math:`\pm B` are 1 so the linear tails join smoothly). In bin :math:`k`, with
    :math:`\xi = (x - x_k)/w_k`, :math:`s_k = h_k / w_k`:

    .. math:: g(x) = y_k + \frac{h_k\,[s_k \xi^2 + \delta_k \xi(1-\xi)]}{s_k + (\delta_{k+1} + \delta_k
        - 2 s_k)\,\xi(1-\xi)}, \quad
        g'(x) = \frac{s_k^2\,[\delta_{k+1}\xi^2 + 2 s_k \xi(1-\xi) + \delta_k (1-\xi)^2]}{[s_k +
        (\delta_{k+1} + \delta_k - 2 s_k)\,\xi(1-\xi)]^2}.

    The inverse solves the quadratic in :math:`\xi` (equation 6 of the paper). Returns ``(value,
    log|g'|)`` elementwise (for ``inverse``, the log-derivative of the inverse map).

    >>> x = torch.linspace(-4, 4, 9)
    >>> w, h, d = torch.randn(9, 5), torch.randn(9, 5), torch.randn(9, 4)
    >>> y, ld = rational_quadratic_spline(x, w, h, d)
    >>> x2, ld2 = rational_quadratic_spline(y, w, h, d, inverse=True)
    >>> torch.allclose(x2, x, atol=1e-5), torch.allclose(ld, -ld2, atol=1e-5)
    (True, True)
    """
    k = raw_widths.shape[-1]
    if min_bin_width * k >= 1 or min_bin_height * k >= 1:
        raise ParameterError(f"rational_quadratic_spline: too many bins ({k}) for the minimum bin size")
    b = float(tail_bound)
    inside = (x >= -b) & (x <= b)
    xc = x.clamp(-b, b)  # keep the spline maths finite everywhere; the tails are selected below
    widths, xk = _knots(raw_widths, b, min_bin_width)
    heights, yk = _knots(raw_heights, b, min_bin_height)
    ones = raw_derivatives.new_ones(raw_derivatives[..., :1].shape)
    deriv = torch.cat([ones, min_derivative + F.softplus(raw_derivatives), ones], dim=-1)

    knots = yk if inverse else xk
    idx = (xc.unsqueeze(-1) >= knots[..., 1:-1]).sum(-1, keepdim=True)

    def at(t: torch.Tensor) -> torch.Tensor:
        return t.gather(-1, idx).squeeze(-1)

    x_k, y_k, w_k, h_k, d_k, d_k1 = at(xk), at(yk), at(widths), at(heights), at(deriv), at(deriv[..., 1:])
    s = h_k / w_k
    if not inverse:
        xi = (xc - x_k) / w_k
    else:
        dy = xc - y_k
        curv = d_k1 + d_k - 2 * s
        a = h_k * (s - d_k) + dy * curv
        bq = h_k * d_k - dy * curv
        c = -s * dy
        disc = (bq**2 - 4 * a * c).clamp_min(0)
        xi = 2 * c / (-bq - disc.sqrt())
    xi = xi.clamp(0, 1)
    t = xi * (1 - xi)
    den = s + (d_k1 + d_k - 2 * s) * t
    logd = 2 * s.log() + (d_k1 * xi**2 + 2 * s * t + d_k * (1 - xi) ** 2).log() - 2 * den.log()
    if not inverse:
        out = y_k + h_k * (s * xi**2 + d_k * t) / den
    else:
        out = x_k + xi * w_k
        logd = -logd
    return torch.where(inside, out, x), torch.where(inside, logd, torch.zeros_like(logd))


class _MLP(nn.Module):
    def __init__(self, n_in: int, n_hidden: int, n_out: int, n_cond: int | None) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_in + (n_cond or 0), n_hidden),
            nn.ReLU(),
            nn.Linear(n_hidden, n_hidden),
            nn.ReLU(),
            nn.Linear(n_hidden, n_out),
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x if y is None else torch.cat([x, y], dim=-1))


class NeuralSplineCoupling(Flow):
    r"""Coupling layer whose transform is a rational-quadratic spline (see :func:`rational_quadratic_spline`).

    The features where the mask is 1 pass through unchanged and, with the condition ``y``, feed a
    network giving, for each other feature, :math:`K` widths, :math:`K` heights and :math:`K-1`
    slopes; those features go through their spline. :math:`\log|\det J|` is the sum of the spline
    log-derivatives. Values outside ``[-tail_bound, tail_bound]`` pass through unchanged.

    Args:
        in_features: number of features (vectors ``(batch, in_features)`` only).
        hidden_features: width of the default 2-hidden-layer network.
        num_bins: :math:`K`.
        mask_type, inverse_mask: as in :class:`AffineCoupling`.
        cond_features: size of the condition ``y`` for the default network (conditional flow).
        net: a network replacing the default one, called as ``net(x_kept)`` or ``net(x_kept, y)``, returning
            ``(batch, n_transformed * (3 * num_bins - 1))``.

    >>> f = NeuralSplineCoupling(4, hidden_features=16).double()
    >>> x = torch.randn(6, 4, dtype=torch.float64)
    >>> z, logdet = f.transform(x)
    >>> torch.allclose(f.inverse(z), x)
    True
    """

    vector_only = True
    kept: torch.Tensor
    moved: torch.Tensor
    unshuffle: torch.Tensor

    def __init__(
        self,
        in_features: int,
        hidden_features: int = 64,
        num_bins: int = 8,
        tail_bound: float = 3.0,
        mask_type: str = "channel_wise",
        inverse_mask: bool = False,
        cond_features: int | None = None,
        net: Callable | None = None,
    ) -> None:
        super().__init__(in_features)
        if mask_type == "channel_wise":
            mask = channel_wise_mask(in_features, inverse_mask)
        elif mask_type == "checkerboard":
            mask = checkerboard_mask(1, in_features, inverse_mask).view(-1)
        else:
            raise ParameterError(
                f"NeuralSplineCoupling: mask_type must be 'channel_wise' or 'checkerboard', got {mask_type!r}"
            )
        kept, moved = torch.nonzero(mask).view(-1), torch.nonzero(mask == 0).view(-1)
        if len(kept) == 0 or len(moved) == 0:
            raise ParameterError(
                f"NeuralSplineCoupling(in_features={in_features}): the mask leaves "
                f"{'nothing to condition on' if len(kept) == 0 else 'nothing to transform'}; "
                "needs in_features >= 2"
            )
        if num_bins < 2:
            raise ParameterError(f"NeuralSplineCoupling: num_bins must be >= 2, got {num_bins}")
        self.register_buffer("kept", kept)
        self.register_buffer("moved", moved)
        self.register_buffer("unshuffle", torch.argsort(torch.cat([kept, moved])))
        self.num_bins, self.tail_bound, self.mask_type, self.inverse_mask = (
            num_bins,
            tail_bound,
            mask_type,
            inverse_mask,
        )
        self.cond_features = cond_features
        n_out = len(moved) * (3 * num_bins - 1)
        self.net = net if net is not None else _MLP(len(kept), hidden_features, n_out, cond_features)

    def _spline(self, x: torch.Tensor, y: torch.Tensor | None, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_input(x, "inverse" if inverse else "forward", (2,))
        x_kept, x_moved = x[:, self.kept], x[:, self.moved]
        if self.cond_features is not None and y is None:
            raise ShapeError(f"{self._name()}: it is conditional and needs y of shape (batch, {self.cond_features})")
        params = self._call_net(self.net, x_kept, y)
        expected = (x.shape[0], len(self.moved) * (3 * self.num_bins - 1))
        if not isinstance(params, torch.Tensor) or params.shape != expected:
            got = tuple(params.shape) if isinstance(params, torch.Tensor) else type(params).__name__
            raise ShapeError(f"{self._name()}: the network must return shape {expected}, got {got}")
        params = params.view(x.shape[0], len(self.moved), 3 * self.num_bins - 1)
        k = self.num_bins
        moved, logd = rational_quadratic_spline(
            x_moved, params[..., :k], params[..., k : 2 * k], params[..., 2 * k :], inverse, self.tail_bound
        )
        return torch.cat([x_kept, moved], dim=1)[:, self.unshuffle], logd.sum(-1)

    def transform(self, x: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True) -> FlowOutput:
        out, logdet = self._spline(x, y, inverse=False)
        return out, (logdet if compute_jacobian else None)

    def inverse_transform(
        self, z: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True
    ) -> FlowOutput:
        out, logdet = self._spline(z, y, inverse=True)
        return out, (logdet if compute_jacobian else None)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_bins={self.num_bins}, tail_bound={self.tail_bound}, "
            f"mask_type={self.mask_type}, inverse_mask={self.inverse_mask}, "
            f"cond_features={self.cond_features}"
        )
