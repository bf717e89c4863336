"""A normalising flow of planar layers (Rezende & Mohamed, 2015) fitted to an unnormalised 2-D density.

    q(x) = N(z; 0, I) pushed through f = f_K o ... o f_1,  f_k(z) = z + u_k tanh(w_k^T z + b_k)
    log q(x) = log N(z; 0, I) - sum_k log |1 + u_k^T psi_k(z_k)|
    loss = E_q(x)[ log q(x) - log p~(x) ] = KL[q || p] - log Z     (p~ = Z p, known up to Z)

The target p~ is given by its log-density (a ``CustomProb``): the banana of Pixyz's notebook or the
ring ("U1") of the paper. The expectation uses samples of q with the log-density computed while
sampling (the flow is never inverted). Each epoch is ``--steps`` optimiser steps on ``--batch-size``
samples. Figures: the target density and the flow's samples over it.

    python examples/planar_flow.py --epochs 10 --target ring

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import os

import torch
from _common import make_parser, plot_density_2d, prepare
from torch import optim

from pixyz_like.distributions import CustomProb, Normal, TransformedDistribution
from pixyz_like.flows import FlowList, PlanarFlow
from pixyz_like.losses import Expectation, LogProb
from pixyz_like.models import EpochPrinter, EveryEpoch, Model


def banana(x):
    """log p~ of Pixyz's banana: x1 ~ N(0, 1), x2 | x1 ~ N(x1^2 - 2, 1) (shifted to sit in the plot)."""
    x1, x2 = x[..., 0], x[..., 1]
    return -0.5 * x1**2 - 0.5 * (x2 - x1**2 + 2.0) ** 2


def ring(x):
    """log p~ = -U1(x) of Rezende & Mohamed (2015), a ring split in two."""
    r = x.norm(dim=-1)
    u = 0.5 * ((r - 2.0) / 0.4) ** 2 - torch.log(
        torch.exp(-0.5 * ((x[..., 0] - 2.0) / 0.6) ** 2) + torch.exp(-0.5 * ((x[..., 0] + 2.0) / 0.6) ** 2))
    return -u


TARGETS = {"banana": banana, "ring": ring}


def build(target: str, n_layers: int, n_samples: int, device: str = "cpu", lr: float = 1e-3):
    """The target, the flow distribution q(x), the loss and the Model."""
    log_p = TARGETS[target]
    p = CustomProb(lambda x: log_p(x), var=["x"])
    prior = Normal(loc=torch.zeros(2), scale=torch.ones(2), var=["z"], name="p_{0}")
    flow = FlowList([PlanarFlow(2, constraint_u=True) for _ in range(n_layers)])
    q = TransformedDistribution(prior, flow, var=["x"], name="q")
    loss = Expectation(q, LogProb(q) - LogProb(p), sample_shape=[n_samples]).mean()
    model = Model(loss, distributions=[q], optimizer=optim.Adam, optimizer_params={"lr": lr}, device=device)
    return p, q, loss, model


def main(argv=None) -> list[dict[str, float]]:
    """Train; returns the history of per-epoch losses (KL[q||p] - log Z)."""
    parser = make_parser(__doc__, "runs/planar_flow", epochs=10, batch_size=256, lr=1e-2)
    parser.add_argument("--target", choices=sorted(TARGETS), default="banana")
    parser.add_argument("--layers", type=int, default=32, help="number of planar layers")
    parser.add_argument("--steps", type=int, default=200, help="optimiser steps per epoch")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.layers = 15, 8
    batch_size = args.batch_size
    prepare(args)
    p, q, loss, model = build(args.target, args.layers, batch_size, args.device, args.lr)
    print(q.prob_joint_factorized_and_text)
    print("Loss:", loss)
    plot_density_2d(os.path.join(args.out, "target.png"), lambda x: TARGETS[args.target](x), title=args.target)
    # The loss takes no data (it draws its own samples): an epoch is args.steps steps on empty inputs.
    steps = [{}] * args.steps

    def figures(epoch, logs):
        samples = q.sample(batch_n=2000)["x"]
        plot_density_2d(os.path.join(args.out, f"samples_epoch{epoch}.png"), lambda x: TARGETS[args.target](x),
                        samples=samples, title=f"q(x), epoch {epoch}")

    return model.fit(steps, args.epochs, log_dir=args.out, callbacks=[EveryEpoch(figures), EpochPrinter()],
                     progress=not args.no_progress)


if __name__ == "__main__":
    main()
