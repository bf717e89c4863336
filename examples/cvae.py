"""Conditional VAE on MNIST (Sohn et al., 2015): the digit label y conditions both networks.

    q(z|x,y) = N(z; mu(x,y), diag sigma^2(x,y)),  p(x|z,y) = Bernoulli(x; pi(z,y)),  p(z) = N(0, I)
    loss = mean( KL[q(z|x,y) || p(z)] - E_q(z|x,y)[log p(x|z,y)] )

y is one-hot. 784(+10)-512-512-64 networks, grey levels as Bernoulli targets (Pixyz's CVAE notebook).
The sample grid has one column per digit class, each row one latent code.

    python examples/cvae.py --epochs 10 --data-dir ../shared/data/mnist/raw

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import os

import torch
from _common import BernoulliMLP, NormalMLP, loaders, make_parser, mnist, one_hot, prepare, save_grid, with_one_hot
from torch import optim

from pixyz_like.distributions import Normal
from pixyz_like.losses import Expectation as E
from pixyz_like.losses import KullbackLeibler, LogProb
from pixyz_like.models import EpochPrinter, EveryEpoch, Model

X_DIM, Y_DIM, Z_DIM = 784, 10, 64


def build(device: str = "cpu", lr: float = 1e-3):
    """``p(x|z,y)``, ``q(z|x,y)``, the prior, the loss and the Model."""
    q = NormalMLP("z", ["x", "y"], X_DIM + Y_DIM, Z_DIM, name="q")
    p = BernoulliMLP("x", ["z", "y"], Z_DIM + Y_DIM, X_DIM, name="p")
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[Z_DIM], name="p_{prior}")
    loss = (KullbackLeibler(q, prior) - E(q, LogProb(p))).mean()
    model = Model(loss, distributions=[p, q], optimizer=optim.Adam, optimizer_params={"lr": lr}, device=device)
    return p, q, prior, loss, model


def main(argv=None) -> list[dict[str, float]]:
    """Train; returns the history of per-epoch train/test losses."""
    args = make_parser(__doc__, "runs/cvae").parse_args(argv)
    prepare(args)
    train, test = mnist(args)
    train_loader, test_loader = loaders(args, with_one_hot(train), with_one_hot(test))
    p, q, prior, loss, model = build(args.device, args.lr)
    print("Loss:", loss)
    print(model)
    # 8 latent codes x 10 classes: row i uses code i for every digit
    z_fixed = torch.randn(8, 1, Z_DIM, device=args.device).expand(8, Y_DIM, Z_DIM).reshape(-1, Z_DIM)
    y_grid = one_hot(torch.arange(Y_DIM).repeat(8)).to(args.device)
    x_fixed, y_fixed = next(iter(test_loader))
    x_fixed, y_fixed = x_fixed[:32].to(args.device), y_fixed[:32].to(args.device)

    def figures(epoch, logs):
        save_grid(p.sample_mean({"z": z_fixed, "y": y_grid}), os.path.join(args.out, f"samples_epoch{epoch}.png"),
                  nrow=Y_DIM)
        z = q.sample({"x": x_fixed, "y": y_fixed}, sample_mean=True)["z"]
        save_grid(torch.cat([x_fixed, p.sample_mean({"z": z, "y": y_fixed})]),
                  os.path.join(args.out, f"reconstruction_epoch{epoch}.png"))

    return model.fit(train_loader, args.epochs, test_loader, keys=("x", "y"), log_dir=args.out,
                     callbacks=[EveryEpoch(figures), EpochPrinter()], progress=not args.no_progress)


if __name__ == "__main__":
    main()
