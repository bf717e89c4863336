"""Per-factor overhead of a chain joint counted in CPU instructions (callgrind), not in seconds.

On a shared VM the clock drifts by a third within a run, so a 10 us difference per factor cannot be
read from timings; the number of instructions a call executes does not drift (repeat runs agree within
1%). The chain is ``bench_small.py``'s (``p(x_N|x_{N-1})...p(x_1)``, d 8, batch 16): each row is run
with 2 and 8 factors, and the per-factor cost is the difference over 6. The overhead is then given in
instructions and in microseconds at the rate of the hand-written loop measured here (instructions of
the hand loop divided by its wall time outside valgrind: an estimate, the conversion itself uses the
clock), and beside it the wall-clock overhead measured in the same run. The two disagree: the
library's extra work is Python (dicts, attribute reads, frames), which runs at fewer instructions per
microsecond than the hand loop's tensor calls (on this VM about half as many), so the estimate at the
hand loop's rate is a lower bound of the time, and the wall-clock figure, noisy as it is, the one to
hold against a time budget.

With ``--tiny`` it also counts one call of the tiny VAE train step (x 2, z 1, hidden 8, batch 1; the
hand-written step with the default Adam, the library's ``Model.train``) and of the tiny VAE loss
evaluation (x 20, z 4, hidden 32, batch 16), whose wall-clock ratios swing by 20% on this VM. With
``--compiled``, the compiled quick-start step of ``bench_small.py``'s compile row (the loss through
``torch.compile``, backward, the default Adam, batch 128; 5 calls each after the compilation, which
takes several minutes under valgrind).

Needs valgrind (``apt-get install valgrind``); about 3 minutes (the import of torch under valgrind):

    python benchmarks/bench_instructions.py [--calls 100] [--pixyz] [--tiny] [--compiled]
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROWS = ("hand_lp", "lib_lp", "hand_s", "lib_s")


def _tiny_tasks() -> list:
    """The tiny VAE step (hand-written and ``Model.train``) and the tiny loss evaluation, one call each."""
    import copy

    import torch
    from bench_small import vae_hand_loss, vae_lib, vae_nets
    from torch import optim

    import pixyz_like.distributions as D
    import pixyz_like.losses as L
    from pixyz_like.models import Model

    torch.manual_seed(0)
    init, x = vae_nets(2, 1, 8), torch.rand(1, 2).bernoulli()
    nets = copy.deepcopy(init)
    opt = optim.Adam([p for m in nets for p in m.parameters()], lr=1e-3)

    def hand_step() -> None:
        opt.zero_grad(set_to_none=True)
        vae_hand_loss(nets, x).backward()
        opt.step()

    p, q, loss = vae_lib(D, L, copy.deepcopy(init), 1)
    model = Model(loss, distributions=[p, q], optimizer=optim.Adam, optimizer_params={"lr": 1e-3})
    hand_eval_nets, x20 = vae_nets(20, 4, 32), torch.rand(16, 20)
    _, _, eval_loss = vae_lib(D, L, hand_eval_nets, 4)

    def hand_eval() -> None:
        with torch.no_grad():
            vae_hand_loss(hand_eval_nets, x20)

    def lib_eval() -> None:
        with torch.no_grad():
            eval_loss.eval({"x": x20})

    return [("tiny_step_hand", hand_step), ("tiny_step_lib", lambda: model.train({"x": x})),
            ("tiny_eval_hand", hand_eval), ("tiny_eval_lib", lib_eval)]


def _compiled_tasks() -> list:
    """The compiled loss + default Adam step of bench_small.py's compile row, hand-written and library."""
    import copy

    import torch
    from bench_small import vae_hand_loss, vae_lib, vae_nets
    from torch import optim

    import pixyz_like.distributions as D
    import pixyz_like.losses as L

    torch.manual_seed(0)
    init, x = vae_nets(784, 64, 512), torch.rand(128, 784).bernoulli()
    nets = copy.deepcopy(init)
    p, q, loss = vae_lib(D, L, copy.deepcopy(init), 64)
    ours, hand = torch.compile(lambda x: loss.eval({"x": x})), torch.compile(lambda x: vae_hand_loss(nets, x))

    def step(fn, params):
        opt = optim.Adam(params, lr=1e-3)

        def run() -> None:
            opt.zero_grad(set_to_none=True)
            fn(x).backward()
            opt.step()
        return run

    return [("compiled_step_hand", step(hand, [p_ for m in nets for p_ in m.parameters()])),
            ("compiled_step_lib", step(ours, [p_ for m in (p, q) for p_ in m.parameters()]))]


