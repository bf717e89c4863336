"""Bad parameters and values of every parametric family get a named error (issue 9, cause 1).

Each family is described once by a ``Case``: valid parameters (batch 2, three features or three
categories), for each parameter the entries that put it outside its domain, and the values outside
the family's support. Every test is parametrised over all of them.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn, optim

import pixyz_like
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
from pixyz_like.errors import ParameterError, PixyzLikeError, SupportError

NAN, INF = float("nan"), float("inf")


def full(v: float, shape=(2, 3)) -> torch.Tensor:
    return torch.full(shape, v)


def put(t: torch.Tensor, idx: tuple, v: float) -> torch.Tensor:
    t = t.clone()
    t[idx] = v
    return t


@dataclass
class Case:
    name: str
    cls: type
    params: dict  # valid parameters, each (2, 3) (or (2, 1) for a temperature)
    bad_params: list  # (parameter, bad tensor, index of the first offending entry or event)
    value: torch.Tensor  # a valid value
    bad_values: list  # (bad value, index)
    fixed: dict = field(default_factory=dict)

    def dist(self) -> pixyz_like.distributions.DistributionBase:
        """The family with every parameter read from a conditioning variable ``c_<param>``."""
        return self.cls(var=["x"], cond_var=[f"c_{k}" for k in self.params], **self.fixed,
                        **{k: f"c_{k}" for k in self.params})

    def inputs(self, **override) -> dict:
        return {f"c_{k}": override.get(k, v) for k, v in self.params.items()}


ONE_HOT = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
PROBS3 = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
SIMPLEX_VALUE = torch.tensor([[0.1, 0.2, 0.7], [0.3, 0.3, 0.4]])


def _unit_cases(name, cls, fixed=None, extra=None, value=None):
    params = {**(extra or {}), "probs": full(0.3)}
    bad = [("probs", put(full(0.3), (1, 2), 1.5), (1, 2)), ("probs", put(full(0.3), (0, 1), -0.1), (0, 1)),
           ("probs", put(full(0.3), (1, 0), NAN), (1, 0))]
    if extra:
        bad += [("temperature", put(full(0.5, (2, 1)), (1, 0), 0.0), (1, 0)),
                ("temperature", put(full(0.5, (2, 1)), (0, 0), -1.0), (0, 0))]
    values = [(put(full(0.5), (1, 2), 2.0), (1, 2)), (put(full(0.5), (0, 0), -1.0), (0, 0)),
              (put(full(0.5), (1, 1), NAN), (1, 1))]
    return Case(name, cls, params, bad, full(0.5) if value is None else value, values, fixed or {})


def _weights_case(name, cls, value, bad_values, fixed=None, extra=None):
    bad = [("probs", put(PROBS3, (1, 2), -0.5), (1, 2)), ("probs", put(PROBS3, (0, 1), NAN), (0, 1)),
           ("probs", put(PROBS3, (0, 0), INF), (0, 0)), ("probs", put(PROBS3, (1,), 0.0), (1,))]
    if extra:
        bad += [("temperature", put(full(0.5, (2, 1)), (1, 0), 0.0), (1, 0))]
    return Case(name, cls, {**(extra or {}), "probs": PROBS3}, bad, value, bad_values, fixed or {})


CASES = [
    Case("Normal", Normal, {"loc": full(0.0), "scale": full(1.0)},
         [("scale", put(full(1.0), (1, 2), -1.0), (1, 2)), ("scale", put(full(1.0), (0, 1), 0.0), (0, 1)),
          ("scale", put(full(1.0), (1, 1), INF), (1, 1)), ("loc", put(full(0.0), (1, 0), NAN), (1, 0)),
          ("loc", put(full(0.0), (0, 2), -INF), (0, 2))],
         full(0.1), [(put(full(0.1), (1, 2), NAN), (1, 2)), (put(full(0.1), (0, 1), INF), (0, 1))]),
    Case("Laplace", Laplace, {"loc": full(0.0), "scale": full(1.0)},
         [("scale", put(full(1.0), (1, 2), -1.0), (1, 2)), ("loc", put(full(0.0), (0, 0), NAN), (0, 0))],
         full(0.1), [(put(full(0.1), (1, 2), NAN), (1, 2))]),
    _unit_cases("Bernoulli", Bernoulli),
    Case("Bernoulli-logits", Bernoulli, {"logits": full(0.0)},
         [("logits", put(full(0.0), (1, 2), NAN), (1, 2)), ("logits", put(full(0.0), (0, 0), INF), (0, 0))],
         full(1.0), [(put(full(1.0), (1, 2), 2.0), (1, 2))]),
    _unit_cases("FactorizedBernoulli", FactorizedBernoulli),
    _unit_cases("RelaxedBernoulli", RelaxedBernoulli, extra={"temperature": full(0.5, (2, 1))}),
    _unit_cases("RelaxedBernoulli-hard", RelaxedBernoulli, {"hard": True}, {"temperature": full(0.5, (2, 1))},
                full(1.0)),
    _weights_case("Categorical", Categorical, ONE_HOT,
                  [(torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]]), (1, 0)),
                   (torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 0.0]]), (1,)),
                   (torch.tensor([[0.0, 2.0, -1.0], [1.0, 0.0, 0.0]]), (0, 1))]),
    _weights_case("RelaxedCategorical", RelaxedCategorical, SIMPLEX_VALUE,
                  [(torch.tensor([[0.1, 0.2, 0.7], [0.5, 0.6, 0.0]]), (1,)),
                   (torch.tensor([[0.1, 1.2, -0.3], [0.3, 0.3, 0.4]]), (0, 1))],
                  extra={"temperature": full(0.5, (2, 1))}),
    _weights_case("RelaxedCategorical-hard", RelaxedCategorical, ONE_HOT,
                  [(torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]]), (1, 0))], {"hard": True},
                  {"temperature": full(0.5, (2, 1))}),
    _weights_case("Multinomial", Multinomial, torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 2.0]]),
                  [(torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]), (1,)),
                   (torch.tensor([[0.5, 1.5, 0.0], [0.0, 0.0, 2.0]]), (0, 0)),
                   (torch.tensor([[3.0, -1.0, 0.0], [0.0, 0.0, 2.0]]), (0, 1))], {"total_count": 2}),
    Case("Dirichlet", Dirichlet, {"concentration": full(2.0)},
         [("concentration", put(full(2.0), (1, 2), -1.0), (1, 2)),
          ("concentration", put(full(2.0), (0, 0), 0.0), (0, 0)),
          ("concentration", put(full(2.0), (0, 1), NAN), (0, 1))],
         SIMPLEX_VALUE, [(torch.tensor([[0.1, 0.2, 0.7], [0.5, 0.6, 0.0]]), (1,)),
                         (torch.tensor([[0.1, 1.2, -0.3], [0.3, 0.3, 0.4]]), (0, 1))]),
    Case("Beta", Beta, {"concentration1": full(2.0), "concentration0": full(3.0)},
         [("concentration1", put(full(2.0), (1, 2), -1.0), (1, 2)),
          ("concentration0", put(full(3.0), (0, 1), 0.0), (0, 1))],
         full(0.4), [(put(full(0.4), (1, 2), 1.5), (1, 2)), (put(full(0.4), (0, 0), -0.5), (0, 0))]),
    Case("Gamma", Gamma, {"concentration": full(2.0), "rate": full(3.0)},
         [("concentration", put(full(2.0), (1, 2), -1.0), (1, 2)), ("rate", put(full(3.0), (0, 1), 0.0), (0, 1)),
          ("rate", put(full(3.0), (1, 1), INF), (1, 1))],
         full(0.4), [(put(full(0.4), (1, 2), -0.5), (1, 2)), (put(full(0.4), (0, 0), INF), (0, 0))]),
]
IDS = [c.name for c in CASES]
BAD_PARAMS = [(c, *b) for c in CASES for b in c.bad_params]
BAD_PARAM_IDS = [f"{c.name}-{p}-{i}" for c in CASES for i, (p, *_) in enumerate(c.bad_params)]
BAD_VALUES = [(c, *b) for c in CASES for b in c.bad_values]
BAD_VALUE_IDS = [f"{c.name}-{i}" for c in CASES for i in range(len(c.bad_values))]


def _names_everything(message: str, dist, what: str, idx: tuple) -> None:
    assert dist.prob_text in message and type(dist).__name__ in message, message
    assert what in message, message
    assert f"{idx}" in message, message


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_valid_parameters_and_values_pass(case):
    dist = case.dist()
    lp = dist.get_log_prob({"x": case.value, **case.inputs()})
    assert lp.shape == (2,) and torch.isfinite(lp).all()
    assert dist.sample(case.inputs())["x"].shape == (2, 3)


@pytest.mark.parametrize(("case", "param", "bad", "idx"), BAD_PARAMS, ids=BAD_PARAM_IDS)
def test_bad_parameter_from_a_conditioning_variable_is_named(case, param, bad, idx):
    dist = case.dist()
    for call in (lambda: dist.get_log_prob({"x": case.value, **case.inputs(**{param: bad})}),
                 lambda: dist.sample(case.inputs(**{param: bad})),
                 lambda: dist.get_params(case.inputs(**{param: bad}))):
        with pytest.raises(ParameterError) as info:
            call()
        message = str(info.value)
        _names_everything(message, dist, f"parameter '{param}' (conditioning variable 'c_{param}')", idx)
        if len(idx) == bad.ndim:  # an entry: its value is shown
            assert repr(bad[idx].item()) in message, message


@pytest.mark.parametrize(("case", "param", "bad", "idx"), BAD_PARAMS, ids=BAD_PARAM_IDS)
def test_bad_parameter_from_forward_is_named(case, param, bad, idx):
    params = dict(case.params, **{param: bad})

    class Net(case.cls):
        def __init__(self):
            super().__init__(var=["x"], cond_var=["h"], name="q", **case.fixed)
            self.lin = nn.Linear(1, 1)

        def forward(self, h):
            return {k: v + 0 * self.lin(h).sum() for k, v in params.items()}

    q = Net()
    with pytest.raises(ParameterError) as info:
        q.sample({"h": torch.zeros(2, 1)})
    _names_everything(str(info.value), q, f"parameter '{param}' (from forward())", idx)


@pytest.mark.parametrize(("case", "param", "bad", "idx"), BAD_PARAMS, ids=BAD_PARAM_IDS)
def test_bad_constant_parameter_is_refused_at_construction(case, param, bad, idx):
    consts = {k: v[:1] if k == "temperature" else v for k, v in case.params.items()}
    consts[param] = bad[:1] if param == "temperature" else bad
    if param == "temperature":  # a constant temperature is one number
        consts[param] = bad[idx]
    with pytest.raises(ParameterError) as info:
        case.cls(var=["x"], name="p", **case.fixed, **consts)
    message = str(info.value)
    assert case.cls.__name__ in message and "p(x)" in message and param in message, message


@pytest.mark.parametrize(("case", "bad", "idx"), BAD_VALUES, ids=BAD_VALUE_IDS)
def test_value_outside_the_support_is_named(case, bad, idx):
    dist = case.dist()
    with pytest.raises(SupportError) as info:
        dist.get_log_prob({"x": bad, **case.inputs()})
    _names_everything(str(info.value), dist, "variable 'x'", idx)


@pytest.mark.parametrize(("case", "param", "bad", "idx"), BAD_PARAMS, ids=BAD_PARAM_IDS)
def test_the_switch_turns_validation_off_and_back_on(case, param, bad, idx):
    dist = case.dist()
    with pixyz_like.set_validation(False):
        assert not pixyz_like.validation_enabled()
        dist.get_log_prob({"x": case.value, **case.inputs(**{param: bad})})  # no check: no error
    assert pixyz_like.validation_enabled()
    pixyz_like.set_validation(False)
    try:
        dist.get_params(case.inputs(**{param: bad}))
    finally:
        pixyz_like.set_validation(True)
    with pytest.raises(ParameterError):
        dist.get_params(case.inputs(**{param: bad}))


def test_set_validation_takes_a_bool():
    with pytest.raises(TypeError, match="True or False"):
        pixyz_like.set_validation("off")
    assert pixyz_like.validation_enabled()


def test_bernoulli_accepts_grey_levels_and_the_ends_of_the_interval():
    p = Bernoulli(probs="pi", var=["x"], cond_var=["pi"])
    x = torch.tensor([[0.0, 0.25, 1.0]])
    lp = p.get_log_prob({"x": x, "pi": torch.tensor([[0.0, 0.5, 1.0]])})
    torch.testing.assert_close(lp, torch.log(torch.tensor([0.5])) * 0.25 + torch.log(torch.tensor([0.5])) * 0.75)


# ------------------------------------------------------------------------- the issue's reproductions
def test_issue_reproductions_raise_named_errors():
    x = {"x": torch.zeros(2, 1)}
    for scale, loc in ((-1.0, 0.0), (0.0, 0.0), (1.0, NAN)):
        with pytest.raises(ParameterError, match=r"p\(x\) \(Normal\): parameter '(scale|loc)' \(a constant\)"):
            Normal(loc=loc, scale=scale, var=["x"], features_shape=[1]).get_log_prob(x)
    with pytest.raises(ParameterError, match=r"Bernoulli.*'probs'.*1\.5"):
        Bernoulli(probs=1.5, var=["x"])
    with pytest.raises(ParameterError, match=r"Categorical.*'probs'.*-0\.5"):
        Categorical(probs=[-0.5, 1.0, 0.5], var=["x"])
    with pytest.raises(SupportError, match=r"Bernoulli.*variable 'x'.*2\.0"):
        Bernoulli(probs=0.5, var=["x"]).get_log_prob({"x": torch.tensor([[2.0]])})
    p = Normal(loc=0.0, scale="s", var=["x"], cond_var=["s"])
    with pytest.raises(ParameterError, match=r"'scale'.*-1\.0"):
        p.sample({"s": -torch.ones(3, 1)})


class _Encoder(Normal):
    def __init__(self, sign=1.0):
        super().__init__(var=["z"], cond_var=["x"], name="q")
        self.net = nn.Linear(4, 4)
        self.sign = sign

    def forward(self, x):
        loc, scale = self.net(x).chunk(2, dim=-1)
        return {"loc": loc, "scale": self.sign * nn.functional.softplus(scale)}


class _Decoder(Bernoulli):
    def __init__(self):
        super().__init__(var=["x"], cond_var=["z"], name="p")
        self.net = nn.Linear(2, 4)

    def forward(self, z):
        return {"probs": torch.sigmoid(self.net(z))}


def _vae(encoder):
    from pixyz_like.losses import Expectation, KullbackLeibler, LogProb
    from pixyz_like.models import Model

    p = _Decoder()
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[2], name="p_{prior}")
    loss = (KullbackLeibler(encoder, prior) - Expectation(encoder, LogProb(p))).mean()
    return Model(loss, distributions=[p, encoder], optimizer=optim.SGD, optimizer_params={"lr": 0.1}), p


def test_an_encoder_emitting_a_negative_scale_is_named():
    model, _ = _vae(_Encoder(sign=-1.0))
    with pytest.raises(ParameterError, match=r"q\(z\|x\) \(_Encoder\): parameter 'scale' \(from forward\(\)\)"):
        model.train({"x": torch.rand(5, 4)})


def test_a_nan_in_the_data_stops_training_before_any_weight_changes():
    q = _Encoder()
    model, p = _vae(q)
    before = {k: v.clone() for k, v in {**p.state_dict(), **q.state_dict()}.items()}
    x = torch.rand(5, 4)
    x[3, 1] = NAN
    with pytest.raises(PixyzLikeError, match=r"q\(z\|x\).*'loc' \(from forward\(\)\).*nan"):
        model.train({"x": x})
    after = {**p.state_dict(), **q.state_dict()}
    assert all(torch.equal(before[k], after[k]) for k in before)
    model.train({"x": torch.rand(5, 4)})  # and the model trains on good data afterwards
    assert all(torch.isfinite(v).all() for v in {**p.state_dict(), **q.state_dict()}.values())


def test_a_nan_in_the_data_is_found_where_it_is_scored():
    p = Bernoulli(probs="pi", var=["x"], cond_var=["pi"])
    x = torch.rand(3, 4)
    x[2, 3] = NAN
    with pytest.raises(SupportError, match=re.escape("variable 'x' must be in [0, 1], but entry (2, 3) is nan")):
        p.get_log_prob({"x": x, "pi": torch.full((3, 4), 0.5)})


_CHECK: Callable = pixyz_like.distributions._validation.check


def _aminmax_calls(monkeypatch) -> list:
    calls = []
    real = torch.aminmax

    def counting(t, *a, **k):
        calls.append(t.shape)
        return real(t, *a, **k)

    monkeypatch.setattr(torch, "aminmax", counting)
    return calls


def _screen_calls(monkeypatch) -> list:
    """The shapes of the tensors the finiteness screen (one sum, one read) is given."""
    from pixyz_like.distributions import _validation

    calls = []
    real = _validation.surely_finite

    def counting(t):
        calls.append(t.shape)
        return real(t)

    monkeypatch.setattr(_validation, "surely_finite", counting)
    return calls


def test_one_host_read_per_parameter_on_the_cpu_path(monkeypatch):
    """The default path reads back only the minimum and maximum of each tensor."""
    calls = _aminmax_calls(monkeypatch)
    case = CASES[2]  # Bernoulli: probs, and the value
    assert case.cls is Bernoulli
    case.dist().get_log_prob({"x": case.value, **case.inputs()})
    assert calls == [torch.Size([2, 3])] * 2


def test_a_self_checking_score_reads_only_the_log_density(monkeypatch):
    """Normal's log-density is NaN or infinite whenever loc, scale or the value is invalid, so scoring
    checks the (batch,) log-density alone; sampling still checks every parameter."""
    calls, screened = _aminmax_calls(monkeypatch), _screen_calls(monkeypatch)
    case = CASES[0]
    assert case.cls is Normal
    case.dist().get_log_prob({"x": case.value, **case.inputs()})
    assert calls == [] and screened == [torch.Size([2])]
    case.dist().sample(case.inputs())  # (loc's finiteness by the sum screen, the scale's bounds by its extrema)
    assert calls == [torch.Size([2, 3])] and screened == [torch.Size([2]), torch.Size([2, 3])]


_INVALID_NORMAL = {"loc": [NAN, INF, -INF], "scale": [NAN, INF, -INF, 0.0, -1.0, -1e-30], "x": [NAN, INF, -INF]}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("what", sorted(_INVALID_NORMAL))
def test_the_normal_log_density_is_not_finite_wherever_an_input_is_invalid(what, dtype):
    """The property Normal's self-checking score rests on (``_score_flags_invalid``), over invalid
    entries next to extreme valid ones (tiny and huge scales, far values), with validation off."""
    valid = {"loc": torch.tensor([0.0, 1e30, -3.0, 0.0]), "scale": torch.tensor([1.0, 1e-30, 1e30, 1e-3]),
             "x": torch.tensor([0.0, 1e30, 5.0, -1e-3])}
    p = Normal(loc="loc", scale="scale", var=["x"], cond_var=["loc", "scale"])
    with pixyz_like.set_validation(False):
        for bad in _INVALID_NORMAL[what]:
            for i in range(4):
                inputs = {k: v.to(dtype).clone().reshape(1, 4) for k, v in valid.items()}
                inputs[what][0, i] = bad
                lp = p.get_log_prob(inputs, sum_features=False)
                assert not torch.isfinite(lp[0, i]), (what, bad, i, lp)


def test_an_overflowing_normal_log_density_of_valid_inputs_stands():
    """A log-density that is -inf only through overflow (z = 1e30 squared in float32) is not an error."""
    p = Normal(loc="y", scale=1e-10, var=["x"], cond_var=["y"])
    lp = p.get_log_prob({"x": torch.tensor([[1e30]]), "y": torch.zeros(1, 1)})
    assert torch.equal(lp, torch.tensor([-INF]))


def test_the_accelerator_path_reads_every_extremum_in_one_transfer():
    """On an accelerator all the extrema of a call are stacked and read back once (exercised here on
    CPU tensors); the values are the same as the CPU path's."""
    from pixyz_like.distributions import _validation as V

    tensors = [torch.tensor([[1.0, -2.0]]), torch.tensor([3.0, 4.0], dtype=torch.float64),
               torch.tensor([0.5], dtype=torch.bfloat16)]
    extrema = [torch.aminmax(t) for t in tensors]
    assert V._read(extrema, "cuda") == V._read(extrema, "cpu") == [(-2.0, 1.0), (3.0, 4.0), (0.5, 0.5)]


