r"""Normalisation layers as flows: batch normalisation (Dinh et al., 2017) and activation normalisation
(Kingma & Dhariwal, "Glow", 2018)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ParameterError
from ..utils import epsilon
from .flows import Flow, FlowOutput

__all__ = ["BatchNorm1d", "BatchNorm2d", "ActNorm2d"]


class BatchNorm1d(Flow):
    r"""Batch normalisation with an inverse.

    .. math:: z = e^{\gamma} \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta, \qquad
        \log\left|\det\frac{\partial z}{\partial x}\right| =
        \sum_i \gamma_i - \tfrac12 \log(\sigma_i^2 + \epsilon)

    In training mode :math:`\mu, \sigma^2` are the batch mean and (biased) variance — treated as
    constants in the log-determinant, as is standard — and the running statistics are updated:
    the first batch sets them, later ones mix in as ``running = momentum * running + (1 - momentum) *
    batch`` (Pixyz's convention for ``momentum``). In eval mode, and in :meth:`inverse` always, the
    running statistics are used, so ``inverse(forward(x)) == x`` holds in eval mode (Pixyz's inverse
    in training mode reused the statistics of the last forward batch, hidden state this flow does not
    keep).

    ``eps`` is :math:`\epsilon`; when not given it is :func:`pixyz_like.utils.epsilon` at construction
    (``1e-7``, Pixyz's value, unless :func:`~pixyz_like.utils.set_epsilon` changed it).

    >>> f = BatchNorm1d(3)
    >>> z, logdet = f.transform(torch.randn(100, 3) * 5 + 2)
    >>> bool(z.mean(0).abs().max() < 1e-5), bool((z.std(0, unbiased=False) - 1).abs().max() < 1e-3)
    (True, True)
    >>> _ = f.eval()
    >>> x = torch.randn(4, 3)
    >>> torch.allclose(f.inverse(f(x)), x, atol=1e-5)
    True
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor
    num_batches_tracked: torch.Tensor

    def __init__(self, in_features: int, momentum: float = 0.9, eps: float | None = None) -> None:
        super().__init__(in_features)
        if not 0.0 <= momentum < 1.0:
            raise ParameterError(f"{type(self).__name__}: momentum must be in [0, 1), got {momentum}")
        shape = self._param_shape(in_features)
        self.log_gamma = nn.Parameter(torch.zeros(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.momentum = momentum
        self.eps = float(epsilon() if eps is None else eps)
        if not self.eps >= 0:
            raise ParameterError(f"{type(self).__name__}: eps must be non-negative, got {eps}")
        self.register_buffer("running_mean", torch.zeros(shape))
        self.register_buffer("running_var", torch.ones(shape))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    _ndim = 2

    @staticmethod
    def _param_shape(c: int) -> tuple[int, ...]:
        return (c,)

    def _reduce_dims(self) -> tuple[int, ...]:
        return (0,) if self._ndim == 2 else (0, 2, 3)

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.training:
            return self.running_mean, self.running_var
        dims = self._reduce_dims()
        mean = x.mean(dims)
        var = x.var(dims, unbiased=False)
        if self._ndim == 4:
            mean, var = mean.view(-1, 1, 1), var.view(-1, 1, 1)
        with torch.no_grad():  # the running averages are statistics, not part of the graph
            if self.num_batches_tracked == 0:
                self.running_mean.copy_(mean)
                self.running_var.copy_(var)
            else:
                self.running_mean.mul_(self.momentum).add_((1 - self.momentum) * mean)
                self.running_var.mul_(self.momentum).add_((1 - self.momentum) * var)
            self.num_batches_tracked += 1
        return mean, var

    def _logdet(self, var: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        pixels = x[0, 0].numel()
        return ((self.log_gamma - 0.5 * (var + self.eps).log()).sum() * pixels).expand(x.shape[0])

    def transform(self, x: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True) -> FlowOutput:
        self._check_input(x, "forward", (self._ndim,))
        mean, var = self._stats(x)
        z = (x - mean) / (var + self.eps).sqrt() * self.log_gamma.exp() + self.beta
        return z, (self._logdet(var, x) if compute_jacobian else None)

    def inverse_transform(
        self, z: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True
    ) -> FlowOutput:
        self._check_input(z, "inverse", (self._ndim,))
        mean, var = self.running_mean, self.running_var
        x = (z - self.beta) * (-self.log_gamma).exp() * (var + self.eps).sqrt() + mean
        return x, (-self._logdet(var, z) if compute_jacobian else None)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, momentum={self.momentum}, eps={self.eps}"


class BatchNorm2d(BatchNorm1d):
    r"""Batch normalisation of images ``(batch, C, H, W)`` per channel; see :class:`BatchNorm1d`.

    The log-determinant counts every pixel: :math:`H W \sum_c \gamma_c - \tfrac12\log(\sigma_c^2+\epsilon)`.

    >>> f = BatchNorm2d(2)
    >>> z, logdet = f.transform(torch.randn(8, 2, 3, 3))
    >>> z.shape, logdet.shape
    (torch.Size([8, 2, 3, 3]), torch.Size([8]))
    """

    _ndim = 4

    @staticmethod
    def _param_shape(c: int) -> tuple[int, ...]:
        return (c, 1, 1)


class ActNorm2d(Flow):
    r"""Activation normalisation: a per-channel affine map :math:`z = (x + b) \odot e^{s}`.

    .. math:: \log\left|\det\frac{\partial z}{\partial x}\right| = H W \sum_c s_c

    Data-dependent initialisation: the first :meth:`forward` in training mode sets :math:`b` and
    :math:`s` so that this batch's output has zero mean and standard deviation ``scale`` per channel;
    after that both are ordinary parameters. Whether it has happened is a buffer, so a loaded model is
    not re-initialised (``inited`` reads it, as Pixyz's attribute). ``eps``, added to the standard
    deviation there, is :func:`pixyz_like.utils.epsilon` at construction when not given. Works on
    images ``(batch, C, H, W)`` and vectors ``(batch, C)``.

    >>> f = ActNorm2d(3)
    >>> z = f(torch.randn(64, 3, 4, 4) * 3 + 1)
    >>> bool(z.mean((0, 2, 3)).abs().max() < 1e-5), bool(f.initialized)
    (True, True)
    """

    initialized: torch.Tensor

    def __init__(self, in_features: int, scale: float = 1.0, eps: float | None = None) -> None:
        super().__init__(in_features)
        self.bias = nn.Parameter(torch.zeros(1, in_features, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, in_features, 1, 1))
        self.scale = float(scale)
        self.eps = float(epsilon() if eps is None else eps)
        self.register_buffer("initialized", torch.tensor(False))

    @property
    def inited(self) -> bool:
        """Whether the data-dependent initialisation has happened (Pixyz's name for ``initialized``)."""
        return bool(self.initialized)

    @inited.setter
    def inited(self, value: bool) -> None:
        self.initialized.fill_(bool(value))

    def _view(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return t.view(1, -1) if x.ndim == 2 else t

    def initialize_parameters(self, x: torch.Tensor) -> None:
        """Set the bias and log-scale from the batch ``x`` (zero mean, std ``scale`` per channel)."""
        dims = (0,) if x.ndim == 2 else (0, 2, 3)
        with torch.no_grad():
            mean = x.mean(dims)
            std = x.std(dims, unbiased=False)
            self.bias.copy_(-mean.view_as(self.bias))
            self.logs.copy_(torch.log(self.scale / (std + self.eps)).view_as(self.logs))
            self.initialized.fill_(True)

    def _logdet(self, x: torch.Tensor) -> torch.Tensor:
        pixels = x[0, 0].numel()
        return (self.logs.sum() * pixels).expand(x.shape[0])

    def transform(self, x: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True) -> FlowOutput:
        self._check_input(x, "forward")
        if self.training and not bool(self.initialized):
            self.initialize_parameters(x)
        z = (x + self._view(self.bias, x)) * self._view(self.logs, x).exp()
        return z, (self._logdet(x) if compute_jacobian else None)

    def inverse_transform(
        self, z: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True
    ) -> FlowOutput:
        self._check_input(z, "inverse")
        x = z * (-self._view(self.logs, z)).exp() - self._view(self.bias, z)
        return x, (-self._logdet(z) if compute_jacobian else None)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, scale={self.scale}, eps={self.eps}"
