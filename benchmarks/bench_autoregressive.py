"""Cached vs uncached autoregressive generation: cost against the sequence length L (CPU, 1 thread).

The model is a WaveNet-style categorical sequence model (``pixyz_like.layers.WaveNet``, 64 levels,
32 channels, dilations 1..32) whose distribution defines ``forward_step``. Uncached generation runs
the whole network over the whole sequence once per step: L passes of length L, O(L^2) position
evaluations. Cached generation runs one step of every layer per step with a ``StepCache``: O(L). For
each L the script prints the least CPU time of generating ``--batch`` sequences (over ``--repeats``
runs uncached, at least 5 cached, after one warm-up), the number of positions the network was
evaluated at (L cached, L^2 uncached: counted, not assumed), whether both gave the same samples from
the same noise, the growth exponent between consecutive lengths (log time ratio over log length
ratio: 1 is linear, 2 quadratic), and the one-pass ``get_log_prob`` time for comparison.

Run: ``python benchmarks/bench_autoregressive.py`` (about two minutes; most of it the uncached L = 512).
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from pixyz_like.autoregressions import AutoregressiveCategorical
from pixyz_like.layers import WaveNet


class Sequence(AutoregressiveCategorical):
    def __init__(self, length: int, n_levels: int = 64, channels: int = 32) -> None:
        super().__init__(var=["x"], features_shape=[1, length], n_levels=n_levels)
        self.net = WaveNet(1, n_levels, channels=channels, dilations=(1, 2, 4, 8, 16, 32))

        self.positions_computed = 0  # positions the network was evaluated at (every layer, once each)

    def forward(self, x):
        self.positions_computed += x.shape[-1]
        return {"logits": self.net(x)}

    def forward_step(self, cache, t, x):
        self.positions_computed += x.shape[-1]
        return {"logits": self.net.step(x, cache)}


def timed(fn, repeats: int) -> float:
    """The least CPU time of ``repeats`` runs (the run least disturbed by other work on the machine)."""
    times = []
    for _ in range(repeats):
        start = time.process_time()  # CPU time: less disturbed than wall time by other load on the machine
        fn()
        times.append(time.process_time() - start)
    return min(times)


def measure(length: int, batch: int, repeats: int) -> dict:
    """Median times of cached and uncached generation of ``batch`` sequences, and of one scoring pass."""
    p = Sequence(length)
    samples = {}

    def generate(cached):
        torch.manual_seed(1)
        samples[cached] = p.sample(batch_n=batch, use_cache=cached)["x"]

    generate(True)  # warm-up: first-call allocations are not part of the cost per step
    cached = timed(lambda: generate(True), max(5, repeats))
    p.positions_computed = 0
    generate(True)
    positions = {"cached": p.positions_computed}
    uncached = timed(lambda: generate(False), repeats)
    p.positions_computed = 0
    generate(False)
    positions["uncached"] = p.positions_computed
    with torch.no_grad():
        score = timed(lambda: p.get_log_prob({"x": samples[True]}), repeats)
    return {"L": length, "cached": cached, "uncached": uncached, "log_prob": score,
            "same": torch.equal(samples[True], samples[False]), "positions": positions}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []
    print(f"CPU seconds, batch of {args.batch}")
    print(f"{'L':>6} {'cached s':>10} {'uncached s':>11} {'speed-up':>9} {'log_prob s':>11} {'same samples':>13} "
          f"{'positions cached':>17} {'uncached':>9}")
    for length in args.lengths:
        row = measure(length, args.batch, args.repeats)
        rows.append(row)
        print(f"{length:>6} {row['cached']:>10.3f} {row['uncached']:>11.3f} {row['uncached'] / row['cached']:>8.1f}x "
              f"{row['log_prob']:>11.4f} {row['same']!s:>13} {row['positions']['cached']:>17} "
              f"{row['positions']['uncached']:>9}")
    print("\ngrowth exponent d log(time) / d log(L) between consecutive lengths (1: linear, 2: quadratic)")
    for a, b in zip(rows[:-1], rows[1:]):
        ratio = math.log(b["L"] / a["L"])
        print(f"  L {a['L']:>4} -> {b['L']:>4}: cached {math.log(b['cached'] / a['cached']) / ratio:.2f}, "
              f"uncached {math.log(b['uncached'] / a['uncached']) / ratio:.2f}")
    return rows


if __name__ == "__main__":
    main()