def test_event_constraints_on_the_general_path_name_the_event():
    from pixyz_like.distributions import _validation as V

    weights = torch.tensor([[0.2, 0.8], [0.0, 0.0]])
    assert V.WEIGHTS.violation(weights[:1]) is None
    assert V.WEIGHTS.violation(weights).startswith("the event at (1,) sums to 0.0")
    assert V.WEIGHTS.violation(torch.tensor(0.5)) is None  # a 0-dim tensor has no event to sum
    with pytest.raises(SupportError, match=r"variable 'y' must be one-hot.*event at \(0,\) sums to 2\.0"):
        V.check_value("p(y) (Categorical)", "y", torch.tensor([[1.0, 1.0]]), V.ONE_HOT)


def test_validation_does_not_split_a_compiled_graph():
    """Inside torch.compile the checks are skipped: scoring traces as one graph."""
    p = Normal(loc="y", scale=1.0, var=["x"], cond_var=["y"])
    b = Bernoulli(probs="pi", var=["x"], cond_var=["pi"])

    def f(x, y, pi):
        return p.get_log_prob({"x": x, "y": y}) + b.get_log_prob({"x": torch.sigmoid(x), "pi": pi})

    explained = torch._dynamo.explain(f)(torch.zeros(3, 2), torch.zeros(3, 2), torch.full((3, 2), 0.5))
    assert explained.graph_break_count == 0, explained.break_reasons


