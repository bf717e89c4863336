"""The quick-start VAE trains through PyTorch Lightning (the recipe of docs/guide/lightning.md).

A loss is an ``nn.Module`` holding its distributions, so a ``LightningModule`` that owns the loss
trains every network of the formula. Runs when ``lightning`` is installed (the ``lightning`` extra;
CI installs it), skipped with the reason otherwise.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pixyz_like.losses import Expectation as E
from pixyz_like.losses import KullbackLeibler, LogProb

from .quickstart import make

L = pytest.importorskip("lightning", reason='needs lightning: pip install "pixyz_like[lightning]"')


class LitVAE(L.LightningModule):
    """The recipe: the loss is the only attribute needed; Lightning owns the loop and the optimizer."""

    def __init__(self, p, q, prior) -> None:
        super().__init__()
        self.loss = (KullbackLeibler(q, prior) - E(q, LogProb(p))).mean()
        self.steps: list[float] = []

    def training_step(self, batch, batch_idx):
        (x,) = batch
        loss, terms = self.loss.eval({"x": x}, return_terms=True)
        self.log("train/loss", loss)
        for name, value in terms.items():
            self.log(f"train/{name}", value)
        self.steps.append(loss.item())
        return loss

    def validation_step(self, batch, batch_idx):
        (x,) = batch
        self.log("val/loss", self.loss.eval({"x": x}))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def _digits(n: int, seed: int) -> torch.Tensor:
    """Binary 784-pixel images around ten fixed prototypes: structure a VAE learns in a few steps."""
    protos = (torch.rand(10, 784, generator=torch.Generator().manual_seed(123)) > 0.5) * 0.9 + 0.05
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(protos[torch.arange(n) % 10], generator=g)


def test_lightning_module_holding_the_loss_sees_every_network():
    p, q, prior = make()
    module = LitVAE(p, q, prior)
    assert {id(t) for t in module.parameters()} == {id(t) for t in [*p.parameters(), *q.parameters()]}


def test_quick_start_vae_trains_through_lightning_and_the_loss_falls(tmp_path):
    torch.manual_seed(0)
    train, held_out = _digits(1024, seed=1), _digits(256, seed=2)
    module = LitVAE(*make())  # the Pixyz README's quick start: 784-512-512-64
    with torch.no_grad():
        before = module.loss.eval({"x": held_out}).item()
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, DataLoader(TensorDataset(train), batch_size=64, shuffle=True),
                DataLoader(TensorDataset(held_out), batch_size=256))
    with torch.no_grad():
        after = module.loss.eval({"x": held_out}).item()
    assert len(module.steps) == 3 * 1024 // 64
    # An untrained decoder scores about 784 log 2 = 543 nats per image; the held-out loss must fall far.
    assert before > 500
    assert after < before - 100, (before, after)
    assert sum(module.steps[-8:]) / 8 < sum(module.steps[:8]) / 8 - 100
    logged = trainer.callback_metrics  # what the module logged through self.log, last values
    assert logged["val/loss"].item() < before - 100
    assert any(k.startswith("train/KL") for k in logged) and any(k.startswith("train/E_") for k in logged)
