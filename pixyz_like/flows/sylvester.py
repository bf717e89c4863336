r"""Householder and orthogonal Householder-Sylvester flows, usable as amortised VAE posteriors.

References: Tomczak & Welling, "Improving Variational Auto-Encoders using Householder Flow", 2016;
van den Berg, Hasenclever, Tomczak & Welling, "Sylvester Normalizing Flows for Variational
Inference", 2018 (the Householder variant, H-SNF).

**Amortisation.** With ``cond_features`` set, every parameter of the flow is produced per data point
from the condition ``y`` (shape ``(batch, cond_features)``, e.g. the encoder's hidden features) by
``cond_net`` — a module mapping ``y`` to ``(batch, flow.num_params)``, by default one
:class:`~torch.nn.Linear` layer. Without it the parameters are ordinary learned tensors shared by all
data points. Put the flow in a :class:`~pixyz_like.distributions.TransformedDistribution` over a
Gaussian :math:`q_0(z_0|x)` with ``flow_cond_var`` naming the conditioning variable to get
:math:`q(z_K|x)` whose samples carry their log-density.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import ParameterError, ShapeError
from ._maths import solve_increasing
from .flows import Flow, FlowOutput

__all__ = ["HouseholderFlow", "SylvesterFlow"]


class _Amortised(Flow):
    """Parameters either learned directly or produced from the condition ``y`` by ``cond_net``."""

    vector_only = True

    def _setup_params(
        self,
        shapes: dict[str, tuple[int, ...]],
        cond_features: int | None,
        cond_net: nn.Module | None,
        init_std: float,
    ) -> None:
        self._shapes = shapes
        self.cond_features = cond_features
        self.num_params = sum(math.prod(s) for s in shapes.values())
        if cond_features is None and cond_net is None:
            self.cond_net = None
            for k, s in shapes.items():
                self.register_parameter(k, nn.Parameter(torch.randn(s) * init_std))
        else:
            if cond_net is None:
                if not isinstance(cond_features, int) or cond_features < 1:
                    raise ParameterError(f"{self._name()}: cond_features must be a positive int, got {cond_features!r}")
                cond_net = nn.Linear(cond_features, self.num_params)
                with torch.no_grad():  # start near a small random flow, as in the unconditional case
                    cond_net.weight.mul_(init_std)
                    cond_net.bias.normal_(0.0, init_std)
            self.cond_net = cond_net

    def _params(self, y: torch.Tensor | None, batch: int) -> dict[str, torch.Tensor]:
        """Each parameter with a leading dimension of 1 (shared) or ``batch`` (amortised)."""
        if self.cond_net is None:
            return {k: getattr(self, k).unsqueeze(0) for k in self._shapes}
        if y is None:
            raise ShapeError(f"{self._name()}: it is conditional and needs y of shape ({batch}, {self.cond_features})")
        flat = self.cond_net(y)
        if flat.shape != (batch, self.num_params):
            raise ShapeError(
                f"{self._name()}: cond_net(y) must have shape (batch, num_params) = "
                f"({batch}, {self.num_params}), "
                f"got {tuple(flat.shape)} from y of shape {tuple(y.shape)}"
            )
        out, i = {}, 0
        for k, s in self._shapes.items():
            n = math.prod(s)
            out[k] = flat[:, i : i + n].reshape(batch, *s)
            i += n
        return out


def _reflect(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Householder reflection :math:`x - 2 v (v^T x)/\\lVert v\\rVert^2`, batched over the first dim."""
    return x - 2 * v * (v * x).sum(-1, keepdim=True) / (v * v).sum(-1, keepdim=True)


class HouseholderFlow(_Amortised):
    r"""A product of Householder reflections :math:`z = H_K \cdots H_1 x`,
    :math:`H_k = I - 2\frac{v_k v_k^\top}{\lVert v_k\rVert^2}`.

    Orthogonal, so volume-preserving: :math:`\log|\det J| = 0`; the inverse applies the reflections in
    the opposite order. With ``cond_features`` the vectors :math:`v_k` come from ``y`` (amortised, as in
    Tomczak & Welling, 2016), turning a diagonal Gaussian posterior into a full-covariance one.

    >>> f = HouseholderFlow(3, num_reflections=2, cond_features=4)
    >>> x, y = torch.randn(5, 3), torch.randn(5, 4)
    >>> z, logdet = f.transform(x, y)
    >>> torch.allclose(z.norm(dim=1), x.norm(dim=1)), logdet.abs().max().item()
    (True, 0.0)
    """

    def __init__(
        self,
        in_features: int,
        num_reflections: int = 1,
        cond_features: int | None = None,
        cond_net: nn.Module | None = None,
    ) -> None:
        super().__init__(in_features)
        if num_reflections < 1:
            raise ParameterError(f"HouseholderFlow: num_reflections must be >= 1, got {num_reflections}")
        self.num_reflections = num_reflections
        self._setup_params({"v": (num_reflections, in_features)}, cond_features, cond_net, init_std=1.0)

    def transform(self, x: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True) -> FlowOutput:
        self._check_input(x, "forward", (2,))
        v = self._params(y, x.shape[0])["v"]
        for k in range(self.num_reflections):
            x = _reflect(x, v[:, k])
        return x, (self._zero_logdet(x) if compute_jacobian else None)

    def inverse_transform(
        self, z: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True
    ) -> FlowOutput:
        self._check_input(z, "inverse", (2,))
        v = self._params(y, z.shape[0])["v"]
        for k in reversed(range(self.num_reflections)):
            z = _reflect(z, v[:, k])
        return z, (self._zero_logdet(z) if compute_jacobian else None)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_reflections={self.num_reflections}, "
            f"cond_features={self.cond_features}"
        )


