"""Constant parameters: one value per data point from constants, checks on assignment, one home for shapes.

A family's constants are stored in one place (``DistributionBase._register_constant``); a constant is
checked when it is given and when it is assigned anew, and one replaced by an ``nn.Parameter`` (which
an optimiser may move out of the domain) is checked at each use. The expected values come from
torch.distributions.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.distributions as td
from torch import nn

from pixyz_like.distributions import Categorical, Dirichlet, Normal
from pixyz_like.errors import ParameterError, ShapeError


def test_entropy_from_a_constant_scale_has_one_value_per_data_point() -> None:
    # The entropy of a Normal depends on its scale only: with a constant scale and a conditional loc,
    # it is still one value per data point (it used to be one scalar for the whole batch).
    p = Normal(loc="y", scale=0.5, var=["x"], cond_var=["y"])
    y = torch.zeros(5, 3)
    h = p.get_entropy({"y": y})
    assert h.shape == (5,)
    torch.testing.assert_close(h, td.Normal(y, 0.5).entropy().sum(-1))


def test_entropy_loss_from_a_constant_scale_has_one_value_per_data_point() -> None:
    """The analytic Entropy loss shares get_entropy's rule: a sum over the batch counts every point."""
    from pixyz_like.losses import Entropy

    q = Normal(loc="y", scale=0.5, var=["x"], cond_var=["y"])
    y = torch.zeros(5, 3)
    expected = td.Normal(torch.zeros(5, 3), 0.5).entropy().sum(-1)
    torch.testing.assert_close(Entropy(q).eval({"y": y}), expected)
    torch.testing.assert_close(Entropy(q).sum().eval({"y": y}), expected.sum())


def test_assigning_a_constant_outside_its_domain_is_refused() -> None:
    p = Normal(loc=0.0, scale=1.0, var=["x"])
    with pytest.raises(ParameterError, match="'scale'"):
        p.scale = torch.tensor([-1.0])
    # The refused value is not kept: the distribution still scores with its old scale.
    x = torch.zeros(2, 1)
    torch.testing.assert_close(p.get_log_prob({"x": x}), td.Normal(0.0, 1.0).log_prob(x).sum(-1))


def test_assigning_a_valid_constant_changes_the_distribution() -> None:
    p = Normal(loc=0.0, scale=1.0, var=["x"])
    p.scale = torch.tensor([2.0])
    x = torch.tensor([[0.5], [-3.0]])
    expected = td.Normal(0.0, 2.0).log_prob(x).sum(-1)
    torch.testing.assert_close(p.get_log_prob({"x": x}), expected)


def test_a_constant_replaced_by_a_parameter_is_checked_at_each_use() -> None:
    p = Normal(loc=0.0, scale=1.0, var=["x"])
    p.scale = nn.Parameter(torch.tensor([1.0]))
    x = torch.zeros(2, 1)
    torch.testing.assert_close(p.get_log_prob({"x": x}), td.Normal(0.0, 1.0).log_prob(x).sum(-1))
    with torch.no_grad():
        p.scale.fill_(-1.0)  # as an optimiser step could
    with pytest.raises(ParameterError, match="scale"):
        p.get_log_prob({"x": x})


@pytest.mark.parametrize(
    "make",
    [
        lambda: Categorical(probs=torch.ones(2, 3) / 3, features_shape=[4]),
        lambda: Dirichlet(concentration=torch.ones(2, 3), features_shape=[4]),
    ],
    ids=["Categorical", "Dirichlet"],
)
def test_an_event_constant_that_does_not_fit_features_shape_is_a_shape_error(make: Callable[[], object]) -> None:
    # Both families shape their constants in one place: (2, 3) probabilities do not fit features
    # (4,) whose last dimension is the categories.
    with pytest.raises(ShapeError, match="features_shape"):
        make()
