r"""The evidence lower bound."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..distributions.distributions import Distribution
from .losses import Expectation, Loss

__all__ = ["ELBO"]


def ELBO(p: Distribution, q: Distribution, sample_shape: Sequence[int] | torch.Size = torch.Size([1])) -> Loss:
    r"""The evidence lower bound :math:`\mathbb{E}_{q(z|x)}[\log p(x,z) - \log q(z|x)] \le \log p(x)`.

    ``p`` is the joint over the data and latent variables, ``q`` the approximate posterior. The value
    is a Monte Carlo estimate from ``sample_shape`` draws of ``q``, one value per data point.

    >>> from pixyz_like.distributions import Normal
    >>> q = Normal(loc="x", scale=1., var=["z"], cond_var=["x"], name="q")
    >>> p = Normal(loc="z", scale=1., var=["x"], cond_var=["z"], name="p")
    >>> print(ELBO(p, q))
    \mathbb{E}_{q(z|x)} \left[\log p(x|z) - \log q(z|x) \right]
    """
    return Expectation(q, p.log_prob() - q.log_prob(), sample_shape=sample_shape)
