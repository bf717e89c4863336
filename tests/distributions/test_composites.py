"""Composite distributions: products and mixtures of experts, mixture models, VampPrior, CustomProb.

References are closed forms, torch.distributions (MixtureSameFamily, Normal) and Pixyz where it is
right; every composite class goes through the same shape, printing and state-dict checks.
"""

from __future__ import annotations

import io
import math

import pixyz.distributions as pz
import pytest
import torch
import torch.distributions as td
from torch import nn

from pixyz_like.distributions import (
    Categorical,
    CustomProb,
    ElementWiseProductOfNormal,
    MixtureModel,
    MixtureOfNormal,
    Normal,
    PosteriorMixtureModel,
    ProductOfNormal,
    VampPrior,
)
from pixyz_like.distributions.kl import has_closed_form_kl, kl_elementwise
from pixyz_like.errors import (
    GraphError,
    MissingVariableError,
    NotDefinedError,
    ParameterError,
    ShapeError,
    VariableMismatchError,
)
from pixyz_like.losses import KullbackLeibler

D_IN, D_Z = 3, 2


class Expert(Normal):
    """q(z|<cond>): a linear Gaussian expert."""

    def __init__(self, cond="x", d_in=D_IN, name="q"):
        super().__init__(var=["z"], cond_var=[cond], name=name)
        self.cond = cond
        self.fc = nn.Linear(d_in, 2 * D_Z)

    def forward(self, **inputs):
        loc, s = self.fc(inputs[self.cond]).chunk(2, -1)
        return {"loc": loc, "scale": nn.functional.softplus(s) + 0.1}


def _normal(params):
    return td.Normal(params["loc"], params["scale"])


# --------------------------------------------------------------------------------- product of experts
def test_product_of_normal_is_the_precision_weighted_gaussian():
    qx, qy = Expert("x"), Expert("y")
    w = [0.5, 2.0, 1.5]
    poe = ProductOfNormal([qx, qy], weight_modalities=w)
    x, y = torch.randn(5, D_IN), torch.randn(5, D_IN)
    px, py = qx.get_params({"x": x}), qy.get_params({"y": y})
    prec = w[0] + w[1] / px["scale"] ** 2 + w[2] / py["scale"] ** 2
    loc = (w[1] * px["loc"] / px["scale"] ** 2 + w[2] * py["loc"] / py["scale"] ** 2) / prec
    params = poe.get_params({"x": x, "y": y})
    torch.testing.assert_close(params["loc"], loc)
    torch.testing.assert_close(params["scale"], prec.rsqrt())


def test_product_of_normal_density_is_proportional_to_the_product():
    """log p_PoE(z) - [log N(z; 0, 1) + sum_k log q_k(z)] does not depend on z."""
    qx, qy = Expert("x"), Expert("y")
    poe = ProductOfNormal([qx, qy])
    inputs = {"x": torch.randn(1, D_IN).expand(50, D_IN), "y": torch.randn(1, D_IN).expand(50, D_IN)}
    z = torch.randn(50, D_Z) * 3
    prior = td.Normal(0.0, 1.0).log_prob(z).sum(-1)
    diff = poe.get_log_prob({"z": z, **inputs}) - (
        prior + qx.get_log_prob({"z": z, **inputs}) + qy.get_log_prob({"z": z, **inputs})
    )
    torch.testing.assert_close(diff, diff[:1].expand(50), atol=1e-4, rtol=0)


