"""RealNVP (Dinh, Sohl-Dickstein & Bengio, 2017) on MNIST digits as 784-vectors.

    x = f^{-1}(z), z ~ N(0, I);   log p(x) = log N(f(x); 0, I) + log |det df(x)/dx|
    f = couplings o logit-dequantisation;  coupling: z_b = x_b,  z_(1-b) = x_(1-b) exp(s(x_b)) + t(x_b)
    loss = - mean( log p(x) )   (maximum likelihood, the ``ML`` model)

Pixels are dequantised (uniform noise) and mapped to the real line by a logit before the couplings,
whose masks alternate between the even and the odd pixels; s and t are MLPs (s bounded by tanh). The
loss is in nats per image of the logit-space density including the preprocessing's Jacobian; it is
also logged in bits per dimension. Figures: samples of the model.

    python examples/realnvp_mnist.py --epochs 10 --data-dir ../shared/data/mnist/raw

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import math
import os

import torch
from _common import ScaleTranslate, loaders, make_parser, mnist, prepare, save_grid
from torch import optim

from pixyz_like.distributions import InverseTransformedDistribution, Normal
from pixyz_like.flows import AffineCoupling, FlowList, Preprocess
from pixyz_like.models import ML, EpochPrinter, EveryEpoch

X_DIM = 784


def vector_flow(n_layers: int, hidden: int, cond_features: int = 0) -> FlowList:
    """Logit-dequantisation then ``n_layers`` couplings with alternating checkerboard masks."""
    return FlowList([Preprocess()] + [
        AffineCoupling(X_DIM, mask_type="checkerboard", inverse_mask=i % 2 == 1,
                       scale_translate_net=ScaleTranslate(X_DIM, hidden, cond_features))
        for i in range(n_layers)])


def build(n_layers: int = 6, hidden: int = 512, device: str = "cpu", lr: float = 1e-3):
    """The flow density p(x) and the ML model."""
    prior = Normal(loc=torch.zeros(X_DIM), scale=torch.ones(X_DIM), var=["z"], name="p_{0}")
    p = InverseTransformedDistribution(prior, vector_flow(n_layers, hidden), var=["x"], name="p")
    model = ML(p, optimizer=optim.Adam, optimizer_params={"lr": lr}, device=device)
    return p, model


def main(argv=None) -> list[dict[str, float]]:
    """Train; returns the history of per-epoch train/test negative log-likelihoods (nats per image)."""
    parser = make_parser(__doc__, "runs/realnvp_mnist")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=512)
    args = parser.parse_args(argv)
    if args.smoke:
        args.layers, args.hidden = 2, 32
    prepare(args)
    train_loader, test_loader = loaders(args, *mnist(args, n_smoke=(128, 32)))
    p, model = build(args.layers, args.hidden, args.device, args.lr)
    print(p.prob_joint_factorized_and_text)
    print(model)

    def figures(epoch, logs):
        save_grid(p.sample(batch_n=64)["x"], os.path.join(args.out, f"samples_epoch{epoch}.png"))
        return {"test/bits_per_dim": logs["test/loss"] / (X_DIM * math.log(2))}

    return model.fit(train_loader, args.epochs, test_loader, keys=("x", None), log_dir=args.out,
                     callbacks=[EveryEpoch(figures), EpochPrinter("test/bits_per_dim")],
                     progress=not args.no_progress)


if __name__ == "__main__":
    main()
