"""VAE with an amortised Householder-Sylvester flow posterior (van den Berg, Hasenclever, Tomczak & Welling, 2018).

    h = e(x)                                      (the encoder's last hidden layer, 512 units)
    q(z|x): z_0 ~ N(mu(h), diag sigma^2(h)),  z = f_K o ... o f_1 (z_0),
            f_k(z) = z + Q_k R_k tanh(R~_k Q_k^T z + b_k)   (Q_k a product of Householder reflections)
            (Householder vectors of Q_k, R_k, R~_k, b_k) = linear maps of h   (one set per x)
    log q(z|x) = log N(z_0; mu, sigma) - sum_k log |det df_k/dz|
    loss = - mean( E_q(z|x)[ log p(x|z) + log p(z) - log q(z|x) ] )       (the ``VI`` model)

As in the paper, one encoder trunk feeds both the base Gaussian's loc/scale and every flow's
parameters (``SylvesterFlow(cond_features=512)``: a linear head from ``h``). The posterior is a
``TransformedDistribution`` conditioned on ``x`` through ``flow_cond_var``: a sample and its
log-density come from one forward pass (the flow is never inverted). After training log p(x) is
estimated by importance sampling with the flow posterior as proposal; its K draws per digit each
recompute the digit's flow parameters, so ``--eval-k`` costs K encoder-head passes per digit. Images are
dynamically binarised; 784-512-512-64 networks.

    python examples/sylvester_vae.py --epochs 10 --flows 4 --data-dir ../shared/data/mnist/raw

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import os

import torch
from _common import BernoulliMLP, NormalMLP, binarize, loaders, make_parser, mnist, prepare, save_grid
from torch import nn, optim

from pixyz_like.distributions import Normal, TransformedDistribution
from pixyz_like.flows import Flow, FlowList, SylvesterFlow
from pixyz_like.losses import log_marginal
from pixyz_like.models import VI, EpochPrinter, EveryEpoch

X_DIM, Z_DIM, HIDDEN = 784, 64, 512


class EncoderConditioned(Flow):
    """Runs ``flows`` with the encoder's features ``h = trunk(y)`` as their condition.

    The trunk is the base Gaussian's own (the same module), so one network of ``x`` produces the
    Gaussian's loc/scale and, through each flow's linear ``cond_net``, every flow's parameters. ``h``
    is computed once per call for all the layers (``q_0`` computes it once more for itself, a small
    cost next to the flows' 512 -> ~2 d^2 heads).
    """

    vector_only = True

    def __init__(self, trunk: nn.Module, flows: FlowList) -> None:
        super().__init__(flows.in_features)
        self.trunk, self.flows = trunk, flows

    def transform(self, x, y=None, compute_jacobian=True):
        return self.flows.transform(x, self.trunk(y), compute_jacobian)

    def inverse_transform(self, z, y=None, compute_jacobian=True):
        return self.flows.inverse_transform(z, self.trunk(y), compute_jacobian)


def build(n_flows: int, n_householder: int, device: str = "cpu", lr: float = 1e-3):
    """``p(x|z)``, the amortised flow posterior ``q(z|x)``, the prior and the VI model."""
    q0 = NormalMLP("z0", ["x"], X_DIM, Z_DIM, hidden=(HIDDEN, HIDDEN), name="q_{0}")
    layers = [SylvesterFlow(Z_DIM, num_householder=n_householder, cond_features=HIDDEN) for _ in range(n_flows)]
    flow = EncoderConditioned(q0.trunk, FlowList(layers))
    q = TransformedDistribution(q0, flow, var=["z"], flow_cond_var=["x"], name="q")
    p = BernoulliMLP("x", ["z"], Z_DIM, X_DIM, name="p")
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[Z_DIM], name="p_{prior}")
    model = VI(p * prior, q, optimizer=optim.Adam, optimizer_params={"lr": lr}, device=device)
    return p, q, prior, model


def main(argv=None) -> list[dict[str, float]]:
    """Train; returns the history of per-epoch train/test losses and the final log p(x) estimate."""
    parser = make_parser(__doc__, "runs/sylvester_vae")
    parser.add_argument("--flows", type=int, default=4, help="number of Sylvester layers")
    parser.add_argument("--householder", type=int, default=8, help="Householder reflections per layer")
    parser.add_argument("--eval-k", type=int, default=1000, help="importance samples for log p(x)")
    parser.add_argument("--eval-n", type=int, default=2000, help="test digits for log p(x)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.flows, args.householder, args.eval_k, args.eval_n = 2, 2, 10, 16
    prepare(args)
    train, test = mnist(args)
    # dynamic binarisation: a fresh draw of every training and test batch
    train_loader, test_loader = loaders(args, train, test, transform=binarize, test_transform=binarize)
    p, q, prior, model = build(args.flows, args.householder, args.device, args.lr)
    print(q.prob_joint_factorized_and_text)
    print(model)
    z_fixed = torch.randn(64, Z_DIM, device=args.device)
    x_fixed = next(iter(test_loader))[0][:32].to(args.device)

    def figures(epoch, logs):
        save_grid(p.sample_mean({"z": z_fixed}), os.path.join(args.out, f"samples_epoch{epoch}.png"))
        z = q.sample({"x": x_fixed})["z"]
        save_grid(torch.cat([x_fixed, p.sample_mean({"z": z})]),
                  os.path.join(args.out, f"reconstruction_epoch{epoch}.png"))

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
