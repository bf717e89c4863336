"""Issue 9, causes 2 and 5: bad input is refused at the boundary with a named error that names the
distribution (or loss) and the variable or parameter, never a raw torch error or an empty/NaN result."""

import numpy as np
import pytest
import torch
from torch import nn

from pixyz_like.distributions import Bernoulli, Laplace, Normal
from pixyz_like.errors import InputTypeError, OptionError, ShapeError
from pixyz_like.losses import Parameter
from pixyz_like.models import Model

FAMILIES = {
    "Normal": (Normal, lambda h: {"loc": h, "scale": h.exp()}),
    "Laplace": (Laplace, lambda h: {"loc": h, "scale": h.exp()}),
    "Bernoulli": (Bernoulli, lambda h: {"probs": torch.sigmoid(h)}),
}


def encoder(family, out=None):
    cls, params = FAMILIES[family]

    class Enc(cls):
        def __init__(self):
            super().__init__(var=["z"], cond_var=["x"], name="q")
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return out(x) if out is not None else params(self.fc(x))

    return Enc()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("x, error, what", [
    (torch.tensor(1.0), ShapeError, "0-dim tensor"),
    (np.zeros((2, 2), dtype=np.float32), InputTypeError, "ndarray"),
    ([[0.0, 0.0]], InputTypeError, "list"),
])
def test_bad_network_inputs_are_named(family, x, error, what):
    with pytest.raises(error, match=rf"q\(z\|x\) \(Enc\): variable 'x' .*{what}"):
        encoder(family).sample({"x": x})


@pytest.mark.parametrize("family", ["Normal", "Laplace"])
def test_forward_parameters_that_do_not_broadcast(family):
    q = encoder(family, lambda x: {"loc": torch.zeros(3, 2), "scale": torch.ones(3, 3)})
    with pytest.raises(ShapeError, match=r"q\(z\|x\) \(Enc\): its parameters do not broadcast.*'loc'.*'scale'") as info:
        q.sample({"x": torch.zeros(3, 2)})
    assert isinstance(info.value.__cause__, RuntimeError)


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_changing_the_batch_is_refused(family):
    params = FAMILIES[family][1]
    q = encoder(family, lambda x: params(x[:3]))
    with pytest.raises(ShapeError, match=r"q\(z\|x\) \(Enc\): forward\(\) returned parameters of batch size 3"):
        q.sample({"x": torch.zeros(4, 2)})


@pytest.mark.parametrize("family", FAMILIES)
def test_value_that_does_not_broadcast(family):
    with pytest.raises(ShapeError, match=r"q\(z\|x\) \(Enc\): variable 'z' of shape \(3, 2\) does not broadcast"):
        encoder(family).get_log_prob({"x": torch.zeros(4, 2), "z": torch.zeros(3, 2)})


@pytest.mark.parametrize("family", FAMILIES)
def test_network_failure_keeps_torch_error(family):
    with pytest.raises(RuntimeError) as info:
        encoder(family).sample({"x": torch.zeros(4, 3)})  # the Linear expects 2 features
    assert "q(z|x) (Enc).forward()" in info.value.__notes__[-1]


def _loss(family):
    cls = FAMILIES[family][0]
    p = cls(var=["x"], features_shape=[2], **({"probs": 0.5} if family == "Bernoulli" else {"loc": 0., "scale": 1.}))
    return (Parameter("beta") * p.log_prob()).mean()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("beta, error, what", [
    ("a", InputTypeError, r"Parameter 'beta': expected a number or a tensor, got str"),
    (torch.ones(3), ShapeError, r"\\beta \(shape \(3,\)\).*do not broadcast"),
])
def test_parameter_bad_values(family, beta, error, what):
    with pytest.raises(error, match=what):
        _loss(family).eval({"x": torch.zeros(4, 2), "beta": beta})


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_eval_needs_a_dict_and_a_batch(family):
    loss = _loss(family)
    with pytest.raises(InputTypeError, match=r"loss .*: eval expects a dict .*\['beta', 'x'\], got a Tensor"):
        loss.eval(torch.zeros(4, 2))
    with pytest.raises(ShapeError, match=r"variable 'x' has an empty batch"):
        loss.eval({"x": torch.zeros(0, 2), "beta": 1.0})


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("shape", [[0], [2, 0]])
def test_empty_sample_shape_is_refused(family, shape):
    with pytest.raises(OptionError, match=r"q\(z\|x\) \(Enc\)\.sample\(\): sample_shape .* <= 0"):
        encoder(family).sample({"x": torch.zeros(4, 2)}, sample_shape=shape)


def test_train_inside_no_grad_is_refused():
    p = Normal(loc=torch.zeros(1), scale=1., var=["x"], name="p")
    p.loc = nn.Parameter(p.loc.clone())
    model = Model(-p.log_prob().mean(), distributions=[p])
    with torch.no_grad(), pytest.raises(OptionError, match=r"Model\.train\(\): called with gradients disabled"):
        model.train({"x": torch.zeros(4, 1)})
    assert p.loc.item() == 0.0