def test_product_of_normal_leaves_out_absent_experts():
    qx, qy = Expert("x"), Expert("y")
    poe = ProductOfNormal([qx, qy])
    x = torch.randn(4, D_IN)
    torch.testing.assert_close(poe.get_params({"x": x}), ProductOfNormal([qx]).get_params({"x": x}))
    # No input at all: the N(0, I) prior expert alone, batch from batch_n.
    prior = ProductOfNormal([qx], features_shape=[D_Z])
    assert prior.sample(batch_n=6)["z"].shape == (6, D_Z)
    torch.testing.assert_close(prior.get_params(), {"loc": torch.zeros(1, D_Z), "scale": torch.ones(1, D_Z)})
    z = torch.randn(6, D_Z)
    torch.testing.assert_close(prior.get_log_prob({"z": z}), td.Normal(0.0, 1.0).log_prob(z).sum(-1))
    # An expert with only some of its inputs is an error naming the missing one.
    both = Normal(loc="a", scale="b", var=["z"], cond_var=["a", "b"], name="r")
    with pytest.raises(MissingVariableError, match=r"r\(z\|a,b\).*\['b'\]"):
        ProductOfNormal([both]).get_params({"a": torch.zeros(1, D_Z)})


def test_product_of_normal_parity_with_pixyz():
    torch.manual_seed(3)
    ours_x, ours_y = Expert("x"), Expert("y")

    class PzExpert(pz.Normal):
        def __init__(self, mine):
            super().__init__(var=["z"], cond_var=[mine.cond], name="q")
            self.mine = mine

        def forward(self, **inputs):
            return self.mine.forward(**inputs)

    w = [1.0, 0.5, 2.0]
    theirs = pz.ProductOfNormal([PzExpert(ours_x), PzExpert(ours_y)], weight_modalities=w)
    inputs = {"x": torch.randn(4, D_IN), "y": torch.randn(4, D_IN)}
    expected = theirs.get_params(inputs)
    got = ProductOfNormal([ours_x, ours_y], weight_modalities=w).get_params(inputs)
    torch.testing.assert_close(got["loc"], expected["loc"])
    torch.testing.assert_close(got["scale"], expected["scale"])


def test_product_of_normal_reparam_kl_and_errors():
    qx, qy = Expert("x"), Expert("y")
    poe = ProductOfNormal([qx, qy])
    z = poe.sample({"x": torch.randn(4, D_IN), "y": torch.randn(4, D_IN)}, reparam=True)["z"]
    z.sum().backward()
    assert qx.fc.weight.grad.abs().sum() > 0 and qy.fc.weight.grad.abs().sum() > 0
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[D_Z])
    assert has_closed_form_kl(poe, prior)
    kl = KullbackLeibler(poe, prior).eval({"x": torch.randn(4, D_IN), "y": torch.randn(4, D_IN)})
    assert kl.shape == (4,) and (kl >= 0).all()
    with pytest.raises(VariableMismatchError, match=r"ProductOfNormal.*expected \['z'\]"):
        ProductOfNormal([qx, Normal(loc="y", scale=1.0, var=["w"], cond_var=["y"])])
    with pytest.raises(TypeError, match="ProductOfNormal.*Normal"):
        ProductOfNormal([qx, Categorical(probs=torch.ones(2) / 2, var=["z"])])
    with pytest.raises(ParameterError, match="weight_modalities must hold 3"):
        ProductOfNormal([qx, qy], weight_modalities=[1.0, 1.0])
    with pytest.raises(GraphError, match="at least one expert"):
        ProductOfNormal([])


def test_element_wise_product_of_normal_matches_explicit_experts():
    q = Expert("x", d_in=4)
    poe = ElementWiseProductOfNormal(q)
    x = torch.randn(5, 4)
    x[0] = 0.0  # nothing given: the prior
    x[1, 2:] = 0.0  # two experts given
    # Reference: for each data point, the product of N(0, 1) and the experts of its non-zero elements.
    locs, scales = [], []
    for b in range(5):
        prec, num = torch.ones(D_Z), torch.zeros(D_Z)
        for d in range(4):
            if x[b, d] != 0:
                masked = torch.zeros(1, 4)
                masked[0, d] = x[b, d]
                p = q.get_params({"x": masked})
                prec = prec + 1 / p["scale"][0] ** 2
                num = num + p["loc"][0] / p["scale"][0] ** 2
        locs.append(num / prec)
        scales.append(prec.rsqrt())
    params = poe.get_params({"x": x})
    torch.testing.assert_close(params["loc"], torch.stack(locs))
    torch.testing.assert_close(params["scale"], torch.stack(scales))
    z = poe.sample({"x": x}, sample_shape=(3,), reparam=True)["z"]
    assert z.shape == (3, 5, D_Z) and z.requires_grad
    with pytest.raises(ShapeError, match=r"ElementWiseProductOfNormal.*\(batch, D\)"):
        poe.get_params({"x": torch.randn(5, 2, 4)})
    with pytest.raises(GraphError, match="exactly one"):
        ElementWiseProductOfNormal(Normal(loc="a", scale="b", var=["z"], cond_var=["a", "b"]))


