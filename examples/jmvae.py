"""Joint multimodal VAE (JMVAE-kl, Suzuki, Nakayama & Matsuo, 2016) of MNIST images x and labels y.

    p(x,y,z) = p(x|z) p(y|z) p(z),  q(z|x,y) the joint encoder, q(z|x) and q(z|y) unimodal encoders
    loss = mean( - E_q(z|x,y)[log p(x|z) + log p(y|z)] + KL[q(z|x,y)||p(z)]
                 + KL[q(z|x,y)||q(z|x)] + KL[q(z|x,y)||q(z|y)] )

The two extra KL terms pull the unimodal encoders towards the joint one, so either modality alone
can infer z: the example draws images from labels, x ~ p(x|z), z ~ q(z|y), and reconstructs images
through q(z|x). 784/10-512-512-64 networks, grey levels as Bernoulli targets (Pixyz's notebook).

    python examples/jmvae.py --epochs 10 --data-dir ../shared/data/mnist/raw

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

from pixyz_like.distributions import Normal
from pixyz_like.losses import Expectation as E
from pixyz_like.losses import KullbackLeibler, LogProb
from pixyz_like.models import EpochPrinter, EveryEpoch, Model

X_DIM, Y_DIM, Z_DIM = 784, 10, 64


def build(device: str = "cpu", lr: float = 1e-3):
    """Encoders, decoders, the loss and the Model; returns ``(dists, loss, model)``."""
    q = NormalMLP("z", ["x", "y"], X_DIM + Y_DIM, Z_DIM, name="q")
    q_x = NormalMLP("z", ["x"], X_DIM, Z_DIM, name="q")
    q_y = NormalMLP("z", ["y"], Y_DIM, Z_DIM, name="q")
    p_x = BernoulliMLP("x", ["z"], Z_DIM, X_DIM, name="p")
    p_y = CategoricalMLP("y", ["z"], Z_DIM, Y_DIM, name="p")
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[Z_DIM], name="p_{prior}")
    p = p_x * p_y
    loss = (-E(q, LogProb(p)) + KullbackLeibler(q, prior) + KullbackLeibler(q, q_x)
            + KullbackLeibler(q, q_y)).mean()
    model = Model(loss, distributions=[q, q_x, q_y, p_x, p_y], optimizer=optim.Adam,
                  optimizer_params={"lr": lr}, device=device)
    dists = {"q": q, "q_x": q_x, "q_y": q_y, "p_x": p_x, "p_y": p_y, "prior": prior}
    return dists, loss, model


def main(argv=None) -> list[dict[str, float]]:
    """Train; returns the history of per-epoch train/test losses."""
    args = make_parser(__doc__, "runs/jmvae").parse_args(argv)
    prepare(args)
    train, test = mnist(args)
    train_loader, test_loader = loaders(args, with_one_hot(train), with_one_hot(test))
    d, loss, model = build(args.device, args.lr)
    print("Loss:", loss)
    print(model)
    y_grid = one_hot(torch.arange(Y_DIM).repeat(8)).to(args.device)
    x_fixed, y_fixed = next(iter(test_loader))
    x_fixed, y_fixed = x_fixed[:32].to(args.device), y_fixed[:32].to(args.device)

    def figures(epoch, logs):
        z = d["q_y"].sample({"y": y_grid})["z"]
        save_grid(d["p_x"].sample_mean({"z": z}), os.path.join(args.out, f"samples_from_labels_epoch{epoch}.png"),
                  nrow=Y_DIM)
        z = d["q_x"].sample({"x": x_fixed}, sample_mean=True)["z"]
        save_grid(torch.cat([x_fixed, d["p_x"].sample_mean({"z": z})]),
                  os.path.join(args.out, f"reconstruction_from_x_epoch{epoch}.png"))
        z = d["q"].sample({"x": x_fixed, "y": y_fixed}, sample_mean=True)["z"]
        save_grid(torch.cat([x_fixed, d["p_x"].sample_mean({"z": z})]),
                  os.path.join(args.out, f"reconstruction_epoch{epoch}.png"))

    return model.fit(train_loader, args.epochs, test_loader, keys=("x", "y"), log_dir=args.out,
                     callbacks=[EveryEpoch(figures), EpochPrinter()], progress=not args.no_progress)


if __name__ == "__main__":
    main()
