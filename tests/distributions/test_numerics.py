"""Dtypes, extreme parameters and the edges of the support, for every parametric family (issue 9,
causes 3, 7 and 9), and the Pixyz behaviours of issue 8 on the parameter path (plain numbers from
``forward``, ``Categorical.features_shape``, the relaxed families' ``sample_mean``).

References are :mod:`torch.distributions` in float64, closed forms, and Pixyz 0.3.3 (the oracle).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
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
from pixyz_like.distributions.kl import kl_elementwise
from pixyz_like.errors import NotDefinedError, ParameterError, ShapeError

T = 0.5


class _ExactBernoulli(td.Bernoulli):
    """torch's Bernoulli with the log-pmf in closed form: torch's own goes through logits computed from
    probs clamped to [eps, 1 - eps], so in float64 it gives -36.04 instead of -69.08 at p = 1e-30."""

    def __init__(self, probs):
        super().__init__(probs=probs, validate_args=False)

    def log_prob(self, value):
        p = self.probs
        return torch.xlogy(value, p) + torch.xlogy(1 - value, 1 - p)


class _MaskedBernoulli(_ExactBernoulli):
    def log_prob(self, value):
        return torch.where(value == 0, torch.zeros((), dtype=value.dtype), super().log_prob(value))


class _ExactOneHotCategorical(td.OneHotCategorical):
    """The log-pmf in closed form (torch's clamps the probabilities to eps first, as above)."""

    def log_prob(self, value):
        p = self.probs
        return torch.xlogy(value, p / p.sum(-1, keepdim=True)).sum(-1)


class _ExactMultinomial(td.Multinomial):
    def log_prob(self, value):
        p = self.probs
        return (torch.lgamma(value.sum(-1) + 1) - torch.lgamma(value + 1).sum(-1)
                + torch.xlogy(value, p / p.sum(-1, keepdim=True)).sum(-1))


def _relaxed_categorical(p):
    # torch's RelaxedOneHotCategorical takes one temperature per distribution object (its log_prob
    # mis-broadcasts a (batch, 1) temperature): every row here has the same one.
    return td.RelaxedOneHotCategorical(p["temperature"].flatten()[0], probs=p["probs"], validate_args=False)


@dataclass
class Family:
    name: str
    cls: type
    make: Callable[[torch.Generator], dict]  # random valid parameters (batch 4, 3 features or categories)
    ref: Callable[[dict], td.Distribution]  # the torch.distributions reference
    value: Callable[[dict], torch.Tensor] | None = None  # a value to score (default: a reference sample)
    fixed: dict = field(default_factory=dict)
    # extreme parameters and values where the float32 result is representable: (params, value)
    extremes: list = field(default_factory=list)
    # points on the edge of the support, where value and gradient are finite: (params, value)
    edges: list = field(default_factory=list)

    def dist(self):
        keys = list(self.make(torch.Generator().manual_seed(0)))
        return self.cls(var=["x"], cond_var=keys, **self.fixed, **{k: k for k in keys})


def _u(g, *shape):
    return torch.rand(*shape, generator=g)


def _pos(g):
    return _u(g, 4, 3) * 2 + 0.3


def _simplex(g):
    return torch.softmax(torch.randn(4, 3, generator=g), -1)


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


ONE = torch.ones(1, 1)
FAMILIES = [
    Family("Normal", Normal, lambda g: {"loc": torch.randn(4, 3, generator=g), "scale": _pos(g)},
           lambda p: td.Normal(p["loc"], p["scale"]),
           extremes=[({"loc": t([0.0]), "scale": t([1e-30])}, t([0.0])),
                     ({"loc": t([0.0]), "scale": t([1e-20])}, t([1e-20])),
                     ({"loc": t([1e30]), "scale": t([1e30])}, t([-1e30])),
                     ({"loc": t([0.0]), "scale": t([1e30])}, t([0.0])),
                     ({"loc": t([3.0]), "scale": t([1e-3])}, t([3.1]))],
           edges=[({"loc": t([0.0]), "scale": t([1e-30])}, t([0.0])),
                  ({"loc": t([0.0]), "scale": t([1e30])}, t([1e30]))]),
    Family("Laplace", Laplace, lambda g: {"loc": torch.randn(4, 3, generator=g), "scale": _pos(g)},
           lambda p: td.Laplace(p["loc"], p["scale"]),
           extremes=[({"loc": t([0.0]), "scale": t([1e-30])}, t([1e-30])),
                     ({"loc": t([0.0]), "scale": t([3e38])}, t([1.0])),
                     ({"loc": t([1e30]), "scale": t([1e30])}, t([-1e30]))],
           edges=[({"loc": t([0.0]), "scale": t([1e-30])}, t([1e-30]))]),
    Family("Bernoulli", Bernoulli, lambda g: {"probs": _u(g, 4, 3) * 0.8 + 0.1},
           lambda p: _ExactBernoulli(probs=p["probs"]), lambda p: torch.bernoulli(p["probs"]),
           extremes=[({"probs": t([1e-30, 1e-30])}, t([0.0, 1.0])),
                     ({"probs": t([1 - 6e-8, 1 - 6e-8])}, t([1.0, 0.0])),
                     ({"probs": t([1e-30, 0.5])}, t([0.25, 0.75]))],
           edges=[({"probs": t([1.0, 0.0])}, t([1.0, 0.0])),
                  ({"probs": t([1.0, 0.0, 1.0])}, t([0.75, 0.25, 1.0]))]),
    Family("Bernoulli-logits", Bernoulli, lambda g: {"logits": torch.randn(4, 3, generator=g) * 3},
           lambda p: td.Bernoulli(logits=p["logits"]), lambda p: torch.bernoulli(torch.sigmoid(p["logits"])),
           extremes=[({"logits": t([80.0, -80.0, 80.0])}, t([1.0, 0.0, 0.0]))],
           edges=[({"logits": t([200.0, -200.0, 200.0])}, t([1.0, 0.0, 0.0]))]),
    Family("FactorizedBernoulli", FactorizedBernoulli, lambda g: {"probs": _u(g, 4, 3) * 0.8 + 0.1},
           lambda p: _MaskedBernoulli(probs=p["probs"]), lambda p: torch.bernoulli(p["probs"]),
           extremes=[({"probs": t([1e-30, 1e-30])}, t([0.0, 1.0]))],
           edges=[({"probs": t([1.0, 0.0])}, t([1.0, 0.0]))]),
    Family("RelaxedBernoulli", RelaxedBernoulli,
           lambda g: {"temperature": torch.full((4, 1), T), "probs": _u(g, 4, 3) * 0.8 + 0.1},
           lambda p: td.RelaxedBernoulli(p["temperature"], probs=p["probs"]),
           extremes=[({"temperature": t([0.05]), "probs": t([1e-6, 0.5])}, t([1e-3, 0.999])),
                     ({"temperature": t([20.0]), "probs": t([0.3, 0.5])}, t([0.4, 0.6]))],
           edges=[({"temperature": t([0.5]), "probs": t([0.3, 0.3])}, t([0.0, 1.0]))]),
    Family("Categorical", Categorical, lambda g: {"probs": _simplex(g)},
           lambda p: _ExactOneHotCategorical(probs=p["probs"]),
           extremes=[({"probs": t([1e-30, 0.5, 0.5])}, t([1.0, 0.0, 0.0])),
                     ({"probs": t([1e30, 1e30, 1.0])}, t([0.0, 0.0, 1.0]))],
           edges=[({"probs": t([0.0, 0.5, 0.5])}, t([0.0, 1.0, 0.0]))]),
    Family("RelaxedCategorical", RelaxedCategorical,
           lambda g: {"temperature": torch.full((4, 1), T), "probs": _simplex(g)},
           _relaxed_categorical,
           extremes=[({"temperature": t([0.1]), "probs": t([1e-6, 0.5, 0.5])}, t([1e-3, 0.5, 0.499])),
                     ({"temperature": t([10.0]), "probs": t([0.2, 0.3, 0.5])}, t([0.3, 0.3, 0.4]))],
           edges=[({"temperature": t([0.5]), "probs": t([0.0, 0.5, 0.5])}, t([0.5, 0.5, 0.0]))]),
    Family("Multinomial", Multinomial, lambda g: {"probs": _simplex(g)},
           lambda p: _ExactMultinomial(5, probs=p["probs"]), fixed={"total_count": 5},
           extremes=[({"probs": t([1e-30, 0.5, 0.5])}, t([0.0, 2.0, 3.0]))],
           edges=[({"probs": t([0.0, 0.5, 0.5])}, t([0.0, 2.0, 3.0]))]),
    Family("Dirichlet", Dirichlet, lambda g: {"concentration": _pos(g)},
           lambda p: td.Dirichlet(p["concentration"], validate_args=False),
           extremes=[({"concentration": t([1e-3, 1e-3, 1.0])}, t([0.2, 0.3, 0.5])),
                     ({"concentration": t([50.0, 50.0, 50.0])}, t([0.3, 0.3, 0.4]))],
           edges=[({"concentration": t([2.0, 2.0, 2.0])}, t([1e-30, 0.5, 0.5]))]),
    Family("Beta", Beta, lambda g: {"concentration1": _pos(g), "concentration0": _pos(g)},
           lambda p: td.Beta(p["concentration1"], p["concentration0"]),
           extremes=[({"concentration1": t([1e-3]), "concentration0": t([1e2])}, t([0.01])),
                     ({"concentration1": t([2.0]), "concentration0": t([3.0])}, t([1e-30]))],
           edges=[({"concentration1": t([2.0]), "concentration0": t([3.0])}, t([1e-30]))]),
    Family("Gamma", Gamma, lambda g: {"concentration": _pos(g), "rate": _pos(g)},
           lambda p: td.Gamma(p["concentration"], p["rate"]),
           extremes=[({"concentration": t([1e-3]), "rate": t([1e3])}, t([1e-3])),
                     ({"concentration": t([2.0]), "rate": t([1e-30])}, t([1e10]))],
           edges=[({"concentration": t([2.0]), "rate": t([3.0])}, t([1e-30]))]),
]
IDS = [f.name for f in FAMILIES]


def _value(fam: Family, params: dict) -> torch.Tensor:
    return fam.value(params) if fam.value else fam.ref(params).sample()


def _sum_features(lp: torch.Tensor) -> torch.Tensor:
    return lp.sum(-1) if lp.ndim > 1 else lp


def _as_batch(d: dict) -> dict:
    return {k: v.unsqueeze(0) for k, v in d.items()}


# ------------------------------------------------------------------------------------ dtypes (cause 3)
@pytest.mark.parametrize("fam", FAMILIES, ids=IDS)
def test_float64_parameters_and_values_promote_like_torch(fam):
    params = fam.make(torch.Generator().manual_seed(1))
    x = _value(fam, params)
    dist = fam.dist()
    expected = _sum_features(fam.ref({k: v.double() for k, v in params.items()}).log_prob(x.double()))
    for p_dtype, x_dtype in [(torch.float64, torch.float64), (torch.float64, torch.float32),
                             (torch.float32, torch.float64)]:
        lp = dist.get_log_prob({"x": x.to(x_dtype), **{k: v.to(p_dtype) for k, v in params.items()}})
        assert lp.dtype == torch.float64, (p_dtype, x_dtype)
        torch.testing.assert_close(lp, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fam", [f for f in FAMILIES if f.name in ("Bernoulli", "Bernoulli-logits", "Categorical",
                                                                   "FactorizedBernoulli", "Multinomial")], ids=str)
