"""The training layer's parts (issue 11): one step for Model.train and fit, fit's signature defined once,
fused Adam by default, callbacks that contribute metrics, two loaders zipped (semi-supervised
learning) with exact resumption, and user-named terms in the logs (issue 10)."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pixyz_like.losses import Expectation as E
from pixyz_like.losses import KullbackLeibler, LogProb
from pixyz_like.models import Callback, EveryEpoch, Model, TensorBoardLogger, ZipLoader, training

from ..quickstart import make
from .fit_helpers import Regressor, make_regression, params, regression_data


def _fused_on_cpu() -> bool:
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    return "cpu" in _get_fused_kernels_supported_devices()


# ---------------------------------------------------------------------- one step, one signature
def test_fit_is_the_training_function_and_its_signature_is_written_once():
    assert Model.fit is training.fit
    model = make_regression()
    assert list(inspect.signature(model.fit).parameters) == list(inspect.signature(training.fit).parameters)[1:]


@pytest.mark.parametrize("optimizer", [torch.optim.SGD, torch.optim.Adam])
def test_fit_takes_exactly_the_steps_of_model_train(optimizer):
    """fit without accumulation, precision or compilation is Model.train over the batches, bit for bit."""
    x, y = regression_data(24)
    batches = [(x[i:i + 8], y[i:i + 8]) for i in (0, 8, 16)]
    torch.manual_seed(0)
    by_hand = make_regression(optimizer=optimizer)
    losses = [by_hand.train({"x": a, "y": b}).item() for _ in range(2) for a, b in batches]
    torch.manual_seed(0)
    fitted = make_regression(optimizer=optimizer)
    seen = []

    class Record(Callback):
        def on_step_end(self, model, state, logs):
            seen.append(logs["loss"])

    fitted.fit(batches, 2, keys=("x", "y"), callbacks=[Record()], progress=False)
    for k, v in params(by_hand).items():
        assert torch.equal(params(fitted)[k], v), k
    assert seen == pytest.approx(losses, rel=0, abs=0)


# ---------------------------------------------------------------------- per-call work at construction
def test_default_adam_is_fused_where_the_device_supports_it():
    model = make_regression(optimizer=torch.optim.Adam)
    assert model.optimizer.defaults["fused"] is (True if _fused_on_cpu() else None)
    chosen = Model(model.loss_cls, distributions=list(model.distributions), optimizer_params={"foreach": True})
    assert not chosen.optimizer.defaults["fused"] and chosen.optimizer.defaults["foreach"] is True
    sgd = make_regression(optimizer=torch.optim.SGD)
    assert "fused" not in {k for k, v in sgd.optimizer.defaults.items() if v}


def test_fused_adam_steps_as_torchs_reference_adam():
    """The fused kernel computes torch's Adam (the single-tensor loop) to rounding."""
    x, y = regression_data(32)
    torch.manual_seed(0)
    fused = make_regression(optimizer=torch.optim.Adam, lr=0.05)
    p = Regressor()
    p.load_state_dict(fused.distributions[0].state_dict())
    reference = Model(-p.log_prob().mean(), distributions=[p], optimizer=torch.optim.Adam,
                      optimizer_params={"lr": 0.05, "foreach": False})
    for _ in range(20):
        fused.train({"x": x, "y": y})
        reference.train({"x": x, "y": y})
    for k, v in params(reference).items():
        torch.testing.assert_close(params(fused)[k], v, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- callbacks that contribute metrics
def test_epoch_and_step_metrics_reach_the_history_and_every_callback(tmp_path):
    seen_epoch, seen_step = [], []

    class Watch(Callback):  # placed before the callbacks whose metrics it must see
        def on_step_end(self, model, state, logs):
            seen_step.append(logs["double_loss"])

        def on_epoch_end(self, model, state, logs):
            seen_epoch.append(logs["test/half"])

    class Double(Callback):
        def step_metrics(self, model, state, logs):
            return {"double_loss": 2 * logs["loss"]}

    calls = []

    def half(epoch, logs):
        calls.append((epoch, sorted(logs)))
        return {"test/half": logs["test/loss"] / 2}

    model = make_regression()
    x, y = regression_data(16)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    logger = TensorBoardLogger(str(tmp_path))
    history = model.fit(loader, 2, loader, keys=("x", "y"), progress=False,
                        callbacks=[Watch(), logger, Double(), EveryEpoch(half)])
    assert [h["test/half"] for h in history] == pytest.approx([h["test/loss"] / 2 for h in history])
    assert seen_epoch == [h["test/half"] for h in history]
    assert len(seen_step) == 4
    assert [e for e, _ in calls] == [1, 2] and "test/loss" in calls[0][1]
    from .test_fit import _read_events

    scalars, _ = _read_events(tmp_path)
    assert [v for _, v in scalars["test/half"]] == pytest.approx(seen_epoch)
    assert [v for _, v in scalars["train/double_loss"]] == pytest.approx(seen_step)


def test_every_epoch_refuses_what_is_not_a_metric():
    with pytest.raises(TypeError, match="function of the epoch"):
        EveryEpoch(3)
    model = make_regression()
    x, y = regression_data(8)
    with pytest.raises(TypeError, match="returned list"):
        model.fit([(x, y)], 1, keys=("x", "y"), progress=False, callbacks=[EveryEpoch(lambda e, logs: [1.0])])


# ---------------------------------------------------------------------- two loaders
def two_loaders(seed: int = 3):
    """24 labelled-like pairs (batches of 8) and 10 other pairs (batches of 4, 4, 2), both shuffled by
    their own seeded generators."""
    x, y = regression_data(24)
    x2, y2 = regression_data(10, seed=7)
    a = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(seed))
    b = DataLoader(TensorDataset(x2, y2), batch_size=4, shuffle=True,
                   generator=torch.Generator().manual_seed(seed + 1))
    return ZipLoader(a, b, keys=[("x", "y"), ("x2", "y2")])


