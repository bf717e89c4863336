"""GECO: the update rule by hand, the constraint met on a toy VAE, the multiplier logged, exact resume."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from pixyz_like.distributions import Bernoulli, Normal
from pixyz_like.losses import GECO, KullbackLeibler, LogProb, Parameter
from pixyz_like.losses import Expectation as E
from pixyz_like.models import Model
from pixyz_like.models.training import Callback


def test_update_rule_by_hand():
    geco = GECO(Parameter("kl"), Parameter("err"), tolerance=2.0, alpha=0.5, step_size=0.1, multiplier=1.0)
    lam, avg = 1.0, None
    for err in (5.0, 3.0, 1.0, 0.0):
        value = geco.eval({"kl": torch.tensor([0.5, 1.5]), "err": torch.tensor([err - 1, err + 1])})
        torch.testing.assert_close(value, torch.tensor([0.5, 1.5]) + lam * (torch.tensor([err - 1, err + 1]) - 2.0))
        c = err - 2.0
        avg = c if avg is None else 0.5 * avg + 0.5 * c
        lam = lam * math.exp(0.1 * avg)
        assert float(geco.constraint_average) == pytest.approx(avg)
        assert float(geco.multiplier) == pytest.approx(lam, rel=1e-5)
    assert int(geco.steps) == 4


def test_delay_holds_the_multiplier_for_the_first_evaluations():
    geco = GECO(Parameter("kl"), Parameter("err"), tolerance=0.0, alpha=0.5, step_size=0.1, delay=2)
    x = {"kl": torch.zeros(2), "err": torch.ones(2)}
    geco.eval(x)
    geco.eval(x)
    assert float(geco.multiplier) == 1.0 and int(geco.steps) == 0
    geco.eval(x)  # the first update: the average starts at this batch's value
    assert float(geco.constraint_average) == 1.0 and float(geco.multiplier) == pytest.approx(math.exp(0.1))
    with pytest.raises(TypeError, match="delay"):
        GECO(Parameter("kl"), Parameter("err"), tolerance=0.0, delay=-1)


def test_no_update_without_gradients_or_in_eval_mode():
    geco = GECO(Parameter("kl"), Parameter("err"), tolerance=0.0)
    x = {"kl": torch.zeros(2), "err": torch.ones(2)}
    with torch.no_grad():
        geco.eval(x)
    geco.eval(x, test_mode=True)
    geco.train(False)
    geco.eval(x)
    assert int(geco.steps) == 0 and float(geco.multiplier) == 1.0


def test_bounds_and_arguments():
    geco = GECO(Parameter("kl"), Parameter("err"), tolerance=0.0, step_size=10.0, max_multiplier=5.0)
    geco.eval({"kl": torch.zeros(1), "err": torch.ones(1)})
    assert float(geco.multiplier) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="alpha"):
        GECO(Parameter("kl"), Parameter("err"), tolerance=0.0, alpha=1.0)
    with pytest.raises(ValueError, match="min_multiplier"):
        GECO(Parameter("kl"), Parameter("err"), tolerance=0.0, multiplier=0.0)
    with pytest.raises(TypeError, match="tolerance"):
        GECO(Parameter("kl"), Parameter("err"), tolerance="3")


X_DIM, Z_DIM = 8, 2


def _data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    protos = (torch.rand(4, X_DIM, generator=g) > 0.5).float()
    flips = (torch.rand(n, X_DIM, generator=g) < 0.05).float()
    return (protos[torch.randint(4, (n,), generator=g)] + flips) % 2


class Enc(Normal):
    def __init__(self):
        super().__init__(var=["z"], cond_var=["x"], name="q")
        self.net = nn.Sequential(nn.Linear(X_DIM, 32), nn.ReLU(), nn.Linear(32, 2 * Z_DIM))

    def forward(self, x):
        loc, s = self.net(x).chunk(2, -1)
        return {"loc": loc, "scale": F.softplus(s) + 1e-3}


class Dec(Bernoulli):
    def __init__(self):
        super().__init__(var=["x"], cond_var=["z"], name="p")
        self.net = nn.Sequential(nn.Linear(Z_DIM, 32), nn.ReLU(), nn.Linear(32, X_DIM))

    def forward(self, z):
        return {"probs": torch.sigmoid(self.net(z))}


def _geco_vae(kappa=2.2, seed=0):
    torch.manual_seed(seed)
    q, p = Enc(), Dec()
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[Z_DIM], name="p_{prior}")
    geco = GECO(KullbackLeibler(q, prior), -E(q, LogProb(p)), tolerance=kappa, alpha=0.5, step_size=0.02)
    model = Model(geco.mean(), distributions=[p, q], optimizer_params={"lr": 3e-3})
    return model, geco, q, p, prior


def _loader(x):
    return DataLoader(TensorDataset(x), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))


class _Multipliers(Callback):
    def __init__(self):
        self.steps: list[tuple[int, float]] = []

    def on_step_end(self, model, state, logs):
        self.steps.append((state.step, logs["lambda"]))


def test_constraint_met_at_the_end_on_a_toy_vae():
    kappa = 2.2
    model, geco, q, p, prior = _geco_vae(kappa)
    x = _data()
    with torch.no_grad():
        start = float((-E(q, LogProb(p), sample_shape=[20])).eval({"x": x}).mean())
    assert start > kappa + 2  # the constraint is violated at the start
    seen = _Multipliers()
    history = model.fit(_loader(x), epochs=60, keys=("x",), callbacks=[seen], progress=False)
    with torch.no_grad():
        error = float((-E(q, LogProb(p), sample_shape=[20])).eval({"x": x}).mean())
    assert abs(error - kappa) < 0.1, error
    assert abs(float(geco.constraint_average)) < 0.5  # a short average of one-sample batch estimates: noisy
    # the trajectory: one logged value per step, the value each step used, moving as the rule says
    lams = [v for _, v in seen.steps]
    assert [s for s, _ in seen.steps] == list(range(1, 60 * 8 + 1))
    assert lams[0] == 1.0 and max(lams) > 3 and lams[-1] < max(lams) / 2  # rose while violated, then fell
    assert "train/lambda" in history[-1] and history[-1]["train/lambda"] == pytest.approx(sum(lams[-8:]) / 8)
    assert str(model.loss_cls).startswith(r"mean \left(D_{KL} \left[q(z|x)||p_{prior}(z) \right] + \lambda \left(")


def _state(model, geco):
    params = {k: v.clone() for k, v in model.distributions.state_dict().items()}
    return params, float(geco.multiplier), float(geco.constraint_average), int(geco.steps)


def test_resume_is_exact(tmp_path):
    x = _data(96)
    straight, g1, *_ = _geco_vae()
    straight.fit(_loader(x), epochs=3, keys=("x",), progress=False)
    expected = _state(straight, g1)

    first, _, *_ = _geco_vae()
    ckpt = tmp_path / "run.pt"
    first.fit(_loader(x), epochs=3, keys=("x",), max_steps=4, checkpoint=str(ckpt), progress=False)  # mid-epoch
    resumed, g3, *_ = _geco_vae(seed=123)  # other initial weights: all must come from the checkpoint
    assert float(g3.multiplier) == 1.0
    resumed.fit(_loader(x), epochs=3, keys=("x",), resume=str(ckpt), progress=False)
    got = _state(resumed, g3)
    assert got[1:] == expected[1:]
    for k, v in expected[0].items():
        assert torch.equal(v, got[0][k]), k


def test_model_save_carries_the_multiplier(tmp_path):
    model, geco, *_ = _geco_vae()
    model.train({"x": _data(32)})
    model.save(tmp_path / "m.pt")
    other, g2, *_ = _geco_vae()
    other.load(tmp_path / "m.pt")
    assert float(g2.multiplier) == float(geco.multiplier) != 1.0
    assert int(g2.steps) == 1
