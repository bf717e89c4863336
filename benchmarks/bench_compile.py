"""torch.compile speed-up of the quick-start VAE train step (784-512-64, batch 128, CPU, 1 thread).

Both variants run the step ``Model.fit`` runs: evaluate the loss (eagerly, or through the compiled
function ``fit(compile=True)`` builds), back-propagate, clip, step Adam. Compilation time is
reported apart and excluded from the per-step medians. Run: ``python benchmarks/bench_compile.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

from pixyz_like.distributions import Bernoulli, Normal
from pixyz_like.losses import Expectation, KullbackLeibler, LogProb
from pixyz_like.models import Model
from pixyz_like.models.compiled import CompiledLoss
from pixyz_like.models.step import Stepper


class Inference(Normal):
    def __init__(self, x_dim=784, hidden=512, z_dim=64):
        super().__init__(var=["z"], cond_var=["x"], name="q")
        self.fc1 = nn.Linear(x_dim, hidden)
        self.loc = nn.Linear(hidden, z_dim)
        self.scale = nn.Linear(hidden, z_dim)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        return {"loc": self.loc(h), "scale": F.softplus(self.scale(h))}


class Generator(Bernoulli):
    def __init__(self, x_dim=784, hidden=512, z_dim=64):
        super().__init__(var=["x"], cond_var=["z"], name="p")
        self.fc1 = nn.Linear(z_dim, hidden)
        self.out = nn.Linear(hidden, x_dim)

    def forward(self, z):
        return {"probs": torch.sigmoid(self.out(F.relu(self.fc1(z))))}


def make_model() -> Model:
    q, p = Inference(), Generator()
    prior = Normal(loc=torch.tensor(0.0), scale=torch.tensor(1.0), var=["z"], features_shape=[64], name="p_prior")
    loss = (KullbackLeibler(q, prior) - Expectation(q, LogProb(p))).mean()
    return Model(loss, distributions=[p, q], optimizer_params={"lr": 1e-3})


def make_step(model: Model, compile_options, x: torch.Tensor):
    """The step fit takes (pixyz_like.models.step), with the loss eager or compiled."""
    stepper = Stepper(model, loss_fn=CompiledLoss(model, {}, compile_options))

    def step():
        stepper.step({"x": x}, {}, True, "bench")

    return step


def timed(step) -> float:
    t = time.perf_counter()
    step()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = (torch.rand(args.batch, 784) > 0.5).float()

    eager_model, compiled_model = make_model(), make_model()
    eager_step = make_step(eager_model, None, x)
    compiled_step = make_step(compiled_model, {}, x)
    compile_s = sum(timed(compiled_step) for _ in range(3))  # the first call compiles forward and backward
    for _ in range(3):
        eager_step()
    # Alternate the two so that load from other processes on the machine hits both alike.
    eager, compiled = [], []
    for _ in range(args.steps):
        eager.append(timed(eager_step))
        compiled.append(timed(compiled_step))
    e, c = statistics.median(eager) * 1e3, statistics.median(compiled) * 1e3
    print(f"torch {torch.__version__}, CPU, 1 thread, batch {args.batch}, median of {args.steps} alternated steps")
    print(f"eager    : {e:8.2f} ms/step")
    print(f"compiled : {c:8.2f} ms/step  (compilation + 3 warm-up steps: {compile_s:.1f} s)")
    print(f"speed-up : {e / c:.2f}x")


if __name__ == "__main__":
    main()
