"""A VAE whose decoder is a small PixelCNN (PixelVAE, Gulrajani et al., 2017; VLAE, Chen et al., 2017).

    q(z|x) = N(z; mu(x), diag sigma^2(x)),   p(z) = N(0, I)
    p(x|z) = prod_i Bernoulli(x_i; sigmoid(f_i(x_<i, z)))      (a gated PixelCNN conditioned on z)
    loss = mean( KL[q(z|x) || p(z)] - E_q(z|x)[log p(x|z)] )

The autoregressive decoder is a distribution like any other: the loss is written with the same
``KullbackLeibler``, ``Expectation`` and ``LogProb`` as the quick-start VAE's, and ``Model.fit`` trains
it. Its log-density is one pass of the PixelCNN; sampling x from p(x|z) is one pass per pixel. The
decoder's receptive field is kept small (few layers), so that z has to carry the digit's global
shape. Digits are binarised dynamically for training and once (fixed seed) for testing; the test
loss is the negative ELBO in nats. Figures (PNG and TensorBoard): samples x ~ p(x|z), z ~ p(z), and
reconstructions x ~ p(x|z), z the mean of q(z|x), after the last epoch.

    python examples/pixelvae.py --epochs 5 --data-dir ../shared/data/mnist/raw

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import os

import torch
from _common import make_parser, mnist, save_grid
from torch import nn, optim
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

from pixyz_like.autoregressions import AutoregressiveBernoulli
from pixyz_like.distributions import Normal
from pixyz_like.layers import GatedPixelCNN
from pixyz_like.losses import Expectation as E
from pixyz_like.losses import KullbackLeibler, LogProb
from pixyz_like.models import Callback, EpochPrinter, Model, TensorBoardLogger

SHAPE = (1, 28, 28)


class Inference(Normal):
    """q(z|x): a small convolutional encoder giving the mean and standard deviation of z."""

    def __init__(self, z_dim: int, hidden: int) -> None:
        super().__init__(var=["z"], cond_var=["x"], name="q")
        self.conv = nn.Sequential(nn.Conv2d(1, hidden, 4, 2, 1), nn.ReLU(), nn.Conv2d(hidden, hidden, 4, 2, 1),
                                  nn.ReLU(), nn.Flatten())
        self.fc = nn.Linear(hidden * 7 * 7, 2 * z_dim)

    def forward(self, x):
        loc, scale = self.fc(self.conv(x)).chunk(2, dim=-1)
        return {"loc": loc, "scale": F.softplus(scale) + 1e-4}


class PixelCNNDecoder(AutoregressiveBernoulli):
    """p(x|z): a gated PixelCNN whose every layer is conditioned on the vector z."""

    def __init__(self, z_dim: int, channels: int, layers: int) -> None:
        super().__init__(var=["x"], cond_var=["z"], features_shape=SHAPE, name="p")
        self.net = GatedPixelCNN(1, 1, channels=channels, n_layers=layers, kernel_size=3, first_kernel_size=5,
                                 cond_channels=z_dim)

    def forward(self, x, z):
        return {"logits": self.net(x, z)}


def build(z_dim: int, channels: int, layers: int, hidden: int, device: str = "cpu", lr: float = 1e-3):
    """The decoder, encoder, prior, the loss and its Model."""
    p, q = PixelCNNDecoder(z_dim, channels, layers), Inference(z_dim, hidden)
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[z_dim], name="p_{prior}")
    loss = (KullbackLeibler(q, prior) - E(q, LogProb(p))).mean()
    model = Model(loss, distributions=[p, q], optimizer=optim.Adam, optimizer_params={"lr": lr}, device=device)
    return p, q, prior, loss, model


class DynamicBinarisation(Dataset):
    """The grey-level digits, each binarised afresh (a Bernoulli draw) every time it is read."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return (torch.bernoulli(self.images[i]),)


class Figures(Callback):
    """After the last epoch: samples and reconstructions as PNG, kept for the TensorBoard logger."""

    def __init__(self, p, q, prior, x_fixed: torch.Tensor, epochs: int, out: str) -> None:
        self.p, self.q, self.prior, self.x_fixed, self.epochs, self.out = p, q, prior, x_fixed, epochs, out
        self.grids: dict[str, torch.Tensor] = {}

    def epoch_metrics(self, model, state, logs):
        self.grids = {}
        if state.epoch + 1 < self.epochs:
            return {}
        with torch.no_grad():
            n = len(self.x_fixed)
            z = self.prior.sample(batch_n=n)["z"]
            samples = self.p.sample({"z": z})["x"]
            z_x = self.q.sample({"x": self.x_fixed}, sample_mean=True)["z"]
            recon = self.p.sample({"z": z_x})["x"]
        pairs, epoch = torch.cat([self.x_fixed, recon]), state.epoch + 1
        save_grid(samples, os.path.join(self.out, f"samples_epoch{epoch}.png"), nrow=4, shape=SHAPE)
        save_grid(pairs, os.path.join(self.out, f"reconstruction_epoch{epoch}.png"), nrow=n, shape=SHAPE)
        self.grids = {"samples": samples, "reconstructions": pairs}
        return {}


def main(argv=None) -> list[dict[str, float]]:
    """Train with Model.fit; returns its history of per-epoch train/test losses (nats)."""
    parser = make_parser(__doc__, "runs/pixelvae", epochs=5, batch_size=64)
    parser.add_argument("--z-dim", type=int, default=16)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--n-figures", type=int, default=8, help="digits sampled and reconstructed at the end")
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.z_dim, args.channels, args.layers, args.hidden, args.n_figures = 3, 4, 4, 2, 8, 2
    if args.smoke:
        args.batch_size = min(args.batch_size, 32)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)  # the TensorBoard logger of Model.fit writes there
    train, test = mnist(args, flatten=False)
    g = torch.Generator().manual_seed(args.seed)
    test_bin = torch.bernoulli(test.tensors[0], generator=torch.Generator().manual_seed(1234))
    train_loader = DataLoader(DynamicBinarisation(train.tensors[0]), batch_size=args.batch_size, shuffle=True,
                              generator=g)
    test_loader = DataLoader(TensorDataset(test_bin), batch_size=args.batch_size)
    p, q, prior, loss, model = build(args.z_dim, args.channels, args.layers, args.hidden, args.device, args.lr)
    print((p * prior).prob_joint_factorized_and_text)
    print("Loss:", loss)
    figures = Figures(p, q, prior, test_bin[: args.n_figures].to(args.device), args.epochs, args.out)
    logger = TensorBoardLogger(args.out, images=lambda model: figures.grids)
    history = model.fit(train_loader, args.epochs, test_loader, keys=("x",),
                        callbacks=[figures, logger, EpochPrinter()], progress=not args.no_progress)
    print(f"test negative ELBO {history[-1]['test/loss']:.2f} nats (an upper bound on -log p(x))")
    return history


if __name__ == "__main__":
    main()