class _Link(Normal):
    """x_i ~ N(x_{i-1} + shift, 1); ``shift`` may hold a NaN."""

    def __init__(self, i: int, shift: torch.Tensor):
        super().__init__(var=[f"x{i}"], cond_var=[f"x{i - 1}"], name=f"p{i}")
        self.i, self.shift = i, shift

    def forward(self, **kw):
        return {"loc": kw[f"x{self.i - 1}"] + self.shift, "scale": 1.0}


def _chain(shifts):
    joint = Normal(loc=torch.zeros(2), scale=torch.ones(2), var=["x0"], name="p0")
    for i, shift in enumerate(shifts, 1):
        joint = _Link(i, shift) * joint
    return joint, {f"x{i}": torch.randn(3, 2) for i in range(len(shifts) + 1)}


def test_a_joint_checks_its_total_once(monkeypatch):
    """The factors' self-checking scores leave their check to the joint's total: one read in all."""
    joint, x = _chain([torch.zeros(2)] * 3)
    calls, screened = _aminmax_calls(monkeypatch), _screen_calls(monkeypatch)
    lp = joint.get_log_prob(x)
    assert calls == [] and screened == [torch.Size([3])]
    expected = sum(torch.distributions.Normal(x[f"x{i - 1}"] if i else torch.zeros(2), 1.0).log_prob(x[f"x{i}"]).sum(-1)
                   for i in range(4))
    assert torch.allclose(lp, expected)


