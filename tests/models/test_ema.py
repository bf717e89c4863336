"""EMA (Polyak) weights: the average by hand, evaluation with the averaged weights, checkpoints and resume."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pixyz_like.distributions import Normal
from pixyz_like.errors import CheckpointError, OptionError
from pixyz_like.models import Model
from pixyz_like.models.ema import EMA
from pixyz_like.models.training import Callback


class Regressor(Normal):
    """p(x|y) = N(x; W y + b, 1), with a batch-norm (float buffers) in front."""

    def __init__(self):
        super().__init__(var=["x"], cond_var=["y"], name="p")
        self.norm = nn.BatchNorm1d(3)
        self.net = nn.Linear(3, 2)

    def forward(self, y):
        return {"loc": self.net(self.norm(y)), "scale": torch.ones(y.shape[0], 2)}


def _model(seed=0, lr=0.1):
    torch.manual_seed(seed)
    p = Regressor()
    return Model(-p.log_prob().mean(), distributions=[p], optimizer=torch.optim.SGD, optimizer_params={"lr": lr}), p


def _data(n=48, seed=1):
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(n, 3, generator=g)
    x = y[:, :2] * 2 - 1 + 0.1 * torch.randn(n, 2, generator=g)
    return x, y


def _loader(n=48):
    x, y = _data(n)
    return DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))


class _Recorder(Callback):
    def __init__(self, module):
        self.module, self.seen = module, []

    def on_step_end(self, model, state, logs):
        self.seen.append({k: v.detach().clone() for k, v in self.module.state_dict().items()})


def test_the_average_follows_the_recurrence():
    model, p = _model()
    initial = {k: v.clone() for k, v in model.distributions.state_dict().items()}
    ema = EMA(model, decay=0.9)
    rec = _Recorder(model.distributions)
    model.fit(_loader(), epochs=2, keys=("x", "y"), callbacks=[rec, ema], progress=False)
    expected = initial
    for w in rec.seen:
        expected = {k: (0.9 * expected[k] + 0.1 * w[k]) if w[k].is_floating_point() else w[k] for k in w}
    got = ema.averaged()
    assert got.keys() == expected.keys()
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-5, atol=1e-6)
    assert torch.equal(got["0.norm.num_batches_tracked"], p.norm.num_batches_tracked)  # integers copied
    assert ema.num_updates == len(rec.seen) == 12


def test_evaluation_with_the_averaged_weights():
    model, p = _model()
    x, y = _data(16, seed=5)
    ema = EMA(model, decay=0.8, test_loader=[{"x": x, "y": y}])
    history = model.fit(_loader(), epochs=2, keys=("x", "y"), callbacks=[ema], progress=False)
    trained = {k: v.clone() for k, v in model.distributions.state_dict().items()}
    # the same model with the averaged weights loaded, evaluated directly
    other, _ = _model(seed=9)
    other.distributions.load_state_dict(ema.averaged())
    expected = float(other.test({"x": x, "y": y}))
    assert history[-1]["test/ema/loss"] == pytest.approx(expected, rel=1e-6)
    with ema.swapped():
        assert float(model.test({"x": x, "y": y})) == pytest.approx(expected, rel=1e-6)
    for k, v in model.distributions.state_dict().items():  # swapped back
        assert torch.equal(v, trained[k]), k
    assert float(model.test({"x": x, "y": y})) != pytest.approx(expected, rel=1e-6)
    ema.copy_to_model()
    assert float(model.test({"x": x, "y": y})) == pytest.approx(expected, rel=1e-6)


def test_checkpoints_carry_the_averaged_weights(tmp_path):
    model, _ = _model()
    ema = EMA(model, decay=0.9)
    model.fit(_loader(), epochs=1, keys=("x", "y"), callbacks=[ema], progress=False)
    model.save(tmp_path / "m.pt")
    other, _ = _model(seed=3)
    ema2 = EMA(other, decay=0.9)
    other.load(tmp_path / "m.pt")
    for k, v in ema.averaged().items():
        assert torch.equal(v, ema2.averaged()[k]), k
    assert ema2.num_updates == ema.num_updates
    # a model without the EMA cannot silently drop them
    bare, _ = _model()
    with pytest.raises(CheckpointError, match="ema_weights"):
        bare.load(tmp_path / "m.pt")


def test_resume_is_exact(tmp_path):
    straight, _ = _model()
    ema = EMA(straight, decay=0.9)
    straight.fit(_loader(), epochs=2, keys=("x", "y"), callbacks=[ema], progress=False)

    first, _ = _model()
    ckpt = tmp_path / "run.pt"
    first.fit(_loader(), epochs=2, keys=("x", "y"), callbacks=[EMA(first, decay=0.9)], max_steps=5,
              checkpoint=str(ckpt), progress=False)
    resumed, _ = _model(seed=7)
    ema3 = EMA(resumed, decay=0.9)
    resumed.fit(_loader(), epochs=2, keys=("x", "y"), callbacks=[ema3], resume=str(ckpt), progress=False)
    assert ema3.num_updates == ema.num_updates == 12
    for k, v in ema.averaged().items():
        assert torch.equal(v, ema3.averaged()[k]), k


def test_arguments():
    model, _ = _model()
    with pytest.raises(OptionError, match="decay"):
        EMA(model, decay=1.0)
    EMA(model)
    with pytest.raises(OptionError, match="one EMA callback per model"):
        EMA(model)
    with pytest.raises(TypeError, match="Model"):
        EMA(object())