def test_bool_and_integer_values_are_scored_in_the_parameters_dtype(fam):
    params = fam.make(torch.Generator().manual_seed(2))
    x = _value(fam, params)
    dist = fam.dist()
    expected = dist.get_log_prob({"x": x, **params})
    for cast in (torch.bool, torch.int64):
        if cast is torch.bool and fam.name == "Multinomial":
            continue
        lp = dist.get_log_prob({"x": x.to(cast), **params})
        assert lp.dtype == torch.float32
        torch.testing.assert_close(lp, expected)


def _network(fam: Family, params: dict) -> nn.Module:
    """The family with its parameters computed from ``h`` by a linear layer (exactly ``params`` at h=0)."""
    keys = list(params)

    class Net(fam.cls):
        def __init__(self):
            super().__init__(var=["x"], cond_var=["h"], name="q", **fam.fixed)
            self.lin = nn.Linear(2, 2)

        def forward(self, h):
            zero = self.lin(h).sum(-1, keepdim=True) * 0  # (4, 1), in autocast's dtype
            return {k: params[k].to(zero.dtype) + zero for k in keys}

    return Net()


@pytest.mark.parametrize("fam", FAMILIES, ids=IDS)
def test_bfloat16_autocast_network_parameters(fam):
    params = fam.make(torch.Generator().manual_seed(3))
    x = _value(fam, params)
    q = _network(fam, params)
    h = torch.zeros(4, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = q.get_params({"h": h})
        assert all(v.dtype == torch.bfloat16 for v in got.values())
        lp = q.get_log_prob({"x": x, "h": h})
        sample = q.sample({"h": h})["x"]
        mean = q.sample_mean({"h": h}) if fam.name not in ("Dirichlet", "Beta", "Gamma") else None
    # Scored in float32 (the value's dtype) from the bfloat16 parameters, as torch would.
    rounded = {k: v.to(torch.bfloat16).float() for k, v in params.items()}
    assert lp.dtype == torch.float32
    torch.testing.assert_close(lp, _sum_features(fam.ref(rounded).log_prob(x)), rtol=1e-4, atol=1e-4)
    assert sample.shape == x.shape and torch.isfinite(sample.float()).all()
    if mean is not None:
        assert torch.isfinite(mean.float()).all()


@pytest.mark.parametrize("fam", FAMILIES, ids=IDS)
def test_bfloat16_value_with_float32_parameters(fam):
    params = fam.make(torch.Generator().manual_seed(4))
    x = _value(fam, params)
    if fam.name in ("Dirichlet", "RelaxedCategorical"):
        x = x / x.sum(-1, keepdim=True)
    xb = x.to(torch.bfloat16)  # a simplex value in bfloat16 sums to 1 within bfloat16's rounding
    lp = fam.dist().get_log_prob({"x": xb, **params})
    assert lp.dtype == torch.float32
    torch.testing.assert_close(lp, _sum_features(fam.ref(params).log_prob(xb.float())), rtol=1e-4, atol=1e-4)


def test_quick_start_decoder_under_bfloat16_autocast_trains():
    from torch import optim

    from pixyz_like.losses import Expectation, KullbackLeibler, LogProb
    from pixyz_like.models import Model

    class Inference(Normal):
        def __init__(self):
            super().__init__(var=["z"], cond_var=["x"], name="q")
            self.net = nn.Linear(6, 4)

        def forward(self, x):
            loc, scale = self.net(x).chunk(2, dim=-1)
            return {"loc": loc, "scale": F.softplus(scale)}

    class Generator(Bernoulli):
        def __init__(self):
            super().__init__(var=["x"], cond_var=["z"], name="p")
            self.net = nn.Sequential(nn.Linear(2, 6), nn.Sigmoid())

        def forward(self, z):
            return {"probs": self.net(z)}

    p, q = Generator(), Inference()
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[2], name="p_{prior}")
    loss = (KullbackLeibler(q, prior) - Expectation(q, LogProb(p))).mean()
    model = Model(loss, distributions=[p, q], optimizer=optim.Adam, optimizer_params={"lr": 1e-2})
    x = torch.bernoulli(torch.full((8, 6), 0.5))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        values = [float(model.train({"x": x})) for _ in range(3)]
    assert all(math.isfinite(v) for v in values)