@pytest.mark.parametrize("bad", [1, 2, 3])
def test_a_joint_names_the_factor_whose_parameter_made_its_total_nan(bad):
    shifts = [torch.zeros(2)] * 3
    shifts[bad - 1] = torch.tensor([0.0, NAN])
    joint, x = _chain(shifts)
    named = f"p_{{{bad}}}(x_{{{bad}}}|x_{{{bad - 1}}}) (_Link): parameter 'loc' (from forward()) must be finite"
    with pytest.raises(ParameterError, match=re.escape(named)):
        joint.get_log_prob(x)


def test_a_joint_names_the_value_that_made_its_total_infinite():
    joint, x = _chain([torch.zeros(2)] * 2)
    x["x2"][1, 0] = INF
    named = "p_{2}(x_{2}|x_{1}) (_Link): variable 'x2' must be finite, but entry (1, 0)"
    with pytest.raises(SupportError, match=re.escape(named)):
        joint.get_log_prob(x)


def test_a_subclass_changing_the_maths_or_the_domains_loses_the_self_checking_score():
    """``_score_flags_invalid`` describes the class's own maths: a subclass overriding the log-density
    or a domain is checked parameter by parameter again, unless it declares the property itself."""

    class OwnMaths(Normal):
        def _log_prob_value(self, params, value):
            return torch.zeros_like(value)  # finite whatever the parameters

    class OwnDomain(Normal):
        param_support = {"loc": pixyz_like.distributions._validation.POSITIVE,
                         "scale": pixyz_like.distributions._validation.POSITIVE}

    class Declared(OwnMaths):
        _score_flags_invalid = True

    class OnlyANetwork(Normal):
        def forward(self, y):
            return {"loc": y, "scale": 1.0}

    assert Normal._score_flags_invalid and OnlyANetwork._score_flags_invalid and Declared._score_flags_invalid
    assert not OwnMaths._score_flags_invalid and not OwnDomain._score_flags_invalid
    bad_loc = {"x": torch.zeros(2, 3), "y": torch.full((2, 3), NAN)}
    with pytest.raises(ParameterError, match="'loc'"):
        OwnMaths(loc="y", scale=1.0, var=["x"], cond_var=["y"]).get_log_prob(bad_loc)
    negative = {"x": torch.zeros(2, 3), "y": -torch.ones(2, 3)}  # finite log-density, outside OwnDomain's domain
    with pytest.raises(ParameterError, match="'loc'.*positive"):
        OwnDomain(loc="y", scale=1.0, var=["x"], cond_var=["y"]).get_log_prob(negative)


