"""WandbLogger, the Weights & Biases callback of Model.fit, in W&B's offline mode (no account, no network).

The values it hands to W&B are recorded on the way (and compared with what ``fit`` returns); the run
W&B writes offline is checked to hold them. Runs when ``wandb`` is installed (the ``wandb`` extra;
CI installs it), skipped with the reason otherwise; the argument checks run without it.
"""

from __future__ import annotations

import sys
import time

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pixyz_like.errors import OptionError
from pixyz_like.losses import Expectation as E
from pixyz_like.losses import KullbackLeibler, LogProb, Parameter
from pixyz_like.losses.schedules import linear_warmup
from pixyz_like.models import Model
from pixyz_like.models.training import FitState
from pixyz_like.models.wandb_logger import WandbLogger

from ..quickstart import make


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(OptionError, match="WandbLogger: mode must be"):
        WandbLogger(mode="offlin")
    with pytest.raises(OptionError, match="every_n_steps must be a positive integer, got 0"):
        WandbLogger(every_n_steps=0)


def test_without_wandb_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb now raises ImportError
    p, q, prior = make(x_dim=4, z_dim=2, hidden=4)
    model = Model((KullbackLeibler(q, prior) - E(q, LogProb(p))).mean(), distributions=[p, q])
    with pytest.raises(ImportError, match=r'pip install "pixyz_like\[wandb\]"'):
        WandbLogger(mode="offline").on_fit_start(model, FitState(epochs=1))


class _Recording(WandbLogger):
    """The logger, with every ``run.log`` call recorded before it reaches W&B."""

    def on_fit_start(self, model, state):
        super().on_fit_start(model, state)
        self.calls, self.config = [], dict(self.run.config)
        log = self.run.log

        def recording_log(values, step=None, **kwargs):
            self.calls.append((step, dict(values)))
            return log(values, step=step, **kwargs)

        self.run.log = recording_log


def test_offline_run_holds_the_losses_terms_schedules_and_images(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb", reason='needs wandb: pip install "pixyz_like[wandb]"')
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    torch.manual_seed(0)
    p, q, prior = make(x_dim=16, z_dim=2, hidden=8)
    loss = (Parameter("beta") * KullbackLeibler(q, prior) - E(q, LogProb(p))).mean()
    model = Model(loss, distributions=[p, q], optimizer_params={"lr": 1e-2})
    data = torch.bernoulli(torch.full((64, 16), 0.3))
    loader = DataLoader(TensorDataset(data), batch_size=16)
    logger = _Recording(project="pixyz-like-test", config={"z_dim": 2}, image_shape=(1, 4, 4),
                        images=lambda m: {"samples": p.sample_mean({"z": torch.randn(9, 2)})})
    history = model.fit(loader, epochs=2, test_loader=loader, keys=("x",), callbacks=[logger], progress=False,
                        schedules={"beta": linear_warmup(0.0, 1.0, steps=4)})
    assert logger.run is None  # finished

    # the config records the formula, the optimizer and the user's values
    assert logger.config["loss"] == str(loss) and logger.config["optimizer"] == "Adam"
    assert logger.config["lr"] == 1e-2 and logger.config["z_dim"] == 2 and logger.config["epochs"] == 2

    steps = [(s, v) for s, v in logger.calls if "train/loss" in v]
    epochs = [(s, v) for s, v in logger.calls if "epoch" in v]
    assert [s for s, _ in steps] == list(range(1, 9))  # 4 batches x 2 epochs, against the global step
    assert [v["schedule/beta"] for _, v in steps[:5]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert all(any(k.startswith("lr/") and x == 1e-2 for k, x in v.items()) for _, v in steps)
    kl_tag = "train/KL[q(z|x)||p_prior(z)]"
    assert all(kl_tag in v for _, v in steps), steps[0][1].keys()
    assert [s for s, _ in epochs] == [4, 8] and [v["epoch"] for _, v in epochs] == [1.0, 2.0]
    for (_, logged), means in zip(epochs, history, strict=True):
        assert logged["train_epoch/loss"] == pytest.approx(means["train/loss"])
        assert logged["test/loss"] == pytest.approx(means["test/loss"])
        assert logged["test/KL[q(z|x)||p_prior(z)]"] == pytest.approx(means["test/KL[q(z|x)||p_prior(z)]"])
        assert isinstance(logged["samples"], wandb.Image)

    # what W&B wrote offline: one run whose record file holds the keys, and the image grids. W&B's
    # service writes the records in the background; shutting it down waits for them.
    wandb.teardown()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    record_file = next(runs[0].glob("run-*.wandb"))
    deadline = time.monotonic() + 60  # on a loaded machine the last records may land a little later
    while b"train_epoch/loss" not in record_file.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.5)
    records = record_file.read_bytes()
    for key in ("train/loss", "test/loss", kl_tag, "schedule/beta", "train_epoch/loss", "D_{KL}"):
        assert key.encode() in records, key
    assert len(list(runs[0].rglob("media/images/samples_*.png"))) == 2