# -------------------------------------------------------------------------------- mixture of experts
def _torch_mixture(weights, params):
    """torch's mixture over the last dimension of the stacked component parameters."""
    comp = td.Independent(td.Normal(torch.stack([p["loc"] for p in params], -2),
                                    torch.stack([p["scale"] for p in params], -2)), 1)
    return td.MixtureSameFamily(td.Categorical(probs=weights.expand(*comp.batch_shape)), comp)


def test_mixture_of_normal_log_prob_and_moments_match_torch():
    qx, qy = Expert("x"), Expert("y")
    w = torch.tensor([0.2, 0.8])
    moe = MixtureOfNormal([qx, qy], weight_modalities=[1.0, 4.0])  # normalised to (0.2, 0.8)
    inputs = {"x": torch.randn(6, D_IN), "y": torch.randn(6, D_IN)}
    ref = _torch_mixture(w, [qx.get_params(inputs), qy.get_params(inputs)])
    z = torch.randn(2, 6, D_Z)
    torch.testing.assert_close(moe.get_log_prob({"z": z, **inputs}), ref.log_prob(z))
    torch.testing.assert_close(moe.sample_mean(inputs), ref.mean)
    torch.testing.assert_close(moe.sample_variance(inputs), ref.variance)
    with pytest.raises(NotDefinedError, match="sum_features=True"):
        moe.get_log_prob({"z": z, **inputs}, sum_features=False)
    with pytest.raises(NotDefinedError):
        moe.get_entropy(inputs)


def test_mixture_of_normal_picks_components_at_random_per_data_point():
    a = Normal(loc=-10.0, scale=0.1, var=["z"], features_shape=[1])
    b = Normal(loc=10.0, scale=0.1, var=["z"], features_shape=[1])
    moe = MixtureOfNormal([a, b], weight_modalities=[0.3, 0.7])
    z = moe.sample(batch_n=400, sample_shape=(10,))["z"]
    assert z.shape == (10, 400, 1)
    frac = (z > 0).float().mean().item()
    assert abs(frac - 0.7) < 0.03  # 4000 draws: 4.5 standard errors
    assert 0 < (z[0] > 0).float().mean() < 1  # independent picks within one batch
    torch.testing.assert_close(moe.sample(batch_n=2, sample_mean=True)["z"], torch.full((2, 1), 4.0))


def test_mixture_of_normal_reparam_and_errors():
    qx, qy = Expert("x"), Expert("y")
    moe = MixtureOfNormal([qx, qy])
    z = moe.sample({"x": torch.randn(8, D_IN), "y": torch.randn(8, D_IN)}, reparam=True)["z"]
    z.sum().backward()
    assert qx.fc.weight.grad.abs().sum() > 0 and qy.fc.weight.grad.abs().sum() > 0
    with pytest.raises(VariableMismatchError, match=r"MixtureOfNormal.*expert 1 .* expected \['z'\]"):
        MixtureOfNormal([qx, Normal(loc="y", scale=1.0, var=["w"], cond_var=["y"])])
    with pytest.raises(ParameterError, match="weight_modalities must hold 2"):
        MixtureOfNormal([qx, qy], weight_modalities=[1.0, 1.0, 1.0])


