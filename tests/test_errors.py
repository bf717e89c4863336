"""Must-hold 5 of the core issue: bad input gets one clear error per mistake."""

import pytest
import torch
from torch import nn

from pixyz_like.distributions import Bernoulli, Normal
from pixyz_like.errors import (
    GraphError,
    MissingVariableError,
    ParameterError,
    PixyzLikeError,
    ShapeError,
    VariableMismatchError,
)
from pixyz_like.losses import Expectation, KullbackLeibler, LogProb

q = Normal(loc="x", scale=1., var=["z"], cond_var=["x"], name="q")
p = Normal(loc="z", scale=1., var=["x"], cond_var=["z"], name="p")

MISSING = r"q\(z\|x\) \(Normal\): {action} needs variable \['x'\], but the input dict has \['y'\]"


@pytest.mark.parametrize("call, action", [
    (lambda: q.sample({"y": torch.zeros(1)}), "sample"),
    (lambda: q.get_log_prob({"z": torch.zeros(1, 1), "y": torch.zeros(1)}), "get_log_prob"),
])
def test_missing_variable_one_format(call, action):
    pattern = MISSING.format(action=action)
    if action == "get_log_prob":
        pattern = pattern.replace(r"\['y'\]", r"\['y', 'z'\]")
    with pytest.raises(MissingVariableError, match=pattern):
        call()


def test_missing_variable_in_eval_names_the_loss():
    loss = Expectation(q, LogProb(p))
    pattern = r"loss .*: eval needs variable \['x'\], but the input dict has \[\]"
    with pytest.raises(MissingVariableError, match=pattern):
        loss.eval({})
    assert issubclass(MissingVariableError, KeyError) and issubclass(MissingVariableError, PixyzLikeError)


class WrongNames(Normal):
    def __init__(self):
        super().__init__(var=["z"], cond_var=["x"], name="q")

    def forward(self, x):
        return {"mu": x, "sigma": x.exp()}


def test_forward_with_wrong_parameter_names():
    with pytest.raises(ParameterError, match=r"q\(z\|x\) \(WrongNames\): the parameters are \['mu', 'sigma'\], "
                                             r"but a Normal expects \['loc', 'scale'\]"):
        WrongNames().sample({"x": torch.zeros(2, 3)})


class Encoder(Normal):
    def __init__(self):
        super().__init__(var=["z"], cond_var=["x"], name="q")
        self.fc = nn.Linear(784, 4)

    def forward(self, x):
        h = self.fc(x)
        return {"loc": h, "scale": h.exp()}


def test_shape_mismatch_inside_network_keeps_torch_error_and_notes_distribution():
    # a failure inside the user's network is torch's own error, unchanged, with a note naming where
    with pytest.raises(RuntimeError) as info:
        Encoder().sample({"x": torch.zeros(5, 28, 28)})
    assert not isinstance(info.value, ShapeError)
    assert "q(z|x) (Encoder).forward() on inputs (x: (5, 28, 28))" in info.value.__notes__[-1]


def test_value_of_wrong_shape_is_named():
    with pytest.raises(ShapeError, match=r"variable 'z' has shape \(5, 3\), but the parameters have shape \(5, 4\)"):
        Encoder().get_log_prob({"x": torch.zeros(5, 784), "z": torch.zeros(5, 3)})


def test_cycle_and_duplicate_refused_when_building_product():
    a = Normal(loc="y", scale=1., var=["x"], cond_var=["y"], name="a")
    b = Normal(loc="x", scale=1., var=["y"], cond_var=["x"], name="b")
    with pytest.raises(GraphError, match=r"cycle"):
        a * b
    c = Normal(loc=0., scale=1., var=["x"], name="c")
    with pytest.raises(GraphError, match=r"variable 'x' is produced by both a\(x\|y\) and c\(x\)"):
        a * c


def test_kl_between_different_variables_refused_where_it_cannot_pair_them():
    # The closed form pairs differently named variables in order (as Pixyz); Monte Carlo cannot.
    r = Normal(loc=0., scale=1., var=["w"], name="r")
    with pytest.raises(VariableMismatchError, match=r"q\(z\|x\) is over \['z'\] but r\(w\) is over \['w'\]"):
        KullbackLeibler(q, r, analytical=False)
    rr = r * Normal(loc=0., scale=1., var=["v"], name="s")
    with pytest.raises(VariableMismatchError, match=r"over \['z'\] but .* is over \['w', 'v'\]"):
        KullbackLeibler(q, rr)


def test_unknown_options_are_type_errors_listing_valid_ones():
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['batch_size'\]; valid options: batch_n, reparam, "
                                        r"return_all, sample_mean, sample_shape"):
        q.sample({"x": torch.zeros(1, 1)}, batch_size=3)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['sample_size'\]; valid options: test_mode"):
        LogProb(p).eval({"x": torch.zeros(1, 1), "z": torch.zeros(1, 1)}, sample_size=3)


def test_string_var_is_accepted_as_list():
    d = Normal(var="x", cond_var="y", loc="y", scale=1.)
    assert d.var == ["x"] and d.cond_var == ["y"]


def test_param_naming_unknown_cond_var():
    with pytest.raises(GraphError, match=r"loc='y' names a variable that is not in cond_var \[\]"):
        Normal(var=["x"], loc="y", scale=1.)


def test_reparam_on_discrete_family_refused():
    b = Bernoulli(probs=0.3, var=["x"], features_shape=[2])
    with pytest.raises(PixyzLikeError, match="no reparameterised sampler"):
        b.sample(reparam=True)


def test_constant_of_wrong_shape():
    with pytest.raises(ShapeError, match=r"parameter loc of shape \(3,\) does not fit features_shape \(2,\)"):
        Normal(var=["x"], loc=torch.zeros(3), scale=1., features_shape=[2])
