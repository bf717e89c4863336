"""Importance-weighted autoencoders (Burda, Grosse & Salakhutdinov, 2016) on MNIST, k = 5 and 50.

    loss_k = - mean( log (1/k) sum_i p(x, z_i) / q(z_i|x) ),   z_1..z_k ~ q(z|x)

The bound tightens as k grows (k = 1 is the VAE's ELBO); the log-sum-exp is taken per data point.
One model is trained per value of ``--k``; after training each is evaluated by importance sampling,
log p(x) ~ log (1/K) sum_i p(x, z_i)/q(z_i|x) with K = ``--eval-k`` (5000 in the paper), on
``--eval-n`` test digits. Images are dynamically binarised (a Bernoulli draw of the grey levels at
each use), as in the paper; 784-512-512-64 networks.

    python examples/iwae.py --epochs 10 --k 5 50 --data-dir ../shared/data/mnist/raw

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import os

import torch
from _common import BernoulliMLP, NormalMLP, binarize, loaders, make_parser, mnist, prepare, save_grid
from torch import optim

from pixyz_like.distributions import Normal
from pixyz_like.losses import IWAE, log_marginal
from pixyz_like.models import EpochPrinter, EveryEpoch, Model

X_DIM, Z_DIM = 784, 64


def build(k: int, device: str = "cpu", lr: float = 1e-3):
    """``p(x,z)``, ``q(z|x)``, the IWAE loss with ``k`` samples and the Model."""
    q = NormalMLP("z", ["x"], X_DIM, Z_DIM, name="q")
    p = BernoulliMLP("x", ["z"], Z_DIM, X_DIM, name="p")
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[Z_DIM], name="p_{prior}")
    p_joint = p * prior
    loss = -IWAE(p_joint, q, k=k).mean()
    model = Model(loss, distributions=[p, q], optimizer=optim.Adam, optimizer_params={"lr": lr}, device=device)
    return p, q, p_joint, loss, model


def main(argv=None) -> list[dict[str, float]]:
    """Train one model per k with Model.fit; returns the first one's history, whose last epoch also holds
    each model's ``k<k>/...`` last-epoch values and ``k<k>/test/log_px``."""
    parser = make_parser(__doc__, "runs/iwae")
    parser.add_argument("--k", type=int, nargs="+", default=[5, 50], help="importance samples for training")
    parser.add_argument("--eval-k", type=int, default=5000, help="importance samples for log p(x)")
    parser.add_argument("--eval-n", type=int, default=2000, help="test digits for log p(x)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.eval_k, args.eval_n = min(args.eval_k, 20), min(args.eval_n, 16)
    out_root = args.out
    train, test = mnist(args)
    results, history = {}, None
    for k in args.k:
        args.out = os.path.join(out_root, f"k{k}")
        prepare(args)
        # dynamic binarisation: a fresh draw of every training and test batch
        train_loader, test_loader = loaders(args, train, test, transform=binarize, test_transform=binarize)
        p, q, p_joint, loss, model = build(k, args.device, args.lr)
        print("Loss:", loss)
        z_fixed = torch.randn(64, Z_DIM, device=args.device)

        def figures(epoch, logs, p=p, z_fixed=z_fixed, k=k):
            save_grid(p.sample_mean({"z": z_fixed}), os.path.join(out_root, f"samples_k{k}_epoch{epoch}.png"))

        h = model.fit(train_loader, args.epochs, test_loader, keys=("x", None), log_dir=args.out,
                      callbacks=[EveryEpoch(figures), EpochPrinter()], progress=not args.no_progress)
        x_eval = binarize(test.tensors[0][: args.eval_n]).to(args.device)
        with torch.no_grad():
            log_px = log_marginal(p_joint, q, {"x": x_eval}, k=args.eval_k).mean().item()
        print(f"k={k}: log p(x) ~ {log_px:.2f} nats (importance sampling, K={args.eval_k}, {len(x_eval)} digits)")
        results[k] = log_px
        history = history or h
        history[-1].update({f"k{k}/{key}": v for key, v in h[-1].items()})
        history[-1][f"k{k}/test/log_px"] = log_px
    print("log p(x) per k:", {k: round(v, 2) for k, v in results.items()})
    return history


if __name__ == "__main__":
    main()
