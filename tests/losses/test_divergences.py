"""KullbackLeibler: analytical=True/False/"auto", checked against torch and the chain rule; weighted terms."""

import math

import pytest
import torch

from pixyz_like.distributions import Bernoulli, Categorical, Normal
from pixyz_like.errors import NotDefinedError, ShapeError, VariableMismatchError
from pixyz_like.losses import Expectation, KullbackLeibler, Parameter


def encoder():
    return Normal(loc="x", scale=0.5, var=["z"], cond_var=["x"], name="q")


def prior():
    return Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[2], name="p_{prior}")


FAMILY_PAIRS = [
    (lambda: Normal(loc=torch.tensor([0.3, -1.0]), scale=torch.tensor([0.5, 2.0]), var=["z"], name="q"),
     lambda: Normal(loc=torch.tensor([0.0, 0.0]), scale=torch.tensor([1.0, 1.0]), var=["z"], name="p"),
     lambda: torch.distributions.Normal(torch.tensor([0.3, -1.0]), torch.tensor([0.5, 2.0])),
     lambda: torch.distributions.Normal(torch.zeros(2), torch.ones(2))),
    (lambda: Bernoulli(probs=torch.tensor([0.2, 0.7]), var=["z"], name="q"),
     lambda: Bernoulli(probs=torch.tensor([0.5, 0.4]), var=["z"], name="p"),
     lambda: torch.distributions.Bernoulli(torch.tensor([0.2, 0.7])),
     lambda: torch.distributions.Bernoulli(torch.tensor([0.5, 0.4]))),
    (lambda: Categorical(probs=torch.tensor([0.2, 0.3, 0.5]), var=["z"], name="q"),
     lambda: Categorical(probs=torch.tensor([0.6, 0.3, 0.1]), var=["z"], name="p"),
     lambda: torch.distributions.Categorical(torch.tensor([0.2, 0.3, 0.5])),
     lambda: torch.distributions.Categorical(torch.tensor([0.6, 0.3, 0.1]))),
]


@pytest.mark.parametrize("pair", FAMILY_PAIRS, ids=["Normal", "Bernoulli", "Categorical"])
def test_auto_takes_the_closed_form_of_two_families(pair):
    make_q, make_p, torch_q, torch_p = pair
    q, p = make_q(), make_p()
    kl = KullbackLeibler(q, p, analytical="auto")
    assert kl.analytical is True
    assert str(kl) == r"D_{KL} \left[q(z)||p(z) \right]"
    expected = torch.distributions.kl_divergence(torch_q(), torch_p()).sum()
    torch.testing.assert_close(kl.eval().sum(), expected)
    torch.testing.assert_close(kl.eval(), KullbackLeibler(q, p).eval())


def test_auto_falls_back_to_monte_carlo_for_joints():
    # KL between two joints with the same conditional: the chain rule leaves the KL of the roots,
    # KL[N(0,1) || N(1,1)] = 0.5 per dimension.
    def joint(shift, name):
        root = Normal(loc=float(shift), scale=1.0, var=["z"], features_shape=[1], name=name)
        j = Normal(loc="z", scale=1.0, var=["x"], cond_var=["z"], name=name) * root
        j.name = name
        return j

    a, b = joint(0.0, "q"), joint(1.0, "p")
    kl = KullbackLeibler(a, b, analytical="auto", sample_shape=[40000])
    assert kl.analytical is False
    assert str(kl) == r"\mathbb{E}_{q(x,z)} \left[\log q(x,z) - \log p(x,z) \right]"
    value = kl.eval()
    # Per-sample std of the log ratio is 1: 4 standard errors = 0.02.
    assert value.item() == pytest.approx(0.5, abs=0.02)


def test_analytical_true_without_closed_form_fails_when_evaluated_not_when_built():
    joint = Normal(loc="z", scale=1.0, var=["x"], cond_var=["z"]) * prior()
    kl = KullbackLeibler(joint, joint)  # programs build KLs they never evaluate: no error yet
    with pytest.raises(NotDefinedError, match="analytical='auto'"):
        kl.eval({"x": torch.zeros(3, 2), "z": torch.zeros(3, 2)})
    with pytest.raises(TypeError, match="analytical"):
        KullbackLeibler(encoder(), prior(), analytical="yes")


def test_closed_form_kl_pairs_differently_named_variables_in_order():
    # A world model compares a posterior over s_post with a prior over s_prior (Pixyz computes it).
    post = Normal(loc="x", scale=0.5, var=["s_post"], cond_var=["x"], name="q")
    other = Normal(loc=0.0, scale=1.0, var=["s_prior"], features_shape=[2], name="p")
    x = torch.randn(4, 2)
    got = KullbackLeibler(post, other).eval({"x": x})
    want = torch.distributions.kl_divergence(
        torch.distributions.Normal(x, 0.5), torch.distributions.Normal(torch.zeros(2), 1.0)
    ).sum(-1)
    torch.testing.assert_close(got, want)


def test_kl_refuses_what_it_cannot_pair():
    with pytest.raises(VariableMismatchError):  # Monte Carlo scores p's samples with q: same names needed
        KullbackLeibler(encoder(), Normal(loc=0.0, scale=1.0, var=["w"], features_shape=[2]), analytical=False)
    two = Normal(loc=0.0, scale=1.0, var=["a"], features_shape=[2]) * Normal(loc=0.0, scale=1.0, var=["b"])
    with pytest.raises(VariableMismatchError):
        KullbackLeibler(encoder(), two)


def test_closed_form_kl_with_mismatched_features_is_a_shape_error():
    wide = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[3], name="p_{wide}")
    kl = KullbackLeibler(encoder(), wide)
    with pytest.raises(ShapeError) as info:
        kl.eval({"x": torch.zeros(4, 2)})
    assert "q(z|x)" in str(info.value) and "p_{wide}(z)" in str(info.value)


def test_monte_carlo_agrees_with_the_closed_form():
    x = torch.randn(4, 2)
    exact = KullbackLeibler(encoder(), prior()).eval({"x": x})
    mc = KullbackLeibler(encoder(), prior(), analytical=False, sample_shape=[20000]).eval({"x": x})
    torch.testing.assert_close(mc, exact, atol=0.05, rtol=0)


def test_weighted_kl_prints_and_follows_the_fed_weight():
    q, p_prior = encoder(), prior()
    decoder = Normal(loc="z", scale=1.0, var=["x"], cond_var=["z"], name="p")
    beta = Parameter("beta")
    reconstruction = -Expectation(q, decoder.log_prob())
    kl = KullbackLeibler(q, p_prior)
    loss = (reconstruction + beta * kl).mean()
    assert str(loss) == (
        r"mean \left(- \mathbb{E}_{q(z|x)} \left[\log p(x|z) \right] "
        r"+ \beta D_{KL} \left[q(z|x)||p_{prior}(z) \right] \right)"
    )
    assert set(loss.input_var) == {"x", "beta"}
    x = torch.randn(5, 2)
    kl_value = kl.eval({"x": x})
    # The same noise for both evaluations: the difference is exactly (beta1 - beta0) * mean KL.
    torch.manual_seed(3)
    at_zero = loss.eval({"x": x, "beta": 0.0})
    torch.manual_seed(3)
    at_half = loss.eval({"x": x, "beta": torch.tensor(0.5)})
    torch.testing.assert_close(at_half - at_zero, 0.5 * kl_value.mean())
    # A schedule is just a different value fed at each step.
    values = [loss.eval({"x": x, "beta": b}).item() for b in (0.0, 0.5, 1.0)]
    assert len(set(values)) == 3 and math.isfinite(sum(values))
