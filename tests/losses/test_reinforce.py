"""REINFORCE: the value is the plain Monte Carlo estimate, the gradient the score-function estimator."""

import math

import pytest
import torch
from torch import nn

from pixyz_like.distributions import Bernoulli, Normal
from pixyz_like.errors import NotDefinedError
from pixyz_like.losses import REINFORCE, Parameter


class LearnableBernoulli(Bernoulli):
    def __init__(self, logits):
        super().__init__(var=["x"], name="q", features_shape=[len(logits)])
        self.logits_ = nn.Parameter(torch.tensor(logits))

    def forward(self):
        return {"probs": torch.sigmoid(self.logits_).unsqueeze(0)}


class LearnableNormal(Normal):
    def __init__(self, loc, name="q"):
        super().__init__(var=["x"], name=name, features_shape=[len(loc)])
        self.mu = nn.Parameter(torch.tensor(loc))

    def forward(self):
        return {"loc": self.mu.unsqueeze(0), "scale": torch.ones(1, len(self.mu))}


P_PROBS = torch.tensor([0.3, 0.8, 0.5])


def target():
    return Bernoulli(probs=P_PROBS, var=["x"], name="p")


def test_value_is_the_expectation_of_f():
    q = LearnableBernoulli([0.0, 1.0, -1.0])
    loss = REINFORCE(q, target().log_prob(), sample_shape=[20000])
    qp = torch.sigmoid(q.logits_.detach())
    exact = (qp * P_PROBS.log() + (1 - qp) * (1 - P_PROBS).log()).sum()
    value = loss.eval()
    assert value.shape == (1,)
    # per-sample std of log p(x) is below 1.5 here: 4 standard errors ~ 0.04
    assert value.item() == pytest.approx(exact.item(), abs=0.04)


def test_baseline_changes_no_value():
    q = LearnableBernoulli([0.0, 1.0, -1.0])
    torch.manual_seed(1)
    plain = REINFORCE(q, target().log_prob(), sample_shape=[100]).eval()
    torch.manual_seed(1)
    with_b = REINFORCE(q, target().log_prob(), b=-2.0, sample_shape=[100]).eval()
    torch.testing.assert_close(plain, with_b)


def grad_estimates(loss, param, reps):
    out = []
    for _ in range(reps):
        param.grad = None
        loss.eval().sum().backward()
        out.append(param.grad.clone())
    return torch.stack(out)


def test_bernoulli_gradient_matches_the_exact_one():
    # d/dtheta_i E_q[log p(x)] = q_i (1 - q_i) (log p_i - log(1 - p_i)), q_i = sigmoid(theta_i).
    q = LearnableBernoulli([0.0, 1.0, -1.0])
    qp = torch.sigmoid(q.logits_.detach())
    exact = qp * (1 - qp) * (P_PROBS.log() - (1 - P_PROBS).log())
    grads = grad_estimates(REINFORCE(q, target().log_prob(), b=-2.0, sample_shape=[2000]), q.logits_, 20)
    se = grads.std(0) / math.sqrt(len(grads))
    assert ((grads.mean(0) - exact).abs() < 4 * se + 1e-3).all()


def test_baseline_reduces_the_variance():
    q = LearnableBernoulli([0.0, 1.0, -1.0])
    f = target().log_prob()
    no_b = grad_estimates(REINFORCE(q, f, sample_shape=[20]), q.logits_, 300)
    # A constant near E[f] (about -2) is a good baseline.
    with_b = grad_estimates(REINFORCE(q, f, b=-2.0, sample_shape=[20]), q.logits_, 300)
    assert (with_b.var(0) < 0.5 * no_b.var(0)).all()


def test_normal_gradient_and_f_own_parameters():
    # f(x) = log N(x; phi, 1): E_q f = -((mu - phi)^2 + 1)/2 - log sqrt(2 pi), so
    # d/dmu = phi - mu (score term only) and d/dphi = mu - phi (f's own gradient).
    q = LearnableNormal([1.0])
    f_dist = LearnableNormal([-0.5], name="p")
    loss = REINFORCE(q, f_dist.log_prob(), b=-2.0, sample_shape=[4000])
    mu_grads, phi_grads = [], []
    for _ in range(20):
        q.mu.grad = f_dist.mu.grad = None
        loss.eval().sum().backward()
        mu_grads.append(q.mu.grad.clone())
        phi_grads.append(f_dist.mu.grad.clone())
    mu_grads, phi_grads = torch.stack(mu_grads), torch.stack(phi_grads)
    se = mu_grads.std(0) / math.sqrt(20)
    assert (mu_grads.mean(0) - (-1.5)).abs().item() < 4 * se.item() + 1e-3
    se = phi_grads.std(0) / math.sqrt(20)
    assert (phi_grads.mean(0) - 1.5).abs().item() < 4 * se.item() + 1e-3


def test_conditional_distribution_one_value_per_data_point():
    q = Bernoulli(probs="y", var=["x"], cond_var=["y"], name="q")
    loss = REINFORCE(q, target().log_prob() * Parameter("w"), sample_shape=[8])
    value = loss.eval({"y": torch.full((5, 3), 0.5), "w": 2.0})
    assert value.shape == (5,)
    assert loss.input_var == ["y", "w"]


def test_reparam_is_refused_and_printing():
    q = LearnableNormal([0.0])
    with pytest.raises(NotDefinedError, match="Expectation"):
        REINFORCE(q, q.log_prob(), reparam=True)
    assert str(REINFORCE(q, target().log_prob())) == r"\mathbb{E}^{REINFORCE}_{q(x)} \left[\log p(x) \right]"
    assert str(REINFORCE(q, target().log_prob(), b=0.5)) == (
        r"\mathbb{E}^{REINFORCE, b = 0.5}_{q(x)} \left[\log p(x) \right]")
