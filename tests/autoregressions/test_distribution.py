"""The autoregressive base as a distribution: shapes, cached generation, printing, composition, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn, optim
from torch.utils.data import DataLoader, TensorDataset

import pixyz_like.autoregressions as autoregressions
import pixyz_like.distributions as distributions
from pixyz_like.autoregressions import AutoregressiveBernoulli, AutoregressiveCategorical
from pixyz_like.distributions import Normal
from pixyz_like.errors import (
    GraphError,
    MissingVariableError,
    NotDefinedError,
    ParameterError,
    ShapeError,
    SupportError,
)
from pixyz_like.layers import CausalConv1d, MaskedConv2d
from pixyz_like.losses import Expectation, KullbackLeibler, LogProb
from pixyz_like.models import Model

from .toy_models import BernoulliImage, CategoricalRGB, MixtureRGB, SequenceCategorical, SequenceMixture, random_levels


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def test_exported_from_distributions_too():
    for name in autoregressions.__all__:
        assert getattr(distributions, name) is getattr(autoregressions, name)


# ----------------------------------------------------------------------------- shapes
def test_sample_shapes_follow_sample_shape_batch_features():
    p = BernoulliImage()
    z = torch.randn(5, 2)
    assert p.sample({"z": z})["x"].shape == (5, 1, 3, 4)
    out = p.sample({"z": z}, sample_shape=[2, 3], return_all=False)
    assert set(out) == {"x"} and out["x"].shape == (2, 3, 5, 1, 3, 4)
    q = CategoricalRGB()
    assert q.sample(batch_n=4)["x"].shape == (4, 3, 2, 3)
    assert q.sample()["x"].shape == (1, 3, 2, 3)
    with pytest.raises(ShapeError, match="batch_n=3 conflicts"):
        p.sample({"z": z}, batch_n=3)


def test_log_prob_of_values_with_sample_dims_matches_row_by_row():
    p = BernoulliImage()
    z = torch.randn(4, 2)
    x = p.sample({"z": z}, sample_shape=[3])["x"]  # (3, 4, 1, 3, 4)
    lp = p.get_log_prob({"x": x, "z": z})
    assert lp.shape == (3, 4)
    for s in range(3):
        torch.testing.assert_close(lp[s], p.get_log_prob({"x": x[s], "z": z}))
    assert p.get_log_prob({"x": x[0], "z": z}, sum_features=False).shape == (4, 1, 3, 4)
    torch.testing.assert_close(p.get_log_prob({"x": x[0], "z": z}, feature_dims=[1, 2, 3]),
                               p.get_log_prob({"x": x[0], "z": z}))


def test_integer_images_and_tensor_inputs_are_accepted():
    p = BernoulliImage(cond=False)
    x = torch.randint(0, 2, (2, 1, 3, 4))
    torch.testing.assert_close(p.get_log_prob({"x": x}), p.get_log_prob({"x": x.float()}))
    assert p.get_prob({"x": x.float()}).shape == (2,)


# ----------------------------------------------------------------------------- cached generation
@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_cached_generation_equals_uncached_with_the_same_noise(float64, temperature):
    p = SequenceCategorical(length=14)
    z = torch.randn(6, 3)
    torch.manual_seed(3)
    cached = p.sample({"z": z}, temperature=temperature, use_cache=True)["x"]
    torch.manual_seed(3)
    full = p.sample({"z": z}, temperature=temperature, use_cache=False)["x"]
    assert torch.equal(cached, full)
    assert p.calls == {"forward": 14, "forward_step": 14}  # one full pass per step uncached; one step cached


def test_cached_mixture_generation_equals_uncached(float64):
    p = SequenceMixture(length=8)
    torch.manual_seed(5)
    cached = p.sample(batch_n=5, sample_shape=[2], temperature=0.8)["x"]
    torch.manual_seed(5)
    full = p.sample(batch_n=5, sample_shape=[2], temperature=0.8, use_cache=False)["x"]
    assert cached.shape == (2, 5, 2, 8)
    assert torch.equal(cached, full)


def test_cache_is_the_default_where_forward_step_exists_and_refused_elsewhere():
    p = SequenceCategorical(length=5, cond=False)
    assert p.supports_cache
    p.sample(batch_n=2)
    assert p.calls == {"forward": 0, "forward_step": 5}
    q = BernoulliImage(cond=False)
    assert not q.supports_cache
    with pytest.raises(NotDefinedError, match="forward_step"):
        q.sample(use_cache=True)


def test_generation_leaves_no_state_behind():
    p = SequenceCategorical(length=6, cond=False)
    attrs = set(vars(p.net.input))
    torch.manual_seed(1)
    a = p.sample(batch_n=3)["x"]
    torch.manual_seed(1)
    b = p.sample(batch_n=3)["x"]
    assert torch.equal(a, b)
    assert set(vars(p.net.input)) == attrs


# ----------------------------------------------------------------------------- printing
def test_prints_the_factorisation_and_losses_as_latex():
    p = BernoulliImage()
    assert p.prob_text == "p(x|z)"
    assert p.prob_joint_factorized_and_text == r"p(x|z) = \prod_{i} p(x_{i}|x_{<i},z)"
    assert r"p(x|z) = \prod_{i} p(x_{i}|x_{<i},z)" in str(p)
    assert p._repr_latex_() == r"$p(x|z) = \prod_{i} p(x_{i}|x_{<i},z)$"
    q = Normal(loc="x", scale=1.0, var=["z"], cond_var=["x"], name="q")
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[2], name="p_{prior}")
    assert str(LogProb(p)) == r"\log p(x|z)"
    loss = (KullbackLeibler(q, prior) - Expectation(q, LogProb(p))).mean()
    assert str(loss) == (r"mean \left(D_{KL} \left[q(z|x)||p_{prior}(z) \right] - \mathbb{E}_{q(z|x)} "
                         r"\left[\log p(x|z) \right] \right)")
    assert (p * prior).prob_joint_factorized_and_text == "p(x,z) = p(x|z)p_{prior}(z)"


def test_a_subscripted_variable_name_is_braced():
    class P(AutoregressiveBernoulli):
        def __init__(self):
            super().__init__(var=["x_1"], features_shape=[1, 3])
            self.conv = CausalConv1d(1, 1, mask_type="A")

        def forward(self, x_1):
            return {"logits": self.conv(x_1)}

    assert P().prob_factorized_text == r"\prod_{i} p({x_{1}}_{i}|{x_{1}}_{<i})"


# ----------------------------------------------------------------------------- composition
def test_joint_with_a_prior_samples_and_scores():
    p = BernoulliImage()
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[2], name="p_{prior}")
    joint = p * prior
    s = joint.sample(batch_n=3)
    assert s["x"].shape == (3, 1, 3, 4) and s["z"].shape == (3, 2)
    lp = joint.get_log_prob(s)
    torch.testing.assert_close(lp, p.get_log_prob(s) + prior.get_log_prob(s))
    assert joint.sample(batch_n=2, sample_shape=[4])["x"].shape == (4, 2, 1, 3, 4)


def test_replace_var_renames_the_variable_and_the_condition():
    p = BernoulliImage().replace_var(x="img", z="h")
    assert p.prob_text == "p(img|h)"
    s = p.sample({"h": torch.randn(2, 2)})
    assert s["img"].shape == (2, 1, 3, 4)
    assert p.get_log_prob(s).shape == (2,)


def test_one_evaluation_runs_the_network_once():
    p = BernoulliImage()
    x, z = torch.bernoulli(torch.full((4, 1, 3, 4), 0.5)), torch.randn(4, 2)
    p.calls = 0
    loss = LogProb(p) + 2 * LogProb(p)
    torch.testing.assert_close(loss.eval({"x": x, "z": z}), 3 * p.get_log_prob({"x": x, "z": z}))
    assert p.calls == 2  # once for the loss (memoised), once for the check


class Encoder(Normal):
    def __init__(self):
        super().__init__(var=["z"], cond_var=["x"], name="q")
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, x):
        loc, scale = self.net(x).chunk(2, -1)
        return {"loc": loc, "scale": nn.functional.softplus(scale) + 1e-3}


def test_pixelvae_loss_trains_with_model_fit():
    """KL[q(z|x)||p(z)] - E_q[log p(x|z)] with a PixelCNN decoder, trained by Model.fit."""
    torch.manual_seed(0)
    p, q = BernoulliImage(), Encoder()
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[2], name="p_{prior}")
    loss = (KullbackLeibler(q, prior) - Expectation(q, LogProb(p))).mean()
    model = Model(loss, distributions=[p, q], optimizer=optim.Adam, optimizer_params={"lr": 1e-2})
    protos = torch.tensor([[1.0] * 6 + [0.0] * 6, [0.0] * 6 + [1.0] * 6]).reshape(2, 1, 1, 3, 4)
    x = protos[torch.arange(64) % 2].reshape(64, 1, 3, 4)
    history = model.fit(DataLoader(TensorDataset(x), batch_size=16), epochs=8, keys=("x",), progress=False)
    losses = [h["train/loss"] for h in history]
    assert losses[-1] < 0.6 * losses[0], losses


def test_expectation_over_the_autoregressive_distribution_samples_it():
    """E_p(x|z)[log p(x|z)] with 3 samples folded into the batch: one generation, one scoring pass."""
    p = SequenceCategorical(length=4)
    e = Expectation(p, LogProb(p), sample_shape=[3])
    value = e.eval({"z": torch.zeros(2, 3)})
    assert value.shape == (2,) and torch.isfinite(value).all()
    assert p.calls == {"forward": 1, "forward_step": 4}


# ----------------------------------------------------------------------------- errors
class NoForward(AutoregressiveBernoulli):
    def __init__(self):
        super().__init__(var=["x"], features_shape=[1, 3])


class WrongKeys(AutoregressiveBernoulli):
    def __init__(self):
        super().__init__(var=["x"], features_shape=[1, 3])

    def forward(self, x):
        return {"probs": torch.sigmoid(x)}


class WrongShape(AutoregressiveCategorical):
    def __init__(self):
        super().__init__(var=["x"], features_shape=[1, 2, 2], n_levels=4)
        self.conv = MaskedConv2d(1, 3, 3, "A")

    def forward(self, x):
        return {"logits": self.conv(x)}


def test_construction_errors_are_named():
    with pytest.raises(ParameterError, match=r"features_shape must be \(channels, \*positions\)"):
        AutoregressiveBernoulli(var=["x"], features_shape=[5])
    with pytest.raises(ParameterError, match="channels must be"):
        AutoregressiveBernoulli(var=["x"], features_shape=[1, 5], channels="rgb")
    with pytest.raises(GraphError, match="one variable"):
        AutoregressiveBernoulli(var=["x", "y"], features_shape=[1, 5])
    with pytest.raises(ParameterError, match="n_levels"):
        AutoregressiveCategorical(var=["x"], features_shape=[1, 5], n_levels=1)

    class StepImage(AutoregressiveBernoulli):
        def forward_step(self, cache, t, x):
            return {}

    with pytest.raises(ParameterError, match="forward_step .* is for sequences"):
        StepImage(var=["x"], features_shape=[1, 3, 3])
    with pytest.raises(ParameterError, match="channels='joint'"):
        StepImage(var=["x"], features_shape=[2, 3])
    StepImage(var=["x"], features_shape=[2, 3], channels="joint")


def test_evaluation_errors_are_named():
    with pytest.raises(NotDefinedError, match=r"define forward\(x\)"):
        NoForward().get_log_prob({"x": torch.zeros(1, 1, 3)})
    with pytest.raises(ParameterError, match=r"returned the parameters \['probs'\].*expects \['logits'\]"):
        WrongKeys().sample()
    with pytest.raises(ShapeError, match=r"logits of shape \(2, 3, 2, 2\).*expects \(2, 4, 2, 2\)"):
        WrongShape().get_log_prob({"x": torch.zeros(2, 1, 2, 2)})
    p = BernoulliImage()
    with pytest.raises(MissingVariableError):
        p.sample()
    with pytest.raises(ShapeError, match=r"expected \(\*sample_shape, batch, 1, 3, 4\)"):
        p.get_log_prob({"x": torch.zeros(2, 3, 4), "z": torch.zeros(2, 2)})
    with pytest.raises(SupportError, match="binary"):
        p.get_log_prob({"x": torch.full((2, 1, 3, 4), 0.5), "z": torch.zeros(2, 2)})
    with pytest.raises(SupportError, match=r"256 levels k/255"):
        MixtureRGB().get_log_prob({"x": torch.full((1, 3, 2, 3), 0.001)})
    with pytest.raises(SupportError, match="4 levels"):
        CategoricalRGB().get_log_prob({"x": torch.full((1, 3, 2, 3), 1.5)})


def test_sampling_options_are_checked():
    p = BernoulliImage(cond=False)
    with pytest.raises(ParameterError, match="temperature must be a number >= 0"):
        p.sample(temperature=-1.0)
    with pytest.raises(ParameterError, match="temperature"):
        p.sample(temperature="hot")
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['temprature'\]"):
        p.sample(temprature=0.5)
    with pytest.raises(NotDefinedError, match="reparameterised"):
        p.sample(reparam=True)
    with pytest.raises(NotDefinedError, match="greedy decoding"):
        p.sample(sample_mean=True)
    with pytest.raises(NotDefinedError, match="no closed form"):
        p.sample_mean({})
    assert p.sample(temperature=torch.tensor(0.5))["x"].shape == (1, 1, 3, 4)


def test_network_shape_errors_name_the_distribution():
    p = BernoulliImage()
    with pytest.raises(RuntimeError) as info:
        p.get_log_prob({"x": torch.zeros(2, 1, 3, 4), "z": torch.zeros(2, 5)})
    assert "p(x|z) (BernoulliImage).forward()" in info.value.__notes__[-1]


def test_forward_signature_errors_name_the_keywords():
    class BadSignature(AutoregressiveBernoulli):
        def __init__(self):
            super().__init__(var=["x"], features_shape=[1, 3])

        def forward(self, y):
            return {"logits": y}

    with pytest.raises(TypeError, match=r"called with \['x'\] as keywords"):
        BadSignature().get_log_prob({"x": torch.zeros(1, 1, 3)})


def test_mixture_split_output_checks_its_input():
    p = MixtureRGB()
    assert p.n_output_channels == 3 * (1 + 6 + 3)
    with pytest.raises(ShapeError, match=r"expects \(batch, 30, \*positions\)"):
        p.split_output(torch.zeros(1, 29, 2, 3))
    params = p.split_output(torch.zeros(1, 30, 2, 3) - 100)
    assert params["log_scale"].min() == -7 and params["coeffs"].abs().max() <= 1
    assert random_levels((2,), 4).shape == (2,)


class NaNLogits(AutoregressiveBernoulli):
    def __init__(self):
        super().__init__(var=["x"], features_shape=[1, 3])

    def forward(self, x):
        logits = torch.zeros_like(x)
        logits[:, 0, 1] = float("nan")
        return {"logits": logits}


def test_validation_refuses_nan_parameters_and_can_be_switched_off():
    from pixyz_like.distributions import set_validation

    x = torch.zeros(2, 1, 3)
    with pytest.raises(ParameterError, match=r"logits with NaN entries, the first at index \(0, 0, 1\)"):
        NaNLogits().get_log_prob({"x": x})
    p = BernoulliImage(cond=False)
    half = torch.full((1, 1, 3, 4), 0.5)
    with set_validation(False):
        assert NaNLogits().get_log_prob({"x": x}).isnan().all()
        assert torch.isfinite(p.get_log_prob({"x": half})).all()  # not checked: the formula's value
        assert CategoricalRGB().get_log_prob({"x": torch.full((1, 3, 2, 3), 0.4)}).shape == (1,)
    with pytest.raises(SupportError):
        p.get_log_prob({"x": half})
