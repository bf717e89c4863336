"""VAE with a VampPrior (Tomczak & Welling, 2018) on MNIST.

    p(z) = (1/K) sum_k q(z|u_k),  u_1..u_K learned pseudo-inputs (K = 500, squashed to [0, 1])
    loss = mean( - E_q(z|x)[log p(x|z)] + E_q(z|x)[log q(z|x) - log p(z)] )

The prior is the encoder's aggregate posterior at the pseudo-inputs, so it is learned together with
the encoder and the decoder; the KL has no closed form and is estimated by Monte Carlo. After
training log p(x) is estimated by importance sampling (``--eval-k`` samples, ``--eval-n`` test
digits). Images are dynamically binarised, as in the paper; 784-512-512-64 networks.

    python examples/vampprior.py --epochs 10 --data-dir ../shared/data/mnist/raw

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import os

import torch
from _common import BernoulliMLP, NormalMLP, binarize, loaders, make_parser, mnist, prepare, save_grid
from torch import nn, optim

from pixyz_like.distributions import VampPrior
from pixyz_like.losses import KullbackLeibler, log_marginal
from pixyz_like.models import VAE, EpochPrinter, EveryEpoch

X_DIM, Z_DIM = 784, 64


def build(n_components: int, device: str = "cpu", lr: float = 1e-3):
    """``p(x|z)``, ``q(z|x)``, the VampPrior and the VAE model."""
    q = NormalMLP("z", ["x"], X_DIM, Z_DIM, name="q")
    p = BernoulliMLP("x", ["z"], Z_DIM, X_DIM, name="p")
    prior = VampPrior(q, n_components=n_components, input_shape=[X_DIM], activation=nn.Hardtanh(0.0, 1.0),
                      name="p_{prior}")
    model = VAE(q, p, other_distributions=[prior], regularizer=KullbackLeibler(q, prior, analytical=False),
                optimizer=optim.Adam, optimizer_params={"lr": lr}, device=device)
    return p, q, prior, model


def main(argv=None) -> list[dict[str, float]]:
    """Train; returns the history of per-epoch train/test losses and the final log p(x) estimate."""
    parser = make_parser(__doc__, "runs/vampprior")
    parser.add_argument("--components", type=int, default=500, help="number of pseudo-inputs K")
    parser.add_argument("--eval-k", type=int, default=5000, help="importance samples for log p(x)")
    parser.add_argument("--eval-n", type=int, default=2000, help="test digits for log p(x)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.components, args.eval_k, args.eval_n = 20, min(args.eval_k, 20), min(args.eval_n, 16)
    prepare(args)
    train, test = mnist(args)
    # dynamic binarisation: a fresh draw of every training and test batch
    train_loader, test_loader = loaders(args, train, test, transform=binarize, test_transform=binarize)
    p, q, prior, model = build(args.components, args.device, args.lr)
    print(prior.prob_joint_factorized_and_text)
    print(model)

    def figures(epoch, logs):
        save_grid(p.sample_mean({"z": prior.sample(batch_n=64)["z"]}),
                  os.path.join(args.out, f"samples_epoch{epoch}.png"))
        save_grid(prior.activation(prior.pseudo_inputs[:64]), os.path.join(args.out, f"pseudo_inputs_epoch{epoch}.png"))

    history = model.fit(train_loader, args.epochs, test_loader, keys=("x", None), log_dir=args.out,
                        callbacks=[EveryEpoch(figures), EpochPrinter()], progress=not args.no_progress)
    x_eval = binarize(test.tensors[0][: args.eval_n]).to(args.device)
    with torch.no_grad():
        history[-1]["test/log_px"] = log_marginal(p * prior, q, {"x": x_eval}, k=args.eval_k).mean().item()
    print(f"log p(x) ~ {history[-1]['test/log_px']:.2f} nats (importance sampling, K={args.eval_k}, "
          f"{len(x_eval)} digits)")
    return history


if __name__ == "__main__":
    main()
