"""Gated PixelCNN (van den Oord et al., 2016) on binarised MNIST.

    p(x) = prod_i p(x_i | x_<i),   p(x_i = 1 | x_<i) = sigmoid(f_i(x_<i))
    loss = - mean( log p(x) )      (nats per image; bits/dim = nats / (784 ln 2))

f is a gated PixelCNN (pixyz_like.layers.GatedPixelCNN): a type-A block with a 7x7 window, then
type-B 3x3 blocks, vertical and horizontal stacks (no blind spot). The log-likelihood is one pass of
the network; sampling is 784 passes, one per pixel. Training digits are binarised afresh at each use
(a Bernoulli draw of the grey levels); the test digits once, with a fixed seed, so the test NLL is
the exact negative log-likelihood of one fixed binary test set. Figures: samples (PNG and TensorBoard).

For reference, van den Oord et al. (2016a, "Pixel Recurrent Neural Networks", table 4) report 81.30
nats for PixelCNN on the standard binarised MNIST (50,000 training digits, long GPU training); the
figure this script prints comes from the training digits and the training budget available here.

    python examples/pixelcnn.py --epochs 1 --data-dir ../shared/data/mnist/raw

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import math
import os
import time

import torch
from _common import binarize, collate, loaders, make_parser, mnist, prepare, save_grid
from torch import optim
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from pixyz_like.autoregressions import AutoregressiveBernoulli
from pixyz_like.layers import GatedPixelCNN
from pixyz_like.losses import LogProb
from pixyz_like.models import EpochPrinter, EveryEpoch, Model, TensorBoardLogger

SHAPE = (1, 28, 28)
N_PIXELS = 784
PUBLISHED_NATS = 81.30  # PixelCNN, binarised MNIST, van den Oord et al. (2016a), table 4


class PixelCNN(AutoregressiveBernoulli):
    """p(x) = prod_i Bernoulli(x_i; sigmoid(f_i(x_<i))) with f a gated PixelCNN."""

    def __init__(self, channels: int = 16, layers: int = 5) -> None:
        super().__init__(var=["x"], features_shape=SHAPE, name="p")
        self.net = GatedPixelCNN(1, 1, channels=channels, n_layers=layers, kernel_size=3, first_kernel_size=7)

    def forward(self, x):
        return {"logits": self.net(x)}


def build(channels: int, layers: int, device: str = "cpu", lr: float = 1e-3):
    """The PixelCNN distribution, the loss -mean log p(x) and its Model."""
    p = PixelCNN(channels, layers)
    loss = -LogProb(p).mean()
    model = Model(loss, distributions=[p], optimizer=optim.Adam, optimizer_params={"lr": lr}, device=device)
    return p, loss, model


def fixed_binarisation(dataset, seed: int) -> TensorDataset:
    """The digits binarised once, with their own seeded generator (the same binary test set every run)."""
    x, y = dataset.tensors
    return TensorDataset(torch.bernoulli(x, generator=torch.Generator().manual_seed(seed)), y)


def main(argv=None) -> list[dict[str, float]]:
    """Train; returns the history of per-epoch train/test NLL (nats per image) and test bits/dim."""
    parser = make_parser(__doc__, "runs/pixelcnn", epochs=1, batch_size=64)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--n-samples", type=int, default=16, help="digits sampled after the last epoch")
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="cap on the training steps per epoch")
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.channels, args.layers, args.n_samples = 3, 4, 2, 4
    prepare(args)
    train, test = mnist(args, flatten=False)
    # training digits binarised afresh in every batch, test digits once
    train_loader, test_loader = loaders(args, train, fixed_binarisation(test, seed=1234), transform=binarize)
    if args.steps_per_epoch is not None:  # an epoch of that many batches, drawn at random from the digits
        sampler = RandomSampler(train, num_samples=args.steps_per_epoch * args.batch_size,
                                generator=torch.Generator().manual_seed(args.seed))
        train_loader = DataLoader(train, batch_size=args.batch_size, sampler=sampler, collate_fn=collate(binarize))
    p, loss, model = build(args.channels, args.layers, args.device, args.lr)
    print(p.prob_joint_factorized_and_text)
    print("Loss:", loss)
    print(model)
    start = time.time()

    grids: dict[str, torch.Tensor] = {}

    def figures(epoch, logs):
        grids.clear()
        if epoch == args.epochs:  # sampling is one pass per pixel: after the last epoch only
            grids["samples"] = p.sample(batch_n=args.n_samples)["x"]
            save_grid(grids["samples"], os.path.join(args.out, f"samples_epoch{epoch}.png"), nrow=4, shape=SHAPE)
        return {"test/bits_per_dim": logs["test/loss"] / (N_PIXELS * math.log(2))}

    # Callbacks' metrics (EveryEpoch's figures) run before any logger writes: it logs the grids just drawn.
    logger = TensorBoardLogger(args.out, images=lambda model: grids)
    history = model.fit(train_loader, args.epochs, test_loader, keys=("x", None),
                        callbacks=[EveryEpoch(figures), logger, EpochPrinter("test/bits_per_dim")],
                        progress=not args.no_progress)
    nats = history[-1]["test/loss"]
    print(f"test NLL {nats:.2f} nats = {nats / (N_PIXELS * math.log(2)):.4f} bits/dim on {len(test_loader.dataset)} "
          f"binarised test digits, after {args.epochs} epoch(s) of {len(train)} digits "
          f"({time.time() - start:.0f} s on {args.device}, {args.channels} channels x {args.layers} layers); "
          f"van den Oord et al. (2016a) report {PUBLISHED_NATS} nats for PixelCNN")
    return history


if __name__ == "__main__":
    main()
