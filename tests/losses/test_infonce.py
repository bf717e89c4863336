"""InfoNCE: a hand-computed value, the log N bound, row-wise and pairwise critics, training toward log N."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pixyz_like.errors import ShapeError
from pixyz_like.losses import InfoNCE
from pixyz_like.models import Model


def test_equals_a_hand_computed_value():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    c = torch.tensor([[0.5, 0.5], [1.0, -1.0], [0.0, 1.0]])
    nce = InfoNCE(lambda a, b: (a * b).sum(-1), x="x", c="c")
    n = 3
    expected = []
    for i in range(n):  # log( e^{f(x_i, c_i)} / (1/N sum_j e^{f(x_j, c_i)}) ), written out
        num = math.exp(sum(x[i, d].item() * c[i, d].item() for d in range(2)))
        den = sum(math.exp(sum(x[j, d].item() * c[i, d].item() for d in range(2))) for j in range(n)) / n
        expected.append(math.log(num / den))
    torch.testing.assert_close(nce.eval({"x": x, "c": c}), torch.tensor(expected))
    assert str(nce) == r"\log \frac{e^{f(x_i, c_i)}}{\frac{1}{N} \sum_{j=1}^{N} e^{f(x_j, c_i)}}"


def test_row_wise_and_pairwise_critics_agree():
    x, c = torch.randn(6, 3), torch.randn(6, 3)
    w = torch.randn(3, 3)
    rows = InfoNCE(lambda a, b: ((b @ w) * a).sum(-1, keepdim=True))
    pairs = InfoNCE(lambda a, b: b @ w @ a.t(), pairwise=True)
    torch.testing.assert_close(rows.eval({"x": x, "c": c}), pairs.eval({"x": x, "c": c}))
    s = rows.scores(x, c)
    torch.testing.assert_close(s[2, 4], (c[2] @ w * x[4]).sum())  # entry [i, j] is f(x_j, c_i)


@pytest.mark.parametrize("n", [2, 8, 64])
def test_bounded_above_by_log_n(n):
    critic = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    nce = InfoNCE(lambda a, b: 20 * critic(torch.cat([a, b], -1)))  # large scores: near the bound
    for _ in range(5):
        x = torch.randn(n, 2)
        values = nce.eval({"x": x, "c": x + 0.01 * torch.randn(n, 2)})
        assert values.shape == (n,)
        assert (values <= math.log(n) + 1e-5).all()
    perfect = InfoNCE(lambda a, b: -1e3 * ((a - b) ** 2).sum(-1))  # the bound is reached: log N exactly
    x = torch.arange(2 * n, dtype=torch.float32).reshape(n, 2)
    torch.testing.assert_close(perfect.eval({"x": x, "c": x}), torch.full((n,), math.log(n)))


class _DistanceCritic(nn.Module):
    """f(x, c) = -exp(s) ||x - W c||^2, W and s learnt."""

    def __init__(self):
        super().__init__()
        self.w = nn.Linear(2, 2)
        self.log_scale = nn.Parameter(torch.zeros(()))

    def forward(self, x, c):
        return -self.log_scale.exp() * ((x - self.w(c)) ** 2).sum(-1)


def test_training_the_critic_approaches_log_n():
    torch.manual_seed(0)
    n = 32
    nce = InfoNCE(_DistanceCritic())  # a module critic: registered, so trained
    model = Model(-nce.mean(), distributions=[nce.critic], optimizer_params={"lr": 0.05})
    x = torch.randn(n, 2)
    start = float(nce.eval({"x": x, "c": x + 0.05 * torch.randn(n, 2)}).mean().detach())
    for _ in range(300):
        x = torch.randn(n, 2)
        model.train({"x": x, "c": x + 0.05 * torch.randn(n, 2)})
    x = torch.randn(n, 2)
    end = float(nce.eval({"x": x, "c": x + 0.05 * torch.randn(n, 2)}).mean().detach())
    assert start < 1.0 and end > math.log(n) - 0.3 and end <= math.log(n)


def test_named_errors():
    nce = InfoNCE(lambda a, b: (a * b).sum(-1), x="z", c="c")
    with pytest.raises(ShapeError, match="pairs must match"):
        nce.eval({"z": torch.zeros(3, 2), "c": torch.zeros(4, 2)})
    bad = InfoNCE(lambda a, b: a, x="z", c="c")
    with pytest.raises(ShapeError, match="the critic returned"):
        bad.eval({"z": torch.zeros(3, 2), "c": torch.zeros(3, 2)})
    with pytest.raises(ValueError, match="two different variables"):
        InfoNCE(lambda a, b: a, x="z", c="z")
    assert nce.input_var == ["z", "c"]
