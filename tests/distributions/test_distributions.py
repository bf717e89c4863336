"""The Distribution base and the core families against torch.distributions."""

import pytest
import torch
import torch.distributions as td
from torch import nn

from pixyz_like.distributions import Bernoulli, Categorical, Deterministic, EmpiricalDistribution, Normal
from pixyz_like.distributions.kl import kl_elementwise
from pixyz_like.errors import NotDefinedError, ShapeError, SupportError


def _families():
    return [
        (Normal(loc=torch.randn(3), scale=torch.rand(3) + 0.5, var=["x"]),
         lambda d: td.Normal(d.loc, d.scale)),
        (Bernoulli(probs=torch.rand(3) * 0.8 + 0.1, var=["x"]), lambda d: td.Bernoulli(probs=d.probs)),
        (Bernoulli(logits=torch.randn(3), var=["x"]), lambda d: td.Bernoulli(logits=d.logits)),
        (Categorical(probs=torch.tensor([0.2, 0.3, 0.5]), var=["x"]),
         lambda d: td.OneHotCategorical(probs=d.probs)),
    ]


@pytest.mark.parametrize("batch_n", [None, 4])
@pytest.mark.parametrize("sample_shape", [(), (2,), (2, 5)])
@pytest.mark.parametrize("idx", range(4))
def test_sample_shapes(idx, batch_n, sample_shape):
    dist, _ = _families()[idx]
    x = dist.sample(batch_n=batch_n, sample_shape=sample_shape)["x"]
    assert x.shape == torch.Size(sample_shape) + (batch_n or 1,) + dist.buffers().__next__().shape[1:]
    assert dist.get_log_prob({"x": x}).shape == torch.Size(sample_shape) + (batch_n or 1,)


@pytest.mark.parametrize("idx", range(4))
def test_log_prob_entropy_moments_against_torch(idx):
    dist, ref_fn = _families()[idx]
    ref = ref_fn(dist)
    x = ref.sample((6,)).squeeze(1) if ref.batch_shape[0:1] == (1,) else ref.sample((6,))
    x = x.reshape(6, *dist.buffers().__next__().shape[1:])
    event = len(ref.event_shape)
    ref_lp = ref.log_prob(x)
    ref_lp = ref_lp.reshape(6, -1).sum(-1)
    torch.testing.assert_close(dist.get_log_prob({"x": x}), ref_lp)
    ent = ref.entropy().reshape(1, -1).sum(-1)
    torch.testing.assert_close(dist.get_entropy(), ent)
    torch.testing.assert_close(dist.sample_mean(), ref.mean)
    torch.testing.assert_close(dist.sample_variance(), ref.variance)
    assert event in (0, 1)


def test_bernoulli_grey_level_targets_are_negative_bce():
    probs = torch.rand(4, 5) * 0.8 + 0.1
    target = torch.rand(4, 5)
    b = Bernoulli(probs="pi", var=["x"], cond_var=["pi"])
    expected = -nn.functional.binary_cross_entropy(probs, target, reduction="none").sum(-1)
    torch.testing.assert_close(b.get_log_prob({"x": target, "pi": probs}), expected)


def test_categorical_rejects_non_one_hot():
    c = Categorical(probs=torch.tensor([0.2, 0.3, 0.5]), var=["y"])
    with pytest.raises(SupportError, match="one-hot"):
        c.get_log_prob({"y": torch.tensor([[0.2, 0.3, 0.5]])})
    with pytest.raises(SupportError, match="one-hot"):
        c.get_log_prob({"y": torch.tensor([[1., 1., 0.]])})


@pytest.mark.parametrize("pair", ["normal", "bernoulli", "categorical"])
def test_closed_form_kl_against_torch(pair):
    if pair == "normal":
        a = Normal(loc=torch.randn(4), scale=torch.rand(4) + 0.2, var=["x"])
        b = Normal(loc=torch.randn(4), scale=torch.rand(4) + 0.2, var=["x"])
        ref = td.kl_divergence(td.Normal(a.loc, a.scale), td.Normal(b.loc, b.scale))
    elif pair == "bernoulli":
        a = Bernoulli(probs=torch.rand(4) * 0.9 + 0.05, var=["x"])
        b = Bernoulli(logits=torch.randn(4), var=["x"])
        ref = td.kl_divergence(td.Bernoulli(probs=a.probs), td.Bernoulli(logits=b.logits))
    else:
        a = Categorical(probs=torch.softmax(torch.randn(2, 5), -1), var=["x"])
        b = Categorical(probs=torch.softmax(torch.randn(2, 5), -1), var=["x"])
        ref = td.kl_divergence(td.Categorical(probs=a.probs), td.Categorical(probs=b.probs))
    ours = kl_elementwise(a, a.get_params(), b, b.get_params())
    torch.testing.assert_close(ours, ref)


