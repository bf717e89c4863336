"""beta-VAE on MNIST (Higgins et al., 2017) with a linear KL warm-up (Bowman et al., 2016; Sonderby et al., 2016).

    loss = mean( - E_q(z|x)[log p(x|z)] + beta * KL[q(z|x) || p(z)] ),   beta = Parameter("beta")

beta is a variable of the formula, fed with each batch: it grows linearly from 0 to ``--beta`` over
``--warmup-epochs`` epochs, so the decoder learns to use z before the KL term weighs on the posterior.
The test loss is the negative ELBO (beta = 1), comparable across epochs and with ``vae.py``; both the
reconstruction and the KL terms are logged. 784-512-512-64 networks, grey levels as Bernoulli targets.

    python examples/beta_vae.py --epochs 10 --beta 4 --warmup-epochs 3 --data-dir ../shared/data/mnist/raw

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import os

import torch
from _common import BernoulliMLP, NormalMLP, fit, loaders, make_parser, mnist, prepare, save_grid
from torch import optim

from pixyz_like.distributions import Normal
from pixyz_like.losses import Expectation as E
from pixyz_like.losses import KullbackLeibler, LogProb, Parameter
from pixyz_like.models import Model

X_DIM, Z_DIM = 784, 64


def build(device: str = "cpu", lr: float = 1e-3):
    """``p(x|z)``, ``q(z|x)``, the prior, the weighted loss, the test loss and the Model."""
    q = NormalMLP("z", ["x"], X_DIM, Z_DIM, name="q")
    p = BernoulliMLP("x", ["z"], Z_DIM, X_DIM, name="p")
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[Z_DIM], name="p_{prior}")
    recon = -E(q, LogProb(p))
    kl = KullbackLeibler(q, prior)
    loss = (recon + Parameter("beta") * kl).mean()
    test_loss = (recon + kl).mean()
    model = Model(loss, test_loss=test_loss, distributions=[p, q], optimizer=optim.Adam,
                  optimizer_params={"lr": lr}, device=device)
    return p, q, prior, loss, model


def beta_schedule(step: int, warmup_steps: int, beta_max: float) -> float:
    """Linear warm-up: ``beta_max * min(1, step / warmup_steps)`` (``beta_max`` at once if no warm-up)."""
    if warmup_steps <= 0:
        return beta_max
    return beta_max * min(1.0, step / warmup_steps)


def main(argv=None) -> dict:
    """Train; returns the history of per-epoch train/test losses and the beta used at each epoch's end."""
    parser = make_parser(__doc__, "runs/beta_vae")
    parser.add_argument("--beta", type=float, default=4.0, help="final weight of the KL term")
    parser.add_argument("--warmup-epochs", type=float, default=3.0, help="epochs of linear warm-up from 0")
    args = parser.parse_args(argv)
    writer = prepare(args)
    train_loader, test_loader = loaders(args, *mnist(args))
    p, q, prior, loss, model = build(args.device, args.lr)
    print("Loss:", loss)
    print(model)
    warmup_steps = int(args.warmup_epochs * len(train_loader))
    z_fixed = torch.randn(64, Z_DIM, device=args.device)
    x_fixed = next(iter(test_loader))[0][:32].to(args.device)
    state = {"step": 0}

    def train_step(b):
        beta = beta_schedule(state["step"], warmup_steps, args.beta)
        state["step"] += 1
        value, terms = model.train({"x": b[0], "beta": torch.tensor(beta)}, return_terms=True)
        return value, {**terms, "beta": torch.tensor(beta)}

    def figures(epoch):
        save_grid(p.sample_mean({"z": z_fixed}), os.path.join(args.out, f"samples_epoch{epoch}.png"))
        z = q.sample({"x": x_fixed}, sample_mean=True)["z"]
        save_grid(torch.cat([x_fixed, p.sample_mean({"z": z})]),
                  os.path.join(args.out, f"reconstruction_epoch{epoch}.png"))
        # latent traversal: vary each of the first 8 coordinates of one code from -2 to 2
        z0 = q.sample({"x": x_fixed[:1]}, sample_mean=True)["z"]
        steps = torch.linspace(-2, 2, 8, device=args.device)
        zs = z0.repeat(64, 1)
        for i in range(8):
            zs[i * 8:(i + 1) * 8, i] = steps
        save_grid(p.sample_mean({"z": zs}), os.path.join(args.out, f"traversal_epoch{epoch}.png"))
        return {"beta": beta_schedule(state["step"], warmup_steps, args.beta)}

    return fit(args, writer, train_loader, test_loader, train_step,
               lambda b: model.test({"x": b[0]}, return_terms=True), figures)


if __name__ == "__main__":
    main()
