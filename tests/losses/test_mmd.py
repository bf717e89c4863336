"""MMD: the unbiased estimator against its definition, closed forms and Pixyz's defect."""

import math

import pytest
import torch

from pixyz_like.distributions import Normal
from pixyz_like.errors import GraphError, MissingVariableError, VariableMismatchError
from pixyz_like.losses import MMD
from pixyz_like.losses.mmd import gaussian_rbf_kernel, inverse_multiquadratic_rbf_kernel, mmd2_unbiased

KERNELS = ["gaussian", "inv-multiquadratic"]


def shifted(d, shift=0.0, name="p"):
    """N(shift, 1) in d dimensions, conditioned on a dummy x that only sets the batch size."""
    return Normal(loc=torch.full((d,), float(shift)), scale=torch.ones(d), var=["z"], name=name)


def encoder(name="q"):
    return Normal(loc="x", scale=1.0, var=["z"], cond_var=["x"], name=name)


def gaussian_closed_form(a, b, d, s2):
    """MMD^2 between N(a 1, I) and N(b 1, I) for k = exp(-|x-y|^2 / sigma_sqr), sigma_sqr = 2 s^2.

    For W = X - Y ~ N(mu, v I): E exp(-|W|^2/(2 s^2)) = (s^2/(s^2+v))^(d/2) exp(-|mu|^2 / (2 (s^2+v))).
    """
    same = (s2 / (s2 + 2)) ** (d / 2)
    cross = same * math.exp(-d * (a - b) ** 2 / (2 * (s2 + 2)))
    return 2 * same - 2 * cross


def brute_force(x, y, k):
    n, m = len(x), len(y)
    xx = sum(k(x[i:i + 1], x[j:j + 1]).item() for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i:i + 1], y[j:j + 1]).item() for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i:i + 1], y[j:j + 1]).item() for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


@pytest.mark.parametrize("kernel", [gaussian_rbf_kernel, inverse_multiquadratic_rbf_kernel])
def test_estimator_matches_its_definition(kernel):
    x, y = torch.randn(7, 3), torch.randn(5, 3) + 1
    assert mmd2_unbiased(x, y, kernel, sigma_sqr=1.5).item() == pytest.approx(
        brute_force(x, y, lambda a, b: kernel(a, b, sigma_sqr=1.5)), abs=1e-5)


def test_kernels_formulas():
    x, y = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 2.0]])
    assert gaussian_rbf_kernel(x, y, sigma_sqr=3.0).item() == pytest.approx(math.exp(-5 / 3))
    assert inverse_multiquadratic_rbf_kernel(x, y, sigma_sqr=3.0).item() == pytest.approx(3 / 8)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("d", [1, 64])
def test_identical_distributions_give_about_zero(kernel, d):
    # Pixyz divided by d(d-1): 719.5 here for d=64 and inf for d=1.
    loss = MMD(encoder("p"), encoder("q"), kernel=kernel)
    value = loss.eval({"x": torch.zeros(400, d)})
    assert torch.isfinite(value)
    assert abs(value.item()) < 0.02


def test_unbiased_with_tiny_samples():
    # The mean over many estimates from 4 samples each is ~0 for identical distributions; the biased
    # V-statistic (diagonal included) would average about 2 (1 - E k)/n > 0.2 here.
    loss = MMD(encoder("p"), encoder("q"))
    values = torch.stack([loss.eval({"x": torch.zeros(4, 1)}) for _ in range(3000)])
    se = values.std() / math.sqrt(len(values))
    assert abs(values.mean().item()) < 4 * se.item()


@pytest.mark.parametrize("d", [1, 3])
@pytest.mark.parametrize("sigma_sqr", [2.0, 8.0])
def test_gaussian_kernel_closed_form(d, sigma_sqr):
    p = Normal(loc="x", scale=1.0, var=["z"], cond_var=["x"], name="p")
    prior = shifted(d, 2.0, name="p_{prior}")
    loss = MMD(p, prior, kernel="gaussian", sigma_sqr=sigma_sqr)
    values = torch.stack([loss.eval({"x": torch.zeros(300, d)}) for _ in range(20)])
    expected = gaussian_closed_form(0.0, 2.0, d, sigma_sqr / 2)
    se = values.std().item() / math.sqrt(len(values))
    assert abs(values.mean().item() - expected) < 4 * se + 1e-3


def test_prior_against_prior_needs_batch_n():
    loss = MMD(shifted(2, 0.0, "p"), shifted(2, 1.0, "q"))
    with pytest.raises(MissingVariableError, match="batch_n"):
        loss.eval()
    assert torch.isfinite(loss.eval(batch_n=50))


def test_gradient_reaches_the_encoder():
    q = encoder()
    x = torch.zeros(64, 2, requires_grad=True)
    MMD(q, shifted(2, 1.0, "p_{prior}")).eval({"x": x}).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_printing_and_options():
    loss = MMD(encoder(), shifted(2, 0.0, "p_{prior}"))
    assert str(loss) == r"D_{MMD^2} \left[q(z|x)||p_{prior}(z) \right]"
    with pytest.raises(TypeError, match="unknown option"):
        loss.eval({"x": torch.zeros(3, 2)}, sample_shape=[2])


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown kernel"):
        MMD(encoder("p"), encoder(), kernel="laplace")
    with pytest.raises(TypeError, match="sigma_sqr"):
        MMD(encoder("p"), encoder(), bandwidth=1.0)
    other = Normal(loc="x", scale=1.0, var=["w"], cond_var=["x"])
    with pytest.raises(VariableMismatchError):
        MMD(encoder("p"), other)
    joint = Normal(loc=0.0, scale=1.0, var=["a"], features_shape=[1]) * Normal(
        loc="a", scale=1.0, var=["b"], cond_var=["a"])
    with pytest.raises(GraphError, match="one variable"):
        MMD(joint, joint)


def test_custom_kernel_callable():
    linear = lambda x, y: x @ y.T  # noqa: E731  MMD^2 with a linear kernel is |mean_p - mean_q|^2
    loss = MMD(encoder("p"), shifted(3, 1.0, "q"), kernel=linear)
    values = torch.stack([loss.eval({"x": torch.zeros(500, 3)}) for _ in range(50)])
    se = values.std().item() / math.sqrt(len(values))
    assert abs(values.mean().item() - 3.0) < 4 * se


def test_printing_and_defect_against_pixyz():
    import pixyz.distributions as pzd
    import pixyz.losses as pzl

    ref_p = pzd.Normal(loc="x", scale=torch.tensor(1.0), var=["z"], cond_var=["x"], features_shape=[1], name="p")
    ref_q = pzd.Normal(loc="x", scale=torch.tensor(1.0), var=["z"], cond_var=["x"], features_shape=[1], name="q")
    ours = MMD(encoder("p"), encoder("q"))
    assert str(ours) == str(pzl.MMD(ref_p, ref_q))
    x = torch.zeros(200, 1)
    # Pixyz divides by d (d - 1) instead of n (n - 1): not finite for one-dimensional samples.
    assert not torch.isfinite(pzl.MMD(ref_p, ref_q).eval({"x": x}, reparam=True))
    assert abs(ours.eval({"x": x}).item()) < 0.05
