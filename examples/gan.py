"""A generative adversarial network (Goodfellow et al., 2014) on MNIST, with the ``GAN`` model class.

    p(x) = integral p(x|z) p(z) dz,  p(x|z) a deterministic generator,  p(z) = N(0, I), dim z = 100
    critic d(t|x) = sigmoid(f(x)), the probability that x is data
    critic:    max  E_p_data[log d(x)] + E_p[log(1 - d(x))]
    generator: min  D_JS^Adv[p_data(x) || p(x)]  (non-saturating form, - E_p[log d(x)] up to a constant)

Each step updates the critic, then the generator (``GAN.train`` returns both losses; ``Model.fit``
trains through it). The history holds the generator's loss ``train/loss`` and the critic's
``train/d_loss``, which falls as the critic learns to tell data from samples (a generator loss has
no reason to fall). Architectures follow
Pixyz's GAN notebook (MLP generator 100-128-256-512-1024-784 with batch norm, MLP critic
784-512-256-1); Adam 2e-4, betas (0.5, 0.999). Figures: generated digits per epoch.

    python examples/gan.py --epochs 10 --data-dir ../shared/data/mnist/raw

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import os

import torch
from _common import loaders, make_parser, mnist, prepare, save_grid
from torch import nn, optim

from pixyz_like.distributions import Deterministic, Normal
from pixyz_like.models import GAN, EpochPrinter, EveryEpoch

#: What the example test checks falls in a smoke run: the critic learns first.
FALLING = "train/d_loss"

X_DIM, Z_DIM = 784, 100


class Generator(Deterministic):
    """x = g(z): an MLP with batch norm and a sigmoid output (grey levels)."""

    def __init__(self) -> None:
        super().__init__(var=["x"], cond_var=["z"], name="p")

        def block(a, b, norm=True):
            return [nn.Linear(a, b), *([nn.BatchNorm1d(b)] if norm else []), nn.LeakyReLU(0.2)]

        self.net = nn.Sequential(*block(Z_DIM, 128, norm=False), *block(128, 256), *block(256, 512),
                                 *block(512, 1024), nn.Linear(1024, X_DIM), nn.Sigmoid())

    def forward(self, z):
        return {"x": self.net(z)}


class Critic(Deterministic):
    """t = d(x), the probability that x comes from the data."""

    def __init__(self) -> None:
        super().__init__(var=["t"], cond_var=["x"], name="d")
        self.net = nn.Sequential(nn.Linear(X_DIM, 512), nn.LeakyReLU(0.2), nn.Linear(512, 256), nn.LeakyReLU(0.2),
                                 nn.Linear(256, 1), nn.Sigmoid())

    def forward(self, x):
        return {"t": self.net(x)}


def build(device: str = "cpu", lr: float = 2e-4):
    """The generator, its marginal ``p(x)``, the critic and the GAN model."""
    generator, critic = Generator(), Critic()
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[Z_DIM], name="p_{prior}")
    p = (generator * prior).marginalize_var("z")
    adam = {"lr": lr, "betas": (0.5, 0.999)}
    model = GAN(p, critic, optimizer=optim.Adam, optimizer_params=adam, d_optimizer=optim.Adam,
                d_optimizer_params=adam, device=device)
    return generator, prior, p, critic, model


def main(argv=None) -> list[dict[str, float]]:
    """Train with Model.fit (GAN.train steps the critic, then the generator); returns the history of
    per-epoch generator (``loss``) and critic (``d_loss``) losses."""
    args = make_parser(__doc__, "runs/gan", lr=2e-4).parse_args(argv)
    prepare(args)
    train_loader, test_loader = loaders(args, *mnist(args), drop_last=True)  # batch norm needs > 1 row
    generator, prior, p, critic, model = build(args.device, args.lr)
    print(p.prob_joint_factorized_and_text)
    print(model)
    z_fixed = torch.randn(64, Z_DIM, device=args.device)

    def figures(epoch, logs):
        generator.eval()
        save_grid(generator.sample({"z": z_fixed})["x"], os.path.join(args.out, f"samples_epoch{epoch}.png"))
        generator.train()

    return model.fit(train_loader, args.epochs, test_loader, keys=("x", None), log_dir=args.out,
                     callbacks=[EveryEpoch(figures), EpochPrinter("train/d_loss", "test/d_loss")],
                     progress=not args.no_progress)


if __name__ == "__main__":
    main()
