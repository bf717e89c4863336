"""beta-VAE on MNIST (Higgins et al., 2017) with a linear KL warm-up (Bowman et al., 2016; Sonderby et al., 2016).

    loss = mean( - E_q(z|x)[log p(x|z)] + beta * KL[q(z|x) || p(z)] ),   beta = Parameter("beta")

beta is a variable of the formula, fed with each batch: it grows linearly from 0 to ``--beta`` over
``--warmup-epochs`` epochs, so the decoder learns to use z before the KL term weighs on the posterior.
The test loss is the negative ELBO (beta = 1), comparable across epochs and with ``vae.py``; both the
reconstruction and the KL terms are logged. 784-512-512-64 networks, grey levels as Bernoulli targets.

    python examples/beta_vae.py --epochs 10 --beta 4 --warmup-epochs 3 --data-dir ../shared/data/mnist/raw

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import os

import torch
from _common import BernoulliMLP, NormalMLP, loaders, make_parser, mnist, prepare, save_grid
from torch import optim

from pixyz_like.distributions import Normal
from pixyz_like.losses import Expectation as E
from pixyz_like.losses import KullbackLeibler, LogProb, Parameter
from pixyz_like.losses.schedules import linear_warmup
from pixyz_like.models import EpochPrinter, EveryEpoch, Model

X_DIM, Z_DIM = 784, 64


def build(device: str = "cpu", lr: float = 1e-3):
    """``p(x|z)``, ``q(z|x)``, the prior, the weighted loss, the test loss and the Model."""
    q = NormalMLP("z", ["x"], X_DIM, Z_DIM, name="q")
    p = BernoulliMLP("x", ["z"], Z_DIM, X_DIM, name="p")
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[Z_DIM], name="p_{prior}")
    recon = -E(q, LogProb(p))
    kl = KullbackLeibler(q, prior)
    loss = (recon + Parameter("beta") * kl).mean()
    test_loss = (recon + kl).mean()
    model = Model(loss, test_loss=test_loss, distributions=[p, q], optimizer=optim.Adam,
                  optimizer_params={"lr": lr}, device=device)
    return p, q, prior, loss, model


def main(argv=None) -> list[dict[str, float]]:
    """Train with Model.fit and a warm-up schedule for beta; returns the history of per-epoch train/test
    losses (its steps' logs hold ``schedule/beta``)."""
    parser = make_parser(__doc__, "runs/beta_vae")
    parser.add_argument("--beta", type=float, default=4.0, help="final weight of the KL term")
    parser.add_argument("--warmup-epochs", type=float, default=3.0, help="epochs of linear warm-up from 0")
    args = parser.parse_args(argv)
    prepare(args)
    train_loader, test_loader = loaders(args, *mnist(args))
    p, q, prior, loss, model = build(args.device, args.lr)
    print("Loss:", loss)
    print(model)
    # beta = args.beta * min(1, step / warm-up steps), fed to Parameter("beta") at every step
    beta = linear_warmup(0.0, args.beta, steps=int(args.warmup_epochs * len(train_loader)))
    z_fixed = torch.randn(64, Z_DIM, device=args.device)
    x_fixed = next(iter(test_loader))[0][:32].to(args.device)

    def figures(epoch, logs):
        save_grid(p.sample_mean({"z": z_fixed}), os.path.join(args.out, f"samples_epoch{epoch}.png"))
        z = q.sample({"x": x_fixed}, sample_mean=True)["z"]
        save_grid(torch.cat([x_fixed, p.sample_mean({"z": z})]),
                  os.path.join(args.out, f"reconstruction_epoch{epoch}.png"))
        # latent traversal: vary each of the first 8 coordinates of one code from -2 to 2
        z0 = q.sample({"x": x_fixed[:1]}, sample_mean=True)["z"]
        steps = torch.linspace(-2, 2, 8, device=args.device)
        zs = z0.repeat(64, 1)
        for i in range(8):
            zs[i * 8:(i + 1) * 8, i] = steps
        save_grid(p.sample_mean({"z": zs}), os.path.join(args.out, f"traversal_epoch{epoch}.png"))
        return {"beta": beta(int(logs["step"]))}  # the weight the next step will use

    return model.fit(train_loader, args.epochs, test_loader, keys=("x", None), schedules={"beta": beta},
                     log_dir=args.out, callbacks=[EveryEpoch(figures), EpochPrinter("beta")],
                     progress=not args.no_progress)


if __name__ == "__main__":
    main()