@pytest.mark.parametrize("bad", [1, 2, 3])
@pytest.mark.parametrize("kw", [{}, {"sample_shape": [2]}, {"reparam": True}])
def test_a_joint_names_the_factor_whose_loc_made_its_draw_nan(bad, kw):
    """A Normal factor's draw shows a NaN loc: the joint checks the samples once and names the factor."""
    shifts = [torch.zeros(2)] * 3
    shifts[bad - 1] = torch.tensor([0.0, NAN])
    joint, x = _chain(shifts)
    named = f"p_{{{bad}}}(x_{{{bad}}}|x_{{{bad - 1}}}) (_Link): parameter 'loc' (from forward()) must be finite"
    with pytest.raises(ParameterError, match=re.escape(named)):
        joint.sample(batch_n=3, **kw)


def test_a_joint_checks_its_draws_once(monkeypatch):
    """Three Normal factors with number scales: one read for all their samples, and the samples are
    those of the same draws made factor by factor."""
    joint, _ = _chain([torch.zeros(2)] * 3)
    calls, screened = _aminmax_calls(monkeypatch), _screen_calls(monkeypatch)
    torch.manual_seed(0)
    s = joint.sample(batch_n=5)
    assert calls == [] and [s.numel() for s in screened] == [5 * 2 * 4]  # (one screen of every entry)
    torch.manual_seed(0)
    x = torch.randn(5, 2)
    for _ in range(3):  # x_i = x_{i-1} + eps: the chain's shifts are zero, its scales 1.0
        x = x + torch.randn(5, 2)
    torch.testing.assert_close(s["x3"], x)


