"""Throughput of ``log_marginal`` (importance-sampled log p(x), k=5000) for the quick-start VAE sizes.

The model is the quick-start VAE (784-512-64: one hidden layer of 512 units in the encoder and the
decoder, 64 latent dimensions, Bernoulli decoder), untrained: the cost does not depend on the weights.
The table gives data points per second on CPU with one thread, for a few batch sizes and chunk sizes
(``chunk=None`` is the automatic choice, about 1024 rows per chunk on CPU), next to a hand-written PyTorch
loop that does the same arithmetic (encoder once per chunk, decoder on ``chunk * batch`` rows,
running log-sum-exp). Run: ``python benchmarks/bench_log_marginal.py [--k 5000] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

from pixyz_like.distributions import Bernoulli, Normal
from pixyz_like.losses import log_marginal

X_DIM, HIDDEN, Z_DIM = 784, 512, 64


class Inference(Normal):
    def __init__(self):
        super().__init__(var=["z"], cond_var=["x"], name="q")
        self.fc1 = nn.Linear(X_DIM, HIDDEN)
        self.loc = nn.Linear(HIDDEN, Z_DIM)
        self.scale = nn.Linear(HIDDEN, Z_DIM)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        return {"loc": self.loc(h), "scale": F.softplus(self.scale(h))}


class Generator(Bernoulli):
    def __init__(self):
        super().__init__(var=["x"], cond_var=["z"], name="p")
        self.fc1 = nn.Linear(Z_DIM, HIDDEN)
        self.out = nn.Linear(HIDDEN, X_DIM)

    def forward(self, z):
        return {"probs": torch.sigmoid(self.out(F.relu(self.fc1(z))))}


def hand_written(q: Inference, p: Generator, x: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """The same estimate with plain tensor code: the reference for the library's overhead."""
    batch = x.shape[0]
    total = None
    with torch.no_grad():
        done = 0
        while done < k:
            c = min(chunk, k - done)
            params = q.forward(x)
            loc, scale = params["loc"], params["scale"]
            z = loc + scale * torch.randn(c, batch, Z_DIM)
            log_q = (-((z - loc) ** 2) / (2 * scale**2) - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
            log_prior = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
            probs = p.forward(z.reshape(c * batch, Z_DIM))["probs"].reshape(c, batch, X_DIM)
            xs = x.unsqueeze(0)
            log_lik = (xs * probs.log().clamp_min(-100) + (1 - xs) * (1 - probs).log().clamp_min(-100)).sum(-1)
            lse = torch.logsumexp(log_lik + log_prior - log_q, dim=0)
            total = lse if total is None else torch.logaddexp(total, lse)
            done += c
    return total - math.log(k)


def timed_pair(fn_a, fn_b, repeats: int) -> tuple[float, float]:
    """Median seconds of ``fn_a`` and ``fn_b``, run alternately so load drift hits both alike."""
    fn_a(), fn_b()  # warm-up (allocator, lazy initialisation)
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    q, p = Inference().eval(), Generator().eval()
    prior = Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[Z_DIM], name="p_{prior}")
    joint = p * prior

    print(f"log_marginal, quick-start VAE {X_DIM}-{HIDDEN}-{Z_DIM}, k={args.k}, CPU 1 thread, "
          f"median of {args.repeats} (torch {torch.__version__})")
    header = (f"{'batch':>5} {'chunk':>6} {'rows/chunk':>10} {'pixyz_like pts/s':>17} {'hand-written pts/s':>19} "
              f"{'ratio':>6}")
    print(header)
    print("-" * len(header))
    # Process warm-up: the first seconds of a process run slower (allocator, CPU frequency, lazy init).
    warm = torch.rand(16, X_DIM).bernoulli()
    for _ in range(2):
        log_marginal(joint, q, {"x": warm}, k=args.k)
        hand_written(q, p, warm, args.k, 64)
    for batch, chunk in [(1, None), (1, 5000), (16, None), (16, 1024), (64, None), (64, 256)]:
        x = torch.rand(batch, X_DIM).bernoulli()
        effective = min(args.k, chunk if chunk is not None else max(1, 1024 // batch))
        ours, ref = timed_pair(
            lambda: log_marginal(joint, q, {"x": x}, k=args.k, chunk=chunk),  # noqa: B023
            lambda: hand_written(q, p, x, args.k, effective),  # noqa: B023
            args.repeats,
        )
        print(f"{batch:>5} {str(chunk):>6} {effective * batch:>10} {batch / ours:>17.2f} {batch / ref:>19.2f} "
              f"{ours / ref:>6.2f}")


if __name__ == "__main__":
    main()
