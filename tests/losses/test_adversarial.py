"""Adversarial divergences: the critics learn, and their estimates reach the closed forms."""

import math

import pytest
import torch
from torch import nn

from pixyz_like.distributions import Deterministic, EmpiricalDistribution, Normal
from pixyz_like.errors import GraphError, ParameterError
from pixyz_like.losses import (
    AdversarialJensenShannon,
    AdversarialKullbackLeibler,
    AdversarialWassersteinDistance,
)

# 2 JS[N(1,1) || N(-1,1)] - 2 log 2, by numerical integration (scipy.integrate.quad).
JS_TERM = -0.7126327204262177


class Critic(Deterministic):
    """A logistic-regression critic: optimal for two Gaussians with equal variances (linear log ratio)."""

    def __init__(self, var="x", sigmoid=True):
        super().__init__(var=["t"], cond_var=[var], name="d")
        self.net = nn.Linear(1, 1)
        self.sigmoid = sigmoid
        self.var_name = var

    def forward(self, **inputs):
        y = self.net(inputs[self.var_name])
        return {"t": torch.sigmoid(y) if self.sigmoid else y}


class Generator(Deterministic):
    def __init__(self):
        super().__init__(var=["x"], cond_var=["z"], name="p")
        self.net = nn.Linear(1, 1)

    def forward(self, z):
        return {"x": self.net(z)}


def normal(loc, name, var="x"):
    return Normal(loc=float(loc), scale=1.0, var=[var], features_shape=[1], name=name)


def data(n, loc=1.0):
    return {"x": torch.randn(n, 1) + loc}


def train_critic(loss, steps, batch=256, **options):
    losses = [loss.loss_train(data(batch), **options).item() for _ in range(steps)]
    return losses


@pytest.mark.parametrize("inverse_g_loss", [True, False])
def test_jensen_shannon_critic_learns(inverse_g_loss):
    loss = AdversarialJensenShannon(EmpiricalDistribution(["x"]), normal(-1, "q"), Critic(),
                                    optimizer_params={"lr": 0.05}, inverse_g_loss=inverse_g_loss)
    with torch.no_grad():
        loss.d.net.weight.fill_(-1.0)  # start wrong: the critic prefers q
    first = loss.loss_test(data(4000)).item()
    train_critic(loss, 300)
    last = loss.loss_test(data(4000)).item()
    assert last < first - 0.5
    # At the optimum the critic's loss is -(2 JS - 2 log 2).
    assert last == pytest.approx(-JS_TERM, abs=0.03)
    # Accuracy near the Bayes rate Phi(1) = 0.841 on fresh samples of both distributions.
    with torch.no_grad():
        xp, xq = torch.randn(4000, 1) + 1, torch.randn(4000, 1) - 1
        right_p = (loss.d.forward(x=xp)["t"] > 0.5).float().mean()
        right_q = (loss.d.forward(x=xq)["t"] < 0.5).float().mean()
        acc = 0.5 * (right_p + right_q)
    assert acc.item() > 0.82
    if not inverse_g_loss:  # the minimax generator loss is the critic's objective itself
        assert loss.eval(data(20000)).item() == pytest.approx(JS_TERM, abs=0.03)


def test_kullback_leibler_estimate_reaches_the_closed_form():
    # KL[N(1,1) || N(-1,1)] = 2.
    loss = AdversarialKullbackLeibler(normal(1, "p"), normal(-1, "q"), Critic(), optimizer_params={"lr": 0.05})
    before = loss.loss_test(batch_n=4000).item()
    train_critic(loss, 300, batch_n=256)
    assert loss.loss_test(batch_n=4000).item() < before
    assert loss.eval(batch_n=20000).item() == pytest.approx(2.0, abs=0.1)


def test_wasserstein_critic_is_clipped_and_estimates_the_distance():
    # W1[N(1,1), N(0,1)] = 1; a linear critic with |w| <= c reaches c * 1.
    c = 0.01
    loss = AdversarialWassersteinDistance(EmpiricalDistribution(["x"]), normal(0, "q"), Critic(sigmoid=False),
                                          clip_value=c, optimizer_params={"lr": 0.01})
    losses = train_critic(loss, 100)
    assert losses[-1] < losses[0]
    assert max(p.abs().max().item() for p in loss.d.parameters()) <= c
    assert loss.d.net.weight.item() == pytest.approx(c)
    assert loss.eval(data(50000)).item() == pytest.approx(c, rel=0.15)


def test_critic_step_leaves_the_generator_alone_and_generator_step_trains_it():
    gen = Generator()
    prior = normal(0, "p_{prior}", var="z")
    p = (gen * prior).marginalize_var("z")
    loss = AdversarialJensenShannon(EmpiricalDistribution(["x"]), p, Critic())
    before = [w.detach().clone() for w in gen.parameters()]
    loss.loss_train(data(32))
    assert all(w.grad is None for w in gen.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, gen.parameters()))
    loss.eval(data(32)).backward()
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in gen.parameters())


def test_loss_test_changes_nothing_and_restores_mode():
    loss = AdversarialJensenShannon(EmpiricalDistribution(["x"]), normal(-1, "q"), Critic())
    loss.d.eval()
    state = {k: v.clone() for k, v in loss.d.state_dict().items()}
    value = loss.loss_test(data(16))
    assert not value.requires_grad
    assert not loss.d.training
    assert all(torch.equal(state[k], v) for k, v in loss.d.state_dict().items())
    loss.loss_train(data(16))
    assert not loss.d.training  # loss_train restores the mode it found


def test_printing():
    pd = EmpiricalDistribution(["x"])
    q = normal(0, "p")
    assert str(AdversarialJensenShannon(pd, q, Critic())) == (
        r"mean(D_{JS}^{Adv} \left[p_{data}(x)||p(x) \right])")
    assert str(AdversarialKullbackLeibler(q, pd, Critic())) == (
        r"mean(D_{KL}^{Adv} \left[p(x)||p_{data}(x) \right])")
    assert str(AdversarialWassersteinDistance(pd, q, Critic(sigmoid=False))) == (
        r"mean(W^{Adv} \left(p_{data}(x), p(x) \right))")


def test_errors():
    pd = EmpiricalDistribution(["x"])
    loss = AdversarialJensenShannon(pd, normal(0, "p"), Critic(sigmoid=False))
    with pytest.raises(ParameterError, match="sigmoid"):
        with torch.no_grad():
            loss.d.net.bias.fill_(5.0)  # outputs far outside [0, 1]
        loss.eval(data(4))
    with pytest.raises(GraphError, match="critic"):
        AdversarialJensenShannon(pd, normal(0, "p"), Critic(var="y"))
    with pytest.raises(TypeError, match="unknown option"):
        loss.loss_train(data(4), discriminator=False)
    assert math.isfinite(AdversarialWassersteinDistance(pd, normal(0, "p"), Critic(sigmoid=False)).eval(data(4)).item())
