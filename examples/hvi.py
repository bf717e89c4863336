"""Hierarchical variational inference on MNIST: a posterior with an auxiliary latent variable.

The approximate posterior is the marginal of a hierarchy, q(z|x) = integral q(z|x,a) q(a|x) da, richer
than one Gaussian. Its density is intractable, so the bound uses a reverse model r(a|x,z)
(Ranganath, Tran & Blei, 2016, "Hierarchical Variational Models"; Maaloe et al., 2016):

    p(x,z,a) = r(a|x,z) p(x|z) p(z),   q(z,a|x) = q(z|x,a) q(a|x)
    loss = - mean( E_q(z,a|x)[ log p(x,z,a) - log q(z,a|x) ] )  >=  - mean( log p(x) )

784-512-512-64 networks, grey levels as Bernoulli targets.

    python examples/hvi.py --epochs 10 --data-dir ../shared/data/mnist/raw

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

X_DIM, Z_DIM, A_DIM = 784, 64, 64


def build(device: str = "cpu", lr: float = 1e-3):
    """The joint ``p(x,z,a)``, the hierarchical posterior ``q(z,a|x)``, the loss and the Model."""
    q_a = NormalMLP("a", ["x"], X_DIM, A_DIM, name="q")
    q_z = NormalMLP("z", ["x", "a"], X_DIM + A_DIM, Z_DIM, name="q")
    r = NormalMLP("a", ["x", "z"], X_DIM + Z_DIM, A_DIM, name="r")
    p = BernoulliMLP("x", ["z"], Z_DIM, X_DIM, name="p")
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[Z_DIM], name="p_{prior}")
    q = q_z * q_a
    q.name = "q"  # a product is named p by default; this one is the posterior
    p_joint = r * p * prior
    loss = -ELBO(p_joint, q).mean()
    model = Model(loss, distributions=[p, q_a, q_z, r], optimizer=optim.Adam, optimizer_params={"lr": lr},
                  device=device)
    return p, q, prior, loss, model


def main(argv=None) -> list[dict[str, float]]:
    """Train; returns the history of per-epoch train/test losses."""
    args = make_parser(__doc__, "runs/hvi").parse_args(argv)
    prepare(args)
    train_loader, test_loader = loaders(args, *mnist(args))
    p, q, prior, loss, model = build(args.device, args.lr)
    print(q.prob_joint_factorized_and_text)
    print("Loss:", loss)
    print(model)
    z_fixed = torch.randn(64, Z_DIM, device=args.device)
    x_fixed = next(iter(test_loader))[0][:32].to(args.device)

    def figures(epoch, logs):
        save_grid(p.sample_mean({"z": z_fixed}), os.path.join(args.out, f"samples_epoch{epoch}.png"))
        z = q.sample({"x": x_fixed})["z"]  # a draw of the hierarchical posterior
        save_grid(torch.cat([x_fixed, p.sample_mean({"z": z})]),
                  os.path.join(args.out, f"reconstruction_epoch{epoch}.png"))

    return model.fit(train_loader, args.epochs, test_loader, keys=("x", None), log_dir=args.out,
                     callbacks=[EveryEpoch(figures), EpochPrinter()], progress=not args.no_progress)


if __name__ == "__main__":
    main()