def test_a_factor_that_does_not_defer_sees_the_earlier_draws_checked_first():
    """A Categorical child of a Normal with a NaN loc: the Normal is named, not the child whose
    probabilities the NaN made invalid."""

    class Child(Categorical):
        def __init__(self):
            super().__init__(var=["c"], cond_var=["x2"], name="pc")

        def forward(self, x2):
            return {"probs": torch.softmax(x2, -1)}

    joint, _ = _chain([torch.zeros(2), torch.tensor([NAN, 0.0])])
    with pytest.raises(ParameterError, match=re.escape("p_{2}(x_{2}|x_{1}) (_Link): parameter 'loc'")):
        (Child() * joint).sample(batch_n=3)


def test_the_draw_check_keeps_gradients():
    """Reparameterised draws checked by the joint: the gradient reaches the network unchanged."""
    shift = torch.zeros(2, requires_grad=True)
    joint, _ = _chain([shift, torch.zeros(2)])
    torch.manual_seed(0)
    s = joint.sample(batch_n=4, reparam=True)
    s["x2"].sum().backward()
    torch.testing.assert_close(shift.grad, torch.full((2,), 4.0))  # x2 = x1 + eps, x1 = x0 + shift + eps: 4 rows


def test_a_subclass_changing_the_sampler_checks_its_parameters_itself():
    class OwnDraw(_Link):
        def _draw(self, params, shape, reparam):
            return torch.zeros(shape)  # finite whatever loc is

    assert _Link._draw_shows_invalid == {"loc"} and OwnDraw._draw_shows_invalid == frozenset()
    joint = OwnDraw(1, torch.tensor([NAN, 0.0])) * Normal(loc=torch.zeros(2), scale=torch.ones(2), var=["x0"])
    with pytest.raises(ParameterError, match="'loc'"):
        joint.sample(batch_n=2)


