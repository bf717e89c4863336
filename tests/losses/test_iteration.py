"""IterativeLoss: the sum over time against an explicit loop, printing as Pixyz, no mutation."""

import pixyz.distributions as pzd
import pixyz.losses as pzl
import pytest
import torch
from torch import nn

from pixyz_like.distributions import Deterministic, Normal
from pixyz_like.errors import MissingVariableError, ShapeError
from pixyz_like.losses import IterativeLoss


class Transition(Normal):
    """p(x|h_prev) = N(tanh(A h_prev), 1)."""

    def __init__(self):
        super().__init__(var=["x"], cond_var=["h_prev"], name="p")
        self.net = nn.Linear(3, 3)

    def forward(self, h_prev):
        return {"loc": torch.tanh(self.net(h_prev)), "scale": torch.ones_like(h_prev)}


class Recurrence(Deterministic):
    """h = h_prev + x."""

    def __init__(self):
        super().__init__(var=["h"], cond_var=["x", "h_prev"], name="f")

    def forward(self, x, h_prev):
        return {"h": 0.5 * h_prev + x}


def manual(p, x, h0):
    total, h = 0, h0
    for t in range(x.shape[0]):
        lp = torch.distributions.Normal(torch.tanh(p.net(h)), 1.0).log_prob(x[t]).sum(-1)
        total = total + lp
        h = 0.5 * h + x[t]
    return total, h


def test_sum_matches_an_explicit_loop():
    p, f = Transition(), Recurrence()
    step = p.log_prob().expectation(f)
    loss = IterativeLoss(step, series_var=["x"], update_value={"h": "h_prev"})
    x, h0 = torch.randn(6, 4, 3), torch.randn(4, 3)
    value, out = loss.eval({"x": x, "h_prev": h0}, return_dict=True)
    expected, h_last = manual(p, x, h0)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(out["h_prev"], h_last)


def test_max_iter_and_mask():
    p, f = Transition(), Recurrence()
    loss = IterativeLoss(p.log_prob().expectation(f), max_iter=3, series_var=["x"], update_value={"h": "h_prev"})
    x, h0 = torch.randn(6, 4, 3), torch.randn(4, 3)
    expected, _ = manual(p, x[:3], h0)
    torch.testing.assert_close(loss.eval({"x": x, "h_prev": h0}), expected)
    # A mask that drops the last step of the sequence equals the loss over 2 steps.
    mask = torch.ones(3, 4)
    mask[2] = 0
    short, _ = manual(p, x[:2], h0)
    torch.testing.assert_close(loss.eval({"x": x, "h_prev": h0}, mask=mask), short)


def test_never_mutates_the_callers_dict():
    p, f = Transition(), Recurrence()
    loss = IterativeLoss(p.log_prob().expectation(f), series_var=["x"], update_value={"h": "h_prev"})
    x, h0 = torch.randn(5, 2, 3), torch.randn(2, 3)
    inputs = {"x": x, "h_prev": h0}
    loss.eval(inputs)
    loss.eval(inputs, return_dict=True)
    assert set(inputs) == {"x", "h_prev"} and inputs["x"] is x and inputs["h_prev"] is h0


def test_timestep_variable_and_slice_step():
    class Slice(Deterministic):
        def __init__(self):
            super().__init__(var=["x"], cond_var=["xs", "t"], name="s")

        def forward(self, xs, t):
            return {"x": xs[t]}

    p = Normal(loc=0.0, scale=1.0, var=["x"], features_shape=[3], name="p")
    loss = IterativeLoss(p.log_prob(), max_iter=4, slice_step=Slice(), timestep_var=["t"])
    assert "t" not in loss.input_var and "xs" in loss.input_var
    xs = torch.randn(4, 2, 3)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(xs).sum(-1).sum(0)
    torch.testing.assert_close(loss.eval({"xs": xs}), expected)


@pytest.mark.parametrize("kwargs", [{"max_iter": 10}, {}, {"timestep_var": ["k"]}])
def test_printing_matches_pixyz(kwargs):
    ours = Normal(loc="z", scale=1.0, var=["x"], cond_var=["z", "h_prev"], name="p")
    theirs = pzd.Normal(loc="z", scale=1.0, var=["x"], cond_var=["z", "h_prev"], name="p")
    mine = IterativeLoss(ours.log_prob().mean(), series_var=["x"], update_value={"h": "h_prev"}, **kwargs)
    if "timestep_var" in kwargs:  # Pixyz fails to build this one (it removes "k" from a list without it)
        assert str(mine).startswith(r"\sum_{k=0}^{k_{max} - 1} mean")
        return
    ref = pzl.IterativeLoss(theirs.log_prob().mean(), series_var=["x"], update_value={"h": "h_prev"}, **kwargs)
    assert str(mine) == str(ref)


def test_errors():
    p = Transition()
    with pytest.raises(ValueError, match="max_iter"):
        IterativeLoss(p.log_prob())
    loss = IterativeLoss(p.log_prob(), max_iter=5, series_var=["x"])
    with pytest.raises(ShapeError, match="series variable 'x'"):
        loss.eval({"x": torch.randn(3, 2, 3), "h_prev": torch.zeros(2, 3)})
    loss = IterativeLoss(p.log_prob(), series_var=["x"], update_value={"h": "h_prev"})
    with pytest.raises(MissingVariableError, match="update_value"):
        loss.eval({"x": torch.randn(3, 2, 3), "h_prev": torch.zeros(2, 3)})
