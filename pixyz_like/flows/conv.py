r"""Invertible 1x1 convolution (Kingma & Dhariwal, "Glow", 2018)."""

from __future__ import annotations

import torch
from torch import nn

from .flows import Flow, FlowOutput

__all__ = ["ChannelConv"]


class ChannelConv(Flow):
    r"""Invertible 1x1 convolution: every pixel's channel vector is multiplied by a matrix :math:`W`.

    .. math:: z_{:,h,w} = W x_{:,h,w}, \qquad \log\left|\det\frac{\partial z}{\partial x}\right|
        = H\,W_{\text{pixels}} \cdot \log\lvert\det W\rvert.

    :math:`W` starts as a random rotation (QR of a Gaussian matrix, torch's RNG). With
    ``decomposed=True`` it is stored as :math:`W = P L (U + \operatorname{diag}(\sigma e^{s}))`: a fixed
    permutation :math:`P`, a unit lower-triangular :math:`L`, a strictly upper-triangular :math:`U` and
    a fixed sign vector :math:`\sigma`, so :math:`\log|\det W| = \sum_i s_i` costs :math:`O(C)`.
    Vectors ``(batch, C)`` are treated as 1x1 images (a learned invertible linear map).

    >>> f = ChannelConv(3, decomposed=True).double()
    >>> x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    >>> z, logdet = f.transform(x)
    >>> torch.allclose(f.inverse(z), x), logdet.shape
    (True, torch.Size([2]))
    """

    p: torch.Tensor
    sign_s: torch.Tensor

    def __init__(self, in_channels: int, decomposed: bool = False) -> None:
        super().__init__(in_channels)
        w_init, _ = torch.linalg.qr(torch.randn(in_channels, in_channels))
        self.decomposed = decomposed
        if not decomposed:
            self.weight = nn.Parameter(w_init)
        else:
            p, lower, upper = torch.linalg.lu(w_init)
            s = torch.diagonal(upper)
            self.register_buffer("p", p)
            self.register_buffer("sign_s", torch.sign(s))
            self.l = nn.Parameter(lower)
            self.log_s = nn.Parameter(s.abs().log())
            self.u = nn.Parameter(torch.triu(upper, diagonal=1))

    def get_weight(self) -> torch.Tensor:
        """The matrix :math:`W` (assembled from its LU factors when ``decomposed``)."""
        if not self.decomposed:
            return self.weight
        eye = torch.eye(self.l.shape[0], dtype=self.l.dtype, device=self.l.device)
        lower = torch.tril(self.l, diagonal=-1) + eye
        upper = torch.triu(self.u, diagonal=1) + torch.diag(self.sign_s * self.log_s.exp())
        return self.p @ lower @ upper

    def _log_abs_det(self) -> torch.Tensor:
        if self.decomposed:
            return self.log_s.sum()
        return torch.linalg.slogdet(self.weight)[1]

    @staticmethod
    def _mix(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ij,bj...->bi...", w, x)

    def _pixels(self, x: torch.Tensor) -> int:
        return x[0, 0].numel()

    def transform(self, x: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True) -> FlowOutput:
        self._check_input(x, "forward")
        z = self._mix(self.get_weight(), x)
        if not compute_jacobian:
            return z, None
        return z, (self._log_abs_det() * self._pixels(x)).expand(x.shape[0])

    def inverse_transform(
        self, z: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True
    ) -> FlowOutput:
        self._check_input(z, "inverse")
        x = self._mix(torch.linalg.inv(self.get_weight()), z)
        if not compute_jacobian:
            return x, None
        return x, (-self._log_abs_det() * self._pixels(z)).expand(z.shape[0])

    def extra_repr(self) -> str:
        return f"in_channels={self.in_features}, decomposed={self.decomposed}"
