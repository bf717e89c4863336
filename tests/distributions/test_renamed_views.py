"""Looking through renamed views (``replace_var``) to the family under them: one rule, in
``pixyz_like.distributions.joint.underlying``, used by the closed-form KL and entropy, the product of
experts and the VampPrior."""

from __future__ import annotations

import math

import pytest
import torch

from pixyz_like.distributions import Normal, ProductOfNormal
from pixyz_like.distributions.joint import Underlying, underlying
from pixyz_like.errors import NotDefinedError
from pixyz_like.losses import Entropy, KullbackLeibler


def _q_ab() -> Normal:
    return Normal(loc="a", scale="b", var=["z"], cond_var=["a", "b"], name="q")


def test_a_distribution_that_is_no_view_is_its_own_underlying():
    q = _q_ab()
    view = underlying(q)
    assert view == Underlying(q, {}, frozenset())
    x = {"a": 1.0, "b": 2.0}
    assert view.inputs(x) == x


def test_one_view_drops_a_variable_that_carries_the_inner_name_being_renamed():
    q = _q_ab()
    view = underlying(q.replace_var(a="a_u"))  # q(z|a_u,b)
    assert dict(view.rename) == {"a_u": "a"} and view.dropped == {"a"}
    # "a" in the outer dict is another variable: q reads "a_u" as its "a", whatever the dict order.
    for x in ({"a_u": 1.0, "a": 5.0, "b": 2.0}, {"a": 5.0, "a_u": 1.0, "b": 2.0}):
        assert view.inputs(x) == {"a": 1.0, "b": 2.0}


def test_nested_views_compose_level_by_level_with_the_name_collisions():
    q = _q_ab()
    inner = q.replace_var(a="b", b="c")  # q(z|b,c): reads b as a, c as b
    outer = inner.replace_var(c="d")  # q(z|b,d): reads d as c, so as b
    assert outer.cond_var == ["b", "d"]
    view = underlying(outer)
    assert view.base is q and outer.base is q
    # By hand: b -> (outer keeps b) -> (inner: b is a) = a; d -> c -> b; c is hidden by the outer view
    # (it renames its c away), a by the inner one (it renames its a away); e passes through.
    assert dict(view.rename) == {"b": "a", "d": "b"}
    assert view.dropped == {"a", "c"}
    x = {"b": 1.0, "d": 2.0, "c": 3.0, "a": 4.0, "e": 5.0}
    assert view.inputs(x) == {"a": 1.0, "b": 2.0, "e": 5.0}
    # The same as each view translating its inputs in turn (the path of outer.log_prob).
    assert view.inputs(x) == inner._to_inner(outer._to_inner(x))


def test_closed_form_kl_and_entropy_read_a_nested_view_s_inputs():
    q = Normal(loc="x", scale="s", var=["z"], cond_var=["x", "s"], name="q")
    view = q.replace_var(x="y").replace_var(y="w")  # q(z|w,s)
    prior = Normal(loc=0.0, scale=1.0, var=["z"], name="p")
    m, s = torch.tensor([[0.5, -2.0]]), torch.tensor([[2.0, 0.5]])
    x = {"w": m, "s": s, "x": torch.full_like(m, 9.0)}  # "x" is another variable, hidden by the inner view
    # KL[N(m, s^2) || N(0, 1)] = log(1/s) + (s^2 + m^2) / 2 - 1/2, summed over the features.
    expected_kl = (-s.log() + (s**2 + m**2) / 2 - 0.5).sum(-1)
    torch.testing.assert_close(KullbackLeibler(view, prior).eval(x), expected_kl)
    # H[N(m, s^2)] = log(s * sqrt(2 pi e)), summed over the features.
    expected_h = (s.log() + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)
    torch.testing.assert_close(Entropy(view).eval(x), expected_h)


def test_the_product_of_experts_reads_a_renamed_expert_through_its_view():
    expert = Normal(loc="x", scale=1.0, var=["z"], cond_var=["x"], name="q").replace_var(x="y")
    poe = ProductOfNormal([expert])
    # Precision 1 (prior) + 1 (expert); mean (0 + y) / 2. "x" is not the expert's input.
    params = poe.get_params({"y": torch.tensor([[4.0]]), "x": torch.tensor([[100.0]])})
    torch.testing.assert_close(params["loc"], torch.tensor([[2.0]]))


def test_analytic_entropy_of_a_joint_is_refused_by_name():
    joint = Normal(loc="z", scale=1.0, var=["x"], cond_var=["z"]) * Normal(loc=0.0, scale=1.0, var=["z"])
    with pytest.raises(NotDefinedError, match="analytical=False"):
        Entropy(joint).eval()


def test_parameters_of_a_view_of_a_joint_are_refused_by_name():
    joint = Normal(loc="z", scale=1.0, var=["x"], cond_var=["z"]) * Normal(loc=0.0, scale=1.0, var=["z"])
    with pytest.raises(NotDefinedError, match="not a parametric family"):
        underlying(joint).params({}, None)
