"""Checkpoints of Model.fit: exact resume in a fresh process, atomic writes, mismatch errors, and
everything a subclass adds (critic networks and optimizers)."""

import os
import signal
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pixyz_like import set_validation
from pixyz_like.models import CheckpointError, Model
from pixyz_like.models.training import NonFiniteLossError

from .fit_helpers import ROOT, make_regression, make_vae, params, regression_data, resume_fit

HELPER = str(ROOT / "tests" / "models" / "fit_helpers.py")
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def test_resume_in_fresh_process_is_bit_exact(tmp_path):
    """N steps straight equal N/2 steps, a checkpoint, and the rest in a new process, bit for bit.

    Two checkpoints: one inside the first epoch (step 5 of 7 batches: the shuffle order of the epoch
    must be replayed) and one at the end of the first epoch (after its test pass).
    """
    total = 10
    torch.manual_seed(0)
    straight = make_vae(lr=1e-2, beta=True)
    straight_hist = resume_fit(straight, total)

    runs = []
    for name, kw in [("mid", {"max_steps": 5}), ("epoch_end", {"max_steps": None, "epochs": 1})]:
        torch.manual_seed(0)
        first = make_vae(lr=1e-2, beta=True)
        ckpt = tmp_path / f"{name}.pt"
        resume_fit(first, checkpoint=str(ckpt), **kw)
        saved = torch.load(ckpt, weights_only=True)["fit"]
        assert (saved["step"], saved["epoch"], saved["batch"]) == ((5, 0, 5) if name == "mid" else (7, 1, 0))
        runs += [str(ckpt), str(tmp_path / f"{name}.out")]

    subprocess.run([sys.executable, HELPER, "resume", str(total), *runs], check=True, env=ENV, timeout=120)
    expected = params(straight)
    for out in runs[1::2]:
        resumed = torch.load(out, weights_only=True)
        assert expected.keys() == resumed["params"].keys()
        for k, v in expected.items():
            assert torch.equal(v, resumed["params"][k]), (out, k)
        # The epoch means (train and test losses, terms) agree too: shuffle order and noise replayed.
        assert resumed["history"] == straight_hist


def test_failed_write_leaves_previous_checkpoint(tmp_path, monkeypatch):
    model = make_regression()
    x, y = regression_data()
    ckpt = tmp_path / "m.pt"
    model.save(ckpt)
    before = params(model)
    model.train({"x": x, "y": y})
    real_save = torch.save

    def half_then_crash(obj, f, *a, **k):
        f.write(b"PK\x03\x04 partial checkpoint")  # some bytes reach the temporary file
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", half_then_crash)
    with pytest.raises(OSError, match="simulated"):
        model.save(ckpt)
    monkeypatch.setattr(torch, "save", real_save)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left behind
    fresh = make_regression()
    fresh.load(ckpt)
    for k, v in before.items():
        assert torch.equal(params(fresh)[k], v)


def test_killed_mid_write_leaves_previous_checkpoint(tmp_path):
    ckpt = tmp_path / "c.pt"
    proc = subprocess.Popen([sys.executable, HELPER, "save_forever", str(ckpt)], stdout=subprocess.PIPE, env=ENV)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        assert proc.stdout.readline().strip() == b"mid-write"  # half of version 2 is on disk
        temp_files = [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert temp_files and temp_files[0].stat().st_size > 0, "the kill lands while a temporary file is written"
    state = torch.load(ckpt, weights_only=True)  # the previous checkpoint, complete
    assert state["version"] == 1 and state["w"].numel() == 4_000_000


def test_non_finite_loss_keeps_last_checkpoint(tmp_path):
    x, y = regression_data(32)
    y = y.clone()
    y[20] = float("nan")  # in the third batch of 8
    model = make_regression()
    ckpt = tmp_path / "c.pt"
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    snapshots = []

    from pixyz_like.models.training import Callback

    class Snap(Callback):
        def on_step_end(self, model, state, logs):
            snapshots.append(params(model))

    # Validation off, so that the NaN reaches the loss (with it on, the distribution refuses it first).
    with set_validation(False), pytest.raises(NonFiniteLossError, match=r"step 3 .*log p\(x\|y\)"):
        model.fit(loader, 1, keys=("x", "y"), checkpoint=str(ckpt), checkpoint_every=1, progress=False,
                  callbacks=[Snap()])
    assert len(snapshots) == 2
    state = torch.load(ckpt, weights_only=True)
    assert state["fit"]["step"] == 2
    for k, v in snapshots[-1].items():
        assert torch.equal(state["distributions"][k], v)
        assert torch.equal(params(model)[k], v)  # the NaN step was not taken


def test_checkpoint_of_another_model_is_refused(tmp_path):
    torch.manual_seed(0)
    small, big = make_vae(hidden=16), make_vae(hidden=24)
    small.save(tmp_path / "small.pt")
    with pytest.raises(CheckpointError, match="another model.*shape mismatch"):
        big.load(tmp_path / "small.pt")
    reg = make_regression()
    with pytest.raises(CheckpointError, match="another model.*missing"):
        reg.load(tmp_path / "small.pt")
    # A Model.save file has no training state to resume from.
    loader = DataLoader(TensorDataset(torch.rand(8, 12)), batch_size=4)
    with pytest.raises(CheckpointError, match="no training state"):
        small.fit(loader, 1, keys=("x",), resume=str(tmp_path / "small.pt"), progress=False)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        small.fit(loader, 1, keys=("x",), resume=str(tmp_path / "junk.pt"), progress=False)


class WithCritic(Model):
    """A subclass with its own critic network and optimizer, as a GAN-like model keeps them."""

    def __init__(self, hidden=4):
        model = make_regression()
        super().__init__(model.loss_cls, distributions=list(model.distributions))
        self.critic = nn.Sequential(nn.Linear(2, hidden), nn.BatchNorm1d(hidden))
        self.d_optimizer = torch.optim.Adam(self.critic.parameters(), lr=0.1)

    def step_critic(self, x):
        self.d_optimizer.zero_grad()
        self.critic(x).pow(2).mean().backward()
        self.d_optimizer.step()


def test_checkpoint_holds_subclass_critic_and_its_optimizer(tmp_path):
    x, _ = regression_data()
    a = WithCritic()
    for _ in range(3):
        a.step_critic(x)
    a.save(tmp_path / "a.pt")
    state = torch.load(tmp_path / "a.pt", weights_only=True)
    assert "d_optimizer" in state["optimizers"] and "critic" in state["modules"]
    torch.manual_seed(5)
    b = WithCritic()
    b.load(tmp_path / "a.pt")
    for k, v in a.critic.state_dict().items():  # weights and BatchNorm running statistics
        assert torch.equal(b.critic.state_dict()[k], v), k
    sa, sb = a.d_optimizer.state_dict(), b.d_optimizer.state_dict()
    for i in sa["state"]:
        assert torch.equal(sa["state"][i]["exp_avg"], sb["state"][i]["exp_avg"])
    # One more critic step from each gives the same weights: the Adam moments were restored.
    a.step_critic(x)
    b.step_critic(x)
    for pa, pb in zip(a.critic.parameters(), b.critic.parameters(), strict=True):
        assert torch.equal(pa, pb)
    with pytest.raises(CheckpointError, match="critic"):
        WithCritic(hidden=5).load(tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match="d_optimizer|critic"):
        make_regression().load(tmp_path / "a.pt")
