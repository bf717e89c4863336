"""Every parametric family against torch.distributions (and Pixyz where Pixyz is right).

Each family is described once by a ``Spec``: how to build it with constant parameters, how to map a
network's raw output to its parameters, and the torch.distributions object that is the reference.
Every test below is parametrised over all of them.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import scipy.stats
import torch
import torch.distributions as td
import torch.nn.functional as F
from torch import nn

from pixyz_like.distributions import (
    Bernoulli,
    Beta,
    Categorical,
    Dirichlet,
    FactorizedBernoulli,
    Gamma,
    Laplace,
    Multinomial,
    Normal,
    RelaxedBernoulli,
    RelaxedCategorical,
)
from pixyz_like.distributions.kl import has_closed_form_kl, kl_elementwise
from pixyz_like.errors import NotDefinedError, ParameterError, ShapeError, SupportError

FEAT = (3,)  # features of the elementwise families
EV_FEAT, K = (2,), 3  # features and number of categories of the families over the simplex/categories
T = 0.5  # temperature of the relaxed families (high enough that samples stay off the simplex's boundary)


def _pos(r):
    return F.softplus(r) + 0.2


def _unit(r):
    return torch.sigmoid(r) * 0.8 + 0.1


def _simplex(r):
    return torch.softmax(r, -1)


class _MaskedBernoulli(td.Bernoulli):
    """Reference for FactorizedBernoulli: the Bernoulli log-pmf with the zero entries left out."""

    def log_prob(self, value):
        return torch.where(value == 0, torch.zeros(()), super().log_prob(value))


@dataclass
class Spec:
    name: str
    cls: type
    event: bool  # last dimension is an event (category) dimension
    raw_params: Callable[[torch.Tensor], dict]  # raw network output (..., n) -> params
    torch_ref: Callable[[dict], td.Distribution]
    reparam: bool
    fixed: dict = field(default_factory=dict)  # constructor keywords that are not parameters
    # the reference for sample_mean / sample_variance when it differs from torch_ref (the soft relaxed
    # families report their underlying discrete distribution's, as Pixyz does)
    moments_ref: Callable[[dict], td.Distribution] | None = None

    @property
    def value_shape(self):
        return EV_FEAT + (K,) if self.event else FEAT

    def params(self, batch: int) -> dict:
        """Random parameters of shape (batch, *value_shape)."""
        return self.raw_params(torch.randn(batch, *self.value_shape))

    def const(self, **extra):
        params = {k: v[0] for k, v in self.params(1).items()}
        return self.cls(var=["x"], **self.fixed, **params, **extra)

    def cond(self):
        """The family with each parameter read from a conditioning variable of the same name."""
        keys = list(self.params(1))
        return self.cls(var=["x"], cond_var=[f"c_{k}" for k in keys], **self.fixed,
                        **{k: f"c_{k}" for k in keys})


def _raw_loc_scale(r):
    return {"loc": r, "scale": _pos(-r)}


SPECS = [
    Spec("Normal", Normal, False, _raw_loc_scale, lambda p: td.Normal(p["loc"], p["scale"]), True),
    Spec("Bernoulli", Bernoulli, False, lambda r: {"probs": _unit(r)},
         lambda p: td.Bernoulli(probs=p["probs"]), False),
    Spec("FactorizedBernoulli", FactorizedBernoulli, False, lambda r: {"probs": _unit(r)},
         lambda p: _MaskedBernoulli(probs=p["probs"]), False),
    Spec("RelaxedBernoulli", RelaxedBernoulli, False, lambda r: {"probs": _unit(r)},
         lambda p: td.RelaxedBernoulli(torch.tensor(T), probs=p["probs"]), True, {"temperature": T},
         lambda p: td.Bernoulli(probs=p["probs"])),
    Spec("RelaxedBernoulli-hard", RelaxedBernoulli, False, lambda r: {"probs": _unit(r)},
         lambda p: td.Bernoulli(probs=p["probs"]), True, {"temperature": T, "hard": True}),
    Spec("Categorical", Categorical, True, lambda r: {"probs": _simplex(r)},
         lambda p: td.OneHotCategorical(probs=p["probs"]), False),
    Spec("RelaxedCategorical", RelaxedCategorical, True, lambda r: {"probs": _simplex(r)},
         lambda p: td.RelaxedOneHotCategorical(torch.tensor(T), probs=p["probs"]), True, {"temperature": T},
         lambda p: td.OneHotCategorical(probs=p["probs"])),
    Spec("RelaxedCategorical-hard", RelaxedCategorical, True, lambda r: {"probs": _simplex(r)},
         lambda p: td.OneHotCategorical(probs=p["probs"]), True, {"temperature": T, "hard": True}),
    Spec("Multinomial", Multinomial, True, lambda r: {"probs": _simplex(r)},
         lambda p: td.Multinomial(5, probs=p["probs"]), False, {"total_count": 5}),
    Spec("Dirichlet", Dirichlet, True, lambda r: {"concentration": _pos(r) * 3},
         lambda p: td.Dirichlet(p["concentration"]), True),
    Spec("Beta", Beta, False, lambda r: {"concentration1": _pos(r) * 2, "concentration0": _pos(-r) * 2},
         lambda p: td.Beta(p["concentration1"], p["concentration0"]), True),
    Spec("Laplace", Laplace, False, _raw_loc_scale, lambda p: td.Laplace(p["loc"], p["scale"]), True),
    Spec("Gamma", Gamma, False, lambda r: {"concentration": _pos(r) * 2, "rate": _pos(-r)},
         lambda p: td.Gamma(p["concentration"], p["rate"]), True),
]
IDS = [s.name for s in SPECS]


def _sum_feat(lp: torch.Tensor, spec: Spec) -> torch.Tensor:
    n = len(EV_FEAT) if spec.event else len(FEAT)
    return lp.sum(dim=tuple(range(-n, 0)))


def _net_dist(spec: Spec) -> nn.Module:
    """The family with its parameters computed by a linear layer from a conditioning variable ``h``."""
    keys = list(spec.params(1))
    n_out = math.prod(spec.value_shape)

    class Net(spec.cls):
        def __init__(self):
            super().__init__(var=["x"], cond_var=["h"], name="q", **spec.fixed)
            self.lin = nn.Linear(2, n_out * len(keys))

        def forward(self, h):
            raw = self.lin(h).reshape(h.shape[0], len(keys), *spec.value_shape)
            # Each parameter gets its own slice of the output, mapped to the family's constraint.
            return {k: spec.raw_params(raw[:, i])[k] for i, k in enumerate(keys)}

    return Net()


@pytest.mark.parametrize("sample_shape", [(), (2,), (2, 4)])
@pytest.mark.parametrize("batch_n", [None, 3])
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_sample_shapes(spec, batch_n, sample_shape):
    dist = spec.const()
    x = dist.sample(batch_n=batch_n, sample_shape=sample_shape)["x"]
    expected = torch.Size(sample_shape) + (batch_n or 1,) + spec.value_shape
    assert x.shape == expected
    assert dist.get_log_prob({"x": x}).shape == expected[: len(sample_shape) + 1]
    # Conditional: the batch comes from the inputs.
    cond = {f"c_{k}": v for k, v in spec.params(3).items()}
    x = spec.cond().sample(cond, batch_n=batch_n, sample_shape=sample_shape)["x"]
    assert x.shape == torch.Size(sample_shape) + (3,) + spec.value_shape


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_log_prob_matches_torch(spec):
    params = spec.params(5)
    ref = spec.torch_ref(params)
    dist = spec.cond()
    cond = {f"c_{k}": v for k, v in params.items()}
    for shape in [(), (2,)]:
        x = ref.sample(shape)
        expected = _sum_feat(ref.log_prob(x), spec)
        torch.testing.assert_close(dist.get_log_prob({"x": x, **cond}), expected)
    # Our own samples are scored like torch's.
    x = dist.sample(cond)["x"]
    torch.testing.assert_close(dist.get_log_prob({"x": x, **cond}), _sum_feat(ref.log_prob(x), spec))
    # sum_features=False keeps the feature dimensions.
    torch.testing.assert_close(dist.get_log_prob({"x": x, **cond}, sum_features=False), ref.log_prob(x))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_entropy_mean_variance_match_torch(spec):
    params = spec.params(4)
    ref = spec.torch_ref(params)
    moments = (spec.moments_ref or spec.torch_ref)(params)
    dist = spec.cond()
    cond = {f"c_{k}": v for k, v in params.items()}
    for ours, theirs in [
        (lambda: dist.get_entropy(cond), lambda: _sum_feat(ref.entropy(), spec)),
        (lambda: dist.sample_mean(cond), lambda: moments.mean),
        (lambda: dist.sample_variance(cond), lambda: moments.variance),
    ]:
        try:
            expected = theirs()
        except NotImplementedError:
            # torch has no closed form (soft relaxed families): ours says so with a named error.
            with pytest.raises(NotDefinedError, match=spec.cls.distribution_name):
                ours()
            continue
        torch.testing.assert_close(ours(), expected)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_reparameterised_gradients_reach_the_network(spec):
    dist = _net_dist(spec)
    h = torch.randn(4, 2)
    if not spec.reparam:
        assert not dist.has_reparam
        with pytest.raises(NotDefinedError, match="reparameterised"):
            dist.sample({"h": h}, reparam=True)
        return
    x = dist.sample({"h": h}, reparam=True, sample_shape=(2,))["x"]
    (x * torch.randn_like(x)).sum().backward()
    assert dist.lin.weight.grad is not None and dist.lin.weight.grad.abs().sum() > 0
    # Without reparam the sample is cut from the graph.
    assert not dist.sample({"h": h})["x"].requires_grad


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_state_dict_round_trip(spec):
    a, b = spec.const(), spec.const()
    x = a.sample(batch_n=6)["x"]
    assert not torch.allclose(a.get_log_prob({"x": x}), b.get_log_prob({"x": x}))
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf))
    torch.testing.assert_close(a.get_log_prob({"x": x}), b.get_log_prob({"x": x}))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_print_and_latex(spec):
    dist = _net_dist(spec)
    text = str(dist)
    assert "q(x|h)" in text and spec.cls.distribution_name in text and "Linear" in text
    assert dist._repr_latex_() == "$q(x|h)$"


@pytest.mark.parametrize(
    "spec",
    [s for s in SPECS if s.name in ("Laplace", "RelaxedBernoulli", "Multinomial", "RelaxedCategorical",
                                    "RelaxedBernoulli-hard", "RelaxedCategorical-hard", "Beta")],
    ids=lambda s: s.name,
)
def test_our_samplers_follow_torch_distribution(spec):
    """Two-sample Kolmogorov-Smirnov test of our sampler against torch's on the first coordinate."""
    params = {k: v[:1] for k, v in spec.params(1).items()}
    dist = spec.cls(var=["x"], **spec.fixed, **{k: v[0] for k, v in params.items()})
    ours = dist.sample(sample_shape=(4000,))["x"].reshape(4000, -1)[:, 0]
    theirs = spec.torch_ref(params).sample((4000,)).reshape(4000, -1)[:, 0]
    assert scipy.stats.ks_2samp(ours.numpy(), theirs.numpy()).pvalue > 1e-3