def test_surely_finite_many_matches_each_tensor():
    from pixyz_like.distributions._validation import surely_finite_many

    ok = [torch.zeros(2, 3), torch.ones(4, dtype=torch.float64), torch.zeros(1)]
    assert surely_finite_many(ok) and surely_finite_many(ok[:1]) and surely_finite_many([torch.zeros(2), torch.ones(3)])
    for bad in (NAN, INF, -INF):
        assert not surely_finite_many([torch.zeros(3), torch.tensor([0.0, bad])])
        assert not surely_finite_many([torch.zeros(3, dtype=torch.float64), torch.tensor([bad])])  # mixed dtypes


@pytest.mark.parametrize("shapes", [[(5, 2), (5, 3)], [(4, 2, 3), (4, 2, 1)], [(3,), (7,)], [(5, 2), (4, 2)],
                                    [(2, 3), (2, 3, 1)], [(2, 3, 4), (2, 1, 4)], [(), (2,)]])
def test_surely_finite_many_given_shapes_agrees_with_each_tensor(shapes):
    """Given their shapes, tensors differing in their last dimension only are joined along it, any
    others flattened: either way a NaN or infinity anywhere is found, and finite entries pass."""
    from pixyz_like.distributions._validation import _joinable, surely_finite_many

    assert _joinable(shapes) == (len({len(s) for s in shapes}) == 1 and len(shapes[0]) > 0
                                 and len({s[:-1] for s in shapes}) == 1)
    tensors = [torch.randn(s) for s in shapes]
    assert surely_finite_many(tensors, shapes)
    for k, t in enumerate(tensors):
        for bad in (NAN, INF, -INF):
            spoilt = t.clone()
            spoilt.view(-1)[-1] = bad
            assert not surely_finite_many([*tensors[:k], spoilt, *tensors[k + 1:]], shapes)


