"""Gen-style traces: simulate, generate and importance sampling.

The exact log-marginal of a linear-Gaussian model is computed in closed form
(x ~ N(b, A A^T + s^2 I)) with torch.distributions.MultivariateNormal.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pixyz_like.distributions import Normal, from_module, generate, importance_sample, simulate
from pixyz_like.errors import GraphError, MissingVariableError, NotDefinedError

A = torch.tensor([[1.0, -0.5], [0.3, 0.8], [-0.7, 0.2]])
BIAS = torch.tensor([0.5, -1.0, 0.2])
SIGMA = 0.8


class Linear(Normal):
    def __init__(self):
        super().__init__(var=["x"], cond_var=["z"], name="p")

    def forward(self, z):
        return {"loc": z @ A.t() + BIAS, "scale": torch.full((z.shape[0], 3), SIGMA)}


def _joint():
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[2], name="p_{prior}")
    return Linear() * prior, prior


def _exact_log_px(x):
    cov = A @ A.t() + SIGMA**2 * torch.eye(3)
    return torch.distributions.MultivariateNormal(BIAS, covariance_matrix=cov).log_prob(x)


def test_simulate_scores_every_factor_and_the_joint():
    joint, prior = _joint()
    t = simulate(joint, batch_n=6)
    assert t.values["z"].shape == (6, 2) and t.values["x"].shape == (6, 3)
    torch.testing.assert_close(t.log_probs["z"], prior.get_log_prob(t.values))
    torch.testing.assert_close(t.log_probs["x"], Linear().get_log_prob(t.values))
    torch.testing.assert_close(t.score, joint.get_log_prob(t.values))
    assert set(t.choices) == {"x", "z"} and t.observed == ()
    assert torch.equal(t["x"], t.values["x"])


def test_generate_fixes_the_observed_and_weighs_by_their_density():
    joint, prior = _joint()
    x = torch.randn(4, 3)
    trace, log_w = generate(joint, observations={"x": x})
    assert torch.equal(trace.values["x"], x)
    torch.testing.assert_close(log_w, Linear().get_log_prob({"x": x, "z": trace.values["z"]}))
    torch.testing.assert_close(trace.score, joint.get_log_prob(trace.values))
    assert set(trace.choices) == {"z"}
    # observing the root: the child is drawn from p(x|z) at the observed z
    z = torch.full((2000, 2), 0.5)
    trace, log_w = generate(joint, observations={"z": z})
    torch.testing.assert_close(log_w, prior.get_log_prob({"z": z}))
    mean = trace.values["x"].mean(0)
    assert torch.allclose(mean, z[0] @ A.t() + BIAS, atol=4 * SIGMA / math.sqrt(2000))
    # nothing observed: weight 0
    _, log_w = generate(joint, batch_n=3)
    assert torch.equal(log_w, torch.zeros(3))


def test_importance_sampling_estimates_the_exact_log_marginal():
    joint, _ = _joint()
    torch.manual_seed(1)
    x = torch.tensor([[0.3, -0.8, 0.1], [1.5, 0.2, -1.0], [-0.5, -2.0, 1.0]])
    k = 20000
    result = importance_sample(joint, {"x": x}, k=k)
    assert result.log_weights.shape == (k, 3) and result.traces["z"].shape == (k, 3, 2)
    exact = _exact_log_px(x)
    # Monte Carlo error of log(mean w) by the delta method: std(w) / (sqrt(k) mean(w))
    w = (result.log_weights - result.log_weights.max(0).values).exp()
    se = w.std(0) / (math.sqrt(k) * w.mean(0))
    assert ((result.log_marginal - exact).abs() < 4 * se + 1e-4).all(), (result.log_marginal, exact, se)
    assert (se < 0.02).all()  # k is large enough for the check to mean something
    torch.testing.assert_close(result.weights.sum(0), torch.ones(3))


def test_a_plain_network_is_a_deterministic_factor_with_score_zero():
    net = nn.Linear(2, 2)
    f = from_module(net, var=["h"], cond_var=["z"], name="f")
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[2], name="p_{prior}")
    p = Normal(loc="h", scale=1.0, var=["x"], cond_var=["h"], name="p")
    joint = p * f * prior
    t = simulate(joint, batch_n=5)
    assert torch.equal(t.log_probs["h"], torch.zeros(5))
    torch.testing.assert_close(t.score, t.log_probs["x"] + t.log_probs["z"])
    torch.testing.assert_close(t.values["h"], net(t.values["z"]))
    assert "h" not in t.choices
    t.score.sum().backward()  # the network's parameters are trainable through the score
    assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0
    with pytest.raises(NotDefinedError, match="deterministic"):
        generate(joint, observations={"h": torch.zeros(5, 2)})


def test_inputs_of_a_conditional_joint():
    q_z = Normal(loc="y", scale=1.0, var=["z"], cond_var=["y"], name="q")
    p_x = Normal(loc="z", scale=1.0, var=["x"], cond_var=["z", "y"], name="p")
    joint = p_x * q_z
    y = torch.randn(4, 2)
    t = simulate(joint, {"y": y})
    assert torch.equal(t.values["y"], y) and t.values["x"].shape == (4, 2)
    torch.testing.assert_close(t.score, joint.get_log_prob(t.values))
    r = importance_sample(joint, {"x": torch.zeros(4, 2)}, k=7, inputs={"y": y})
    assert r.log_marginal.shape == (4,) and r.traces["y"].shape == (7, 4, 2)
    with pytest.raises(MissingVariableError):
        simulate(joint)


def test_named_errors():
    joint, _ = _joint()
    with pytest.raises(GraphError, match=r"\['w'\] are not variables"):
        generate(joint, observations={"w": torch.zeros(2, 1)})
    two = Normal(loc=0.0, scale=1.0, var=["a"], features_shape=[1])
    with pytest.raises(ValueError, match="positive integer"):
        importance_sample(joint, {"x": torch.zeros(2, 3)}, k=0)
    with pytest.raises(TypeError, match="Distribution"):
        simulate(lambda: None)
    assert simulate(two, batch_n=2).score.shape == (2,)
    pair = from_module(lambda z: (z + 1, z - 1), var=["a", "b"], cond_var=["z"]) * Normal(
        loc=0.0, scale=1.0, var=["z"], features_shape=[1])
    with pytest.raises(GraphError, match=r"observed at \['a'\] but not at \['b'\]"):
        generate(pair, observations={"a": torch.zeros(2, 1)})
