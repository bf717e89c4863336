"""Must-hold 1 of the core issue: the Pixyz README quick start runs with only the imports changed."""

import os
from pathlib import Path

import pytest
import torch
from torch import optim

from pixyz_like.datasets import load_mnist
from pixyz_like.losses import Expectation as E
from pixyz_like.losses import KullbackLeibler, LogProb
from pixyz_like.models import Model

from .quickstart import make

EXPECTED_LOSS = (
    r"mean \left(D_{KL} \left[q(z|x)||p_{prior}(z) \right] - \mathbb{E}_{q(z|x)} \left[\log p(x|z) \right] \right)"
)


def _mnist_dir() -> Path:
    env = os.environ.get("PIXYZ_LIKE_MNIST")
    if env:
        return Path(env)
    # CI clones the repository next to shared/, as on the developers' machines.
    return Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist" / "raw"


def test_prints_as_pixyz():
    p, q, prior = make()
    p_joint = p * prior
    loss = (KullbackLeibler(q, prior) - E(q, LogProb(p))).mean()
    assert str(loss) == EXPECTED_LOSS
    assert "p(x,z) = p(x|z)p_{prior}(z)" in str(p_joint)
    assert str(p_joint).startswith("Distribution:\n  p(x,z) = p(x|z)p_{prior}(z)\nNetwork architecture:")
    assert loss._repr_latex_() == f"${EXPECTED_LOSS}$"
    assert p_joint._repr_latex_() == "$p(x,z) = p(x|z)p_{prior}(z)$"


def test_model_print_shows_distributions_loss_optimizer():
    p, q, prior = make(x_dim=8, z_dim=2, hidden=4)
    loss = (KullbackLeibler(q, prior) - E(q, LogProb(p))).mean()
    model = Model(loss=loss, distributions=[p, q], optimizer=optim.Adam, optimizer_params={"lr": 1e-3})
    text = str(model)
    assert text.startswith("Distributions (for training):\n  p(x|z), q(z|x)\nLoss function:\n")
    assert EXPECTED_LOSS in text
    assert "Optimizer:\n  Adam (" in text


def test_trains_on_real_mnist_and_test_loss_falls():
    folder = _mnist_dir()
    assert folder.is_dir(), f"the real MNIST test split is expected at {folder} (set PIXYZ_LIKE_MNIST)"
    train, test = load_mnist(folder, download=False, n_train=8000)
    x_train, x_test = train.tensors[0][:2048], test.tensors[0][:512]
    p, q, prior = make()
    loss = (KullbackLeibler(q, prior) - E(q, LogProb(p))).mean()
    model = Model(loss=loss, distributions=[p, q], optimizer=optim.Adam, optimizer_params={"lr": 1e-3})
    before = model.test({"x": x_test}).item()
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        for idx in torch.randperm(len(x_train), generator=g).split(128):
            model.train({"x": x_train[idx]})
    after = model.test({"x": x_test}).item()
    # An untrained decoder scores ~543 nats per digit (784 * log 2 at probs 0.5); two short epochs
    # must bring it well below that.
    assert before > 500
    assert after < before - 200, (before, after)


@pytest.mark.parametrize("device", ["cpu"])
def test_device_option_moves_distributions_and_batches(device):
    p, q, prior = make(x_dim=8, z_dim=2, hidden=4)
    loss = (KullbackLeibler(q, prior) - E(q, LogProb(p))).mean()
    model = Model(loss, distributions=[p, q], device=device)
    assert next(p.parameters()).device.type == device
    assert prior.loc.device.type == device
    assert model.train({"x": torch.rand(4, 8)}).device.type == device
