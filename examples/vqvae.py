"""VQ-VAE on MNIST (van den Oord et al., 2017), then a PixelCNN prior over its discrete codes.

    q(z_e|x) = delta(z_e - enc(x))             a convolutional encoder, z_e of shape (D, 7, 7)
    q(z_q|z_e) = delta(z_q - e_k(z_e))         the nearest of K codebook vectors (straight-through gradient)
    p(x|z_q) = Bernoulli(x; sigmoid(dec(z_q)))
    loss = mean( E_q(z_q,z_e|x)[ -log p(x|z_q) + ||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2 ] )

By default the codebook is learnt by moving averages (an online k-means, ``ema=True``) and the
codebook term is dropped; ``--codebook-loss`` learns it by the term ||sg[z_e] - e||^2 instead (on this
small model it leaves most codes far from the encoder's outputs: the quantisation error stays near
half a unit per component, against a few hundredths with the moving averages). The codebook starts
from encoder outputs of a first batch; its perplexity (codes in effective use) is logged each step,
and each term of the loss separately. Stage two fits a prior over the 7x7 grid of code indices: a gated
PixelCNN with a K-way softmax per position (pixyz_like.autoregressions.AutoregressiveCategorical),
trained with Model.fit on the codes of the training digits. New digits are codes sampled from the
prior, decoded. Figures (PNG and TensorBoard): reconstructions, and samples from the prior.

    python examples/vqvae.py --epochs 5 --data-dir ../shared/data/mnist/raw

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import os

import torch
from _common import make_parser, mnist, save_grid
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pixyz_like.autoregressions import AutoregressiveCategorical
from pixyz_like.distributions import Bernoulli, Deterministic, VectorQuantizer
from pixyz_like.layers import GatedPixelCNN
from pixyz_like.losses import CodebookLoss, CommitmentLoss, LogProb
from pixyz_like.losses import Expectation as E
from pixyz_like.models import Model
from pixyz_like.models.codebook import CodebookUsage
from pixyz_like.models.training import Callback, TensorBoardLogger

SHAPE = (1, 28, 28)
GRID = 7  # the code grid is 7 x 7


class Encoder(Deterministic):
    """q(z_e|x): two stride-2 convolutions, (1, 28, 28) -> (D, 7, 7)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(var=["z_e"], cond_var=["x"], name="q")
        self.net = nn.Sequential(nn.Conv2d(1, hidden, 4, 2, 1), nn.ReLU(), nn.Conv2d(hidden, hidden, 4, 2, 1),
                                 nn.ReLU(), nn.Conv2d(hidden, dim, 1))

    def forward(self, x):
        return {"z_e": self.net(x)}


class Decoder(Bernoulli):
    """p(x|z_q): two transposed convolutions back to (1, 28, 28)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(var=["x"], cond_var=["z_q"], name="p")
        self.net = nn.Sequential(nn.Conv2d(dim, hidden, 3, 1, 1), nn.ReLU(),
                                 nn.ConvTranspose2d(hidden, hidden, 4, 2, 1), nn.ReLU(),
                                 nn.ConvTranspose2d(hidden, 1, 4, 2, 1))

    def forward(self, z_q):
        return {"probs": torch.sigmoid(self.net(z_q))}


class CodePrior(AutoregressiveCategorical):
    """p(k): a gated PixelCNN over the 7x7 grid of code indices, stored as k / (K - 1)."""

    def __init__(self, n_codes: int, channels: int, layers: int) -> None:
        super().__init__(var=["k"], features_shape=[1, GRID, GRID], n_levels=n_codes, name="p_{prior}")
        self.net = GatedPixelCNN(1, n_codes, channels=channels, n_layers=layers, kernel_size=3, first_kernel_size=5)

    def forward(self, k):
        return {"logits": self.net(k)}


def build(args):
    """Encoder, quantiser, decoder, the VQ-VAE loss and its Model."""
    enc, dec = Encoder(args.dim, args.hidden), Decoder(args.dim, args.hidden)
    vq = VectorQuantizer(args.codes, args.dim, channel_dim=1, ema=args.ema, name="q")
    q = vq * enc  # q(z_q, z_e | x)
    # One expectation per term, so that fit logs each; within one evaluation the encoder and the
    # quantiser run once (the per-evaluation memo), so the three share the same z_e and z_q.
    terms = [E(q, -LogProb(dec))] + ([] if args.ema else [E(q, CodebookLoss(vq))])
    loss = sum(terms[1:], terms[0]) + E(q, CommitmentLoss(vq, beta=args.beta))
    loss = loss.mean()
    model = Model(loss, distributions=[enc, vq, dec], optimizer_params={"lr": args.lr}, device=args.device)
    return enc, vq, dec, loss, model


class Reconstructions(Callback):
    """After the last epoch: a PNG of test digits over their reconstructions (through the codes)."""

    def __init__(self, enc, vq, dec, x_fixed, epochs: int, out: str) -> None:
        self.enc, self.vq, self.dec, self.x, self.epochs, self.out = enc, vq, dec, x_fixed, epochs, out
        self.grids: dict[str, torch.Tensor] = {}

    def on_epoch_end(self, model, state, logs):
        self.grids = {}
        if state.epoch + 1 < self.epochs:
            return
        with torch.no_grad():
            z_q = self.vq.sample({"z_e": self.enc.sample({"x": self.x})["z_e"]})["z_q"]
            recon = self.dec.sample_mean({"z_q": z_q})
        pairs = torch.cat([self.x, recon])
        save_grid(pairs, os.path.join(self.out, "reconstructions.png"), nrow=len(self.x), shape=SHAPE)
        self.grids = {"reconstructions": pairs}


def code_dataset(enc, vq, images: torch.Tensor, device, batch: int = 256) -> TensorDataset:
    """The code indices of every image, as the prior's values k / (K - 1), shape (N, 1, 7, 7)."""
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            z_e = enc.sample({"x": images[i: i + batch].to(device)})["z_e"]
            out.append(vq.encode(z_e).unsqueeze(1).float().cpu() / (vq.num_embeddings - 1))
    return TensorDataset(torch.cat(out))