# ------------------------------------------------------------------------------------- mixture model
def _gmm(probs=(0.2, 0.5, 0.3)):
    comps = [Normal(loc=torch.randn(D_Z) * 3, scale=torch.rand(D_Z) + 0.5, var=["x"], name=f"p_{i}")
             for i in range(3)]
    prior = Categorical(probs=torch.tensor(probs), var=["z"], name="prior")
    return MixtureModel(comps, prior), comps, torch.tensor(probs)


def test_mixture_model_log_prob_posterior_and_moments():
    p, comps, probs = _gmm()
    ref = _torch_mixture(probs, [c.get_params() for c in comps])
    x = torch.randn(7, D_Z) * 3
    torch.testing.assert_close(p.get_log_prob({"x": x}), ref.log_prob(x).reshape(7))
    table = p.get_log_prob({"x": x}, return_hidden=True)
    assert table.shape == (3, 7)
    for i, c in enumerate(comps):
        torch.testing.assert_close(table[i], probs[i].log() + c.get_log_prob({"x": x}))
    # The posterior is a Categorical over z with the responsibilities as probabilities.
    post = p.posterior()
    assert isinstance(post, PosteriorMixtureModel) and post.prob_text == "p(z|x)"
    resp = torch.softmax(table.T, -1)
    torch.testing.assert_close(post.get_params({"x": x})["probs"], resp)
    onehot = torch.eye(3)[torch.tensor([0, 1, 2, 0, 1, 2, 0])]
    torch.testing.assert_close(post.get_log_prob({"z": onehot, "x": x}), (onehot * resp.log()).sum(-1))
    zs = post.sample({"x": x})["z"]
    assert zs.shape == (7, 3) and (zs.sum(-1) == 1).all()
    torch.testing.assert_close(p.sample(batch_n=2, sample_mean=True)["x"], ref.mean.expand(2, D_Z))


def test_mixture_model_parity_with_pixyz():
    p, comps, probs = _gmm()
    theirs = pz.MixtureModel(
        [pz.Normal(loc=c.loc[0], scale=c.scale[0], var=["x"], name=f"p_{i}") for i, c in enumerate(comps)],
        pz.Categorical(probs=probs, var=["z"], name="prior"),
    )
    x = torch.randn(5, D_Z) * 3
    torch.testing.assert_close(p.get_log_prob({"x": x}), theirs.get_log_prob({"x": x}))
    torch.testing.assert_close(p.get_log_prob({"x": x}, return_hidden=True),
                               theirs.get_log_prob({"x": x}, return_hidden=True))
    assert p.prob_joint_factorized_and_text == theirs.prob_joint_factorized_and_text
    # Pixyz's posterior returns the table log p(z=i|x); ours is that table's distribution.
    table = theirs.posterior().get_log_prob({"x": x})
    torch.testing.assert_close(p.posterior().get_params({"x": x})["probs"], table.T.exp())


def test_mixture_model_sampling_picks_components_by_the_prior():
    comps = [Normal(loc=m, scale=0.1, var=["x"], features_shape=[1], name=f"p_{i}")
             for i, m in enumerate([-10.0, 0.0, 10.0])]
    p = MixtureModel(comps, Categorical(probs=torch.tensor([0.2, 0.5, 0.3]), var=["z"]))
    out = p.sample(batch_n=1000, sample_shape=(4,), return_hidden=True)
    x, z = out["x"], out["z"]
    assert x.shape == (4, 1000, 1) and z.shape == (4, 1000, 3)
    # The returned indicator is the component that produced each value.
    torch.testing.assert_close(z.argmax(-1), torch.bucketize(x[..., 0], torch.tensor([-5.0, 5.0])))
    torch.testing.assert_close(z.mean((0, 1)), torch.tensor([0.2, 0.5, 0.3]), atol=0.03, rtol=0)
    with pytest.raises(NotDefinedError, match="reparameterised"):
        p.sample(batch_n=2, reparam=True)


