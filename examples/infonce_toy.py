"""Contrastive predictive coding on a toy sequence task: the InfoNCE bound approaches log N.

Sequences x_1..x_T in R^2 rotate by a fixed angle per step with a little noise, from a random start:
the past predicts the future well, so the mutual information between a context and a future latent
is several nats. CPC (van den Oord, Li & Vinyals, 2018):

    z_t = g_enc(x_t)                    an MLP per step
    c   = g_ar(z_1..z_s)                a GRU over the first s steps (its last state)
    f(z, c) = z^T W c                   the critic (bilinear)
    loss = - mean( E_{g(c,z|x)}[ log e^{f(z_i, c_i)} / (1/N sum_j e^{f(z_j, c_i)}) ] ),  z = z_{s+k}

The negatives of each sequence are the other N - 1 sequences of the batch, so the bound can never
exceed log N (the batch size): training drives it toward log N. The encoder and the context network
are one deterministic distribution g(c, z | x); the loss is pixyz_like.losses.InfoNCE inside an
Expectation, trained with Model.fit. Figure: the bound per epoch (train and test) against log N.

    python examples/infonce_toy.py --epochs 20 --batch-size 64

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import math
import os

import torch
from _common import make_parser
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pixyz_like.distributions import Deterministic
from pixyz_like.losses import Expectation as E
from pixyz_like.losses import InfoNCE
from pixyz_like.models import Model
from pixyz_like.models.training import TensorBoardLogger


def sequences(n: int, length: int, angle: float = 0.4, noise: float = 0.05, seed: int = 0) -> torch.Tensor:
    """``(n, length, 2)``: x_1 ~ N(0, I), x_{t+1} = R(angle) x_t + noise * N(0, I)."""
    g = torch.Generator().manual_seed(seed)
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    x = [torch.randn(n, 2, generator=g)]
    for _ in range(length - 1):
        x.append(x[-1] @ rot.t() + noise * torch.randn(n, 2, generator=g))
    return torch.stack(x, 1)


class CPCEncoder(Deterministic):
    """g(c, z | x): c summarises the first ``context`` steps, z encodes the step ``ahead`` steps later."""

    def __init__(self, context: int, ahead: int, z_dim: int, c_dim: int, hidden: int) -> None:
        super().__init__(var=["c", "z"], cond_var=["x"], name="g")
        self.context, self.ahead = context, ahead
        self.enc = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, z_dim))
        self.gru = nn.GRU(z_dim, c_dim, batch_first=True)

    def forward(self, x):
        z = self.enc(x)  # (N, T, z_dim)
        _, h = self.gru(z[:, : self.context])
        return {"c": h[-1], "z": z[:, self.context + self.ahead - 1]}


class Bilinear(nn.Module):
    """The pairwise critic: scores[i, j] = z_j^T W c_i for every pair of the batch."""

    def __init__(self, z_dim: int, c_dim: int) -> None:
        super().__init__()
        self.w = nn.Linear(c_dim, z_dim, bias=False)

    def forward(self, z, c):
        return self.w(c) @ z.t()


def plot(path: str, train: list[float], test: list[float], log_n: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    epochs = range(1, len(train) + 1)
    ax.plot(epochs, train, label="InfoNCE bound (train)")
    ax.plot(epochs, test, label="InfoNCE bound (test)")
    ax.axhline(log_n, color="k", linestyle="--", label=f"log N = {log_n:.2f}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> dict:
    """Train; returns per-epoch losses (minus the bound) and the bound against log N."""
    parser = make_parser(__doc__, "runs/infonce_toy", epochs=20, batch_size=64, lr=3e-3)
    parser.add_argument("--length", type=int, default=12)
    parser.add_argument("--context", type=int, default=8, help="steps the context network reads")
    parser.add_argument("--ahead", type=int, default=2, help="how many steps after the context z is taken")
    parser.add_argument("--n-train", type=int, default=4096)
    parser.add_argument("--n-test", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=64)
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.n_train, args.n_test, args.hidden = 3, 256, 64, 16
        args.batch_size = min(args.batch_size, 32)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    train = TensorDataset(sequences(args.n_train, args.length, seed=args.seed))
    test = TensorDataset(sequences(args.n_test, args.length, seed=args.seed + 1000))
    g = torch.Generator().manual_seed(args.seed)
    # drop_last: every batch has N sequences, so the bound's ceiling log N is the same for all
    train_loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, generator=g, drop_last=True)
    test_loader = DataLoader(test, batch_size=args.batch_size, drop_last=True)
    f = CPCEncoder(args.context, args.ahead, z_dim=16, c_dim=32, hidden=args.hidden)
    critic = Bilinear(16, 32)
    nce = InfoNCE(critic, x="z", c="c", pairwise=True)
    loss = -E(f, nce).mean()
    print(loss)
    model = Model(loss, distributions=[f, critic], optimizer_params={"lr": args.lr}, device=args.device)
    logs = model.fit(train_loader, args.epochs, test_loader, keys=("x",), callbacks=[TensorBoardLogger(args.out)],
                     progress=not args.no_progress)
    log_n = math.log(args.batch_size)
    history = {"train": [e["train/loss"] for e in logs], "test": [e["test/loss"] for e in logs]}
    bound_train, bound_test = [-v for v in history["train"]], [-v for v in history["test"]]
    for i, (a, b) in enumerate(zip(bound_train, bound_test), 1):
        print(f"Epoch {i}: InfoNCE bound {a:.3f} (train), {b:.3f} (test); log N = {log_n:.3f}")
    plot(os.path.join(args.out, "infonce_bound.png"), bound_train, bound_test, log_n)
    history["log_n"] = [log_n]
    return history


if __name__ == "__main__":
    main()