# ------------------------------------------------------------------------------------------ specifics
def test_bernoulli_grey_level_target_is_negative_bce():
    probs, target = torch.rand(4, 5) * 0.8 + 0.1, torch.rand(4, 5)
    p = Bernoulli(probs="pi", var=["x"], cond_var=["pi"])
    expected = -F.binary_cross_entropy(probs, target, reduction="none").sum(-1)
    torch.testing.assert_close(p.get_log_prob({"x": target, "pi": probs}), expected)


@pytest.mark.parametrize("value", [[0.2, 0.3, 0.5], [0.0, 2.0, -1.0], [1.0, 1.0, 0.0]])
def test_categorical_and_hard_relaxed_categorical_reject_non_one_hot(value):
    probs = torch.tensor([0.2, 0.3, 0.5])
    for dist in (Categorical(probs=probs, var=["y"]), RelaxedCategorical(probs=probs, var=["y"], hard=True)):
        with pytest.raises(SupportError, match="one-hot"):
            dist.get_log_prob({"y": torch.tensor([value])})


def test_multinomial_total_count_and_bad_counts():
    p = Multinomial(total_count=7, probs=torch.tensor([0.1, 0.6, 0.3]), var=["c"])
    c = p.sample(batch_n=50)["c"]
    assert (c.sum(-1) == 7).all() and (c == c.round()).all() and (c >= 0).all()
    for bad in ([1.0, 1.0, 1.0], [7.5, -0.5, 0.0]):
        with pytest.raises(SupportError, match="total_count=7"):
            p.get_log_prob({"c": torch.tensor([bad])})
    for bad_count in (-1, 2.5, True):
        with pytest.raises(ParameterError, match="total_count"):
            Multinomial(total_count=bad_count, probs=torch.tensor([0.5, 0.5]))


