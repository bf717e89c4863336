"""RealNVP (Dinh, Sohl-Dickstein & Bengio, 2017) density estimation on the 2-D two-moons data.

    x = f^{-1}(z),  z ~ N(0, I);   log p(x) = log N(f(x); 0, I) + log |det df(x)/dx|
    f = coupling_1 o ... o coupling_L, each  z_b = x_b,  z_(1-b) = x_(1-b) exp(s(x_b)) + t(x_b)
    loss = - mean( log p(x) )   (maximum likelihood, the ``ML`` model)

The couplings alternate which coordinate passes through; s and t are small MLPs (s bounded by tanh).
The data are scored by one forward pass of the flow and sampled by its inverse. Figures: the learned
density with the training points, and samples of the model.

    python examples/realnvp_moons.py --epochs 30

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import math
import os

import torch
from _common import ScaleTranslate, make_parser, plot_density_2d, prepare
from torch import optim
from torch.utils.data import DataLoader, TensorDataset

from pixyz_like.distributions import InverseTransformedDistribution, Normal
from pixyz_like.flows import AffineCoupling, FlowList
from pixyz_like.models import ML, EpochPrinter, EveryEpoch


def two_moons(n: int, noise: float = 0.05, seed: int = 0) -> torch.Tensor:
    """``n`` points on two interleaved half circles with Gaussian noise, centred and scaled."""
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, generator=g) * math.pi
    upper = torch.rand(n, generator=g) < 0.5
    x = torch.where(upper, torch.cos(t), 1.0 - torch.cos(t))
    y = torch.where(upper, torch.sin(t), 0.5 - torch.sin(t))
    pts = torch.stack([x, y], -1) + noise * torch.randn(n, 2, generator=g)
    return (pts - torch.tensor([0.5, 0.25])) * 2.0


def build(n_layers: int = 8, device: str = "cpu", lr: float = 1e-3):
    """The flow density p(x) and the ML model."""
    flow = FlowList([AffineCoupling(2, scale_translate_net=ScaleTranslate(2), inverse_mask=i % 2 == 1)
                     for i in range(n_layers)])
    prior = Normal(loc=torch.zeros(2), scale=torch.ones(2), var=["z"], name="p_{0}")
    p = InverseTransformedDistribution(prior, flow, var=["x"], name="p")
    model = ML(p, optimizer=optim.Adam, optimizer_params={"lr": lr}, device=device)
    return p, model


def main(argv=None) -> list[dict[str, float]]:
    """Train; returns the history of per-epoch train/test negative log-likelihoods."""
    parser = make_parser(__doc__, "runs/realnvp_moons", epochs=30, batch_size=256)
    parser.add_argument("--layers", type=int, default=8)
    args = parser.parse_args(argv)
    prepare(args)
    n = 256 if args.smoke else 8000
    train, test = two_moons(n, seed=args.seed), two_moons(2000, seed=args.seed + 1000)
    g = torch.Generator().manual_seed(args.seed)
    train_loader = DataLoader(TensorDataset(train), batch_size=args.batch_size, shuffle=True, generator=g)
    test_loader = DataLoader(TensorDataset(test), batch_size=1000)
    p, model = build(4 if args.smoke else args.layers, args.device, args.lr)
    print(p.prob_joint_factorized_and_text)
    print(model)

    def figures(epoch, logs):
        plot_density_2d(os.path.join(args.out, f"density_epoch{epoch}.png"),
                        lambda x: p.get_log_prob({"x": x.to(args.device)}).cpu(), samples=train[:1000], lim=3.0,
                        title=f"p(x), epoch {epoch}")
        plot_density_2d(os.path.join(args.out, f"samples_epoch{epoch}.png"), samples=p.sample(batch_n=1000)["x"],
                        lim=3.0, title="samples")

    return model.fit(train_loader, args.epochs, test_loader, keys=("x",), log_dir=args.out,
                     callbacks=[EveryEpoch(figures), EpochPrinter()], progress=not args.no_progress)


if __name__ == "__main__":
    main()
