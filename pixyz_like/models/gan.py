r"""The generative adversarial network as a ready-made :class:`~pixyz_like.models.Model`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import optim

from ..distributions.distributions import Distribution
from ..distributions.special import EmpiricalDistribution
from ..losses.adversarial import AdversarialJensenShannon
from .model import Model

__all__ = ["GAN"]


class GAN(Model):
    r"""A generative adversarial network (Goodfellow et al. 2014).

    The generator ``p(x)`` (e.g. ``(generator * prior).marginalize_var("z")``) is trained against a
    critic ``d(t|x)`` that outputs the probability that ``x`` is data, through
    :class:`~pixyz_like.losses.AdversarialJensenShannon` between the data distribution
    :math:`p_{data}(x)` and ``p``. Each :meth:`train` step first updates the critic (its own
    optimizer, ``d_optimizer``), then the generator, and returns ``(generator loss, critic loss)``.

    Args:
        p: the generator, a distribution over the data variable(s) with no inputs.
        discriminator: the critic, a distribution ``d(t|x)`` whose output ends with a sigmoid.
        optimizer, optimizer_params: the generator's optimizer.
        d_optimizer, d_optimizer_params: the critic's optimizer.
        inverse_g_loss: the non-saturating generator loss (default) rather than the minimax one.
        clip_grad_norm, clip_grad_value, retain_graph, device: as for
            :class:`~pixyz_like.models.Model` (clipping applies to the generator); other keywords are
            passed on to it.

    >>> from torch import nn
    >>> from pixyz_like.distributions import Deterministic, Normal
    >>> class Generator(Deterministic):
    ...     def __init__(self):
    ...         super().__init__(var=["x"], cond_var=["z"], name="p")
    ...         self.net = nn.Linear(2, 3)
    ...     def forward(self, z):
    ...         return {"x": self.net(z)}
    >>> class Critic(Deterministic):
    ...     def __init__(self):
    ...         super().__init__(var=["t"], cond_var=["x"], name="d")
    ...         self.net = nn.Linear(3, 1)
    ...     def forward(self, x):
    ...         return {"t": torch.sigmoid(self.net(x))}
    >>> prior = Normal(loc=0., scale=1., var=["z"], features_shape=[2], name="p_{prior}")
    >>> model = GAN((Generator() * prior).marginalize_var("z"), Critic(),
    ...             optimizer_params={"lr": 2e-4}, d_optimizer_params={"lr": 2e-4})
    >>> print(model.loss_cls)
    mean(D_{JS}^{Adv} \left[p_{data}(x)||p(x) \right])
    >>> loss, d_loss = model.train({"x": torch.randn(8, 3)})
    >>> loss.requires_grad, d_loss.requires_grad
    (False, False)
    """

    #: Names of the values :meth:`train` returns, used by ``Model.fit`` for its logs.
    loss_names = ("loss", "d_loss")

    def __init__(
        self,
        p: Distribution,
        discriminator: Distribution,
        optimizer: type[optim.Optimizer] = optim.Adam,
        optimizer_params: Mapping[str, Any] | None = None,
        d_optimizer: type[optim.Optimizer] = optim.Adam,
        d_optimizer_params: Mapping[str, Any] | None = None,
        clip_grad_norm: float | None = None,
        clip_grad_value: float | None = None,
        retain_graph: bool = False,
        device: str | torch.device | None = None,
        inverse_g_loss: bool = True,
        **model_options: Any,
    ) -> None:
        p_data = EmpiricalDistribution(p.var)
        loss = AdversarialJensenShannon(p_data, p, discriminator, optimizer=d_optimizer,
                                        optimizer_params=d_optimizer_params, inverse_g_loss=inverse_g_loss)
        self.p = p
        self.discriminator = discriminator
        # Model's own parameters, in its order: (loss, test_loss, distributions, optimizer, ...).
        super().__init__(loss, loss, [p], optimizer, optimizer_params, clip_grad_norm,
                         clip_grad_value, retain_graph, device, **model_options)

    def _refuse_discriminator_option(self, where: str, options: Mapping[str, Any]) -> None:
        if "discriminator" in options:
            raise TypeError(f"{where}: the critic is trained by the model itself; do not pass discriminator=")

    def train(self, train_x_dict: Mapping[str, Any] | None = None, adversarial_loss: bool = True,
              **options: Any) -> Any:
        """One step of the critic (when ``adversarial_loss``), then one of the generator.

        Returns ``(loss, d_loss)``, both detached, or ``loss`` alone when ``adversarial_loss=False``.
        """
        self._refuse_discriminator_option("GAN.train()", options)
        self._check_options("GAN.train()", self.loss_cls, options)
        x_dict = self._to_device(train_x_dict)
        d_loss = None
        if adversarial_loss:
            d_options = {k: v for k, v in options.items() if k == "batch_n"}
            adversarial: Any = self.loss_cls  # an adversarial loss: it steps the critic itself
            d_loss = adversarial.loss_train(x_dict, **d_options)
        loss = super().train(x_dict, **options)
        return loss if d_loss is None else (loss, d_loss)

    def test(self, test_x_dict: Mapping[str, Any] | None = None, adversarial_loss: bool = True,
             **options: Any) -> Any:
        """The generator's loss (and the critic's, when ``adversarial_loss``), without gradients."""
        self._refuse_discriminator_option("GAN.test()", options)
        x_dict = self._to_device(test_x_dict)
        loss = super().test(x_dict, **options)
        if not adversarial_loss:
            return loss
        d_options = {k: v for k, v in options.items() if k == "batch_n"}
        adversarial: Any = self.test_loss_cls
        return loss, adversarial.loss_test(x_dict, **d_options)
