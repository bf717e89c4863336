r"""Planar and radial flows (Rezende & Mohamed, "Variational Inference with Normalizing Flows", 2015)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._maths import solve_increasing
from .flows import Flow, FlowOutput

__all__ = ["PlanarFlow", "RadialFlow"]


class PlanarFlow(Flow):
    r"""Planar flow :math:`f(x) = x + \hat u\, \tanh(w^\top x + b)`.

    .. math:: \log\left|\det \frac{\partial f}{\partial x}\right| = \log\left|1 + \hat u^\top
        \psi(x)\right|, \qquad \psi(x) = \left(1 - \tanh^2(w^\top x + b)\right) w.

    With ``constraint_u=True``, :math:`\hat u = u + \left(m(w^\top u) - w^\top u\right)
    \frac{w}{\lVert w\rVert^2}` with :math:`m(a) = -1 + \log(1 + e^a)`, so :math:`w^\top \hat u > -1`
    and the map is invertible (appendix A of the paper); otherwise :math:`\hat u = u`.

    The inverse has no closed form: :math:`a = w^\top x` solves the increasing scalar equation
    :math:`w^\top z = a + w^\top \hat u \tanh(a + b)` (by bisection), then
    :math:`x = z - \hat u \tanh(a + b)`. It exists whenever :math:`w^\top \hat u > -1`.

    >>> f = PlanarFlow(2, constraint_u=True)
    >>> x = torch.randn(4, 2, dtype=torch.float64)
    >>> f = f.double()
    >>> z = f(x)
    >>> torch.allclose(f.inverse(z), x), f.logdet_jacobian.shape
    (True, torch.Size([4]))
    >>> torch.allclose(f.transform(x)[1], f.logdet_jacobian)
    True
    """

    vector_only = True

    def __init__(self, in_features: int, constraint_u: bool = False) -> None:
        super().__init__(in_features)
        self.w = nn.Parameter(torch.empty(1, in_features))
        self.b = nn.Parameter(torch.empty(1))
        self.u = nn.Parameter(torch.empty(1, in_features))
        self.constraint_u = constraint_u
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw ``w, b, u`` from :math:`U(-1/\\sqrt{D}, 1/\\sqrt{D})` (torch's RNG)."""
        bound = 1.0 / math.sqrt(self.w.shape[1])
        for p in (self.w, self.b, self.u):
            nn.init.uniform_(p, -bound, bound)

    def u_hat(self) -> torch.Tensor:
        """The vector :math:`\\hat u` actually used (see the class docstring)."""
        if not self.constraint_u:
            return self.u
        wu = (self.w * self.u).sum()
        return self.u + (F.softplus(wu) - 1.0 - wu) * self.w / (self.w**2).sum()

    def transform(self, x: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True) -> FlowOutput:
        self._check_input(x, "forward", (2,))
        u = self.u_hat()
        a = x @ self.w.t() + self.b  # (batch, 1)
        h = torch.tanh(a)
        z = x + u * h
        if not compute_jacobian:
            return z, None
        det = 1.0 + (1.0 - h.squeeze(-1) ** 2) * (self.w * u).sum()
        return z, det.abs().log()

    def inverse_transform(
        self, z: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True
    ) -> FlowOutput:
        self._check_input(z, "inverse", (2,))
        u = self.u_hat()
        c = (self.w * u).sum()
        if c.item() <= -1:
            raise self._no_inverse(
                f"w^T u_hat = {c.item():.4g} <= -1, so the map is not one-to-one; use constraint_u=True"
            )
        target = (z @ self.w.t()).squeeze(-1)

        def g(a: torch.Tensor) -> torch.Tensor:
            return a + c * torch.tanh(a + self.b)

        bound = c.abs().detach() + 1e-6
        a = solve_increasing(g, target, target - bound, target + bound)
        # One Newton step from the root: its value is (numerically) unchanged, but it carries the
        # implicit-function gradient with respect to z and the parameters.
        a = a - (g(a) - target) / (1.0 + c * (1.0 - torch.tanh(a + self.b) ** 2))
        h = torch.tanh(a + self.b).unsqueeze(-1)
        x = z - u * h
        if not compute_jacobian:
            return x, None
        det = 1.0 + (1.0 - h.squeeze(-1) ** 2) * c
        return x, -det.abs().log()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, constraint_u={self.constraint_u}"


class RadialFlow(Flow):
    r"""Radial flow :math:`f(x) = x + \beta\, h(\alpha, r)\,(x - x_0)`, :math:`r = \lVert x - x_0\rVert`,
    :math:`h = 1/(\alpha + r)`.

    :math:`\alpha = \mathrm{softplus}(\tilde\alpha) > 0` and :math:`\beta = -\alpha +
    \mathrm{softplus}(\tilde\beta) \ge -\alpha` keep it invertible. With :math:`D` features,

    .. math:: \log\left|\det \frac{\partial f}{\partial x}\right| = (D-1)\log(1 + \beta h)
        + \log\left(1 + \beta h - \beta h^2 r\right).

    The inverse is in closed form: :math:`s = \lVert z - x_0\rVert = r\,(1 + \beta h)`, so :math:`r`
    is the positive root of :math:`r^2 + (\alpha + \beta - s) r - \alpha s = 0`, and
    :math:`x = x_0 + (z - x_0)/(1 + \beta h(\alpha, r))`.

    >>> f = RadialFlow(3).double()
    >>> x = torch.randn(5, 3, dtype=torch.float64)
    >>> torch.allclose(f.inverse(f(x)), x)
    True
    """

    vector_only = True

    def __init__(self, in_features: int) -> None:
        super().__init__(in_features)
        self.x0 = nn.Parameter(torch.empty(1, in_features))
        self.alpha_raw = nn.Parameter(torch.empty(1))
        self.beta_raw = nn.Parameter(torch.empty(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw the centre and raw parameters from :math:`U(-1/\\sqrt{D}, 1/\\sqrt{D})`."""
        bound = 1.0 / math.sqrt(self.x0.shape[1])
        for p in (self.x0, self.alpha_raw, self.beta_raw):
            nn.init.uniform_(p, -bound, bound)

    def _alpha_beta(self) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = F.softplus(self.alpha_raw)
        return alpha, -alpha + F.softplus(self.beta_raw)

    def _logdet(self, r: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        h = 1.0 / (alpha + r)
        d = self.x0.shape[1]  # in_features
        return (d - 1) * torch.log1p(beta * h) + torch.log1p(beta * h - beta * h**2 * r)

    def transform(self, x: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True) -> FlowOutput:
        self._check_input(x, "forward", (2,))
        alpha, beta = self._alpha_beta()
        diff = x - self.x0
        r = diff.norm(dim=-1)
        z = x + (beta / (alpha + r)).unsqueeze(-1) * diff
        return z, (self._logdet(r, alpha, beta) if compute_jacobian else None)

    def inverse_transform(
        self, z: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True
    ) -> FlowOutput:
        self._check_input(z, "inverse", (2,))
        alpha, beta = self._alpha_beta()
        diff = z - self.x0
        s = diff.norm(dim=-1)
        k = alpha + beta - s
        # Positive root of r^2 + k r - alpha s = 0, written to avoid cancellation when k > 0.
        disc = torch.sqrt(k**2 + 4 * alpha * s)
        r = torch.where(k > 0, 2 * alpha * s / (k + disc), (disc - k) / 2)
        x = self.x0 + diff / (1.0 + beta / (alpha + r)).unsqueeze(-1)
        return x, (-self._logdet(r, alpha, beta) if compute_jacobian else None)
