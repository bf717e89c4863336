r"""The variational autoencoder as a ready-made :class:`~pixyz_like.models.Model`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn, optim

from ..distributions.distributions import Distribution
from ..losses.losses import Loss
from ..utils import tolist
from .model import Model

__all__ = ["VAE"]


class VAE(Model):
    r"""A variational autoencoder (Kingma & Welling 2014): trains an encoder and a decoder.

    The loss is an optional regulariser minus the reconstruction term, averaged over the batch:

    .. math:: \mathcal{L} = \mathrm{mean}\left(R - \mathbb{E}_{q(z|x)}[\log p(x|z)]\right)

    where :math:`R` is ``regularizer``, e.g. :math:`D_{KL}[q(z|x)\|p(z)]` for the negative ELBO, or a
    weighted one such as ``beta * KullbackLeibler(q, prior)`` with ``beta = Parameter("beta")`` fed
    in the input dict (a schedule). Without a regulariser it is a plain (stochastic) autoencoder.

    Args:
        encoder: the approximate posterior ``q(z|x)``.
        decoder: the likelihood ``p(x|z)``.
        other_distributions: more distributions (or modules) to train, e.g. a learnable prior.
        regularizer: a loss added before the batch mean (printed first, as Pixyz prints it).
        optimizer, optimizer_params, clip_grad_norm, clip_grad_value, retain_graph, device: as for
            :class:`~pixyz_like.models.Model`; other keywords are passed on to it.

    >>> from pixyz_like.distributions import Normal
    >>> from pixyz_like.losses import KullbackLeibler
    >>> class Encoder(Normal):
    ...     def __init__(self):
    ...         super().__init__(var=["z"], cond_var=["x"], name="q")
    ...         self.net = torch.nn.Linear(4, 4)
    ...     def forward(self, x):
    ...         h = self.net(x)
    ...         return {"loc": h[:, :2], "scale": torch.nn.functional.softplus(h[:, 2:])}
    >>> class Decoder(Normal):
    ...     def __init__(self):
    ...         super().__init__(var=["x"], cond_var=["z"], name="p")
    ...         self.net = torch.nn.Linear(2, 4)
    ...     def forward(self, z):
    ...         return {"loc": self.net(z), "scale": torch.ones(1, 4)}
    >>> q, p = Encoder(), Decoder()
    >>> prior = Normal(loc=0., scale=1., var=["z"], features_shape=[2], name="p_{prior}")
    >>> model = VAE(q, p, regularizer=KullbackLeibler(q, prior), optimizer_params={"lr": 1e-3})
    >>> print(model.loss_cls)
    mean \left(D_{KL} \left[q(z|x)||p_{prior}(z) \right] - \mathbb{E}_{q(z|x)} \left[\log p(x|z) \right] \right)
    >>> model.train({"x": torch.randn(8, 4)}).shape
    torch.Size([])
    """

    def __init__(
        self,
        encoder: Distribution,
        decoder: Distribution,
        other_distributions: Sequence[nn.Module] | nn.Module = (),
        regularizer: Loss | None = None,
        optimizer: type[optim.Optimizer] = optim.Adam,
        optimizer_params: Mapping[str, Any] | None = None,
        clip_grad_norm: float | None = None,
        clip_grad_value: float | None = None,
        retain_graph: bool = False,
        device: str | torch.device | None = None,
        **model_options: Any,
    ) -> None:
        if regularizer is not None and not isinstance(regularizer, Loss):
            raise TypeError(f"VAE: regularizer must be a Loss (or None), got {type(regularizer).__name__}")
        reconstruction = -decoder.log_prob().expectation(encoder)
        # The regulariser first: the formula prints as Pixyz shows it, D_KL[q||p] - E_q[log p(x|z)].
        loss = (reconstruction if regularizer is None else regularizer + reconstruction).mean()
        self.encoder = encoder
        self.decoder = decoder
        # Model's own parameters, in its order: (loss, test_loss, distributions, optimizer, ...).
        super().__init__(loss, loss, [encoder, decoder, *tolist(other_distributions)], optimizer, optimizer_params,
                         clip_grad_norm, clip_grad_value, retain_graph, device, **model_options)