# --------------------------------------------------------------------------- extreme parameters (cause 7)
EXTREMES = [(f, p, v) for f in FAMILIES for p, v in f.extremes]
EXTREME_IDS = [f"{f.name}-{i}" for f in FAMILIES for i in range(len(f.extremes))]


@pytest.mark.parametrize(("fam", "params", "value"), EXTREMES, ids=EXTREME_IDS)
def test_extreme_parameters_match_float64_torch(fam, params, value):
    """Scored in float32, the log-density matches torch.distributions in float64 on the same numbers."""
    params, value = _as_batch(params), value.unsqueeze(0)
    if "temperature" in params:
        params["temperature"] = params["temperature"].reshape(1, 1)
    ours = fam.dist().get_log_prob({"x": value, **params}, sum_features=False)
    ref_params = {k: v.double() for k, v in params.items()}
    expected = fam.ref(ref_params).log_prob(value.double())
    assert ours.dtype == torch.float32 and torch.isfinite(ours).all(), ours
    torch.testing.assert_close(ours.double(), expected, rtol=1e-5, atol=1e-4)


def test_normal_tiny_scale_is_68_16_where_sigma_squared_underflows():
    p = Normal(loc=0.0, scale=1e-30, var=["x"])
    lp = p.get_log_prob({"x": torch.zeros(1, 1)})
    assert lp.dtype == torch.float32
    torch.testing.assert_close(lp, torch.tensor([-math.log(1e-30) - 0.5 * math.log(2 * math.pi)]))
    assert abs(lp.item() - 68.16) < 0.01