def _calls(name: str, calls: int) -> int:
    """Calls counted for a task (a compiled step is ~90M instructions: 5 are exact enough)."""
    return 5 if name.startswith("compiled") else calls


def _tasks(with_pixyz: bool, tiny: bool = False, compiled: bool = False) -> list:
    import torch

    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(HERE))
    from bench_small import chain_hand, chain_lib

    import pixyz_like.distributions as D

    torch.manual_seed(0)
    tasks = []
    for n in (2, 8):
        joint, links = chain_lib(D, n, 8)
        xs = [torch.randn(16, 8) for _ in range(n)]
        xd = {f"x{i}": xs[i] for i in range(n)}
        hand_lp, hand_s = chain_hand(links, xs)
        lp = joint.log_prob()
        tasks += [(f"hand_lp_{n}", hand_lp), (f"lib_lp_{n}", lambda lp=lp, xd=xd: lp.eval(xd)),
                  (f"hand_s_{n}", hand_s), (f"lib_s_{n}", lambda j=joint: j.sample(batch_n=16))]
        if with_pixyz:
            import pixyz.distributions as PD

            pj, _ = chain_lib(PD, n, 8)
            plp = pj.log_prob()
            tasks += [(f"pixyz_lp_{n}", lambda p=plp, xd=xd: p.eval({k: v.clone() for k, v in xd.items()})),
                      (f"pixyz_s_{n}", lambda j=pj: j.sample(batch_n=16))]
    return tasks + (_tiny_tasks() if tiny else []) + (_compiled_tasks() if compiled else [])


def _signal(path: Path, text: str = "") -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.rename(path)  # (atomic: the other side never reads a half-written name)


def _wait(path: Path, proc: subprocess.Popen | None = None) -> None:
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the worker stopped (exit {proc.returncode}); see its log")
        time.sleep(0.05)


def worker(folder: Path, calls: int, with_pixyz: bool, tiny: bool, compiled: bool = False) -> None:
    """Run under valgrind: each task warmed up, then ``calls`` calls between two signals (the chain's
    without gradients, the train step with them)."""
    import torch

    torch.set_num_threads(1)
    for name, fn in _tasks(with_pixyz, tiny, compiled):
        with torch.set_grad_enabled(name.startswith(("tiny_step", "compiled"))):
            for _ in range(3 if name.startswith("compiled") else 20):
                fn()
            _signal(folder / "ready", name)
            _wait(folder / "go")
            (folder / "go").unlink()
            for _ in range(_calls(name, calls)):
                fn()
            _signal(folder / "done", name)
            _wait(folder / "next")
            (folder / "next").unlink()
    _signal(folder / "finished")


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


