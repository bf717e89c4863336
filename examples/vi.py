"""Variational inference on MNIST: maximise the ELBO of the joint p(x,z) with a Monte Carlo estimate.

    p(x,z) = p(x|z) p(z),   p(z) = N(0, I),   p(x|z) = Bernoulli(x; pi(z))
    q(z|x) = N(z; mu(x), diag sigma^2(x))
    loss = - mean( E_q(z|x)[ log p(x,z) - log q(z|x) ] )

Unlike ``vae.py`` the KL term is not in closed form: the whole bound is one Monte Carlo expectation
(Pixyz's VI notebook). 784-512-512-64 networks, grey levels as Bernoulli targets.

    python examples/vi.py --epochs 10 --data-dir ../shared/data/mnist/raw

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import os

import torch
from _common import BernoulliMLP, NormalMLP, loaders, make_parser, mnist, prepare, save_grid
from torch import optim

from pixyz_like.distributions import Normal
from pixyz_like.losses import ELBO
from pixyz_like.models import EpochPrinter, EveryEpoch, Model

X_DIM, Z_DIM = 784, 64


def build(device: str = "cpu", lr: float = 1e-3):
    """The generative model ``p(x,z)``, the posterior ``q(z|x)``, the loss and the Model."""
    q = NormalMLP("z", ["x"], X_DIM, Z_DIM, name="q")
    p = BernoulliMLP("x", ["z"], Z_DIM, X_DIM, name="p")
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[Z_DIM], name="p_{prior}")
    p_joint = p * prior
    loss = -ELBO(p_joint, q).mean()
    model = Model(loss, distributions=[p, q], optimizer=optim.Adam, optimizer_params={"lr": lr}, device=device)
    return p, q, prior, loss, model


def main(argv=None) -> list[dict[str, float]]:
    """Train; returns the history of per-epoch train/test losses."""
    args = make_parser(__doc__, "runs/vi").parse_args(argv)
    prepare(args)
    train_loader, test_loader = loaders(args, *mnist(args))
    p, q, prior, loss, model = build(args.device, args.lr)
    print("Loss:", loss)
    print(model)
    z_fixed = torch.randn(64, Z_DIM, device=args.device)
    x_fixed = next(iter(test_loader))[0][:32].to(args.device)

    def figures(epoch, logs):
        save_grid(p.sample_mean({"z": z_fixed}), os.path.join(args.out, f"samples_epoch{epoch}.png"))
        z = q.sample({"x": x_fixed}, sample_mean=True)["z"]
        save_grid(torch.cat([x_fixed, p.sample_mean({"z": z})]),
                  os.path.join(args.out, f"reconstruction_epoch{epoch}.png"))

    return model.fit(train_loader, args.epochs, test_loader, keys=("x", None), log_dir=args.out,
                     callbacks=[EveryEpoch(figures), EpochPrinter()], progress=not args.no_progress)


if __name__ == "__main__":
    main()