@pytest.mark.parametrize(("sp", "sq"), [(1e-30, 1.0), (1e-20, 1e-10), (1e10, 1e12), (1.0, 1e-15)])
def test_normal_kl_at_extreme_scales_matches_float64(sp, sq):
    p = Normal(loc=t([0.5]), scale=t([sp]), var=["z"])
    q = Normal(loc=t([0.0]), scale=t([sq]), var=["z"])
    ours = kl_elementwise(p, p.get_params(), q, q.get_params())
    d = torch.float64
    expected = td.kl_divergence(td.Normal(torch.tensor([0.5], dtype=d), torch.tensor([sp], dtype=d)),
                                td.Normal(torch.tensor([0.0], dtype=d), torch.tensor([sq], dtype=d)))
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours.double().reshape(-1), expected, rtol=1e-5, atol=1e-4)


# ------------------------------------------------------------------------ edges of the support (cause 9)
EDGES = [(f, p, v) for f in FAMILIES for p, v in f.edges]
EDGE_IDS = [f"{f.name}-{i}" for f in FAMILIES for i in range(len(f.edges))]


@pytest.mark.parametrize(("fam", "params", "value"), EDGES, ids=EDGE_IDS)
def test_value_and_gradient_are_finite_at_the_edges_of_the_support(fam, params, value):
    params = {k: v.unsqueeze(0).clone().requires_grad_() for k, v in params.items()}
    if "temperature" in params:
        params["temperature"] = params["temperature"].detach().reshape(1, 1).requires_grad_()
    value = value.unsqueeze(0).clone().requires_grad_(fam.name not in ("Categorical", "Multinomial"))
    lp = fam.dist().get_log_prob({"x": value, **params})
    assert torch.isfinite(lp).all(), lp
    leaves = [*params.values()] + ([value] if value.requires_grad else [])
    grads = torch.autograd.grad(lp.sum(), leaves, allow_unused=True)
    for leaf, g in zip(leaves, grads):
        assert g is None or torch.isfinite(g).all(), (leaf, g)