def fit_prior(args, enc, vq, train_images, test_images) -> tuple[CodePrior, list[dict]]:
    """Stage two: the PixelCNN prior over codes, trained with Model.fit."""
    prior = CodePrior(args.codes, args.prior_channels, args.prior_layers)
    model = Model(-LogProb(prior).mean(), distributions=[prior], optimizer_params={"lr": args.lr},
                  device=args.device)
    g = torch.Generator().manual_seed(args.seed)
    train = DataLoader(code_dataset(enc, vq, train_images, args.device), batch_size=args.batch_size, shuffle=True,
                       generator=g)
    test = DataLoader(code_dataset(enc, vq, test_images, args.device), batch_size=args.batch_size)
    logs = model.fit(train, args.prior_epochs, test, keys=("k",), log_dir=os.path.join(args.out, "prior"),
                     progress=not args.no_progress)
    return prior, logs


def sample_digits(prior, vq, dec, n: int, path: str) -> torch.Tensor:
    """New digits: code grids drawn from the prior, looked up in the codebook and decoded."""
    with torch.no_grad():
        k = prior.sample(batch_n=n)["k"]  # (n, 1, 7, 7), values k / (K - 1)
        codes = (k.squeeze(1) * (vq.num_embeddings - 1)).round().long()
        x = dec.sample_mean({"z_q": vq.decode(codes)})
    save_grid(x, path, nrow=max(1, int(n**0.5)), shape=SHAPE)
    return x


def make_args_parser():
    """The command line: the options every example takes and the VQ-VAE's own."""
    parser = make_parser(__doc__, "runs/vqvae", epochs=5, batch_size=64, lr=1e-3)
    parser.add_argument("--codes", type=int, default=32, help="codebook size K")
    parser.add_argument("--dim", type=int, default=16, help="code dimension D")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--beta", type=float, default=0.25, help="commitment weight")
    parser.add_argument("--codebook-loss", dest="ema", action="store_false",
                        help="learn the codebook by the codebook loss instead of moving averages")
    parser.add_argument("--prior-epochs", type=int, default=5)
    parser.add_argument("--prior-channels", type=int, default=32)
    parser.add_argument("--prior-layers", type=int, default=4)
    parser.add_argument("--n-figures", type=int, default=8)
    return parser


def main(argv=None) -> dict:
    """Train the VQ-VAE, then its prior; returns the VQ-VAE's per-epoch losses (nats per digit)."""
    args = make_args_parser().parse_args(argv)
    if args.smoke:
        args.epochs, args.codes, args.dim, args.hidden = 3, 8, 4, 8
        args.prior_epochs, args.prior_channels, args.prior_layers, args.n_figures = 2, 4, 2, 2
        args.batch_size = min(args.batch_size, 32)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    train, test = mnist(args, flatten=False)
    g = torch.Generator().manual_seed(args.seed)
    train_loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, generator=g)
    test_loader = DataLoader(test, batch_size=args.batch_size)
    enc, vq, dec, loss, model = build(args)
    with torch.no_grad():  # codes start on encoder outputs: none is dead from the start
        vq.init_from(enc.sample({"x": train.tensors[0][:256].to(args.device)})["z_e"], generator=g)
    print(loss)
    figures = Reconstructions(enc, vq, dec, test.tensors[0][: args.n_figures].to(args.device), args.epochs, args.out)
    usage = CodebookUsage(vq)
    logger = TensorBoardLogger(args.out, images=lambda model: figures.grids)
    logs = model.fit(train_loader, args.epochs, test_loader, keys=("x", None), callbacks=[usage, figures, logger],
                     progress=not args.no_progress)
    history = {"train": [e["train/loss"] for e in logs], "test": [e["test/loss"] for e in logs]}
    for i, e in enumerate(logs, 1):
        print(f"Epoch {i}: train loss {e['train/loss']:.2f}, test loss {e['test/loss']:.2f}, "
              f"codebook perplexity {e['train/vq/perplexity']:.1f} of {args.codes}")
    prior, prior_logs = fit_prior(args, enc, vq, train.tensors[0], test.tensors[0])
    print(f"prior: test NLL of the codes {prior_logs[-1]['test/loss']:.2f} nats per digit")
    sample_digits(prior, vq, dec, max(4, args.n_figures**2 // 4), os.path.join(args.out, "samples.png"))
    history["prior_test"] = [e["test/loss"] for e in prior_logs]
    return history


if __name__ == "__main__":
    main()
