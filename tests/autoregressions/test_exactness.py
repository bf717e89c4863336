"""Exactness of the autoregressive families.

* ``get_log_prob`` (one pass) equals the sum of the conditionals computed one element at a time,
  each from an input whose elements at and after it are replaced by noise, with the conditional's
  log-probability from an independent formula (``torch.distributions`` or the discretised logistic
  written out naively) — float64, tight tolerance.
* The discretised logistic probabilities of all 256 levels sum to one; a joint over coupled channels
  sums to one over every combination of levels.
* The samplers draw from the distribution they score: empirical frequencies match
  ``exp(get_log_prob)`` (and, with a temperature, the tempered conditionals written out by hand).
* ``sample_mean`` / ``sample_mode`` / ``temperature=0`` equal the brute-force mean and mode.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from pixyz_like.autoregressions.families import _disc_logistic_log_prob

from .toy_models import (
    BernoulliImage,
    CategoricalRGB,
    ConstantMixture,
    MixtureRGB,
    SequenceCategorical,
    SequenceMixture,
    TableCategorical,
    random_levels,
)


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)


# ----------------------------------------------------------------------------- references
def order_of(features, sequential: bool) -> torch.Tensor:
    """The generation order of every element of ``features = (C, *positions)``."""
    c, positions = features[0], features[1:]
    raster = torch.arange(math.prod(positions)).reshape(positions)
    if sequential:
        return raster.unsqueeze(0) * c + torch.arange(c).reshape(c, *([1] * len(positions)))
    return raster.unsqueeze(0).expand(c, *positions)


def sequential_sum(p, x, cond, conditional, noise, sequential):
    """Sum over the steps of ``conditional(params, step_mask)``, params from an input noised from the step on."""
    order = order_of(tuple(x.shape[1:]), sequential)
    total = torch.zeros(x.shape[0])
    for step in range(int(order.max()) + 1):
        noisy = torch.where(order >= step, noise(x.shape), x)
        params = p.get_params({"x": noisy, **cond})
        total = total + conditional(params, order == step)
    return total


def ref_mixture_log_prob(logits, loc, log_scale, coeffs, idx, n_levels):
    """Naive log p(pixel): sum over components of the product of CDF differences; idx (n, C), params (n, ..)."""
    h = 1.0 / (n_levels - 1)
    y = idx.to(loc.dtype) * 2 * h - 1
    n, c, m = loc.shape
    pairs = [(a, b) for a in range(1, c) for b in range(a)]
    weights = torch.softmax(logits, -1)
    total = torch.zeros(n)
    for k in range(m):
        prob = weights[:, k]
        for ch in range(c):
            mean = loc[:, ch, k] + sum(coeffs[:, j, k] * y[:, b] for j, (a, b) in enumerate(pairs) if a == ch)
            s = log_scale[:, ch, k].exp()
            upper = torch.where(idx[:, ch] == n_levels - 1, 1.0, torch.sigmoid((y[:, ch] + h - mean) / s))
            lower = torch.where(idx[:, ch] == 0, 0.0, torch.sigmoid((y[:, ch] - h - mean) / s))
            prob = prob * (upper - lower)
        total = total + prob
    return total.log()


# ----------------------------------------------------------------------------- one pass == sequential
def test_bernoulli_log_prob_is_the_sum_of_sequential_conditionals():
    p = BernoulliImage()
    x = torch.bernoulli(torch.full((5, 1, 3, 4), 0.5))
    z = torch.randn(5, 2)

    def conditional(params, mask):
        logits = params["logits"][:, mask]  # (n, 1)
        return torch.distributions.Bernoulli(logits=logits).log_prob(x[:, mask]).sum(-1)

    seq = sequential_sum(p, x, {"z": z}, conditional, lambda s: torch.bernoulli(torch.full(s, 0.5)), True)
    torch.testing.assert_close(p.get_log_prob({"x": x, "z": z}), seq, rtol=0, atol=1e-10)


def test_categorical_rgb_log_prob_is_the_sum_of_sequential_subpixel_conditionals():
    p = CategoricalRGB()
    x = random_levels((4, 3, 2, 3), 4)
    idx = (x * 3).round().long()

    def conditional(params, mask):
        c = int(torch.nonzero(mask)[0, 0])
        logits = params["logits"].reshape(4, 3, 4, 2, 3).permute(0, 1, 3, 4, 2)[:, mask]  # (n, 1, K)
        assert mask.sum() == 1 and c in (0, 1, 2)
        return torch.distributions.Categorical(logits=logits).log_prob(idx[:, mask]).sum(-1)

    seq = sequential_sum(p, x, {}, conditional, lambda s: random_levels(s, 4), True)
    torch.testing.assert_close(p.get_log_prob({"x": x}), seq, rtol=0, atol=1e-10)


def test_mixture_log_prob_is_the_sum_of_sequential_pixel_conditionals():
    p = MixtureRGB()
    x = random_levels((4, 3, 2, 3), 256)
    idx = (x * 255).round().long()

    def conditional(params, mask):
        pos = torch.nonzero(mask[0])[0].tolist()
        at = {k: v[(..., *pos)] for k, v in params.items()}
        return ref_mixture_log_prob(at["logits"], at["loc"], at["log_scale"], at["coeffs"],
                                    idx[(slice(None), slice(None), *pos)], 256)

    seq = sequential_sum(p, x, {}, conditional, lambda s: random_levels(s, 256), False)
    torch.testing.assert_close(p.get_log_prob({"x": x}), seq, rtol=0, atol=1e-10)
    # per-pixel values come out with sum_features=False
    per_pixel = p.get_log_prob({"x": x}, sum_features=False)
    assert per_pixel.shape == (4, 2, 3)
    torch.testing.assert_close(per_pixel.sum((1, 2)), seq, rtol=0, atol=1e-10)


def test_sequence_log_prob_is_the_sum_of_sequential_conditionals():
    p = SequenceCategorical(length=9)
    x = random_levels((3, 1, 9), 8)
    z = torch.randn(3, 3)
    idx = (x * 7).round().long()

    def conditional(params, mask):
        t = int(torch.nonzero(mask[0])[0, 0])
        return torch.distributions.Categorical(logits=params["logits"][:, :, t]).log_prob(idx[:, 0, t])

    seq = sequential_sum(p, x, {"z": z}, conditional, lambda s: random_levels(s, 8), True)
    torch.testing.assert_close(p.get_log_prob({"x": x, "z": z}), seq, rtol=0, atol=1e-10)


# ----------------------------------------------------------------------------- normalisation
@pytest.mark.parametrize("mean,log_scale", [(0.3, -3.0), (1.5, -7.0), (-2.0, 2.0), (0.0, -9.0), (0.999, -6.0),
                                            (-0.5, 0.5), (5.0, -1.0)])
def test_discretised_logistic_probabilities_over_256_levels_sum_to_one(mean, log_scale):
    idx = torch.arange(256)
    lp = _disc_logistic_log_prob(idx, torch.full((256,), mean), torch.full((256,), log_scale), 256)
    assert torch.isfinite(lp).all()
    assert abs(lp.exp().sum().item() - 1) < 1e-12
    # and they are the CDF differences written out (naive, fine in float64 away from the far tails)
    if log_scale > -7:
        inner = (torch.arange(1, 256) * 2 - 1) / 255 - 1
        edges = torch.cat([torch.tensor([-math.inf]), inner, torch.tensor([math.inf])])
        cdf = torch.sigmoid((edges - mean) / math.exp(log_scale))
        torch.testing.assert_close(lp.exp(), cdf[1:] - cdf[:-1], rtol=1e-9, atol=1e-15)


def test_mixture_joint_over_coupled_channels_sums_to_one():
    params = {"logits": torch.randn(3), "loc": torch.randn(2, 3) * 0.5, "log_scale": torch.randn(2, 3) - 1,
              "coeffs": torch.tanh(torch.randn(1, 3))}
    p = ConstantMixture(params, n_levels=16)
    grid = torch.tensor(list(itertools.product(range(16), repeat=2)), dtype=torch.float64) / 15  # (256, 2)
    lp = p.get_log_prob({"x": grid.unsqueeze(-1)})
    assert abs(lp.exp().sum().item() - 1) < 1e-12
    n = grid.shape[0]
    ref = ref_mixture_log_prob(params["logits"].expand(n, 3), params["loc"].expand(n, 2, 3),
                               params["log_scale"].expand(n, 2, 3), params["coeffs"].expand(n, 1, 3),
                               (grid * 15).round().long(), 16)
    torch.testing.assert_close(lp, ref, rtol=0, atol=1e-10)


def test_categorical_table_probabilities_sum_to_one():
    p = TableCategorical(torch.randn(3), torch.randn(3, 3))
    grid = torch.tensor(list(itertools.product(range(3), repeat=2)), dtype=torch.float64) / 2
    assert abs(p.get_log_prob({"x": grid.unsqueeze(1)}).exp().sum().item() - 1) < 1e-12


# ----------------------------------------------------------------------------- samplers
def _frequencies(samples: torch.Tensor, n_levels: int) -> torch.Tensor:
    """Frequencies of the (flattened) level combinations, in itertools.product order."""
    idx = (samples.reshape(samples.shape[0], -1) * (n_levels - 1)).round().long()
    code = torch.zeros(idx.shape[0], dtype=torch.long)
    for j in range(idx.shape[1]):
        code = code * n_levels + idx[:, j]
    return torch.bincount(code, minlength=n_levels ** idx.shape[1]).double() / idx.shape[0]


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_categorical_sampler_draws_the_tempered_conditionals(temperature):
    a, b = torch.tensor([0.5, -0.3, 1.0]), torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.3, 0.1], [-2.0, 1.0, 1.5]])
    p = TableCategorical(a, b)
    n = 40000
    freq = _frequencies(p.sample(batch_n=n, temperature=temperature)["x"], 3)
    pa = torch.softmax(a / temperature, -1)
    pb = torch.softmax(b / temperature, -1)
    expected = (pa[:, None] * pb).flatten()
    assert (freq - expected).abs().max() < 4 * math.sqrt(0.25 / n)
    if temperature == 1.0:
        grid = torch.tensor(list(itertools.product(range(3), repeat=2)), dtype=torch.float64) / 2
        torch.testing.assert_close(p.get_log_prob({"x": grid.unsqueeze(1)}).exp(), expected)


def _mixture_params():
    # channel 1 is narrow and strongly coupled to channel 0, so using channel 0's level (not the
    # continuous draw it came from) in the coupling matters
    return {"logits": torch.tensor([0.3, -0.2]), "loc": torch.tensor([[-0.4, 0.5], [0.1, -0.3]]),
            "log_scale": torch.tensor([[-0.5, -0.3], [-1.6, -1.8]]), "coeffs": torch.tensor([[0.95, -0.9]])}


def _mixture_table(params, n_levels, temperature=1.0):
    """Joint probabilities of the 2-channel pixel over all level pairs, tempered: logits / T, scales * T."""
    grid = torch.tensor(list(itertools.product(range(n_levels), repeat=2)))
    n = grid.shape[0]
    lp = ref_mixture_log_prob((params["logits"] / temperature).expand(n, 2), params["loc"].expand(n, 2, 2),
                              (params["log_scale"] + math.log(temperature)).expand(n, 2, 2),
                              params["coeffs"].expand(n, 1, 2), grid, n_levels)
    return lp.exp().reshape(n_levels, n_levels)


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_mixture_sampler_draws_the_coupled_tempered_joint(temperature):
    params = _mixture_params()
    p = ConstantMixture(params, n_levels=5)
    n = 40000
    freq = _frequencies(p.sample(batch_n=n, temperature=temperature)["x"], 5)
    expected = _mixture_table(params, 5, temperature).flatten()
    assert abs(expected.sum().item() - 1) < 1e-12
    keep = expected > 5 / n  # Pearson's chi-square over the cells expected to hold 5 draws or more
    chi2 = (n * (freq - expected)[keep] ** 2 / expected[keep]).sum().item()
    df = int(keep.sum()) - 1
    assert chi2 < df + 5 * math.sqrt(2 * df), (chi2, df)


def test_mixture_mode_mean_and_greedy_decoding_are_the_brute_force_ones():
    params = _mixture_params()
    levels = 6
    p = ConstantMixture(params, n_levels=levels)
    table = _mixture_table(params, levels)  # P(j0, j1)
    grid = torch.arange(levels, dtype=torch.float64) / (levels - 1)
    marginal0 = table.sum(1)
    x = torch.tensor([[[2.0], [4.0]], [[5.0], [0.0]]]) / (levels - 1)  # two data points (j0, j1)
    mode, mean = p.sample_mode({"x": x}), p.sample_mean({"x": x})
    for i, j0 in enumerate([2, 5]):
        cond1 = table[j0] / table[j0].sum()
        assert mode[i, 0, 0] == marginal0.argmax() / (levels - 1)
        assert mode[i, 1, 0] == cond1.argmax() / (levels - 1)
        torch.testing.assert_close(mean[i, 0, 0], (marginal0 * grid).sum())
        torch.testing.assert_close(mean[i, 1, 0], (cond1 * grid).sum())
    greedy = p.sample(batch_n=2, temperature=0)["x"]
    j0 = int(marginal0.argmax())
    assert torch.equal(greedy[:, 0, 0], torch.full((2,), j0 / (levels - 1)))
    assert torch.equal(greedy[:, 1, 0], torch.full((2,), int(table[j0].argmax()) / (levels - 1)))


def test_categorical_and_bernoulli_points_are_the_conditionals_argmax_and_mean():
    p = CategoricalRGB()
    x = random_levels((3, 3, 2, 3), 4)
    logits = p.get_params({"x": x})["logits"].reshape(3, 3, 4, 2, 3)
    probs = torch.softmax(logits, 2)
    assert torch.equal(p.sample_mode({"x": x}), logits.argmax(2).double() / 3)
    torch.testing.assert_close(p.sample_mean({"x": x}),
                               (probs * (torch.arange(4.0) / 3).reshape(1, 1, 4, 1, 1)).sum(2))
    q = BernoulliImage(cond=False)
    xb = torch.bernoulli(torch.full((3, 1, 3, 4), 0.5))
    lb = q.get_params({"x": xb})["logits"]
    torch.testing.assert_close(q.sample_mean({"x": xb}), torch.sigmoid(lb))
    assert torch.equal(q.sample_mode({"x": xb}), (lb > 0).double())


def test_greedy_decoding_takes_each_conditional_mode():
    a, b = torch.tensor([0.5, -0.3, 1.0]), torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.3, 0.1], [-2.0, 1.0, 1.5]])
    x = TableCategorical(a, b).sample(batch_n=3, temperature=0)["x"]
    assert torch.equal(x, torch.tensor([[[1.0, 1.0]]] * 3))  # argmax a = 2, then argmax b[2] = 2: level 2/2


def test_temperature_sharpens_the_sequence_model():
    """Lower temperatures give samples of higher likelihood under the model (on average)."""
    p = SequenceCategorical(length=12, cond=False)
    scores = []
    for t in (1.0, 0.5, 0.0):
        x = p.sample(batch_n=200, temperature=t)["x"]
        scores.append(p.get_log_prob({"x": x}).mean().item())
    assert scores[0] < scores[1] < scores[2]


def test_cached_mixture_sequence_scores_what_it_samples():
    p = SequenceMixture(length=6)
    x = p.sample(batch_n=4)["x"]
    assert x.shape == (4, 2, 6)
    assert torch.equal(x, (x * 255).round() / 255)
    assert torch.isfinite(p.get_log_prob({"x": x})).all()