def test_bernoulli_gradient_where_the_sigmoid_saturates_is_binary_cross_entropys():
    """probs = sigmoid(20) is exactly 1.0 in float32; x = 1: BCE's gradient is 0, autograd's lerp NaN."""
    logits = torch.tensor([[20.0, -20.0, 20.0, -120.0, 3.0]], requires_grad=True)
    x = torch.tensor([[1.0, 0.0, 0.6, 0.0, 1.0]])
    probs = torch.sigmoid(logits)
    assert probs[0, 0].item() == 1.0
    p = Bernoulli(probs="pi", var=["x"], cond_var=["pi"])
    lp = p.get_log_prob({"x": x, "pi": probs}, sum_features=False)
    (g_ours,) = torch.autograd.grad(lp.sum(), logits)
    bce = -F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="none")
    (g_bce,) = torch.autograd.grad(bce.sum(), logits)
    torch.testing.assert_close(lp, bce)
    torch.testing.assert_close(g_ours, g_bce)
    assert g_ours[0, 0].item() == 0.0
    # The gradient with respect to probs too, and to the value (a relaxed sample scored as a target).
    pr = probs.detach().requires_grad_()
    xv = x.clone().requires_grad_()
    lp = p.get_log_prob({"x": xv, "pi": pr}, sum_features=False)
    g_p, g_x = torch.autograd.grad(lp.sum(), [pr, xv])
    pr2, xv2 = probs.detach().requires_grad_(), x.clone().requires_grad_()
    g_p2, g_x2 = torch.autograd.grad(-F.binary_cross_entropy(pr2, xv2, reduction="sum"), [pr2, xv2])
    torch.testing.assert_close(g_p, g_p2)
    # d/dx is log p - log(1 - p) of the clamped logs: finite where BCE's (unclamped) is infinite.
    expected = torch.log(probs.detach()).clamp_min(-100) - torch.log1p(-probs.detach()).clamp_min(-100)
    torch.testing.assert_close(g_x, expected)
    assert torch.isfinite(g_x).all() and not torch.isfinite(g_x2).all()


