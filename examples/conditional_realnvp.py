"""Conditional RealNVP on MNIST: a flow density of the digit image x given its label y.

    x = f^{-1}(z; y), z ~ N(0, I);   log p(x|y) = log N(f(x; y); 0, I) + log |det df(x; y)/dx|
    coupling:  z_b = x_b,  z_(1-b) = x_(1-b) exp(s(x_b, y)) + t(x_b, y)
    loss = - mean( log p(x|y) )

The one-hot label is passed to every coupling network (``InverseTransformedDistribution(...,
cond_var=["y"])``), so one flow models ten class-conditional densities. Figures: samples of each
class (one column per digit); the test log-likelihood of each image under every label gives a
generative classifier, whose accuracy is logged.

    python examples/conditional_realnvp.py --epochs 10 --data-dir ../shared/data/mnist/raw

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import os

import torch
from _common import loaders, make_parser, mnist, one_hot, prepare, save_grid, with_one_hot
from realnvp_mnist import X_DIM, vector_flow
from torch import optim

from pixyz_like.distributions import InverseTransformedDistribution, Normal
from pixyz_like.models import ML, EpochPrinter, EveryEpoch

Y_DIM = 10


def build(n_layers: int = 6, hidden: int = 512, device: str = "cpu", lr: float = 1e-3):
    """The conditional flow density p(x|y) and the ML model."""
    prior = Normal(loc=torch.zeros(X_DIM), scale=torch.ones(X_DIM), var=["z"], name="p_{0}")
    p = InverseTransformedDistribution(prior, vector_flow(n_layers, hidden, cond_features=Y_DIM), var=["x"],
                                       cond_var=["y"], name="p")
    model = ML(p, optimizer=optim.Adam, optimizer_params={"lr": lr}, device=device)
    return p, model


def main(argv=None) -> list[dict[str, float]]:
    """Train; returns the history of per-epoch train/test negative log-likelihoods and accuracy."""
    parser = make_parser(__doc__, "runs/conditional_realnvp")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=512)
    args = parser.parse_args(argv)
    if args.smoke:
        args.layers, args.hidden = 2, 32
    prepare(args)
    train, test = mnist(args, n_smoke=(128, 32))
    train_loader, test_loader = loaders(args, with_one_hot(train), with_one_hot(test))
    p, model = build(args.layers, args.hidden, args.device, args.lr)
    print(p.prob_joint_factorized_and_text)
    print(model)
    y_grid = one_hot(torch.arange(Y_DIM).repeat(8)).to(args.device)

    def figures(epoch, logs):
        save_grid(p.sample({"y": y_grid})["x"], os.path.join(args.out, f"samples_epoch{epoch}.png"), nrow=Y_DIM)
        correct = n = 0
        for x, y in test_loader:  # Bayes' rule with a uniform p(y): argmax_y log p(x|y)
            x = x.to(args.device)
            scores = torch.stack([p.get_log_prob({"x": x, "y": one_hot(torch.full((len(x),), k)).to(args.device)})
                                  for k in range(Y_DIM)], -1)
            correct += int((scores.argmax(-1).cpu() == y.argmax(-1)).sum())
            n += len(y)
        return {"test/accuracy": correct / n}

    return model.fit(train_loader, args.epochs, test_loader, keys=("x", "y"), log_dir=args.out,
                     callbacks=[EveryEpoch(figures), EpochPrinter("test/accuracy")], progress=not args.no_progress)


if __name__ == "__main__":
    main()