def test_reparameterised_sample_carries_gradient():
    net = nn.Linear(3, 4)

    class Q(Normal):
        def __init__(self):
            super().__init__(var=["z"], cond_var=["x"], name="q")

        def forward(self, x):
            h = net(x)
            return {"loc": h[:, :2], "scale": h[:, 2:].exp()}

    z = Q().sample({"x": torch.randn(5, 3)}, reparam=True)["z"]
    z.sum().backward()
    assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0
    z2 = Q().sample({"x": torch.randn(5, 3)})["z"]
    assert not z2.requires_grad


def test_param_from_cond_var_and_tensor_input():
    d = Normal(var=["x"], cond_var=["y"], loc="y", scale=2.)
    y = torch.randn(3, 2)
    out = d.sample(y, return_all=False)
    assert set(out) == {"x"} and out["x"].shape == (3, 2)
    torch.testing.assert_close(d.sample_mean({"y": y}), y)
    full = d.sample({"y": y})
    assert set(full) == {"x", "y"}


def test_batch_n_conflicting_with_inputs_is_refused():
    d = Normal(var=["x"], cond_var=["y"], loc="y", scale=2.)
    with pytest.raises(ShapeError, match="batch_n=4 conflicts with the batch size 3"):
        d.sample({"y": torch.randn(3, 2)}, batch_n=4)


def test_state_dict_round_trip_and_print():
    d = Normal(loc=torch.randn(3), scale=torch.rand(3) + 0.5, var=["z"], name="p_prior")
    e = Normal(loc=torch.zeros(3), scale=torch.ones(3), var=["z"], name="p_prior")
    e.load_state_dict(d.state_dict())
    torch.testing.assert_close(e.loc, d.loc)
    text = str(d)
    assert text.startswith("Distribution:\n  p_{prior}(z)\nNetwork architecture:\n  Normal(")
    assert "(loc): torch.Size([1, 3])" in text
    assert d._repr_latex_() == "$p_{prior}(z)$"


def test_deterministic_and_empirical():
    class Sq(Deterministic):
        def __init__(self):
            super().__init__(var=["h"], cond_var=["x"], name="f")

        def forward(self, x):
            return {"h": x ** 2}

    x = torch.randn(4, 2)
    torch.testing.assert_close(Sq().sample({"x": x})["h"], x ** 2)
    assert Sq().sample({"x": x}, sample_shape=[3])["h"].shape == (3, 4, 2)
    with pytest.raises(NotDefinedError):
        Sq().get_log_prob({"x": x, "h": x})
    data = EmpiricalDistribution(["x"])
    assert data.input_var == ["x"] and data.prob_text == "p_{data}(x)"
    assert data.sample({"x": x}, return_all=False)["x"] is x


def test_declared_features_keep_sample_and_batch_dims_of_network_params():
    class Decoder(Normal):
        def __init__(self, features_shape=()):
            super().__init__(var=["x"], cond_var=["z"], name="p", features_shape=features_shape)
            self.net = nn.Linear(2, 3)

        def forward(self, z):
            return {"loc": self.net(z), "scale": torch.ones(1)}

    dec = Decoder(features_shape=[3])
    z, x = torch.randn(5, 4, 2), torch.randn(5, 4, 3)  # 5 samples of 4 data points
    ours = dec.get_log_prob({"x": x, "z": z})
    ref = td.Normal(dec.net(z), 1.0).log_prob(x).sum(-1)
    assert ours.shape == (5, 4)
    torch.testing.assert_close(ours, ref)
    pattern = r"parameters have shape \(5, 4, 3\), which does not match features_shape \(4,\)"
    with pytest.raises(ShapeError, match=pattern):
        Decoder(features_shape=[4]).get_log_prob({"x": x, "z": z})
