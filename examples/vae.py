"""The quick-start VAE on MNIST (Kingma & Welling, 2014), written the Pixyz way.

    q(z|x) = N(z; mu(x), diag sigma^2(x)),  p(x|z) = Bernoulli(x; pi(z)),  p(z) = N(0, I)
    loss = mean( KL[q(z|x) || p(z)] - E_q(z|x)[log p(x|z)] )

Grey levels in [0, 1] are used as Bernoulli targets, as in Pixyz's notebooks. ``Model.fit`` trains it
and logs the train/test loss and each term of the loss (``train/KL[q(z|x)||p_prior(z)]``...) to
TensorBoard under ``--out``, with 4x4 grids of samples and reconstructions at each epoch's end; the
same figures, larger, are written as PNG there. The last lines printed say where everything went.

    python examples/vae.py --epochs 10 --data-dir ../shared/data/mnist/raw

Paths (``--data-dir``, ``--out``) are read from the directory you run it from. To view the logs,
``pip install "pixyz_like[tensorboard]"`` and ``tensorboard --logdir runs``.

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn, optim
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from pixyz_like.datasets import DatasetNotFoundError, load_mnist
from pixyz_like.distributions import Bernoulli, Normal
from pixyz_like.losses import Expectation as E
from pixyz_like.losses import KullbackLeibler, LogProb
from pixyz_like.models import EpochPrinter, EveryEpoch, Model, TensorBoardLogger

X_DIM, Z_DIM, HIDDEN = 784, 64, 512


class Inference(Normal):
    """q(z|x): a two-layer MLP giving the mean and standard deviation of z."""

    def __init__(self) -> None:
        super().__init__(var=["z"], cond_var=["x"], name="q")
        self.fc1 = nn.Linear(X_DIM, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, HIDDEN)
        self.fc31 = nn.Linear(HIDDEN, Z_DIM)
        self.fc32 = nn.Linear(HIDDEN, Z_DIM)

    def forward(self, x):
        h = F.relu(self.fc2(F.relu(self.fc1(x))))
        return {"loc": self.fc31(h), "scale": F.softplus(self.fc32(h))}


class Generator(Bernoulli):
    """p(x|z): a two-layer MLP giving the pixel probabilities."""

    def __init__(self) -> None:
        super().__init__(var=["x"], cond_var=["z"], name="p")
        self.fc1 = nn.Linear(Z_DIM, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, HIDDEN)
        self.fc3 = nn.Linear(HIDDEN, X_DIM)

    def forward(self, z):
        h = F.relu(self.fc2(F.relu(self.fc1(z))))
        return {"probs": torch.sigmoid(self.fc3(h))}


def build(device: str = "cpu", lr: float = 1e-3):
    """The distributions, the loss and the Model of the quick start."""
    p, q = Generator(), Inference()
    prior = Normal(loc=torch.tensor(0.0), scale=torch.tensor(1.0), var=["z"], features_shape=[Z_DIM],
                   name="p_{prior}")
    loss = (KullbackLeibler(q, prior) - E(q, LogProb(p))).mean()
    model = Model(loss, distributions=[p, q], optimizer=optim.Adam, optimizer_params={"lr": lr}, device=device)
    return p, q, prior, loss, model


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data-dir", default=None, help="folder of MNIST IDX files (gzipped or not), or "
                        "torchvision's root; default: download to ~/.cache/pixyz_like/data")
    parser.add_argument("--out", default="runs/vae", help="TensorBoard logs and PNG figures go here")
    parser.add_argument("--smoke", action="store_true", help="a few steps on small random data (for tests)")
    parser.add_argument("--no-progress", action="store_true", help="hide the tqdm progress bar")
    return parser.parse_args(argv)


def data_loaders(args):
    if args.smoke:
        g = torch.Generator().manual_seed(args.seed)
        train = TensorDataset(torch.rand(256, X_DIM, generator=g).round(), torch.zeros(256, dtype=torch.long))
        test = TensorDataset(torch.rand(64, X_DIM, generator=g).round(), torch.zeros(64, dtype=torch.long))
    else:
        if args.data_dir is not None and not os.path.isdir(args.data_dir):
            raise DatasetNotFoundError(f"--data-dir: no such folder: {os.path.abspath(args.data_dir)}")
        data_dir = os.path.abspath(args.data_dir) if args.data_dir is not None else None
        train, test = load_mnist(data_dir)
    g = torch.Generator().manual_seed(args.seed)
    return (DataLoader(train, batch_size=args.batch_size, shuffle=True, generator=g),
            DataLoader(test, batch_size=args.batch_size, shuffle=False))


class Figures:
    """Samples of p(x|z) from fixed codes z ~ p(z), and test digits beside their reconstructions: PNG
    grids of 64, and 4x4 grids for TensorBoard (:attr:`grids`, which the logger reads)."""

    def __init__(self, p, q, out: str, z_fixed: torch.Tensor, x_fixed: torch.Tensor) -> None:
        self.p, self.q, self.out, self.z_fixed, self.x_fixed = p, q, out, z_fixed, x_fixed
        self.grids: dict[str, torch.Tensor] = {}

    def __call__(self, epoch: int, logs: Mapping[str, float]) -> None:
        from torchvision.utils import save_image

        samples = self.p.sample_mean({"z": self.z_fixed}).reshape(-1, 1, 28, 28)
        z = self.q.sample({"x": self.x_fixed}, sample_mean=True)["z"]
        recon = self.p.sample_mean({"z": z}).reshape(-1, 1, 28, 28)
        digits = self.x_fixed.reshape(-1, 1, 28, 28)
        save_image(samples.cpu(), os.path.join(self.out, f"samples_epoch{epoch}.png"), nrow=8)
        save_image(torch.cat([digits, recon]).cpu(), os.path.join(self.out, f"reconstruction_epoch{epoch}.png"),
                   nrow=8)
        # 4x4: 16 samples; 8 test digits (top two rows) above their reconstructions (bottom two)
        self.grids = {"samples": samples[:16], "reconstructions": torch.cat([digits[:8], recon[:8]])}


def main(argv=None) -> list[dict[str, float]]:
    """Train with ``Model.fit``; returns its history: one dict of epoch means (``train/loss``,
    ``test/loss``, each term) per epoch."""
    args = parse_args(argv)
    if args.smoke:
        args.epochs = min(args.epochs, 2)
    torch.manual_seed(args.seed)

    train_loader, test_loader = data_loaders(args)
    p, q, prior, loss, model = build(args.device, args.lr)
    print(summary(args, model, train_loader, test_loader))
    os.makedirs(args.out, exist_ok=True)
    z_fixed = torch.randn(64, Z_DIM, device=args.device)
    x_fixed = next(iter(test_loader))[0][:32].to(args.device)
    figures = Figures(p, q, args.out, z_fixed, x_fixed)
    # EveryEpoch draws the figures before any logger writes; the logger then writes their grids.
    logger = TensorBoardLogger(args.out, images=lambda model: figures.grids)
    history = model.fit(train_loader, args.epochs, test_loader, keys=("x", None),
                        callbacks=[EveryEpoch(figures), logger, EpochPrinter()], progress=not args.no_progress)
    print(written(args.out, args.epochs))
    return history


def summary(args: argparse.Namespace, model: Model, train_loader: DataLoader, test_loader: DataLoader) -> str:
    """What runs: the data, the model's distributions and size, the optimizer, and the loss formula (once)."""
    source = "random smoke data" if args.smoke else "MNIST from " + (
        os.path.abspath(args.data_dir) if args.data_dir else "torchvision (~/.cache/pixyz_like/data)")
    n_params = sum(p.numel() for p in model.distributions.parameters())
    dists = ", ".join(getattr(d, "prob_text", type(d).__name__) for d in model.distributions)
    group = model.optimizer.param_groups[0]
    return (f"Data:  {len(train_loader.dataset):,} training / {len(test_loader.dataset):,} test images, {source}\n"
            f"Model: {dists}; {n_params:,} parameters; {type(model.optimizer).__name__} (lr {group['lr']:g}); "
            f"{args.epochs} epoch{'s' if args.epochs != 1 else ''} of batch {args.batch_size} on {args.device}\n"
            f"Loss:  {model.loss_cls}")


def written(out: str, epochs: int) -> str:
    """Where everything went (absolute paths), and the command that shows the logs."""
    out_dir = Path(out).resolve()
    logs = sorted(out_dir.glob("events.out.tfevents.*"))
    def pngs(stem: str) -> str:
        return f"{stem}_epoch1.png" + (f" ... {stem}_epoch{epochs}.png" if epochs > 1 else "")

    return (f"Wrote to {out_dir}:\n"
            f"  TensorBoard log  {logs[-1].name if logs else '(none)'}  "
            f"(view it: tensorboard --logdir {out_dir}; pip install \"pixyz_like[tensorboard]\")\n"
            f"  samples          {pngs('samples')} (64 digits from z ~ p(z), one grid per epoch)\n"
            f"  reconstructions  {pngs('reconstruction')} (top half: test digits, bottom half: "
            "their reconstructions)")


if __name__ == "__main__":
    try:
        main()
    except DatasetNotFoundError as e:  # a user's mistake (no data, offline): the message, not a traceback
        sys.exit(f"examples/vae.py: {e}")
