"""Must-hold 2 of the core issue: the numbers are right."""

import torch
import torch.distributions as td
from torch import nn

from pixyz_like.distributions import Normal
from pixyz_like.losses import Expectation, KullbackLeibler, LogProb


def _normal_pair():
    q = Normal(loc="mu", scale="sigma", var=["z"], cond_var=["mu", "sigma"], name="q")
    p = Normal(loc=torch.linspace(-1, 1, 5), scale=torch.linspace(0.5, 2.0, 5), var=["z"], name="p")
    x = {"mu": torch.randn(7, 5), "sigma": torch.rand(7, 5) + 0.3}
    return q, p, x


def test_analytic_kl_equals_torch_summed_over_features():
    q, p, x = _normal_pair()
    ours = KullbackLeibler(q, p).eval(x)
    ref = td.kl_divergence(td.Normal(x["mu"], x["sigma"]), td.Normal(p.loc, p.scale)).sum(-1)
    assert ours.shape == (7,)
    torch.testing.assert_close(ours, ref)


def test_monte_carlo_kl_within_one_percent_with_10000_samples():
    q, p, x = _normal_pair()
    x = {"mu": x["mu"][:2] + 2.0, "sigma": x["sigma"][:2]}  # a KL well away from 0
    exact = KullbackLeibler(q, p).eval(x)
    mc = KullbackLeibler(q, p, analytical=False, sample_shape=[10000]).eval(x)
    assert torch.all((mc - exact).abs() / exact < 0.01), (mc, exact)


def test_joint_log_prob_is_sum_of_factors():
    prior = Normal(loc=0., scale=1., var=["z"], features_shape=[3], name="p_prior")
    lik = Normal(loc="z", scale=0.5, var=["x"], cond_var=["z"], name="p")
    joint = lik * prior
    s = joint.sample(batch_n=6)
    total = joint.get_log_prob(s)
    ref = td.Normal(0., 1.).log_prob(s["z"]).sum(-1) + td.Normal(s["z"], 0.5).log_prob(s["x"]).sum(-1)
    torch.testing.assert_close(total, ref)
    torch.testing.assert_close(total, prior.get_log_prob(s) + lik.get_log_prob(s))


class CountingNormal(Normal):
    """q(z|x) that counts how often its network runs and on how many rows."""

    def __init__(self):
        super().__init__(var=["z"], cond_var=["x"], name="q")
        self.net = nn.Linear(3, 4)
        self.calls = []

    def forward(self, x):
        self.calls.append(x.shape[0])
        h = self.net(x)
        return {"loc": h[:, :2], "scale": nn.functional.softplus(h[:, 2:])}


class CountingDecoder(Normal):
    def __init__(self):
        super().__init__(var=["x"], cond_var=["z"], name="p")
        self.net = nn.Linear(2, 3)
        self.calls = []

    def forward(self, z):
        self.calls.append(z.shape[0])
        return {"loc": self.net(z), "scale": torch.ones(1)}


def test_expectation_averages_S_draws_with_one_network_call_each():
    q, p = CountingNormal(), CountingDecoder()
    x = torch.randn(5, 3)
    S = 100
    loss = Expectation(q, LogProb(p), sample_shape=[S])
    value = loss.eval({"x": x})
    assert value.shape == (5,)
    assert q.calls == [5], "the encoder runs once, on the batch"
    assert p.calls == [S * 5], "the decoder runs once, on the S draws folded into the batch"
    # The average of S draws: reproduce it by hand with the same random stream.
    torch.manual_seed(1)
    v1 = loss.eval({"x": x})
    torch.manual_seed(1)
    params = q.get_params({"x": x})
    z = params["loc"] + params["scale"] * torch.randn(S, 5, 2)
    ref = td.Normal(p.net(z), 1.0).log_prob(x).sum(-1).mean(0)
    torch.testing.assert_close(v1, ref)


def test_expectation_with_sample_shape_reduces_variance():
    q, p = CountingNormal(), CountingDecoder()
    x = torch.randn(4, 3)
    few = torch.stack([Expectation(q, LogProb(p), sample_shape=[1]).eval({"x": x}) for _ in range(200)])
    many = torch.stack([Expectation(q, LogProb(p), sample_shape=[50]).eval({"x": x}) for _ in range(200)])
    # The mean of 50 draws has about 1/50 the variance of one draw.
    assert (many.var(0) < few.var(0) / 10).all()
    torch.testing.assert_close(many.mean(0), few.mean(0), atol=0.5, rtol=0.05)
