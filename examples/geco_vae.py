"""GECO-VAE (Rezende & Viola, "Taming VAEs", 2018) beside a beta-VAE, on MNIST.

    q(z|x) = N(z; mu(x), diag sigma^2(x)),  p(z) = N(0, I),  p(x|z) = Bernoulli(x; sigmoid(f(z)))
    GECO:    minimise KL[q(z|x) || p(z)]  subject to  E[ -E_q(z|x)[log p(x|z)] ] <= kappa
             loss = mean( KL + lambda (-E_q[log p(x|z)] - kappa) ),  lambda <- lambda exp(eta * m),
             m the moving average of the batch's constraint (reconstruction error - kappa);
             lambda is held at 1 (a plain VAE) for the first --warmup-epochs
    beta-VAE: loss = mean( beta KL - E_q[log p(x|z)] )

GECO is given the reconstruction error to reach (``--tolerance``, nats per digit) and finds the
weight that reaches it: the multiplier lambda (about 1 / beta) is printed in the formula and logged
each step. The beta-VAE is given the weight and lands wherever it lands. The warm-up keeps lambda
from integrating the huge early violation (it would overshoot by orders of magnitude). Both train with Model.fit on
the same digits from the same initial networks; the script prints, for each, the reconstruction
error and the KL on the test digits, and writes reconstructions and samples of both as PNG.

    python examples/geco_vae.py --epochs 12 --tolerance 100 --beta 4 --data-dir ../shared/data/mnist/raw

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import copy
import os

import torch
from _common import make_parser, mnist, save_grid
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from pixyz_like.distributions import Bernoulli, Normal
from pixyz_like.losses import GECO, KullbackLeibler, LogProb
from pixyz_like.losses import Expectation as E
from pixyz_like.models import Model


class Inference(Normal):
    def __init__(self, z_dim: int, hidden: int) -> None:
        super().__init__(var=["z"], cond_var=["x"], name="q")
        self.net = nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 2 * z_dim))

    def forward(self, x):
        loc, scale = self.net(x).chunk(2, dim=-1)
        return {"loc": loc, "scale": F.softplus(scale) + 1e-4}


class Generator(Bernoulli):
    def __init__(self, z_dim: int, hidden: int) -> None:
        super().__init__(var=["x"], cond_var=["z"], name="p")
        self.net = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, 784))

    def forward(self, z):
        return {"probs": torch.sigmoid(self.net(z))}


def losses(q, p, prior, args, delay: int = 0):
    """The two objectives over the same kind of networks: GECO's Lagrangian and the beta-VAE's."""
    kl, recon = KullbackLeibler(q, prior), -E(q, LogProb(p))
    geco = GECO(kl, recon, tolerance=args.tolerance, alpha=args.alpha, step_size=args.step_size, delay=delay)
    return geco, (args.beta * kl + recon)


def evaluate(q, p, prior, x: torch.Tensor) -> dict[str, float]:
    """Test reconstruction error and KL (nats per digit), 10 draws of z per digit."""
    with torch.no_grad():
        recon = float((-E(q, LogProb(p), sample_shape=[10])).eval({"x": x}).mean())
        kl = float(KullbackLeibler(q, prior).eval({"x": x}).mean())
    return {"reconstruction": recon, "kl": kl}


def figures(q, p, prior, x: torch.Tensor, out: str, tag: str) -> None:
    with torch.no_grad():
        recon = p.sample_mean({"z": q.sample({"x": x}, sample_mean=True)["z"]})
        samples = p.sample_mean({"z": prior.sample(batch_n=len(x))["z"]})
    save_grid(torch.cat([x, recon]), os.path.join(out, f"{tag}_reconstructions.png"), nrow=len(x))
    save_grid(samples, os.path.join(out, f"{tag}_samples.png"), nrow=max(1, int(len(x) ** 0.5)))


def _ne_elbo(logs: dict[str, float], split: str) -> float:
    """KL + reconstruction error from the logged terms of an epoch: the negative ELBO."""
    kl = next(v for k, v in logs.items() if k.startswith(f"{split}/KL"))
    rec = next(v for k, v in logs.items() if k.startswith(f"{split}/E_"))
    return kl - rec


def main(argv=None) -> dict:
    """Train both; returns the GECO model's per-epoch negative ELBO (train/test) and both models' figures."""
    parser = make_parser(__doc__, "runs/geco_vae", epochs=12, batch_size=128)
    parser.add_argument("--z-dim", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--tolerance", type=float, default=100.0, help="GECO's target reconstruction error (nats)")
    parser.add_argument("--step-size", type=float, default=1e-3, help="GECO's multiplier step size")
    parser.add_argument("--alpha", type=float, default=0.9, help="decay of the constraint's moving average")
    parser.add_argument("--warmup-epochs", type=int, default=2, help="epochs with the multiplier held at 1")
    parser.add_argument("--beta", type=float, default=4.0, help="the beta-VAE's KL weight")
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.z_dim, args.hidden, args.tolerance, args.warmup_epochs = 3, 4, 32, 450.0, 1
        args.batch_size = min(args.batch_size, 32)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    train, test = mnist(args)
    x_test = test.tensors[0].to(args.device)
    q, p = Inference(args.z_dim, args.hidden), Generator(args.z_dim, args.hidden)
    q_beta, p_beta = copy.deepcopy(q), copy.deepcopy(p)  # the same initial networks for both
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[args.z_dim], name="p_{prior}")
    steps_per_epoch = -(-len(train) // args.batch_size)
    geco, _ = losses(q, p, prior, args, delay=args.warmup_epochs * steps_per_epoch)
    _, beta_vae = losses(q_beta, p_beta, prior, args)
    results = {}
    for tag, loss, (enc, dec) in (("geco", geco.mean(), (q, p)), ("beta", beta_vae.mean(), (q_beta, p_beta))):
        print(f"{tag}: {loss}")
        model = Model(loss, distributions=[dec, enc], optimizer_params={"lr": args.lr}, device=args.device)
        g = torch.Generator().manual_seed(args.seed)
        loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, generator=g)
        logs = model.fit(loader, args.epochs, DataLoader(test, batch_size=512), keys=("x", None),
                         log_dir=os.path.join(args.out, tag), progress=not args.no_progress)
        results[tag] = (logs, evaluate(enc, dec, prior, x_test))
        figures(enc, dec, prior, x_test[:8], args.out, tag)
    (geco_logs, g_eval), (_, b_eval) = results["geco"], results["beta"]
    for i, e in enumerate(geco_logs, 1):
        print(f"GECO epoch {i}: lambda {e['train/lambda']:.3f}, negative ELBO {_ne_elbo(e, 'train'):.2f}")
    print(f"target reconstruction error {args.tolerance:.1f} nats")
    print(f"GECO:          reconstruction {g_eval['reconstruction']:.2f}, KL {g_eval['kl']:.2f}, "
          f"final lambda {float(geco.multiplier):.3f}")
    print(f"beta-VAE (beta={args.beta:g}): reconstruction {b_eval['reconstruction']:.2f}, KL {b_eval['kl']:.2f}")
    return {"train": [_ne_elbo(e, "train") for e in geco_logs], "test": [_ne_elbo(e, "test") for e in geco_logs],
            "geco": g_eval, "beta": b_eval}


if __name__ == "__main__":
    main()