def test_relaxed_temperature_from_a_conditioning_variable():
    probs = torch.softmax(torch.randn(4, 3), -1)
    temp = torch.rand(4, 1) + 0.3
    p = RelaxedCategorical(temperature="t", probs=probs[0], var=["y"], cond_var=["t"])
    y = p.sample({"t": temp})["y"]
    # torch takes one temperature per distribution object: score each row with its own.
    expected = torch.stack(
        [td.RelaxedOneHotCategorical(temp[i, 0], probs=probs[0]).log_prob(y[i]) for i in range(4)]
    )
    torch.testing.assert_close(p.get_log_prob({"y": y, "t": temp}), expected)
    with pytest.raises(ShapeError, match="temperature"):
        p.get_log_prob({"y": y, "t": torch.rand(4, 3)})
    with pytest.raises(ParameterError, match="temperature"):
        RelaxedCategorical(temperature=torch.tensor([0.5, 0.5]), probs=probs[0])
    with pytest.raises(ParameterError, match="temperature"):
        RelaxedBernoulli(temperature=-1.0, probs=0.5)
    b = RelaxedBernoulli(temperature="t", logits="l", var=["z"], cond_var=["t", "l"])
    logits, t = torch.randn(4, 3), torch.rand(4, 1) + 0.3
    z = b.sample({"t": t, "l": logits})["z"]
    torch.testing.assert_close(b.get_log_prob({"z": z, "t": t, "l": logits}),
                               td.RelaxedBernoulli(t, logits=logits).log_prob(z).sum(-1))


