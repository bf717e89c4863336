"""A Gaussian mixture fitted by expectation-maximisation (Dempster, Laird & Rubin, 1977) on 2-D toy data.

The model is written as a joint of a class variable y (one-hot, K classes) and a point x:

    p(x,y) = p(x|y) p(y),   p(y) = Categorical(pi),   p(x|y=e_k) = N(x; mu_k, diag sigma_k^2)

E-step: the responsibilities r_nk = p(y=e_k|x_n) = p(x_n, y=e_k) / sum_j p(x_n, y=e_j), from the
joint's log-density of each class. M-step: the closed-form maximisers
pi_k = mean_n r_nk,  mu_k = sum_n r_nk x_n / sum_n r_nk,  sigma_k^2 = sum_n r_nk (x_n - mu_k)^2 / sum_n r_nk.
Each epoch is one EM iteration on the whole data set; the loss is the negative log-likelihood per
point, -mean_n log sum_k p(x_n, y=e_k), which EM never increases. Figures: the fitted density with the
data, and samples drawn from the joint.

    python examples/gmm.py --epochs 50

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import os

import torch
from _common import make_parser, plot_density_2d, prepare
from torch import nn

from pixyz_like.distributions import Categorical, Normal
from pixyz_like.losses import Loss
from pixyz_like.models import EpochPrinter, EveryEpoch, Model

K = 4


class ComponentNormal(Normal):
    """p(x|y): the Gaussian component selected by the one-hot y (diagonal covariance)."""

    def __init__(self, k: int, dim: int = 2) -> None:
        super().__init__(var=["x"], cond_var=["y"], name="p")
        self.locs = nn.Parameter(torch.randn(k, dim), requires_grad=False)  # fitted by EM, not gradients
        self.scales = nn.Parameter(torch.ones(k, dim), requires_grad=False)

    def forward(self, y):
        return {"loc": y @ self.locs, "scale": y @ self.scales}


def toy_data(n: int, seed: int) -> torch.Tensor:
    """``n`` points from a fixed mixture of four elongated Gaussians."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[-2.0, -2.0], [2.0, -1.5], [-1.5, 2.0], [2.0, 2.0]])
    scales = torch.tensor([[0.6, 0.3], [0.3, 0.7], [0.5, 0.5], [0.8, 0.3]])
    comp = torch.randint(0, 4, (n,), generator=g)
    return centres[comp] + scales[comp] * torch.randn(n, 2, generator=g)


def log_joint_per_class(p_joint, x: torch.Tensor) -> torch.Tensor:
    """``log p(x_n, y=e_k)`` for every point and class, shape ``(n, K)``."""
    eye = torch.eye(K, device=x.device)
    return torch.stack([p_joint.get_log_prob({"x": x, "y": eye[k].expand(len(x), K)}) for k in range(K)], -1)


class NegLogMarginal(Loss):
    r"""The exact negative log-likelihood of a point, :math:`-\log \sum_y p(x, y)`, one value per point."""

    def __init__(self, p_joint) -> None:
        super().__init__(["x"])
        self.p_joint = p_joint

    def _latex(self) -> str:
        return f"- \\log \\sum_{{y}} {self.p_joint.prob_text}"

    def _eval(self, x_dict, ctx):
        return -torch.logsumexp(log_joint_per_class(self.p_joint, x_dict["x"]), -1), {}


def em_step(p_x, p_y, p_joint, x: torch.Tensor) -> float:
    """One EM iteration in place; returns the negative log-likelihood per point before the update."""
    log_joint = log_joint_per_class(p_joint, x)
    log_lik = torch.logsumexp(log_joint, -1)
    r = (log_joint - log_lik.unsqueeze(-1)).exp()  # E-step: responsibilities (n, K)
    nk = r.sum(0) + 1e-8
    locs = (r.T @ x) / nk.unsqueeze(-1)  # M-step
    var = (r.T @ x**2) / nk.unsqueeze(-1) - locs**2
    p_x.locs.copy_(locs)
    p_x.scales.copy_(var.clamp_min(1e-4).sqrt())
    p_y.probs.copy_((nk / nk.sum()).unsqueeze(0))
    return float(-log_lik.mean())


class EMMixture(Model):
    """The mixture as a Model whose step is one EM iteration (closed-form updates, no gradients):
    ``Model.fit`` trains any model whose class defines its own ``train``. The test loss is the
    negative log-likelihood per point."""

    def __init__(self, p_x: ComponentNormal, p_y: Categorical) -> None:
        self.p_x, self.p_y, self.p_joint = p_x, p_y, p_x * p_y
        super().__init__(NegLogMarginal(self.p_joint).named("nll").mean(), distributions=[p_x, p_y])

    def train(self, train_x_dict=None, **options):
        x = self._to_device(train_x_dict, "EMMixture.train()")["x"]
        with torch.no_grad():
            return torch.tensor(em_step(self.p_x, self.p_y, self.p_joint, x))


def main(argv=None) -> list[dict[str, float]]:
    """Fit by EM with Model.fit; returns the history of per-iteration train/test negative log-likelihoods."""
    args = make_parser(__doc__, "runs/gmm", epochs=50, batch_size=2000).parse_args(argv)
    prepare(args, smoke_epochs=5)
    n = 200 if args.smoke else 2000
    x_train, x_test = toy_data(n, args.seed).to(args.device), toy_data(n, args.seed + 1000).to(args.device)
    p_x = ComponentNormal(K).to(args.device)
    p_y = Categorical(probs=torch.full((K,), 1.0 / K), var=["y"], name="p").to(args.device)
    with torch.no_grad():  # start the means at random data points
        p_x.locs.copy_(x_train[torch.randperm(len(x_train))[:K]])
    model = EMMixture(p_x, p_y)
    print(model.p_joint.prob_joint_factorized_and_text)
    print("Loss:", model.loss_cls)

    def figures(epoch, logs):
        if epoch % 10 and epoch != args.epochs:
            return
        samples = model.p_joint.sample(batch_n=500)["x"]
        plot_density_2d(os.path.join(args.out, f"density_epoch{epoch}.png"),
                        lambda g: torch.logsumexp(log_joint_per_class(model.p_joint, g.to(args.device)), -1).cpu(),
                        samples=x_train[:500], lim=4.5, title=f"EM iteration {epoch}")
        plot_density_2d(os.path.join(args.out, f"samples_epoch{epoch}.png"), samples=samples, lim=4.5,
                        title="samples of p(x,y)")

    # One batch per epoch: the whole data set, so each epoch is one EM iteration.
    history = model.fit([{"x": x_train}], args.epochs, [{"x": x_test}], log_dir=args.out,
                        callbacks=[EveryEpoch(figures), EpochPrinter()], progress=not args.no_progress)
    print("mixing weights:", p_y.probs.flatten().tolist())
    print("means:", p_x.locs.tolist())
    return history


if __name__ == "__main__":
    main()
