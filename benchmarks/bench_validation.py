"""Cost of validating parameters and values (``pixyz_like.set_validation``), one run, CPU, 1 thread.

Measures, validation on (the default) vs off, on the models of ``benchmarks/bench_core.py``:
1. the quick-start VAE train step (784-512-512-64, batch 128);
2. the tiny VAE loss evaluation (x 20, z 4, hidden 32, batch 16), under ``torch.no_grad()``;
and, for the Bernoulli log-likelihood from ``probs`` (batch 128 x 784), forward and backward, the
gradient-safe form the library uses against the plain autograd ``lerp`` of two clamped logs (which
gives NaN gradients where a sigmoid saturates).

    python benchmarks/bench_validation.py [--quick]

As in bench_core, each variant is timed once per round in a shuffled order; a ratio is the median
over rounds of the ratio within a round (quartiles in brackets). Times are the process's CPU time
(``time.process_time``), which other processes on a shared machine disturb less than wall time.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import optim

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_core  # noqa: E402

import pixyz_like  # noqa: E402
from pixyz_like.distributions.families import _bernoulli_lerp, _BernoulliLogLikelihood  # noqa: E402
from pixyz_like.models import Model  # noqa: E402


def cpu_timeit(fn, blocks: int, per_block: int, warmup: int = 5) -> float:
    """Median over blocks of the mean CPU time per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(blocks):
        t0 = time.process_time()
        for _ in range(per_block):
            fn()
        times.append((time.process_time() - t0) / per_block)
    return statistics.median(times)


def paired(fns: dict, base: str, rounds: int, **timeit_kw) -> tuple[dict, dict]:
    """Median time of each function, and the median (and quartiles) of its per-round ratio to ``base``."""
    order = list(fns)
    per_round = []
    for _ in range(rounds):
        random.shuffle(order)
        per_round.append({k: cpu_timeit(fns[k], **timeit_kw) for k in order})
    times = {k: statistics.median(r[k] for r in per_round) for k in fns}
    ratios = {}
    for k in fns:
        rs = [r[k] / r[base] for r in per_round]
        q1, _, q3 = statistics.quantiles(rs, n=4)
        # The ratio of the fastest rounds too: on a loaded machine the minimum is the steadier figure.
        fastest = min(r[k] for r in per_round) / min(r[base] for r in per_round)
        ratios[k] = (statistics.median(rs), q1, q3, fastest)
    return times, ratios


def with_validation(enabled: bool, fn):
    def run():
        with pixyz_like.set_validation(enabled):
            fn()

    return run


def bench_train_step(args):
    x_dim, z_dim, hidden, batch = 784, 64, 512, 128
    init = bench_core.make_nets(x_dim, z_dim, hidden, 2)
    x = torch.rand(batch, x_dim)
    fns = {}
    for label, enabled in (("validation off", False), ("validation on", True)):
        p, q, prior, L = bench_core.build("ours", copy.deepcopy(init), z_dim)
        loss = (L.KullbackLeibler(q, prior) - L.Expectation(q, L.LogProb(p))).mean()
        model = Model(loss, distributions=[p, q], optimizer=optim.Adam, optimizer_params={"lr": 1e-3})
        counter = [0]

        def step(model=model, counter=counter):
            counter[0] += 1
            torch.manual_seed(counter[0])  # the same noise at the n-th step of either copy
            model.train({"x": x})

        fns[label] = with_validation(enabled, step)
    return paired(fns, "validation off", args.rounds, blocks=3, per_block=args.steps, warmup=3)


def bench_tiny_eval(args):
    x_dim, z_dim, hidden, batch = 20, 4, 32, 16
    nets = bench_core.make_nets(x_dim, z_dim, hidden, 1)
    x = torch.rand(batch, x_dim)
    p, q, prior, L = bench_core.build("ours", nets, z_dim)
    loss = (L.KullbackLeibler(q, prior) - L.Expectation(q, L.LogProb(p))).mean()
    fns = {
        "validation off": with_validation(False, lambda: loss.eval({"x": x})),
        "validation on": with_validation(True, lambda: loss.eval({"x": x})),
    }
    with torch.no_grad():
        return paired(fns, "validation off", args.rounds, blocks=5, per_block=args.tiny_calls)


def bench_bernoulli(args):
    logits = torch.randn(128, 784, requires_grad=True)
    x = torch.rand(128, 784)

    def run(f):
        def go():
            probs = torch.sigmoid(logits)
            f(probs, x).sum().backward()
            logits.grad = None

        return go

    fns = {"autograd lerp": run(_bernoulli_lerp), "gradient-safe (ours)": run(_BernoulliLogLikelihood.apply)}
    return paired(fns, "autograd lerp", args.rounds, blocks=5, per_block=args.steps * 5)


def report(title, times, ratios):
    print(title)
    for k, t in times.items():
        med, q1, q3, fastest = ratios[k]
        print(f"  {k:<22} {t * 1e3:8.3f} ms   {med:6.3f}x (quartiles {q1:.3f}-{q3:.3f}; fastest rounds {fastest:.3f}x)")
    print()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 20, 4 with --quick)")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (4 if args.quick else 20)
    args.steps = 3 if args.quick else 15
    args.tiny_calls = 50 if args.quick else 500
    torch.set_num_threads(1)
    torch.manual_seed(0)
    random.seed(0)
    print(f"torch {torch.__version__}, 1 CPU thread; ratios to the first row of each block\n")
    report("quick-start VAE train step (784-512-512-64, batch 128)", *bench_train_step(args))
    report("tiny VAE loss evaluation (x 20, z 4, hidden 32, batch 16)", *bench_tiny_eval(args))
    report("Bernoulli log-likelihood from probs, forward + backward (128 x 784)", *bench_bernoulli(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