def test_bernoulli_gradient_reduces_over_broadcast_constant_probs():
    probs = torch.tensor([0.2, 1.0, 0.7], requires_grad=True)
    x = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.5]])
    p = Bernoulli(probs="pi", var=["x"], cond_var=["pi"])
    (g,) = torch.autograd.grad(p.get_log_prob({"x": x, "pi": probs.unsqueeze(0)}).sum(), probs)
    (g_ref,) = torch.autograd.grad(-F.binary_cross_entropy(probs.expand(2, 3), x, reduction="sum"), probs)
    torch.testing.assert_close(g, g_ref)


def test_saturated_decoder_trains_without_nan():
    """A decoder whose sigmoid saturates on a fixed binary batch: the loss and every gradient stay finite."""
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((16, 6), 0.5))

    class Decoder(Bernoulli):
        def __init__(self):
            super().__init__(var=["x"], cond_var=["z"], name="p")
            self.lin = nn.Linear(6, 6)

        def forward(self, z):
            return {"probs": torch.sigmoid(self.lin(z))}

    p = Decoder()
    with torch.no_grad():  # logits of +-40 matching the data: probs exactly 0 or 1
        p.lin.weight.copy_(torch.eye(6) * 80)
        p.lin.bias.fill_(-40)
    lp = p.get_log_prob({"x": x, "z": x}).mean()
    lp.backward()
    assert torch.isfinite(lp) and all(torch.isfinite(w.grad).all() for w in p.parameters())


def test_bernoulli_kl_gradient_is_finite_at_probs_exactly_one():
    pr = torch.tensor([[1.0, 0.0, 0.3]], requires_grad=True)
    p = Bernoulli(probs="a", var=["x"], cond_var=["a"])
    q = Bernoulli(probs=torch.tensor([0.5, 0.5, 0.5]), var=["x"])
    kl = kl_elementwise(p, p.get_params({"a": pr}), q, q.get_params())
    expected = td.kl_divergence(td.Bernoulli(probs=pr.detach().double()),
                                td.Bernoulli(probs=torch.full((1, 3), 0.5, dtype=torch.float64)))
    torch.testing.assert_close(kl.double(), expected, rtol=1e-5, atol=1e-6)
    (g,) = torch.autograd.grad(kl.sum(), pr)
    assert torch.isfinite(g).all()


# ------------------------------------------------------------------ issue 8: Pixyz's parameter path
import pixyz.distributions as pz  # noqa: E402  (Pixyz 0.3.3, the oracle)


def _number_forward(lib, cls_name, out):
    base = getattr(lib, cls_name)

    class Net(base):
        def __init__(self):
            super().__init__(var=["x"], cond_var=["z"], name="p")

        def forward(self, z):
            return out(z)

    return Net()


@pytest.mark.parametrize(("name", "out", "value"), [
    ("Normal", lambda z: {"loc": z, "scale": 1.0}, lambda z: z + 0.3),
    ("Normal", lambda z: {"loc": 0, "scale": z.abs() + 0.5}, lambda z: z * 0.1),
    ("Laplace", lambda z: {"loc": z, "scale": 2.0}, lambda z: z - 1.0),
    ("Gamma", lambda z: {"concentration": 2.0, "rate": z.abs() + 1.0}, lambda z: z.abs() + 0.1),
    ("Beta", lambda z: {"concentration1": 2.0, "concentration0": z.abs() + 1.0}, lambda z: torch.sigmoid(z)),
    ("Bernoulli", lambda z: {"probs": torch.sigmoid(z)}, lambda z: (z > 0).float()),
])
def test_forward_may_return_plain_numbers_as_in_pixyz(name, out, value):
    z = torch.randn(5, 3)
    ours, theirs = _number_forward(pixyz_like_dists(), name, out), _number_forward(pz, name, out)
    x = value(z)
    torch.testing.assert_close(ours.get_log_prob({"x": x, "z": z}), theirs.get_log_prob({"x": x, "z": z}))
    assert ours.sample({"z": z})["x"].shape == theirs.sample({"z": z})["x"].shape == (5, 3)
    params = ours.get_params({"z": z})
    assert all(isinstance(v, torch.Tensor) and v.dtype == z.dtype for v in params.values())


