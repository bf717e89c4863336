"""Pixyz 0.3.3 defects in distributions, each shown on Pixyz itself and checked fixed here."""

from __future__ import annotations

import pixyz.distributions as pz
import pytest
import torch
import torch.distributions as td

from pixyz_like.distributions import (
    Categorical,
    ElementWiseProductOfNormal,
    MixtureModel,
    MixtureOfNormal,
    Multinomial,
    Normal,
    RelaxedCategorical,
)
from pixyz_like.errors import VariableMismatchError

PROBS = torch.tensor([0.2, 0.3, 0.5])


def test_relaxed_categorical_uses_the_concrete_density():
    vertex = torch.tensor([[0.0, 0.0, 1.0]])
    interior = torch.tensor([[0.1, 0.2, 0.7]])
    theirs = pz.RelaxedCategorical(var=["y"], probs=PROBS)  # temperature 0.1 by default
    torch.testing.assert_close(theirs.get_log_prob({"y": vertex}), torch.tensor([-1.2730]), atol=1e-4, rtol=0)
    ours = RelaxedCategorical(var=["y"], probs=PROBS, temperature=0.1)
    ref = td.RelaxedOneHotCategorical(torch.tensor(0.1), probs=PROBS)
    # In the interior of the simplex: torch's value, which Pixyz does not give.
    torch.testing.assert_close(ours.get_log_prob({"y": interior}), ref.log_prob(interior))
    assert not torch.allclose(theirs.get_log_prob({"y": interior}), ref.log_prob(interior))
    # At the vertex torch returns NaN (log 0 in the density); ours scores the nearest representable
    # interior point with torch's formula: finite, and not Pixyz's Bernoulli value.
    assert torch.isnan(ref.log_prob(vertex)).all()
    value = ours.get_log_prob({"y": vertex})
    tiny = torch.finfo(torch.float32).tiny
    torch.testing.assert_close(value, ref.log_prob(vertex.clamp_min(tiny)))
    assert torch.isfinite(value).all() and not torch.allclose(value, torch.tensor([-1.2730]), atol=1e-2)


def test_multinomial_honours_total_count():
    theirs = pz.Multinomial(total_count=5, var=["c"], probs=PROBS).sample(batch_n=20)["c"]
    assert (theirs.sum(-1) == 1).all()  # Pixyz draws one count, whatever total_count says
    ours = Multinomial(total_count=5, var=["c"], probs=PROBS)
    c = ours.sample(batch_n=20, sample_shape=(3,))["c"]
    assert (c.sum(-1) == 5).all()
    torch.testing.assert_close(ours.get_log_prob({"c": c}), td.Multinomial(5, probs=PROBS).log_prob(c))
    with pytest.raises(ValueError):  # and Pixyz cannot score counts that sum to 5
        pz.Multinomial(total_count=5, var=["c"], probs=PROBS).get_log_prob({"c": c[0]})


def test_sample_mean_is_the_mean_not_the_variance():
    pz_p = pz.Normal(var=["x"], cond_var=["z"], loc="z", scale=torch.tensor(3.0))
    z = torch.full((1, 2), 5.0)
    # Pixyz's graph-based sample_mean returns the variance (3^2) for a renamed distribution.
    torch.testing.assert_close(pz_p.replace_var(z="y").sample_mean({"y": z}), torch.full((1, 2), 9.0))
    p = Normal(var=["x"], cond_var=["z"], loc="z", scale=3.0)
    torch.testing.assert_close(p.replace_var(z="y").sample_mean({"y": z}), z)
    torch.testing.assert_close(p.replace_var(z="y").sample_variance({"y": z}), torch.full((1, 2), 9.0))
    # A joint's sample_mean is the mean of its last variable given (sampled or given) ancestors.
    prior = Normal(var=["z"], loc=torch.zeros(2), scale=torch.ones(2))
    joint = p * prior
    torch.testing.assert_close(joint.sample_mean({"z": z}), z)


def test_mixture_of_normal_adds_log_weights():
    experts = [Normal(var=["z"], loc=torch.tensor([m]), scale=torch.tensor([1.0])) for m in (-1.0, 2.0)]
    w = torch.tensor([0.2, 0.8])
    z = torch.linspace(-3, 3, 7).reshape(7, 1)
    lps = torch.stack([td.Normal(m, 1.0).log_prob(z[:, 0]) for m in (-1.0, 2.0)])
    correct = torch.logsumexp(w.log().unsqueeze(1) + lps, 0)
    ours = MixtureOfNormal(experts, weight_modalities=w)
    torch.testing.assert_close(ours.get_log_prob({"z": z}), correct)
    theirs = pz.MixtureOfNormal(
        [pz.Normal(var=["z"], loc=torch.tensor([m]), scale=torch.tensor([1.0])) for m in (-1.0, 2.0)],
        weight_modalities=w,
    ).get_log_prob({"z": z})
    torch.testing.assert_close(theirs, torch.logsumexp(w.unsqueeze(1) * lps, 0))  # weights times log-probs
    assert not torch.allclose(theirs, correct)


def test_element_wise_product_of_normal_samples():
    with pytest.raises(AttributeError):
        pz.ElementWiseProductOfNormal(
            pz.Normal(var=["z"], cond_var=["x"], loc="x", scale=torch.tensor(1.0))
        ).sample({"x": torch.ones(3, 2)})
    ours = ElementWiseProductOfNormal(Normal(var=["z"], cond_var=["x"], loc="x", scale=1.0))
    z = ours.sample({"x": torch.ones(3, 2)}, sample_shape=(4,))["z"]
    assert z.shape == (4, 3, 2) and torch.isfinite(z).all()


def test_sample_shape_on_a_conditional_joint_is_applied_once():
    pz_joint = pz.Normal(var=["x"], cond_var=["z"], loc="z", scale=torch.tensor(1.0)) * pz.Normal(
        var=["z"], cond_var=["y"], loc="y", scale=torch.tensor(1.0)
    )
    assert pz_joint.sample({"y": torch.zeros(4, 2)}, sample_shape=(2,))["x"].shape == (2, 2, 4, 2)
    joint = Normal(var=["x"], cond_var=["z"], loc="z", scale=1.0) * Normal(
        var=["z"], cond_var=["y"], loc="y", scale=1.0
    )
    out = joint.sample({"y": torch.zeros(4, 2)}, sample_shape=(2, 3))
    assert out["x"].shape == (2, 3, 4, 2) and out["z"].shape == (2, 3, 4, 2)


@pytest.mark.parametrize("make", [
    lambda comps: MixtureOfNormal(comps),
    lambda comps: MixtureModel(comps, Categorical(probs=torch.ones(2) / 2, var=["k"])),
])
def test_mixture_with_disagreeing_components_is_a_clear_error(make):
    comps = [Normal(var=["x"], loc=0.0, scale=1.0), Normal(var=["y"], loc=0.0, scale=1.0, name="q")]
    with pytest.raises(VariableMismatchError) as info:
        make(comps)
    message = str(info.value)
    assert ("MixtureOfNormal" in message or "MixtureModel" in message) and "q(y)" in message
    assert "expected ['x']" in message
