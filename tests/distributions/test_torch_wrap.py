"""from_torch / from_module / to_torch and the distribution layers.

Expected values come from torch.distributions itself (the wrapped object, or one built by hand from
the same parameters) and from the native pixyz_like families.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from pixyz_like.distributions import (
    Bernoulli,
    Categorical,
    Deterministic,
    IndependentBernoulli,
    IndependentCategorical,
    IndependentNormal,
    Normal,
    from_module,
    from_torch,
    to_torch,
)
from pixyz_like.errors import NotDefinedError, ParameterError, ShapeError, SupportError
from pixyz_like.losses import Expectation as E
from pixyz_like.losses import KullbackLeibler, LogProb
from pixyz_like.models import Model

D = torch.distributions
B = 5


def _positive(h):
    return F.softplus(h) + 0.1


# (name, builder of the torch distribution from a (B, 6) network output, event dims of the value)
FAMILIES = {
    "Normal": lambda h: D.Normal(h[:, :3], _positive(h[:, 3:])),
    "Independent(Normal)": lambda h: D.Independent(D.Normal(h[:, :3], _positive(h[:, 3:])), 1),
    "Laplace": lambda h: D.Laplace(h[:, :3], _positive(h[:, 3:])),
    "StudentT": lambda h: D.StudentT(3.0, h[:, :3], _positive(h[:, 3:])),
    "Bernoulli": lambda h: D.Bernoulli(logits=h),
    "ContinuousBernoulli": lambda h: D.ContinuousBernoulli(logits=h),
    "Categorical": lambda h: D.Categorical(logits=h),
    "OneHotCategorical": lambda h: D.OneHotCategorical(logits=h),
    "Beta": lambda h: D.Beta(_positive(h[:, :3]), _positive(h[:, 3:])),
    "Gamma": lambda h: D.Gamma(_positive(h[:, :3]), _positive(h[:, 3:])),
    "Dirichlet": lambda h: D.Dirichlet(_positive(h)),
    "Poisson": lambda h: D.Poisson(_positive(h)),
    "LogNormal": lambda h: D.LogNormal(h[:, :3], _positive(h[:, 3:])),
    "MultivariateNormal": lambda h: D.MultivariateNormal(h[:, :3], scale_tril=torch.diag_embed(_positive(h[:, 3:]))),
    "LowRankMultivariateNormal": lambda h: D.LowRankMultivariateNormal(h[:, :3], h[:, 3:].unsqueeze(-1) * 0.1,
                                                                         _positive(h[:, 3:])),
    "RelaxedBernoulli": lambda h: D.RelaxedBernoulli(torch.tensor(0.5), logits=h),
}


class Head(nn.Module):
    def __init__(self, build):
        super().__init__()
        self.fc = nn.Linear(2, 6)
        self.build = build

    def forward(self, x):
        return self.build(self.fc(x))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_round_trip_matches_torch(family):
    head = Head(FAMILIES[family])
    p = from_torch(head, var=["y"], cond_var=["x"], name="p")
    x = torch.randn(B, 2)
    ref = head(x)  # the torch distribution itself
    y = p.sample({"x": x})["y"]
    assert y.shape == ref.sample().shape
    assert p.sample({"x": x}, sample_shape=[4], return_all=False)["y"].shape == ref.sample((4,)).shape
    n_extra = len(ref.batch_shape) - 1
    expected = ref.log_prob(y)
    if n_extra:
        expected = expected.sum(dim=tuple(range(-n_extra, 0)))
    torch.testing.assert_close(p.get_log_prob({"x": x, "y": y}), expected)
    assert p.get_log_prob({"x": x, "y": y}).shape == (B,)
    torch.testing.assert_close(p.get_log_prob({"x": x, "y": y}, sum_features=False), ref.log_prob(y))
    # the reverse: the module's own torch distribution
    back = to_torch(p, {"x": x})
    assert type(back) is type(ref) and back.batch_shape == ref.batch_shape
    torch.testing.assert_close(back.log_prob(y), ref.log_prob(y))


def test_reparameterised_draws_carry_gradients_and_plain_ones_do_not():
    q = from_torch(Head(FAMILIES["Normal"]), var=["z"], cond_var=["x"])
    x = torch.randn(B, 2)
    assert q.sample({"x": x}, reparam=True)["z"].requires_grad
    assert not q.sample({"x": x})["z"].requires_grad
    # a family without rsample: drawn plainly under has_reparam=None (inside an expectation too) ...
    b = from_torch(Head(FAMILIES["Bernoulli"]), var=["z"], cond_var=["x"])
    assert not b.sample({"x": x}, reparam=True)["z"].requires_grad
    # ... refused when a reparameterised draw is required, and refused up front when declared absent
    strict = from_torch(Head(FAMILIES["Bernoulli"]), var=["z"], cond_var=["x"], has_reparam=True)
    with pytest.raises(NotDefinedError, match="no rsample"):
        strict.sample({"x": x}, reparam=True)
    never = from_torch(Head(FAMILIES["Normal"]), var=["z"], cond_var=["x"], has_reparam=False)
    with pytest.raises(NotDefinedError):
        never.sample({"x": x}, reparam=True)


def test_mean_variance_entropy_are_torch_s():
    head = Head(FAMILIES["Normal"])
    p = from_torch(head, var=["y"], cond_var=["x"])
    x = torch.randn(B, 2)
    ref = head(x)
    torch.testing.assert_close(p.sample_mean({"x": x}), ref.mean)
    torch.testing.assert_close(p.sample_variance({"x": x}), ref.variance)
    torch.testing.assert_close(p.get_entropy({"x": x}), ref.entropy().sum(-1))
    torch.testing.assert_close(p.sample({"x": x}, sample_mean=True)["y"], ref.mean)


def test_prior_without_inputs_follows_batch_n():
    loc = nn.Parameter(torch.zeros(3))
    prior = from_torch(lambda: D.Independent(D.Normal(loc, 1.0), 1), var=["z"], name="p_{prior}")
    assert prior.sample(batch_n=7)["z"].shape == (7, 3)
    assert prior.sample()["z"].shape == (1, 3)
    batch_one = from_torch(lambda: D.Normal(torch.zeros(1, 3), 1.0), var=["z"])
    assert batch_one.sample(batch_n=4)["z"].shape == (4, 3)
    with pytest.raises(ShapeError, match="batch_n=4"):
        from_torch(lambda: D.Normal(torch.zeros(2, 3), 1.0), var=["z"]).sample(batch_n=4)


def test_composes_prints_and_enters_losses():
    q = from_torch(Head(FAMILIES["Normal"]), var=["z"], cond_var=["x"], name="q")

    class Dec(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, z):
            return D.Normal(self.fc(z), 1.0)

    p = from_torch(Dec(), var=["x"], cond_var=["z"], name="p")
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[3], name="p_{prior}")
    joint = p * prior
    assert joint.prob_joint_factorized_and_text == "p(x,z) = p(x|z)p_{prior}(z)"
    s = joint.sample(batch_n=4)
    assert s["x"].shape == (4, 2) and s["z"].shape == (4, 3)
    torch.testing.assert_close(joint.get_log_prob(s), p.get_log_prob(s) + prior.get_log_prob(s))
    loss = (KullbackLeibler(q, prior, analytical=False) - E(q, LogProb(p))).mean()
    assert str(loss) == (r"mean \left(\mathbb{E}_{q(z|x)} \left[\log q(z|x) - \log p_{prior}(z) \right] - "
                         r"\mathbb{E}_{q(z|x)} \left[\log p(x|z) \right] \right)")
    value = loss.eval({"x": torch.randn(6, 2)})
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert q.module.fc.weight.grad is not None and p.module.fc.weight.grad is not None


def _native_vae(x_dim=8, z_dim=2, hidden=16):
    class Enc(Normal):
        def __init__(self):
            super().__init__(var=["z"], cond_var=["x"], name="q")
            self.fc = nn.Linear(x_dim, hidden)
            self.loc, self.scale = nn.Linear(hidden, z_dim), nn.Linear(hidden, z_dim)

        def forward(self, x):
            h = torch.relu(self.fc(x))
            return {"loc": self.loc(h), "scale": F.softplus(self.scale(h))}

    class Dec(Bernoulli):
        def __init__(self):
            super().__init__(var=["x"], cond_var=["z"], name="p")
            self.net = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, x_dim))

        def forward(self, z):
            return {"probs": torch.sigmoid(self.net(z))}

    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[z_dim], name="p_{prior}")
    return Enc(), Dec(), prior


def test_vae_with_a_wrapped_torch_decoder_trains_like_the_native_one():
    q, p_native, prior = _native_vae()
    q2 = copy.deepcopy(q)
    net = copy.deepcopy(p_native.net)
    p_torch = from_torch(nn.Sequential(net, IndependentBernoulli([8])), var=["x"], cond_var=["z"], name="p")
    protos = (torch.rand(2, 8) > 0.5).float()  # two prototypes, 5% of bits flipped: learnable structure
    x = (protos[torch.randint(2, (64,))] + (torch.rand(64, 8) < 0.05).float()) % 2
    curves = []
    for enc, dec in ((q, p_native), (q2, p_torch)):
        loss = (KullbackLeibler(enc, prior) - E(enc, LogProb(dec))).mean()
        model = Model(loss, distributions=[enc, dec], optimizer_params={"lr": 1e-2})
        torch.manual_seed(3)
        curves.append([float(model.train({"x": x})) for _ in range(40)])
    native, wrapped = curves
    torch.testing.assert_close(torch.tensor(wrapped), torch.tensor(native), rtol=1e-4, atol=1e-4)
    assert native[-1] < native[0] - 1.0  # it did train


def test_named_errors():
    x = torch.randn(B, 2)
    bad = from_torch(lambda x: x * 2, var=["y"], cond_var=["x"])
    with pytest.raises(ParameterError, match="must return a torch.distributions.Distribution"):
        bad.sample({"x": x})
    refused = from_torch(lambda x: D.Normal(x, -torch.ones_like(x)), var=["y"], cond_var=["x"])
    with pytest.raises(ParameterError, match="refused its parameters"):
        refused.sample({"x": x})
    p = from_torch(Head(FAMILIES["Bernoulli"]), var=["y"], cond_var=["x"], name="p")
    with pytest.raises(ShapeError, match=r"variable 'y' has shape \(5, 4\)"):
        p.get_log_prob({"x": x, "y": torch.zeros(B, 4)})
    with pytest.raises(SupportError, match="outside the support"):
        p.get_log_prob({"x": x, "y": torch.full((B, 6), 0.5)})
    with pytest.raises(ShapeError, match="one variable"):
        from_torch(Head(FAMILIES["Normal"]), var=["y", "w"], cond_var=["x"])
    with pytest.raises(NotDefinedError, match="over 2 variables"):
        to_torch(p * Normal(loc=0.0, scale=1.0, var=["x"], features_shape=[2]))


@pytest.mark.parametrize("family", ["Normal", "Bernoulli", "Categorical"])
def test_to_torch_of_a_native_family_scores_as_the_family(family):
    y = torch.randn(B, 3)
    if family == "Normal":
        p = Normal(loc="y", scale="s", var=["x"], cond_var=["y", "s"])
        ref = D.Independent(D.Normal(y, torch.full_like(y, 0.5)), 1)
    elif family == "Bernoulli":
        p = Bernoulli(probs="y", var=["x"], cond_var=["y"])
        y = torch.sigmoid(y)
        ref = D.Independent(D.Bernoulli(probs=y), 1)
    else:
        p = Categorical(probs="y", var=["x"], cond_var=["y"])
        y = torch.softmax(y, -1)
        ref = D.OneHotCategorical(probs=y)
    d = to_torch(p, {"y": y, "s": torch.full_like(y, 0.5)} if family == "Normal" else {"y": y})
    assert d.batch_shape == ref.batch_shape and d.event_shape == ref.event_shape
    value = ref.sample()
    torch.testing.assert_close(d.log_prob(value), ref.log_prob(value))
    torch.testing.assert_close(d.mean, ref.mean)
    assert d.sample((4,)).shape == ref.sample((4,)).shape
    if family == "Normal":
        assert d.has_rsample and d.rsample().shape == ref.rsample().shape
        torch.testing.assert_close(d.entropy(), ref.entropy())


def test_to_torch_draws_no_random_numbers_to_find_the_shape():
    p = Normal(loc="y", scale=1.0, var=["x"], cond_var=["y"])
    state = torch.get_rng_state()
    to_torch(p, {"y": torch.zeros(2, 3)})
    assert torch.equal(torch.get_rng_state(), state)
    prior = Normal(loc=0.0, scale=1.0, var=["x"], features_shape=[3])
    d = to_torch(prior, batch_n=6)
    assert d.batch_shape == (6,) and d.event_shape == (3,)
    assert torch.equal(torch.get_rng_state(), state)


def test_from_module_is_a_deterministic_distribution():
    net = nn.Linear(3, 2)
    f = from_module(net, var=["h"], cond_var=["x"], name="f")
    assert isinstance(f, Deterministic)
    x = torch.randn(4, 3)
    torch.testing.assert_close(f.sample({"x": x})["h"], net(x))
    assert set(dict(f.named_parameters())) == {"module.weight", "module.bias"}
    two = from_module(lambda x: (x + 1, x * 2), var=["a", "b"], cond_var=["x"])
    out = two.sample({"x": x})
    torch.testing.assert_close(out["b"], x * 2)
    with pytest.raises(ParameterError, match="one tensor per variable"):
        from_module(lambda x: x, var=["a", "b"], cond_var=["x"]).sample({"x": x})


# ---------------------------------------------------------------------- layers
def test_params_size_on_class_and_instance():
    assert IndependentBernoulli.params_size([1, 28, 28]) == 784
    assert IndependentBernoulli([2, 3]).params_size() == 6
    assert IndependentNormal.params_size([4]) == 8
    assert IndependentCategorical(10).params_size() == 10
    assert IndependentCategorical(10).params_size([3, 2]) == 60
    assert IndependentCategorical.params_size([3], num_classes=4) == 12
    with pytest.raises(TypeError, match="needs an event_shape"):
        IndependentNormal.params_size()


def test_layers_build_the_torch_distribution_they_document():
    h = torch.randn(B, 6)
    bern = IndependentBernoulli([2, 3])(h)
    ref = D.Independent(D.Bernoulli(logits=h.reshape(B, 2, 3)), 2)
    v = ref.sample()
    torch.testing.assert_close(bern.log_prob(v), ref.log_prob(v))
    normal = IndependentNormal([3], min_scale=0.01)(h)
    torch.testing.assert_close(normal.mean, h[:, :3])
    torch.testing.assert_close(normal.stddev, F.softplus(h[:, 3:]) + 0.01)
    assert normal.event_shape == (3,) and normal.batch_shape == (B,)
    cat = IndependentCategorical(3, event_shape=[2])(h)
    ref = D.Independent(D.Categorical(logits=h.reshape(B, 2, 3)), 1)
    v = ref.sample()
    torch.testing.assert_close(cat.log_prob(v), ref.log_prob(v))
    with pytest.raises(ShapeError, match="must hold the 8 parameters"):
        IndependentNormal([4])(h)


def test_channel_first_images_map_as_documented():
    n, c, k, hh, ww = 2, 3, 4, 5, 5
    # Normal: (N, 2C, H, W) -> flatten: the first C channels are the means
    out = torch.randn(n, 2 * c, hh, ww)
    d = IndependentNormal([c, hh, ww])(out.flatten(1))
    torch.testing.assert_close(d.mean, out[:, :c])
    # Categorical: (N, C*K, H, W) with channel c's K logits together
    logits = torch.randn(n, c * k, hh, ww)
    d = IndependentCategorical(k, event_shape=[c, hh, ww])(logits.reshape(n, c, k, hh, ww).permute(0, 1, 3, 4, 2)
                                                             .flatten(1))
    value = torch.randint(k, (n, c, hh, ww))
    expected = -F.cross_entropy(logits.reshape(n, c, k, hh, ww).transpose(1, 2), value, reduction="none")
    torch.testing.assert_close(d.log_prob(value), expected.sum((1, 2, 3)))
    # C = 1 with PyTorch's loss layout (N, K, H, W)
    logits = torch.randn(n, k, hh, ww)
    value = torch.randint(k, (n, hh, ww))
    d = IndependentCategorical(k, event_shape=[hh, ww])(logits.permute(0, 2, 3, 1).flatten(1))
    expected = -F.cross_entropy(logits, value, reduction="none").sum((1, 2))
    torch.testing.assert_close(d.log_prob(value), expected)


def test_classifier_and_reversed_generator_from_the_same_layers():
    classifier = from_torch(nn.Sequential(nn.Flatten(), nn.Linear(12, 10), IndependentCategorical(10)),
                            var=["y"], cond_var=["x"], name="p")
    generator = from_torch(nn.Sequential(nn.Embedding(10, 12), IndependentBernoulli([1, 3, 4])),
                           var=["x"], cond_var=["y"], name="p")
    x, y = (torch.rand(B, 1, 3, 4) > 0.5).float(), torch.randint(10, (B,))
    assert classifier.get_log_prob({"x": x, "y": y}).shape == (B,)
    assert generator.sample({"y": y})["x"].shape == (B, 1, 3, 4)
    assert (generator.prob_text, classifier.prob_text) == ("p(x|y)", "p(y|x)")