class SylvesterFlow(_Amortised):
    r"""Orthogonal Householder-Sylvester flow :math:`z = x + Q R \tanh(\tilde R Q^\top x + b)`.

    :math:`Q = H_1 \cdots H_M` is a product of ``num_householder`` Householder reflections (orthogonal),
    :math:`R, \tilde R` are upper triangular with diagonals :math:`\tanh(\cdot) \in (-1, 1)`, so
    :math:`r_{ii}\tilde r_{ii} > -1` and the map is invertible. By Sylvester's determinant identity

    .. math:: \log\left|\det\frac{\partial z}{\partial x}\right| = \sum_i \log\left|1 + \tilde r_{ii} r_{ii}
        \left(1 - \tanh^2\big((\tilde R Q^\top x + b)_i\big)\right)\right|.

    The inverse has no closed form; with :math:`w = Q^\top x` the system :math:`Q^\top z = w + R
    \tanh(\tilde R w + b)` is upper triangular, so it is solved one coordinate at a time from the last
    (each a monotone scalar equation, by bisection).

    With ``cond_features`` all of :math:`R, \tilde R, b` and the Householder vectors are produced from
    ``y`` per data point (amortised, as in the paper's VAE experiments).

    >>> f = SylvesterFlow(3, cond_features=2).double()
    >>> x, y = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    >>> z, logdet = f.transform(x, y)
    >>> torch.allclose(f.inverse(z, y), x)
    True
    """

    def __init__(
        self,
        in_features: int,
        num_householder: int | None = None,
        cond_features: int | None = None,
        cond_net: nn.Module | None = None,
    ) -> None:
        super().__init__(in_features)
        d = in_features
        self.num_householder = d if num_householder is None else num_householder
        if self.num_householder < 1:
            raise ParameterError(f"SylvesterFlow: num_householder must be >= 1, got {num_householder}")
        shapes = {"r_full": (d, d), "r_tilde_full": (d, d), "b": (d,), "v": (self.num_householder, d)}
        self._setup_params(shapes, cond_features, cond_net, init_std=0.3)

    @staticmethod
    def _triangular(full: torch.Tensor) -> torch.Tensor:
        return torch.triu(full, diagonal=1) + torch.diag_embed(torch.tanh(torch.diagonal(full, dim1=-2, dim2=-1)))

    def _unpack(self, y: Tensor | None, batch: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(R, R_tilde, b, v)``."""
        p = self._params(y, batch)
        return self._triangular(p["r_full"]), self._triangular(p["r_tilde_full"]), p["b"], p["v"]

    def _q_t(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:  # Q^T x = H_M ... H_1 x
        for k in range(self.num_householder):
            x = _reflect(x, v[:, k])
        return x

    def _q(self, w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:  # Q w = H_1 ... H_M w
        for k in reversed(range(self.num_householder)):
            w = _reflect(w, v[:, k])
        return w

    @staticmethod
    def _logdet(r: torch.Tensor, r_tilde: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        diag = torch.diagonal(r, dim1=-2, dim2=-1) * torch.diagonal(r_tilde, dim1=-2, dim2=-1)
        return torch.log1p(diag * (1 - h**2)).sum(-1)

    def transform(self, x: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True) -> FlowOutput:
        self._check_input(x, "forward", (2,))
        r, r_tilde, b, v = self._unpack(y, x.shape[0])
        w = self._q_t(x, v)
        h = torch.tanh(torch.einsum("bij,bj->bi", r_tilde.expand(x.shape[0], -1, -1), w) + b)
        z = x + self._q(torch.einsum("bij,bj->bi", r.expand(x.shape[0], -1, -1), h), v)
        return z, (self._logdet(r, r_tilde, h) if compute_jacobian else None)

    def inverse_transform(
        self, z: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True
    ) -> FlowOutput:
        self._check_input(z, "inverse", (2,))
        n, d = z.shape
        r, r_tilde, b, v = self._unpack(y, n)
        r, r_tilde, b = r.expand(n, d, d), r_tilde.expand(n, d, d), b.expand(n, d)
        target_all = self._q_t(z, v)
        w: dict[int, torch.Tensor] = {}  # filled from the last feature down
        h: dict[int, torch.Tensor] = {}
        for i in reversed(range(d)):
            later = range(i + 1, d)
            known = sum((r[:, i, j] * h[j] for j in later), torch.zeros_like(z[:, 0]))
            c = sum((r_tilde[:, i, k] * w[k] for k in later), torch.zeros_like(z[:, 0])) + b[:, i]
            rii, tii = r[:, i, i], r_tilde[:, i, i]
            target = target_all[:, i] - known

            def g(a: Tensor, rii: Tensor = rii, tii: Tensor = tii, c: Tensor = c) -> Tensor:
                return a + rii * torch.tanh(tii * a + c)

            bound = rii.abs().detach() + 1e-6
            a = solve_increasing(g, target, target - bound, target + bound)
            # A Newton step from the root attaches the implicit-function gradient.
            a = a - (g(a) - target) / (1 + rii * tii * (1 - torch.tanh(tii * a + c) ** 2))
            w[i] = a
            h[i] = torch.tanh(tii * a + c)
        x = self._q(torch.stack([w[i] for i in range(d)], -1), v)
        if not compute_jacobian:
            return x, None
        return x, -self._logdet(r, r_tilde, torch.stack([h[i] for i in range(d)], -1))

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_householder={self.num_householder}, "
            f"cond_features={self.cond_features}"
        )
