r"""The maximum mean discrepancy :math:`\mathrm{MMD}^2[p, q]` and its kernels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .._context import EvalContext
from ..distributions.distributions import Distribution
from ..errors import ShapeError
from ._two_sample import check_pair, draw_pair
from .losses import Divergence

__all__ = [
    "MMD",
    "gaussian_rbf_kernel",
    "inverse_multiquadratic_rbf_kernel",
    "mmd2_unbiased",
    "pairwise_distance_matrix",
]


def _sq_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between the rows of ``x`` ``(n, d)`` and ``y`` ``(m, d)``: ``(n, m)``."""
    # The direct difference is exact (no cancellation, never negative); MMD batches are small.
    return (x[:, None, :] - y[None, :, :]).pow(2).sum(-1)


def gaussian_rbf_kernel(x: torch.Tensor, y: torch.Tensor, sigma_sqr: float = 2.0) -> torch.Tensor:
    r"""The Gaussian kernel :math:`k(x, y) = \exp(-\|x - y\|^2 / \sigma^2)` between rows, ``(n, m)``.

    ``sigma_sqr`` is :math:`\sigma^2` as in Pixyz; the default 2 is the unit-bandwidth kernel
    :math:`\exp(-\|x-y\|^2/2)`.

    >>> gaussian_rbf_kernel(torch.zeros(1, 2), torch.ones(1, 2))
    tensor([[0.3679]])
    """
    return torch.exp(-_sq_dist(x, y) / sigma_sqr)


def inverse_multiquadratic_rbf_kernel(x: torch.Tensor, y: torch.Tensor, sigma_sqr: float = 2.0) -> torch.Tensor:
    r"""The inverse multiquadratic kernel :math:`k(x, y) = \sigma^2 / (\|x - y\|^2 + \sigma^2)`, ``(n, m)``.

    >>> inverse_multiquadratic_rbf_kernel(torch.zeros(1, 2), torch.ones(1, 2))
    tensor([[0.5000]])
    """
    return sigma_sqr / (_sq_dist(x, y) + sigma_sqr)


_KERNELS: dict[str, Callable[..., torch.Tensor]] = {
    "gaussian": gaussian_rbf_kernel,
    "inv-multiquadratic": inverse_multiquadratic_rbf_kernel,
}


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, kernel: Callable[..., torch.Tensor] = gaussian_rbf_kernel,
                  **kernel_params: Any) -> torch.Tensor:
    r"""The unbiased estimator of :math:`\mathrm{MMD}^2` from samples ``x`` ``(n, d)`` and ``y`` ``(m, d)``.

    .. math:: \widehat{\mathrm{MMD}}^2_u = \frac{1}{n(n-1)}\sum_{i\ne j} k(x_i, x_j)
              + \frac{1}{m(m-1)}\sum_{i\ne j} k(y_i, y_j) - \frac{2}{nm}\sum_{i,j} k(x_i, y_j)

    (Gretton et al. 2012, eq. 3). The diagonal is excluded and the sums are normalised by the
    numbers of pairs, never by the feature dimension. Its expectation is the population
    :math:`\mathrm{MMD}^2`, so it can be slightly negative when the two distributions are equal.

    >>> x = torch.randn(500, 1)
    >>> bool(mmd2_unbiased(x, torch.randn(500, 1)).abs() < 0.02)
    True
    """
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ShapeError(f"MMD: the unbiased estimator needs at least 2 samples of each, got {n} and {m}")
    kxx = kernel(x, x, **kernel_params)
    kyy = kernel(y, y, **kernel_params)
    kxy = kernel(x, y, **kernel_params)
    xx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    yy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return xx + yy - 2 * kxy.mean()


