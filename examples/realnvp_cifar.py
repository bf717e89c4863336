"""Multi-scale RealNVP (Dinh, Sohl-Dickstein & Bengio, 2017) on CIFAR-10.

    x = f^{-1}(z), z ~ N(0, I);   log p(x) = log N(f(x); 0, I) + log |det df(x)/dx|
    each scale: checkerboard couplings, squeeze (C,H,W) -> (4C,H/2,W/2), channel-wise couplings,
                split: half the channels leave the flow, scored by a learned Gaussian given the rest
    loss = - mean( log p(x) )   (maximum likelihood, the ``ML`` model)

Coupling networks are ResNets; s is bounded by a learned scale times tanh. Pixels are dequantised
and logit-transformed first. CIFAR-10 comes from torchvision (downloaded when online, or from
``--data-dir``); ``--smoke`` uses random (3, 32, 32) tensors. The loss is in nats per image and
logged in bits per dimension. Figures: samples.

    python examples/realnvp_cifar.py --epochs 5 --batch-size 64

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import math
import os

import torch
from _common import cifar10, loaders, make_parser, multiscale_flow, prepare, save_grid
from torch import optim

from pixyz_like.distributions import InverseTransformedDistribution, Normal
from pixyz_like.models import ML, EpochPrinter, EveryEpoch

SHAPE = (3, 32, 32)
DIMS = 3 * 32 * 32


def build(args, glow: bool = False):
    """The multi-scale flow density p(x) and the ML model."""
    flow, out_shape = multiscale_flow(SHAPE, args.scales, args.steps, args.channels, args.blocks, glow=glow)
    prior = Normal(loc=torch.zeros(out_shape), scale=torch.ones(out_shape), var=["z"], name="p_{0}")
    p = InverseTransformedDistribution(prior, flow, var=["x"], name="p", features_shape=SHAPE)
    model = ML(p, optimizer=optim.Adam, optimizer_params={"lr": args.lr}, device=args.device,
               clip_grad_norm=100.0)
    return p, model


def train_image_flow(argv, doc: str, out: str, glow: bool) -> list[dict[str, float]]:
    """Shared main of the CIFAR-10 RealNVP and Glow examples."""
    parser = make_parser(doc, out, epochs=5, batch_size=64)
    parser.add_argument("--scales", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8 if glow else 3, help="couplings (flow steps) per scale")
    parser.add_argument("--channels", type=int, default=256 if glow else 64, help="ResNet hidden channels")
    parser.add_argument("--blocks", type=int, default=1 if glow else 4, help="ResNet residual blocks")
    args = parser.parse_args(argv)
    if args.smoke:
        args.scales, args.steps, args.channels, args.blocks = 2, 2, 8, 1
    prepare(args)
    train_loader, test_loader = loaders(args, *cifar10(args, n_smoke=(64, 16)))
    p, model = build(args, glow=glow)
    print(p.prob_joint_factorized_and_text)
    print(f"{sum(t.numel() for t in p.parameters())} parameters")

    def figures(epoch, logs):
        p.eval()
        n = 16 if args.smoke else 64
        save_grid(p.sample(batch_n=n)["x"], os.path.join(args.out, f"samples_epoch{epoch}.png"), shape=SHAPE)
        p.train()
        return {"test/bits_per_dim": logs["test/loss"] / (DIMS * math.log(2))}

    return model.fit(train_loader, args.epochs, test_loader, keys=("x", None), log_dir=args.out,
                     callbacks=[EveryEpoch(figures), EpochPrinter("test/bits_per_dim")],
                     progress=not args.no_progress)


def main(argv=None) -> list[dict[str, float]]:
    """Train; returns the history of per-epoch train/test negative log-likelihoods (nats per image)."""
    return train_image_flow(argv, __doc__, "runs/realnvp_cifar", glow=False)


if __name__ == "__main__":
    main()