@pytest.mark.parametrize("cls", [RelaxedBernoulli, RelaxedCategorical])
def test_straight_through_forward_is_hard_and_gradient_is_the_relaxed_one(cls):
    logits = torch.randn(4, 3, requires_grad=True)
    probs = torch.softmax(logits, -1) if cls is RelaxedCategorical else torch.sigmoid(logits)
    soft = cls(temperature=T, probs="pi", var=["y"], cond_var=["pi"])
    hard = cls(temperature=T, probs="pi", var=["y"], cond_var=["pi"], hard=True)
    w = torch.randn(4, 3)
    torch.manual_seed(1)
    ys = soft.sample({"pi": probs}, reparam=True)["y"]
    (g_soft,) = torch.autograd.grad((ys * w).sum(), logits, retain_graph=True)
    torch.manual_seed(1)
    yh = hard.sample({"pi": probs}, reparam=True)["y"]
    (g_hard,) = torch.autograd.grad((yh * w).sum(), logits)
    if cls is RelaxedCategorical:
        torch.testing.assert_close(yh.detach(), F.one_hot(ys.argmax(-1), 3).float())
    else:
        torch.testing.assert_close(yh.detach(), (ys > 0.5).float())
    torch.testing.assert_close(g_hard, g_soft)


def test_relaxed_kl_is_the_kl_of_the_discrete_distributions():
    probs_q, probs_p = torch.softmax(torch.randn(4, 3), -1), torch.softmax(torch.randn(4, 3), -1)
    q = RelaxedCategorical(temperature=T, probs=probs_q[0], var=["y"], hard=True)
    p = Categorical(probs=probs_p[0], var=["y"])
    assert has_closed_form_kl(q, p) and has_closed_form_kl(p, q)
    expected = td.kl_divergence(td.Categorical(probs_q[0]), td.Categorical(probs_p[0]))
    torch.testing.assert_close(kl_elementwise(q, q.get_params(), p, p.get_params()), expected.reshape(1))
    bq = RelaxedBernoulli(temperature=T, probs=torch.tensor([0.3, 0.8]), var=["z"])
    bp = Bernoulli(probs=torch.tensor([0.5, 0.4]), var=["z"])
    expected = td.kl_divergence(td.Bernoulli(torch.tensor([0.3, 0.8])),
                                td.Bernoulli(torch.tensor([0.5, 0.4])))
    torch.testing.assert_close(kl_elementwise(bq, bq.get_params(), bp, bp.get_params())[0], expected)