def test_mixture_model_errors_name_the_class_and_the_expectation():
    a = Normal(loc=0.0, scale=1.0, var=["x"], name="p_0")
    b = Normal(loc=0.0, scale=1.0, var=["y"], name="p_1")
    prior = Categorical(probs=torch.tensor([0.5, 0.5]), var=["z"])
    with pytest.raises(VariableMismatchError, match=r"MixtureModel.*component 1 p_\{1\}\(y\).*expected \['x'\]"):
        MixtureModel([a, b], prior)
    with pytest.raises(ParameterError, match="MixtureModel.*3 categories, expected 2"):
        MixtureModel([a, a], Categorical(probs=torch.ones(3) / 3, var=["z"]))
    with pytest.raises(TypeError, match="MixtureModel.*Categorical"):
        MixtureModel([a, a], Normal(loc=0.0, scale=1.0, var=["z"]))


# ------------------------------------------------------------------------------------------ VampPrior
def test_vamp_prior_is_the_encoder_mixture_over_pseudo_inputs():
    q = Expert("x")
    prior = VampPrior(q, n_components=5, input_shape=[D_IN], activation=torch.tanh, init_std=1.0)
    u = torch.tanh(prior.pseudo_inputs.detach())
    comp = q.get_params({"x": u})  # (K, D_Z)
    z = torch.randn(2, 4, D_Z)
    ref = td.MixtureSameFamily(td.Categorical(logits=torch.zeros(5)),
                               td.Independent(td.Normal(comp["loc"], comp["scale"]), 1))
    torch.testing.assert_close(prior.get_log_prob({"z": z}), ref.log_prob(z))
    torch.testing.assert_close(prior.sample_mean(), ref.mean.reshape(1, D_Z))
    torch.testing.assert_close(prior.sample_variance(), ref.variance.reshape(1, D_Z))
    # Gradients of log p(z) reach the pseudo-inputs and the shared encoder.
    prior.get_log_prob({"z": z}).sum().backward()
    assert prior.pseudo_inputs.grad.abs().sum() > 0 and q.fc.weight.grad.abs().sum() > 0


def test_vamp_prior_sampling():
    q = Normal(loc="x", scale=0.1, var=["z"], cond_var=["x"], name="q")
    prior = VampPrior(q, pseudo_inputs=torch.tensor([[-10.0, -10.0], [10.0, 10.0]]))
    z = prior.sample(batch_n=500, sample_shape=(4,), reparam=True)["z"]
    assert z.shape == (4, 500, 2) and z.requires_grad
    assert abs((z[..., 0] > 0).float().mean().item() - 0.5) < 0.04
    assert ((z[..., 0] > 0) == (z[..., 1] > 0)).all()  # both coordinates from the same component
    z.sum().backward()
    assert prior.pseudo_inputs.grad is not None
    # In a Monte Carlo KL against the encoder (the VampPrior VAE's regulariser).
    kl = KullbackLeibler(q, prior, analytical=False, sample_shape=[3]).eval({"x": torch.randn(6, 2)})
    assert kl.shape == (6,) and torch.isfinite(kl).all()
    with pytest.raises(ShapeError, match=r"VampPrior.*expected \(\*sample_shape, batch, 2\)"):
        prior.get_log_prob({"z": torch.zeros(6, 3)})
    with pytest.raises(ParameterError, match="n_components and input_shape"):
        VampPrior(q)
    with pytest.raises(GraphError, match="exactly one"):
        VampPrior(Normal(loc="a", scale="b", var=["z"], cond_var=["a", "b"]), pseudo_inputs=torch.zeros(2, 1))