def pixyz_like_dists():
    import pixyz_like.distributions as d

    return d


def test_a_number_from_forward_takes_the_dtype_of_the_other_parameters():
    p = _number_forward(pixyz_like_dists(), "Normal", lambda z: {"loc": z, "scale": 1})
    z = torch.randn(4, 2, dtype=torch.float64)
    params = p.get_params({"z": z})
    assert params["scale"].dtype == torch.float64 and params["scale"].shape == ()
    with pytest.raises(ParameterError, match=r"parameter 'scale' \(from forward\(\)\) must be a tensor or a number"):
        _number_forward(pixyz_like_dists(), "Normal", lambda z: {"loc": z, "scale": [1.0]}).sample({"z": z})
    with pytest.raises(ParameterError, match=r"'scale' \(from forward\(\)\) must be positive"):
        _number_forward(pixyz_like_dists(), "Normal", lambda z: {"loc": z, "scale": -1.0}).sample({"z": z})


@pytest.mark.parametrize("name", ["Categorical", "RelaxedCategorical", "Multinomial", "Dirichlet"])
def test_event_families_count_the_categories_in_features_shape_as_pixyz(name):
    probs = torch.tensor([0.2, 0.3, 0.5])
    key = "concentration" if name == "Dirichlet" else "probs"
    ours = getattr(pixyz_like_dists(), name)(var=["y"], **{key: probs})
    theirs = getattr(pz, name)(var=["y"], **{key: probs})
    assert ours.features_shape == theirs.features_shape == torch.Size([3])
    # A network-parameterised one declared with Pixyz's features_shape=[K] works.

    class Classifier(getattr(pixyz_like_dists(), name)):
        def __init__(self):
            super().__init__(var=["y"], cond_var=["x"], features_shape=[3], name="q")
            self.lin = nn.Linear(2, 3)

        def forward(self, x):
            out = torch.softmax(self.lin(x), -1)
            return {key: out + 1 if key == "concentration" else out}

    c = Classifier()
    assert c.features_shape == (3,)
    y = c.sample({"x": torch.zeros(4, 2)})["y"]
    assert y.shape == (4, 3) and c.get_log_prob({"y": y, "x": torch.zeros(4, 2)}).shape == (4,)
    c.lin = nn.Linear(2, 4)  # now 4 categories where features_shape says 3
    with pytest.raises(ShapeError, match="categories"):
        c.sample({"x": torch.zeros(4, 2)})


@pytest.mark.parametrize("name", ["RelaxedCategorical", "RelaxedBernoulli"])
def test_relaxed_sample_mean_is_the_probabilities_as_in_pixyz(name):
    probs = torch.softmax(torch.randn(4, 3), -1)
    ours = getattr(pixyz_like_dists(), name)(var=["y"], cond_var=["pi"], probs="pi", temperature=0.5)
    theirs = getattr(pz, name)(var=["y"], cond_var=["pi"], probs="pi", temperature=torch.tensor(0.5))
    torch.testing.assert_close(ours.sample_mean({"pi": probs}), theirs.sample_mean({"pi": probs}))
    torch.testing.assert_close(ours.sample_variance({"pi": probs}), theirs.sample_variance({"pi": probs}))
    # As in Pixyz (its own test asserts it), sample(sample_mean=True) of the soft relaxation raises.
    with pytest.raises(NotImplementedError):
        theirs.sample({"pi": probs}, sample_mean=True)
    with pytest.raises(NotDefinedError, match="sample_mean"):
        ours.sample({"pi": probs}, sample_mean=True)
    hard = getattr(pixyz_like_dists(), name)(var=["y"], cond_var=["pi"], probs="pi", temperature=0.5, hard=True)
    torch.testing.assert_close(hard.sample({"pi": probs}, sample_mean=True)["y"], probs)