def count(calls: int, with_pixyz: bool, tiny: bool, compiled: bool = False) -> dict[str, float]:
    """Instructions per call of each task, collected only between the worker's signals."""
    folder = Path(tempfile.mkdtemp(prefix="bench_instr_"))
    out = folder / "cg.out"
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
           sys.executable, __file__, "--worker", str(folder), "--calls", str(calls)]
    cmd += (["--pixyz"] if with_pixyz else []) + (["--tiny"] if tiny else []) + (["--compiled"] if compiled else [])
    log = open(folder / "log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    pid, result = str(proc.pid), {}
    while True:
        while not (folder / "ready").exists() and not (folder / "finished").exists():
            if proc.poll() is not None:
                raise RuntimeError(f"the worker stopped (exit {proc.returncode}); see {folder / 'log'}")
            time.sleep(0.1)
        if (folder / "finished").exists():
            break
        name = (folder / "ready").read_text()
        (folder / "ready").unlink()
        _control("-z", pid)
        _control("-i", "on", pid)
        (folder / "go").touch()
        _wait(folder / "done", proc)
        (folder / "done").unlink()
        _control("-d", pid)
        _control("-i", "off", pid)
        dump = max(glob.glob(f"{out}.*"), key=os.path.getmtime)
        totals = next(line for line in open(dump) if line.startswith("totals:"))
        result[name] = int(totals.split()[1]) / _calls(name, calls)
        os.remove(dump)
        (folder / "next").touch()
    proc.wait()
    return result


def wall_per_factor(rounds: int = 9) -> dict[str, float]:
    """The chain's wall time per factor outside valgrind (thread time; the median over rounds, the rows
    in a rotating order each round): the hand loop's converts the instruction counts into an estimate
    in us, and the library's rows are printed beside it, as the two disagree (below)."""
    import statistics

    import torch

    torch.set_num_threads(1)
    tasks = dict(_tasks(False))
    per: dict[str, list[float]] = {r: [] for r in ROWS}
    with torch.no_grad():
        for k in range(rounds):
            for r in ROWS[k % len(ROWS):] + ROWS[: k % len(ROWS)]:
                times = {}
                for n in (2, 8):
                    fn = tasks[f"{r}_{n}"]
                    for _ in range(30):
                        fn()
                    t = time.thread_time()
                    for _ in range(200):
                        fn()
                    times[n] = (time.thread_time() - t) / 200
                per[r].append((times[8] - times[2]) / 6 * 1e6)
    return {r: statistics.median(v) for r, v in per.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--pixyz", action="store_true", help="also Pixyz 0.3.3's chain (if installed)")
    ap.add_argument("--tiny", action="store_true", help="also the tiny VAE train step and loss evaluation")
    ap.add_argument("--compiled", action="store_true", help="also the compiled quick-start train step")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(Path(args.worker), args.calls, args.pixyz, args.tiny, args.compiled)
        return
    counts = count(args.calls, args.pixyz, args.tiny, args.compiled)
    rows = [r for r in (*ROWS, "pixyz_lp", "pixyz_s") if f"{r}_2" in counts]
    per = {r: (counts[f"{r}_8"] - counts[f"{r}_2"]) / 6 for r in rows}
    wall = wall_per_factor()
    rate = per["hand_s"] / wall["hand_s"]  # instructions per microsecond of the hand-written sampling loop
    print(f"chain joint (d 8, batch 16), per factor, {args.calls} calls; hand-written sampling "
          f"{wall['hand_s']:.1f} us/factor here, so {rate / 1000:.1f}k instructions per us")
    for r in rows:
        base = "hand_s" if r.endswith("_s") else "hand_lp"
        over = per[r] - per[base]
        measured = f"; wall clock {wall[r] - wall[base]:+5.1f} us" if r in wall and r != base else ""
        print(f"  {r:<10} {per[r] / 1000:8.1f}k instructions/factor   overhead {over / 1000:7.1f}k"
              f"  (~{over / rate:5.1f} us at that rate{measured})")
    for what in ("tiny_step", "tiny_eval", "compiled_step"):
        if f"{what}_hand" not in counts:
            continue
        hand, lib = counts[f"{what}_hand"], counts[f"{what}_lib"]
        print(f"  {what:<10} hand-written {hand / 1000:8.1f}k, pixyz_like {lib / 1000:8.1f}k instructions per call "
              f"({lib / hand:.3f}x)")


if __name__ == "__main__":
    main()