def test_closed_form_kl_of_new_families_comes_from_torch():
    for cls, a, b in [
        (Laplace, {"loc": 0.0, "scale": 1.0}, {"loc": 1.0, "scale": 2.0}),
        (Gamma, {"concentration": 2.0, "rate": 1.0}, {"concentration": 3.0, "rate": 0.5}),
        (Beta, {"concentration1": 2.0, "concentration0": 1.0},
         {"concentration1": 1.0, "concentration0": 3.0}),
    ]:
        p, q = cls(var=["x"], **a), cls(var=["x"], **b)
        expected = td.kl_divergence(p.distribution_torch_class(**{k: torch.tensor(v) for k, v in a.items()}),
                                    q.distribution_torch_class(**{k: torch.tensor(v) for k, v in b.items()}))
        torch.testing.assert_close(kl_elementwise(p, p.get_params(), q, q.get_params()).reshape(()), expected)


def test_wrong_parameters_are_named():
    with pytest.raises(ParameterError, match=r"Beta.*concentration0"):
        Beta(var=["x"], cond_var=["a"], concentration1="a").get_params({"a": torch.ones(1)})
    with pytest.raises(ShapeError, match="categories"):
        Dirichlet(concentration=2.0)


# ------------------------------------------------------------------------------- parity with Pixyz
import pixyz.distributions as pixyz  # noqa: E402  (Pixyz 0.3.3, the oracle)


@pytest.mark.parametrize(
    "name", ["Beta", "Gamma", "Laplace", "Dirichlet", "FactorizedBernoulli"]
)
def test_log_prob_parity_with_pixyz(name):
    spec = next(s for s in SPECS if s.name == name)
    params = spec.params(5)
    x = spec.torch_ref(params).sample()
    if name == "FactorizedBernoulli":
        x[0] = 0.0  # a row with nothing observed scores 0
    ours = spec.cls(var=["x"], cond_var=list(params), **spec.fixed, **{k: k for k in params})
    theirs = getattr(pixyz, name)(var=["x"], cond_var=list(params), **spec.fixed, **{k: k for k in params})
    torch.testing.assert_close(ours.get_log_prob({"x": x, **params}), theirs.get_log_prob({"x": x, **params}))
