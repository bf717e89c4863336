"""PopGen's sigmoid annealing, from its definition v(t) = 2 (sigmoid(temp * t) - 0.5), beside sigmoid_warmup."""

import math

import pytest

from pixyz_like.losses import sigmoid_annealing, sigmoid_warmup


def _popgen(t: int, temp: float = 1e-4) -> float:
    return 2.0 * (1.0 / (1.0 + math.exp(-t * temp)) - 0.5)


@pytest.mark.parametrize("rate", [1e-4, 1e-3, 0.05])
def test_matches_popgen_definition(rate):
    s = sigmoid_annealing(rate=rate)
    for t in (0, 1, 10, 100, 1000, 10_000, 50_000, 10**6):
        assert s(t) == pytest.approx(_popgen(t, rate), abs=1e-12)
    scaled = sigmoid_annealing(rate=rate, start=0.5, end=2.0)
    assert scaled(1000) == pytest.approx(0.5 + 1.5 * _popgen(1000, rate))


def test_differs_from_the_s_shaped_warmup():
    # PopGen's rises fastest at t = 0 (concave); sigmoid_warmup is S-shaped and reaches its end exactly
    pop, warm = sigmoid_annealing(rate=1e-3), sigmoid_warmup(0.0, 1.0, steps=4000)
    assert pop(100) - pop(0) > pop(2100) - pop(2000)
    assert warm(100) - warm(0) < warm(2100) - warm(2000)
    assert warm(4000) == 1.0 and pop(4000) < 1.0


def test_arguments():
    with pytest.raises(ValueError, match="rate"):
        sigmoid_annealing(rate=0)
