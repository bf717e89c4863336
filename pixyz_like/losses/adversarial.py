r"""Divergences estimated by a trained critic (discriminator): the losses of adversarial training.

Each loss holds a critic ``d`` (a distribution, usually a
:class:`~pixyz_like.distributions.Deterministic` ``d(t|x)``) and its own optimizer. ``eval`` gives the
generator's loss; ``eval(..., discriminator=True)`` the critic's; ``loss_train`` makes one optimizer
step of the critic and ``loss_test`` evaluates it. References: Goodfellow et al. 2014 (GAN),
Kim & Mnih 2018 (density-ratio KL), Arjovsky et al. 2017 (WGAN).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import optim

from .._context import EvalContext
from .._options import check_options
from ..distributions.distributions import Distribution
from ..distributions.protocol import REPARAM
from ..distributions.special import EmpiricalDistribution
from ..errors import GraphError, ParameterError, ShapeError
from ._two_sample import batch_size, check_pair, draw_all, draw_pair
from .losses import Divergence

__all__ = [
    "AdversarialLoss",
    "AdversarialJensenShannon",
    "AdversarialKullbackLeibler",
    "AdversarialWassersteinDistance",
]


def _is_data(p: Distribution) -> bool:
    return isinstance(p, EmpiricalDistribution)


class AdversarialLoss(Divergence):
    r"""Base of the critic-based divergences between ``p`` and ``q``; see the subclasses.

    Subclasses implement ``d_loss(y_p, y_q)`` (minimised by the critic) and ``g_loss(y_p, y_q)``
    (the divergence estimate minimised by the generator) on the critic's outputs, and set
    ``_symbol_text``. For instance the least-squares GAN (Mao et al. 2017):

    >>> from torch import nn
    >>> from pixyz_like.distributions import Deterministic, EmpiricalDistribution, Normal
    >>> class LeastSquares(AdversarialLoss):
    ...     _symbol_text = "D_{LS}^{Adv}"
    ...     def d_loss(self, y_p, y_q):  # critic: 1 on p, 0 on q
    ...         return ((y_p - 1) ** 2).mean() + (y_q ** 2).mean()
    ...     def g_loss(self, y_p, y_q):  # generator q: make the critic say 1
    ...         return ((y_q - 1) ** 2).mean()
    >>> class Critic(Deterministic):
    ...     def __init__(self):
    ...         super().__init__(var=["t"], cond_var=["x"], name="d")
    ...         self.net = nn.Linear(2, 1)
    ...     def forward(self, x):
    ...         return {"t": self.net(x)}
    >>> q = Normal(loc=0., scale=1., var=["x"], features_shape=[2], name="q")
    >>> loss = LeastSquares(EmpiricalDistribution(["x"]), q, Critic())
    >>> print(loss)
    mean(D_{LS}^{Adv} \left[p_{data}(x)||q(x) \right])
    >>> loss.loss_train({"x": torch.randn(16, 2)}).shape
    torch.Size([])
    """

    _options = ("discriminator", "batch_n")
    _symbol_text = ""

    def __init__(self, p: Distribution, q: Distribution, discriminator: Distribution,
                 optimizer: type[optim.Optimizer] = optim.Adam,
                 optimizer_params: Mapping[str, Any] | None = None) -> None:
        owner = type(self).__name__
        check_pair(owner, p, q, single=False)
        missing = [v for v in discriminator.input_var if v not in p.var]
        if missing or not discriminator.input_var or len(discriminator.var) != 1:
            raise GraphError(
                f"{owner}: the critic {discriminator.prob_text} must read variables of {p.var} and output one "
                f"variable, but it needs {discriminator.input_var} and outputs {discriminator.var}"
            )
        super().__init__(p.input_var + q.input_var)
        self.p = p
        self.q = q
        self.d = discriminator
        params = list(discriminator.parameters())
        if not params:
            raise ValueError(f"{owner}: the critic {discriminator.prob_text} has no trainable parameters")
        self.d_optimizer = optimizer(params, **dict(optimizer_params or {}))

    def _latex(self) -> str:
        # mean(...) with plain brackets, as Pixyz prints an adversarial loss
        return f"mean({self._symbol_text} \\left[{self.p.prob_text}||{self.q.prob_text} \\right])"

    # ------------------------------------------------------------------ maths (override)
    def d_loss(self, y_p: torch.Tensor, y_q: torch.Tensor) -> torch.Tensor:
        """The critic's loss given its outputs on samples of ``p`` and of ``q``."""
        raise NotImplementedError

    def g_loss(self, y_p: torch.Tensor, y_q: torch.Tensor) -> torch.Tensor:
        """The divergence estimate (the generator's loss) given the critic's outputs."""
        raise NotImplementedError

    def _check_output(self, y: torch.Tensor) -> torch.Tensor:
        return y

    # ------------------------------------------------------------------ evaluation
    def _critic(self, sample: dict[str, torch.Tensor], ctx: EvalContext) -> torch.Tensor:
        y = self.d._sample({v: sample[v] for v in self.d.input_var}, ctx=ctx, spec=REPARAM)
        return self._check_output(y[self.d.var[0]])

    def _samples(
        self, x_dict: dict[str, Any], ctx: EvalContext, detach: bool
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        sp, sq = draw_pair(type(self).__name__, self.p, self.q, x_dict, ctx)
        for v in self.d.input_var:
            if sp[v].shape[1:] != sq[v].shape[1:]:
                raise ShapeError(
                    f"{type(self).__name__}: samples of {v!r} from {self.p.prob_text} have shape "
                    f"{tuple(sp[v].shape)} and from {self.q.prob_text} {tuple(sq[v].shape)}; their features must match"
                )
        if detach:
            # The critic's step must not push gradients into the generator.
            sp = {k: v.detach() for k, v in sp.items()}
            sq = {k: v.detach() for k, v in sq.items()}
        return sp, sq

    def _eval(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
        critic_step = bool(ctx.options.get("discriminator", False))
        sp, sq = self._samples(x_dict, ctx, detach=critic_step)
        y_p, y_q = self._critic(sp, ctx), self._critic(sq, ctx)
        if critic_step:
            return self.d_loss(y_p, y_q), {}
        return self.g_loss(y_p, y_q), {}

    # ------------------------------------------------------------------ critic training
    def loss_train(self, train_x_dict: Mapping[str, Any] | None = None, **options: Any) -> torch.Tensor:
        """One optimizer step of the critic on a batch; returns its loss (detached)."""
        check_options(f"{type(self).__name__}.loss_train()", options, ("batch_n",))
        was_training = self.d.training
        self.d.train()
        try:
            self.d_optimizer.zero_grad(set_to_none=True)
            loss = self.eval(train_x_dict, discriminator=True, **options)
            loss.backward()
            self.d_optimizer.step()
            self._after_step()
        finally:
            self.d.train(was_training)
        return loss.detach()

    def _after_step(self) -> None:
        return None

    def loss_test(self, test_x_dict: Mapping[str, Any] | None = None, **options: Any) -> torch.Tensor:
        """The critic's loss on a batch, without gradients and with the critic in eval mode."""
        check_options(f"{type(self).__name__}.loss_test()", options, ("batch_n",))
        was_training = self.d.training
        self.d.eval()
        try:
            with torch.no_grad():
                return self.eval(test_x_dict, discriminator=True, **options)
        finally:
            self.d.train(was_training)


class _ProbabilityCritic(AdversarialLoss):
    """A critic that outputs the probability that its input came from ``p`` (ends with a sigmoid)."""

    def _check_output(self, y: torch.Tensor) -> torch.Tensor:
        if y.numel() and (torch.isnan(y).any() or y.min() < 0 or y.max() > 1):
            raise ParameterError(
                f"{type(self).__name__}: the critic {self.d.prob_text} must output probabilities in [0, 1] "
                f"(end its network with a sigmoid); got values in [{y.min().item():.3g}, {y.max().item():.3g}]"
            )
        return y

    def d_loss(self, y_p: torch.Tensor, y_q: torch.Tensor) -> torch.Tensor:
        r"""Binary cross-entropy of a classifier telling samples of ``p`` (label 1) from ``q`` (label 0)."""
        return F.binary_cross_entropy(y_p, torch.ones_like(y_p)) + F.binary_cross_entropy(y_q, torch.zeros_like(y_q))


class AdversarialJensenShannon(_ProbabilityCritic):
    r"""The Jensen-Shannon divergence estimated by a classifier (Goodfellow et al. 2014).

    The critic :math:`d(x)\in[0,1]` is trained to tell samples of ``p`` (label 1) from samples of
    ``q`` (label 0), minimising the binary cross-entropy. At its optimum
    :math:`d^* = p/(p+q)` and

    .. math:: \mathbb{E}_{p}[\log d^*] + \mathbb{E}_{q}[\log(1-d^*)] = 2 D_{JS}[p\|q] - 2\log 2.

    The generator's loss with ``inverse_g_loss=False`` is this quantity (the minimax game); with
    ``inverse_g_loss=True`` (default) it is the non-saturating form
    :math:`-\mathbb{E}_{p}[\log (1-d)] - \mathbb{E}_{q}[\log d]`, whose gradients do not vanish when the
    critic wins. Terms of a data distribution (:class:`~pixyz_like.distributions.EmpiricalDistribution`)
    carry no gradient. The value is a scalar (a batch mean).

    >>> from torch import nn
    >>> from pixyz_like.distributions import Deterministic, EmpiricalDistribution, Normal
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
    >>> p = (Generator() * prior).marginalize_var("z")
    >>> loss = AdversarialJensenShannon(EmpiricalDistribution(["x"]), p, Critic())
    >>> print(loss)
    mean(D_{JS}^{Adv} \left[p_{data}(x)||p(x) \right])
    >>> data = {"x": torch.randn(8, 3)}
    >>> loss.eval(data).shape, loss.eval(data, discriminator=True).shape
    (torch.Size([]), torch.Size([]))
    >>> critic_loss = loss.loss_train(data)  # one step of the critic
    """

    _symbol_text = "D_{JS}^{Adv}"

    def __init__(self, p: Distribution, q: Distribution, discriminator: Distribution,
                 optimizer: type[optim.Optimizer] = optim.Adam,
                 optimizer_params: Mapping[str, Any] | None = None, inverse_g_loss: bool = True) -> None:
        super().__init__(p, q, discriminator, optimizer=optimizer, optimizer_params=optimizer_params)
        self.inverse_g_loss = inverse_g_loss

    def g_loss(self, y_p: torch.Tensor, y_q: torch.Tensor) -> torch.Tensor:
        if self.inverse_g_loss:
            # Swapped labels: -E_p[log(1 - d)] - E_q[log d].
            lp = F.binary_cross_entropy(y_p, torch.zeros_like(y_p))
            lq = F.binary_cross_entropy(y_q, torch.ones_like(y_q))
        else:
            # E_p[log d] + E_q[log(1 - d)], i.e. minus the critic's loss.
            lp = -F.binary_cross_entropy(y_p, torch.ones_like(y_p))
            lq = -F.binary_cross_entropy(y_q, torch.zeros_like(y_q))
        if _is_data(self.p):
            lp = lp.detach()
        if _is_data(self.q):
            lq = lq.detach()
        return lp + lq


class AdversarialKullbackLeibler(_ProbabilityCritic):
    r"""The KL divergence :math:`D_{KL}[p\|q]` estimated by the density-ratio trick (Kim & Mnih 2018).

    The critic is trained as in :class:`AdversarialJensenShannon` (``p`` labelled 1, ``q`` labelled 0),
    so at its optimum :math:`d^*/(1-d^*) = p/q` and

    .. math:: D_{KL}[p\|q] = \mathbb{E}_{p}\left[\log\frac{p}{q}\right]
              \approx \mathbb{E}_{p}\left[\log d(x) - \log(1 - d(x))\right].

    Only samples of ``p`` enter the estimate (a scalar batch mean); minimise it to bring ``p``
    towards ``q``. See :class:`AdversarialJensenShannon` for how the critic is set up.

    >>> from torch import nn
    >>> from pixyz_like.distributions import Deterministic, Normal
    >>> class Critic(Deterministic):
    ...     def __init__(self):
    ...         super().__init__(var=["t"], cond_var=["z"], name="d")
    ...         self.net = nn.Linear(2, 1)
    ...     def forward(self, z):
    ...         return {"t": torch.sigmoid(self.net(z))}
    >>> q = Normal(loc="x", scale=1., var=["z"], cond_var=["x"], name="q")
    >>> prior = Normal(loc=0., scale=1., var=["z"], features_shape=[2], name="p_{prior}")
    >>> loss = AdversarialKullbackLeibler(q, prior, Critic())
    >>> print(loss)
    mean(D_{KL}^{Adv} \left[q(z|x)||p_{prior}(z) \right])
    >>> loss.eval({"x": torch.randn(8, 2)}).shape
    torch.Size([])
    """

    _symbol_text = "D_{KL}^{Adv}"

    def _eval(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
        if ctx.options.get("discriminator", False):
            return super()._eval(x_dict, ctx)
        n = batch_size(type(self).__name__, self.p, self.q, x_dict, ctx)
        y_p = self._critic(draw_all(self.p, x_dict, ctx, n), ctx)
        return self.g_loss(y_p, None), {}

    def g_loss(self, y_p: torch.Tensor, y_q: torch.Tensor | None = None) -> torch.Tensor:
        # log d - log(1 - d), with the logs clamped at -100 as binary_cross_entropy does.
        return (F.binary_cross_entropy(y_p, torch.zeros_like(y_p), reduction="none")
                - F.binary_cross_entropy(y_p, torch.ones_like(y_p), reduction="none")).mean()


class AdversarialWassersteinDistance(AdversarialJensenShannon):
    r"""The Wasserstein-1 distance in its dual form, with a weight-clipped critic (Arjovsky et al. 2017).

    .. math:: W(p, q) = \sup_{\|d\|_L \le 1} \mathbb{E}_{p}[d(x)] - \mathbb{E}_{q}[d(x)]

    The critic (any real output, no sigmoid) maximises the difference; after each of its steps its
    weights are clipped to ``[-clip_value, clip_value]`` to keep it (a multiple of) Lipschitz. The
    generator's loss is the estimate :math:`\mathbb{E}_p[d] - \mathbb{E}_q[d]` (a scalar), a data
    distribution's term carrying no gradient.

    >>> from torch import nn
    >>> from pixyz_like.distributions import Deterministic, EmpiricalDistribution, Normal
    >>> class Critic(Deterministic):
    ...     def __init__(self):
    ...         super().__init__(var=["t"], cond_var=["x"], name="d")
    ...         self.net = nn.Linear(3, 1)
    ...     def forward(self, x):
    ...         return {"t": self.net(x)}
    >>> p = Normal(loc=0., scale=1., var=["x"], features_shape=[3], name="p")
    >>> loss = AdversarialWassersteinDistance(EmpiricalDistribution(["x"]), p, Critic(), clip_value=0.01)
    >>> print(loss)
    mean(W^{Adv} \left(p_{data}(x), p(x) \right))
    >>> _ = loss.loss_train({"x": torch.randn(8, 3)})
    >>> max(w.abs().max().item() for w in loss.d.parameters()) <= 0.01
    True
    """

    _symbol_text = "W^{Adv}"

    def __init__(self, p: Distribution, q: Distribution, discriminator: Distribution,
                 clip_value: float | None = 0.01, **kwargs: Any) -> None:
        super().__init__(p, q, discriminator, **kwargs)
        if clip_value is not None and clip_value <= 0:
            raise ValueError(f"AdversarialWassersteinDistance: clip_value must be positive, got {clip_value}")
        self.clip_value = clip_value

    def _latex(self) -> str:
        return f"mean({self._symbol_text} \\left({self.p.prob_text}, {self.q.prob_text} \\right))"

    def _check_output(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def d_loss(self, y_p: torch.Tensor, y_q: torch.Tensor) -> torch.Tensor:
        return -(y_p.mean() - y_q.mean())

    def g_loss(self, y_p: torch.Tensor, y_q: torch.Tensor) -> torch.Tensor:
        if _is_data(self.p):
            y_p = y_p.detach()
        if _is_data(self.q):
            y_q = y_q.detach()
        return y_p.mean() - y_q.mean()

    def _after_step(self) -> None:
        if self.clip_value is None:
            return
        with torch.no_grad():
            for w in self.d.parameters():
                w.clamp_(-self.clip_value, self.clip_value)