def test_the_finiteness_screen_sums_and_its_false_alarms_let_valid_values_stand():
    """A finite sum proves every entry finite; finite entries whose sum overflows give a false alarm,
    after which the callers look at the entries themselves and let valid values stand."""
    from pixyz_like.distributions._validation import surely_finite

    big = torch.full((4,), 3e38)
    assert torch.isfinite(big).all() and not surely_finite(big)  # (the sum overflows float32)
    assert surely_finite(torch.full((100,), 60000.0, dtype=torch.float16))  # (summed in float32)
    # a Normal's log-density of finite values far out: each row finite, their sum is not
    p = Normal(loc=torch.zeros(1), scale=torch.ones(1), var=["x"])
    x = torch.full((4, 1), 1.5e19)
    lp = p.get_log_prob({"x": x})
    torch.testing.assert_close(lp, torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(-1))
    assert torch.isfinite(lp).all()
    # a joint's draws of huge but valid means: the samples stand
    root = Normal(loc=torch.full((1, 3), 3e38), scale=torch.ones(1, 3), var=["a"], name="r")
    child = Normal(loc="a", scale=1.0, var=["b"], cond_var=["a"], name="c")
    s = (child * root).sample(batch_n=8)
    assert torch.isfinite(s["a"]).all() and torch.isfinite(s["b"]).all()
    # a parameter checked for finiteness alone: huge finite entries pass, a NaN is named
    q = Normal(loc="y", scale=1.0, var=["x"], cond_var=["y"], name="q")
    assert torch.isfinite(q.sample({"y": torch.full((4, 3), 3e38)})["x"]).all()
    with pytest.raises(ParameterError, match=r"q\(x\|y\).*'loc'.*finite"):
        q.sample({"y": put(torch.full((4, 3), 3e38), (2, 1), NAN)})


_FAMILIES = [Bernoulli, Beta, Categorical, Dirichlet, FactorizedBernoulli, Gamma, Laplace, Multinomial, Normal,
             RelaxedBernoulli, RelaxedCategorical]
_NUMBERS = [-INF, -2.0, -1e-300, -0.0, 0.0, 1e-300, 0.5, 1.0, 2.0, 1e300, INF, NAN]


@pytest.mark.parametrize("cls", _FAMILIES, ids=lambda c: c.__name__)
def test_the_extrema_test_of_a_domain_agrees_with_its_entries(cls):
    """``Constraint.within`` (a comparison chain written out per strictness: the CPU check of a tensor's
    extrema, and of a number ``forward`` returns) agrees with the tensor comparisons of the same bound
    on the entries."""
    checked = 0
    for key, support in cls.param_support.items():
        if support.single is None:
            assert support.within is None, (cls.__name__, key)
            continue
        for a, b in itertools.product(_NUMBERS, repeat=2):
            entries_ok = bool(support.single.elementwise(torch.tensor([a, b], dtype=torch.float64)).all())
            mn, mx = min(a, b), max(a, b)  # (a NaN: either order, as aminmax gives NaN for both)
            if math.isnan(a) or math.isnan(b):
                mn = mx = NAN
            assert support.within(mn, mx) is entries_ok, (cls.__name__, key, a, b)
            checked += 1
    if cls in (Normal, Laplace, Gamma, Beta):
        assert checked, "these families have one-bound domains"
