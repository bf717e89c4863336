"""Multimodal VAE (MVAE, Wu & Goodman, 2018) on MNIST images x and labels y.

Every posterior is a product of experts with the prior, so one set of unimodal encoders covers any
subset of modalities:

    q(z|x,y) ~ p(z) q(z|x) q(z|y),   q(z|x) ~ p(z) q(z|x),   q(z|y) ~ p(z) q(z|y)
    loss = mean( ELBO-loss(x,y) + ELBO-loss(x) + ELBO-loss(y) )
    ELBO-loss(x,y) = - E_q(z|x,y)[log p(x|z) + log p(y|z)] + KL[q(z|x,y) || p(z)]   (and likewise)

Training on the joint and on each modality alone (the paper's sub-sampled objective) teaches the
experts to work both together and apart. 784/10-512-512-64 networks, grey levels as Bernoulli
targets (Pixyz's MVAE notebook).

    python examples/mvae.py --epochs 10 --data-dir ../shared/data/mnist/raw

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import os

import torch
from _common import (
    BernoulliMLP,
    CategoricalMLP,
    NormalMLP,
    loaders,
    make_parser,
    mnist,
    one_hot,
    prepare,
    save_grid,
    with_one_hot,
)
from torch import optim

from pixyz_like.distributions import Normal, ProductOfNormal
from pixyz_like.losses import Expectation as E
from pixyz_like.losses import KullbackLeibler, LogProb
from pixyz_like.models import EpochPrinter, EveryEpoch, Model

X_DIM, Y_DIM, Z_DIM = 784, 10, 64


def build(device: str = "cpu", lr: float = 1e-3):
    """The experts, the three PoE posteriors, the decoders, the loss and the Model."""
    e_x = NormalMLP("z", ["x"], X_DIM, Z_DIM, name="q")
    e_y = NormalMLP("z", ["y"], Y_DIM, Z_DIM, name="q")
    q = ProductOfNormal([e_x, e_y], name="q")
    q_x = ProductOfNormal([e_x], name="q")
    q_y = ProductOfNormal([e_y], name="q")
    p_x = BernoulliMLP("x", ["z"], Z_DIM, X_DIM, name="p")
    p_y = CategoricalMLP("y", ["z"], Z_DIM, Y_DIM, name="p")
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[Z_DIM], name="p_{prior}")

    def elbo_loss(q, p):
        return -E(q, LogProb(p)) + KullbackLeibler(q, prior)

    loss = (elbo_loss(q, p_x * p_y) + elbo_loss(q_x, p_x) + elbo_loss(q_y, p_y)).mean()
    model = Model(loss, distributions=[e_x, e_y, p_x, p_y], optimizer=optim.Adam, optimizer_params={"lr": lr},
                  device=device)
    return {"q": q, "q_x": q_x, "q_y": q_y, "p_x": p_x, "p_y": p_y, "prior": prior}, loss, model


def main(argv=None) -> list[dict[str, float]]:
    """Train; returns the history of per-epoch train/test losses and the accuracy of p(y|z), z ~ q(z|x)."""
    args = make_parser(__doc__, "runs/mvae").parse_args(argv)
    prepare(args)
    train, test = mnist(args)
    train_loader, test_loader = loaders(args, with_one_hot(train), with_one_hot(test))
    d, loss, model = build(args.device, args.lr)
    print("Loss:", loss)
    print(model)
    y_grid = one_hot(torch.arange(Y_DIM).repeat(8)).to(args.device)
    x_fixed = next(iter(test_loader))[0][:32].to(args.device)

    def figures(epoch, logs):
        z = d["q_y"].sample({"y": y_grid})["z"]
        save_grid(d["p_x"].sample_mean({"z": z}), os.path.join(args.out, f"samples_from_labels_epoch{epoch}.png"),
                  nrow=Y_DIM)
        z = d["q_x"].sample({"x": x_fixed}, sample_mean=True)["z"]
        save_grid(torch.cat([x_fixed, d["p_x"].sample_mean({"z": z})]),
                  os.path.join(args.out, f"reconstruction_from_x_epoch{epoch}.png"))
        correct = n = 0  # cross-modal inference: the label predicted from the image alone
        for x, y in test_loader:
            z = d["q_x"].sample({"x": x.to(args.device)}, sample_mean=True)["z"]
            correct += int((d["p_y"].get_params({"z": z})["probs"].argmax(-1).cpu() == y.argmax(-1)).sum())
            n += len(y)
        return {"test/accuracy_y_from_x": correct / n}

    return model.fit(train_loader, args.epochs, test_loader, keys=("x", "y"), log_dir=args.out,
                     callbacks=[EveryEpoch(figures), EpochPrinter("test/accuracy_y_from_x")],
                     progress=not args.no_progress)


if __name__ == "__main__":
    main()
