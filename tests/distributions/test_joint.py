"""Products, renaming and marginals."""

import pytest
import torch
import torch.distributions as td
from torch import nn

from pixyz_like.distributions import Normal
from pixyz_like.errors import NotDefinedError

prior = Normal(loc=0., scale=1., var=["z"], features_shape=[2], name="p_prior")


class Decoder(Normal):
    def __init__(self):
        super().__init__(var=["x"], cond_var=["z", "c"], name="p")
        self.net = nn.Linear(4, 3)
        self.calls = []

    def forward(self, z, c):
        self.calls.append(z.shape[0])
        return {"loc": self.net(torch.cat([z, c], -1)), "scale": torch.ones(1)}


def test_topological_order_and_variables():
    dec = Decoder()
    joint = dec * prior
    assert joint.var == ["x", "z"] and joint.cond_var == ["c"] and joint.input_var == ["c"]
    assert [f.name for f in joint.factors()] == ["p_prior", "p"]
    assert (prior * dec).prob_factorized_text == "p(x|z,c)p_{prior}(z)"


@pytest.mark.parametrize("sample_shape", [(), (3,), (2, 3)])
def test_conditional_joint_sample_shape_applied_once(sample_shape):
    dec = Decoder()
    joint = dec * prior
    c = torch.randn(5, 2)
    out = joint.sample({"c": c}, sample_shape=sample_shape)
    assert out["z"].shape == torch.Size(sample_shape) + (5, 2)
    assert out["x"].shape == torch.Size(sample_shape) + (5, 3)
    n = torch.Size(sample_shape).numel()
    assert dec.calls == [n * 5], "one network call on the folded batch"
    lp = joint.get_log_prob({**out, "c": c})
    assert lp.shape == torch.Size(sample_shape) + (5,)


def test_observed_factor_keeps_given_value():
    dec = Decoder()
    joint = dec * prior
    z = torch.zeros(5, 2)
    out = joint.sample({"c": torch.randn(5, 2), "z": z})
    assert out["z"] is z


def test_replace_var_shares_networks_and_scores_identically():
    dec = Decoder()
    renamed = dec.replace_var(z="w")
    assert renamed.prob_text == "p(x|w,c)"
    c, z, x = torch.randn(4, 2), torch.randn(4, 2), torch.randn(4, 3)
    torch.testing.assert_close(renamed.get_log_prob({"w": z, "c": c, "x": x}),
                               dec.get_log_prob({"z": z, "c": c, "x": x}))
    joint = (dec * prior).replace_var(z="w")
    assert joint.var == ["x", "w"]
    s = joint.sample({"c": c})
    assert set(s) == {"x", "w", "c"}
    assert list(renamed.parameters())[0] is dec.net.weight


def test_marginalize_var_samples_without_the_variable():
    dec = Decoder()
    marginal = (dec * prior).marginalize_var("z")
    assert marginal.var == ["x"]
    s = marginal.sample({"c": torch.randn(4, 2)}, return_all=False)
    assert set(s) == {"x"}
    with pytest.raises(NotDefinedError, match="log_marginal"):
        marginal.get_log_prob({"x": torch.zeros(4, 3), "c": torch.zeros(4, 2)})


def test_joint_sample_mean_is_the_mean_of_the_last_factor():
    lik = Normal(loc="z", scale=3., var=["x"], cond_var=["z"], name="p")
    joint = lik * prior
    z = torch.randn(4, 2)
    torch.testing.assert_close(joint.sample_mean({"z": z}), z)
    torch.testing.assert_close(joint.sample_variance({"z": z}), torch.full((4, 2), 9.))


def test_joint_log_prob_against_torch_with_sample_dims():
    lik = Normal(loc="z", scale=0.5, var=["x"], cond_var=["z"], name="p")
    joint = lik * prior
    s = joint.sample(batch_n=3, sample_shape=[7])
    ref = td.Normal(0., 1.).log_prob(s["z"]).sum(-1) + td.Normal(s["z"], 0.5).log_prob(s["x"]).sum(-1)
    torch.testing.assert_close(joint.get_log_prob(s), ref)