class MMD(Divergence):
    r"""The squared maximum mean discrepancy :math:`\mathrm{MMD}^2[p\|q]` between two distributions.

    .. math:: \mathrm{MMD}^2[p, q] = \mathbb{E}_{p(x)p(x')}[k(x, x')] + \mathbb{E}_{q(y)q(y')}[k(y, y')]
              - 2\,\mathbb{E}_{p(x)q(y)}[k(x, y)]

    estimated without bias (:func:`mmd2_unbiased`) from one sample of each distribution per data
    point: for a conditional ``q(z|x)`` the batch of samples represents the aggregate posterior
    :math:`\int q(z|x)p_{data}(x)dx`, as in the MMD-VAE / InfoVAE (Zhao et al. 2019). A distribution
    without inputs (a prior) draws as many samples as the batch has data points. Samples are
    reparameterised where possible, so the loss trains the encoder (Pixyz drew them without
    gradient). Features are flattened; the value is one scalar for the batch.

    Args:
        p, q: distributions over the same single variable.
        kernel: ``"gaussian"`` (:func:`gaussian_rbf_kernel`), ``"inv-multiquadratic"``
            (:func:`inverse_multiquadratic_rbf_kernel`) or a callable ``kernel(x, y, **kernel_params)``
            returning the ``(n, m)`` matrix.
        kernel_params: keyword arguments of the kernel, e.g. ``sigma_sqr=2.0``.

    Unlike Pixyz (which divided by the feature dimension: 719.5 for two identical distributions and
    ``inf`` in one dimension) the value is near 0 for identical distributions in any dimension.

    >>> from pixyz_like.distributions import Normal
    >>> q = Normal(loc="x", scale=1., var=["z"], cond_var=["x"], name="q")
    >>> prior = Normal(loc=0., scale=1., var=["z"], features_shape=[1], name="p_{prior}")
    >>> loss = MMD(q, prior, kernel="gaussian", sigma_sqr=2.0)
    >>> print(loss)
    D_{MMD^2} \left[q(z|x)||p_{prior}(z) \right]
    >>> bool(loss.eval({"x": torch.zeros(1000, 1)}).abs() < 0.02)
    True
    """

    _options = ("batch_n",)

    def __init__(
        self, p: Distribution, q: Distribution, kernel: str | Callable[..., torch.Tensor] = "gaussian",
        **kernel_params: Any,
    ) -> None:
        check_pair("MMD", p, q)
        if isinstance(kernel, str):
            if kernel not in _KERNELS:
                raise ValueError(f"MMD: unknown kernel {kernel!r}; choose one of {sorted(_KERNELS)} or pass a callable")
            fn = _KERNELS[kernel]
            unknown = sorted(set(kernel_params) - {"sigma_sqr"})
            if unknown:
                raise TypeError(f"MMD: the {kernel} kernel takes sigma_sqr, not {unknown}")
        elif callable(kernel):
            fn = kernel
        else:
            raise TypeError(f"MMD: kernel must be a name or a callable, got {type(kernel).__name__}")
        super().__init__(p.input_var + q.input_var)
        self.p = p
        self.q = q
        self.kernel = fn
        self.kernel_params = dict(kernel_params)

    def _latex(self) -> str:
        return f"D_{{MMD^2}} \\left[{self.p.prob_text}||{self.q.prob_text} \\right]"

    def _eval(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
        sp, sq = draw_pair("MMD", self.p, self.q, x_dict, ctx)
        xp, xq = sp[self.p.var[0]], sq[self.q.var[0]]
        if xp.shape[1:] != xq.shape[1:]:
            raise ShapeError(
                f"MMD: samples of {self.p.prob_text} have shape {tuple(xp.shape)} and samples of "
                f"{self.q.prob_text} {tuple(xq.shape)}; their features must match"
            )
        # One row per data point; a (batch,) sample is one-dimensional data.
        xp = xp.reshape(xp.shape[0], -1)
        xq = xq.reshape(xq.shape[0], -1)
        return mmd2_unbiased(xp, xq, self.kernel, **self.kernel_params), {}


def pairwise_distance_matrix(x: torch.Tensor, y: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    r"""The ``(n, m)`` matrix of squared Euclidean distances :math:`\|x_i - y_j\|^2` (Pixyz's helper).

    >>> pairwise_distance_matrix(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0], [0.0, 1.0]]))
    tensor([[25.,  1.]])
    """
    if metric != "euclidean":
        raise ValueError(f"pairwise_distance_matrix: the only metric is 'euclidean', got {metric!r}")
    return _sq_dist(x, y)
