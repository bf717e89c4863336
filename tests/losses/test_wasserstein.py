"""WassersteinDistance: the independent-coupling upper bound against closed forms."""

import math

import pytest
import torch

from pixyz_like.distributions import Deterministic, Normal
from pixyz_like.errors import MissingVariableError, VariableMismatchError
from pixyz_like.losses import WassersteinDistance


class Shift(Deterministic):
    def __init__(self, shift, name):
        super().__init__(var=["z"], cond_var=["x"], name=name)
        self.shift = shift

    def forward(self, x):
        return {"z": x + self.shift}


def test_point_masses_give_the_exact_distance():
    # For point masses the bound is the Wasserstein distance itself: |(x+1) - (x-1)| = 2 sqrt(d).
    loss = WassersteinDistance(Shift(1.0, "f"), Shift(-1.0, "g"))
    value = loss.eval({"x": torch.randn(5, 4)})
    assert value.shape == (5,)
    torch.testing.assert_close(value, torch.full((5,), 4.0), atol=1e-4, rtol=0)


def test_normals_match_the_folded_normal_mean():
    # x_p - x_q ~ N(mu, 2): E|.| = s sqrt(2/pi) exp(-mu^2/(2 s^2)) + mu (1 - 2 Phi(-mu/s)), s = sqrt 2.
    mu, s = 1.5, math.sqrt(2.0)
    p = Normal(loc="x", scale=1.0, var=["z"], cond_var=["x"], name="p")
    q = Normal(loc=-mu, scale=1.0, var=["z"], features_shape=[1], name="q")
    value = WassersteinDistance(p, q).eval({"x": torch.zeros(200_000, 1)})
    phi = 0.5 * (1 + math.erf(-mu / s / math.sqrt(2)))
    expected = s * math.sqrt(2 / math.pi) * math.exp(-mu**2 / (2 * s**2)) + mu * (1 - 2 * phi)
    se = value.std().item() / math.sqrt(value.numel())
    assert abs(value.mean().item() - expected) < 4 * se


def test_image_features_are_flattened():
    p = Normal(loc="x", scale=1.0, var=["z"], cond_var=["x"], name="p")
    q = Normal(loc="x", scale=1.0, var=["z"], cond_var=["x"], name="q")
    assert WassersteinDistance(p, q).eval({"x": torch.zeros(3, 2, 4, 4)}).shape == (3,)


def test_custom_metric_and_printing():
    l1 = lambda a, b: (a - b).abs().sum(-1)  # noqa: E731
    loss = WassersteinDistance(Shift(1.0, "f"), Shift(-0.5, "g"), metric=l1)
    torch.testing.assert_close(loss.eval({"x": torch.zeros(2, 3)}), torch.full((2,), 4.5))
    assert str(loss) == r"W^{upper} \left(f(z|x), g(z|x) \right)"


def test_gradient_and_errors():
    x = torch.zeros(8, 2, requires_grad=True)
    p = Normal(loc="x", scale=1.0, var=["z"], cond_var=["x"], name="p")
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[2], name="q")
    WassersteinDistance(p, prior).eval({"x": x}).sum().backward()
    assert x.grad.abs().sum() > 0
    with pytest.raises(VariableMismatchError):
        WassersteinDistance(p, Normal(loc=0.0, scale=1.0, var=["w"], features_shape=[2]))
    with pytest.raises(MissingVariableError, match="batch_n"):
        WassersteinDistance(prior, prior).eval()
    with pytest.raises(TypeError, match="callable"):
        WassersteinDistance(p, prior, metric="l2")


def test_printing_and_value_match_pixyz():
    import pixyz.distributions as pzd
    import pixyz.losses as pzl

    ref_p = pzd.Normal(loc="x", scale=torch.tensor(1e-6), var=["z"], cond_var=["x"], features_shape=[3], name="p")
    ref_q = pzd.Normal(loc="y", scale=torch.tensor(1e-6), var=["z"], cond_var=["y"], features_shape=[3], name="q")
    p = Normal(loc="x", scale=1e-6, var=["z"], cond_var=["x"], name="p")
    q = Normal(loc="y", scale=1e-6, var=["z"], cond_var=["y"], name="q")
    inputs = {"x": torch.randn(4, 3), "y": torch.randn(4, 3)}
    assert str(WassersteinDistance(p, q)) == str(pzl.WassersteinDistance(ref_p, ref_q))
    torch.testing.assert_close(WassersteinDistance(p, q).eval(inputs),
                               pzl.WassersteinDistance(ref_p, ref_q).eval(inputs), atol=1e-4, rtol=0)