# ----------------------------------------------------------------------------------------- CustomProb
def test_custom_prob():
    def log_normal(z):
        return -0.5 * z**2 - 0.5 * math.log(2 * math.pi)

    p = CustomProb(log_normal, var=["z"], distribution_name="Standard normal")
    z = torch.randn(5, 3)
    torch.testing.assert_close(p.get_log_prob({"z": z}), td.Normal(0.0, 1.0).log_prob(z).sum(-1))
    torch.testing.assert_close(p.log_prob().eval({"z": z}), td.Normal(0.0, 1.0).log_prob(z).sum(-1))
    with pytest.raises(NotDefinedError, match="cannot be sampled"):
        p.sample()
    # With features_shape, sample dimensions are kept.
    pf = CustomProb(log_normal, var=["z"], features_shape=[3])
    assert pf.get_log_prob({"z": torch.randn(2, 5, 3)}).shape == (2, 5)
    # learnable: a module's parameters are registered (trained, saved) or kept out.
    class Energy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 1)

        def forward(self, z):
            return -self.fc(z).squeeze(-1) ** 2

    energy = Energy()
    assert len(list(CustomProb(energy, var=["z"]).parameters())) == 2
    fixed = CustomProb(energy, var=["z"], learnable=False)
    assert list(fixed.parameters()) == [] and fixed.state_dict() == {}
    assert fixed.get_log_prob({"z": z}).shape == (5,)


# ------------------------------------------------------------------------- every composite, same checks
def _composites():
    torch.manual_seed(0)
    two = {"x": torch.randn(3, D_IN), "y": torch.randn(3, D_IN)}
    return [
        ("ProductOfNormal", lambda: ProductOfNormal([Expert("x"), Expert("y")]), two),
        ("ElementWiseProductOfNormal", lambda: ElementWiseProductOfNormal(Expert("x")), {"x": two["x"]}),
        ("MixtureOfNormal", lambda: MixtureOfNormal([Expert("x"), Expert("y")]), two),
        ("MixtureModel", lambda: _gmm()[0], {}),
        ("VampPrior", lambda: VampPrior(Expert("x"), n_components=4, input_shape=[D_IN], init_std=1.0), {}),
    ]


COMPOSITES = _composites()


@pytest.mark.parametrize("sample_shape", [(), (2,), (2, 4)])
@pytest.mark.parametrize("batch_n", [None, 3])
@pytest.mark.parametrize("case", COMPOSITES, ids=[c[0] for c in COMPOSITES])
def test_composite_sample_shapes(case, batch_n, sample_shape):
    _, make, inputs = case
    dist = make()
    var = dist.var[0]
    x = dist.sample(dict(inputs), batch_n=batch_n, sample_shape=sample_shape)[var]
    batch = 3 if inputs else (batch_n or 1)
    assert x.shape == torch.Size(sample_shape) + (batch, D_Z)
    assert dist.get_log_prob({var: x, **inputs}).shape == torch.Size(sample_shape) + (batch,)


@pytest.mark.parametrize("case", COMPOSITES, ids=[c[0] for c in COMPOSITES])
def test_composite_state_dict_print_and_latex(case):
    name, make, inputs = case
    a, b = make(), make()
    var = a.var[0]
    x = a.sample(dict(inputs), batch_n=3)[var]
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf))
    torch.testing.assert_close(a.get_log_prob({var: x, **inputs}), b.get_log_prob({var: x, **inputs}))
    text = str(a)
    assert text.startswith("Distribution:") and type(a).__name__ in text
    assert a._repr_latex_().startswith("$") and a.prob_text in a._repr_latex_()


def test_composite_kl_uses_the_closed_form_only_where_it_exists():
    poe = ProductOfNormal([Expert("x")])
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[D_Z])
    x = torch.randn(4, D_IN)
    params = poe.get_params({"x": x})
    expected = td.kl_divergence(_normal(params), td.Normal(0.0, 1.0))
    torch.testing.assert_close(kl_elementwise(poe, params, prior, prior.get_params()), expected)
    assert not has_closed_form_kl(MixtureOfNormal([Expert("x")]), prior)
