r"""Variational inference (maximising the ELBO) as a ready-made :class:`~pixyz_like.models.Model`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn, optim

from ..distributions.distributions import Distribution
from ..losses.elbo import ELBO
from ..utils import tolist
from .model import Model

__all__ = ["VI"]


class VI(Model):
    r"""Variational inference: fits ``p`` and the approximate posterior by maximising the ELBO.

    .. math:: \mathcal{L} = -\mathrm{mean}\left(\mathbb{E}_{q(z|x)}[\log p(x,z) - \log q(z|x)]\right)

    ``p`` is the joint over data and latent variables (e.g. ``p(x|z) * p_prior(z)``) and
    ``approximate_dist`` the (amortised, or global when it has no inputs) posterior ``q``.

    Args:
        p: the generative model (a joint).
        approximate_dist: the approximate posterior.
        other_distributions: more distributions (or modules) to train.
        optimizer, optimizer_params, clip_grad_norm, clip_grad_value, retain_graph, device: as for
            :class:`~pixyz_like.models.Model`; other keywords are passed on to it.

    >>> from pixyz_like.distributions import Normal
    >>> class Encoder(Normal):
    ...     def __init__(self):
    ...         super().__init__(var=["z"], cond_var=["x"], name="q")
    ...         self.net = torch.nn.Linear(3, 2)
    ...     def forward(self, x):
    ...         return {"loc": self.net(x), "scale": torch.ones(1, 2)}
    >>> class Decoder(Normal):
    ...     def __init__(self):
    ...         super().__init__(var=["x"], cond_var=["z"], name="p")
    ...         self.net = torch.nn.Linear(2, 3)
    ...     def forward(self, z):
    ...         return {"loc": self.net(z), "scale": torch.ones(1, 3)}
    >>> prior = Normal(loc=0., scale=1., var=["z"], features_shape=[2], name="p_{prior}")
    >>> model = VI(Decoder() * prior, Encoder())
    >>> print(model.loss_cls)
    - mean \left(\mathbb{E}_{q(z|x)} \left[\log p(x,z) - \log q(z|x) \right] \right)
    >>> model.train({"x": torch.randn(8, 3)}).shape
    torch.Size([])
    """

    def __init__(
        self,
        p: Distribution,
        approximate_dist: Distribution,
        other_distributions: Sequence[nn.Module] | nn.Module = (),
        optimizer: type[optim.Optimizer] = optim.Adam,
        optimizer_params: Mapping[str, Any] | None = None,
        clip_grad_norm: float | None = None,
        clip_grad_value: float | None = None,
        retain_graph: bool = False,
        device: str | torch.device | None = None,
        **model_options: Any,
    ) -> None:
        loss = -ELBO(p, approximate_dist).mean()
        self.p = p
        self.approximate_dist = approximate_dist
        # Model's own parameters, in its order: (loss, test_loss, distributions, optimizer, ...).
        super().__init__(loss, loss, [p, approximate_dist, *tolist(other_distributions)], optimizer, optimizer_params,
                         clip_grad_norm, clip_grad_value, retain_graph, device, **model_options)