def two_loader_model(lr: float = 0.05) -> Model:
    p = Regressor()
    q = p.replace_var(x="x2", y="y2")
    loss = (-LogProb(p)).mean() + (-LogProb(q)).mean()
    return Model(loss, distributions=[p], optimizer=torch.optim.SGD, optimizer_params={"lr": lr})


def test_zip_loader_cycles_the_other_loaders_within_each_pass():
    loader = two_loaders()
    assert len(loader) == 3
    batches = list(loader)
    assert [sorted(b) for b in batches] == [["x", "x2", "y", "y2"]] * 3
    assert [len(b["x"]) for b in batches] == [8, 8, 8]
    assert [len(b["x2"]) for b in batches] == [4, 4, 2]  # one pass of the second loader, then it starts over
    with pytest.raises(ValueError, match="2 loaders but 1 keys"):
        ZipLoader([1], [2], keys=[("a",)])
    with pytest.raises(ValueError, match=r"\['x'\] come from more than one loader"):
        list(ZipLoader([(torch.zeros(1),)], [(torch.zeros(1),)], keys=[("x",), ("x",)]))
    with pytest.raises(ValueError, match="loader 2 yields no batch"):
        list(ZipLoader([(torch.zeros(1),)], [], keys=[("x",), ("y",)]))


def test_fit_over_two_loaders_resumes_exactly(tmp_path):
    """Interrupted after 4 steps and resumed in a fresh model with other weights, the run ends where the
    uninterrupted one does: both loaders' shuffles come back from the checkpoint."""
    torch.manual_seed(0)
    straight = two_loader_model()
    init = params(straight)
    hist = straight.fit(two_loaders(), 3, keys=None, progress=False)
    assert hist[-1]["train/loss"] < hist[0]["train/loss"]

    ckpt = tmp_path / "c.pt"
    first = two_loader_model()
    first.distributions.load_state_dict(init)
    first.fit(two_loaders(), 3, progress=False, max_steps=4, checkpoint=ckpt)
    torch.manual_seed(123)  # other weights and another global random state: all must come from the file
    resumed = two_loader_model()
    torch.rand(5)
    resumed.fit(two_loaders(), 3, progress=False, checkpoint=ckpt, resume=ckpt)
    for k, v in params(straight).items():
        assert torch.equal(params(resumed)[k], v), k
    state = torch.load(ckpt, weights_only=True)
    assert len(state["fit"]["rng"][0]["samplers"]) == 2


# ---------------------------------------------------------------------- named terms
def test_a_named_term_is_logged_under_its_name():
    p, q, prior = make(x_dim=6, z_dim=2, hidden=8)
    loss = (KullbackLeibler(q, prior).named("kl") - E(q, LogProb(p)).named("reconstruction")).mean()
    model = Model(loss, distributions=[p, q])
    data = torch.bernoulli(torch.full((16, 6), 0.4))
    history = model.fit(DataLoader(TensorDataset(data), batch_size=8), 1, [{"x": data}], keys=("x",),
                        progress=False)
    assert {"train/kl", "train/reconstruction", "test/kl", "test/reconstruction"} <= set(history[0])
    assert history[0]["train/loss"] == pytest.approx(history[0]["train/kl"] - history[0]["train/reconstruction"],
                                                     rel=1e-5)
    assert str(loss) == str((KullbackLeibler(q, prior) - E(q, LogProb(p))).mean())  # printing unchanged
    with pytest.raises(ValueError, match="non-empty string"):
        KullbackLeibler(q, prior).named("  ")
