"""Fixed per-call and per-factor costs on small models, against hand-written PyTorch in the same run.

Rows (CPU, 1 thread):

- ``tiny``: a tiny VAE train step (x 2, z 1, hidden 8, batch 1);
- ``batch16``: the quick-start VAE train step at batch 16;
- ``chain``: a chain joint ``p(x_N|x_{N-1})...p(x_1)`` (d 8, batch 16) of 2/4/8 factors, log-prob and sample:
  the slope per factor against a hand-written loop; and the sampling of both compiled (``torch.compile``),
  timed as a pair of their own, with the library's graph count;
- ``expect``: ``Expectation`` S=1 on the tiny VAE of bench_core;
- ``dmm``: a Deep Markov Model train step with Pixyz's DMM notebook networks and T=30, ``IterativeLoss`` vs a
  hand-written loop of the same maths (batch 16 instead of the notebook's 256, to keep the run short);
- ``logmarg``: ``log_marginal`` k=5000 (quick-start VAE, batch 16) vs the hand-written chunked loop;
- ``compile``: the compiled quick-start loss + step vs the compiled hand-written one, with graph breaks;
- ``import``: ``import pixyz_like`` on top of ``import torch``.

    python benchmarks/bench_small.py [--quick] [--only tiny,chain,...] [--default-malloc]

Times are medians over rounds; each implementation is timed once per round in a shuffled order and a ratio
is the median of the per-round ratios (pairing cancels drifts in machine speed). Minor page faults per call
are reported: glibc's trimming makes them swing a one-process ratio, so unless ``--default-malloc`` is given
the script re-runs itself with ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TOP_PAD_``
fixed.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn, optim
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import pixyz_like.distributions as D  # noqa: E402
import pixyz_like.losses as L  # noqa: E402
from pixyz_like.models import Model  # noqa: E402

try:
    import pixyz.distributions as PD
    import pixyz.losses as PL
    from pixyz.models import Model as PzModel
except ImportError:  # Pixyz is only an optional oracle
    PD = PL = PzModel = None

MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": "268435456", "MALLOC_MMAP_THRESHOLD_": "268435456",
              "MALLOC_TOP_PAD_": "67108864"}


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


CLOCK = [time.perf_counter]


def timeit(fn, blocks: int, per_block: int, warmup: int = 3) -> tuple[float, float]:
    """Median over blocks of the mean time per call, and minor page faults per call."""
    clock = CLOCK[0]
    for _ in range(warmup):
        fn()
    times = []
    f0 = faults()
    for _ in range(blocks):
        t0 = clock()
        for _ in range(per_block):
            fn()
        times.append((clock() - t0) / per_block)
    return statistics.median(times), (faults() - f0) / (blocks * per_block)


def interleaved(fns: dict, rounds: int, base: str = "hand-written", **kw) -> dict:
    """{name: (median time, median ratio to ``base``, q1, q3, faults per call)}."""
    order = list(fns)
    per_round = []
    for _ in range(rounds):
        random.shuffle(order)
        per_round.append({k: timeit(fns[k], **kw) for k in order})
    out = {}
    for k in fns:
        rs = [r[k][0] / r[base][0] for r in per_round]
        q1, _, q3 = statistics.quantiles(rs, n=4) if len(rs) > 1 else (rs[0], 0, rs[0])
        out[k] = (statistics.median(r[k][0] for r in per_round), statistics.median(rs), q1, q3,
                  statistics.median(r[k][1] for r in per_round),
                  statistics.median(r[k][0] - r[base][0] for r in per_round))
    return out


def show(title: str, res: dict, unit: float = 1e6, label: str = "us") -> None:
    print(title)
    for k, (t, med, q1, q3, pf, _) in res.items():
        print(f"  {k:<28} {t * unit:10.1f} {label}  {med:6.3f}x (q {q1:.3f}-{q3:.3f})  {pf:7.1f} faults/call")
    print()


# --------------------------------------------------------------------------------------------------- VAEs
def vae_nets(x_dim, z_dim, hidden):
    return (nn.Sequential(nn.Linear(x_dim, hidden), nn.ReLU()), nn.Linear(hidden, z_dim), nn.Linear(hidden, z_dim),
            nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU()), nn.Linear(hidden, x_dim))


def vae_lib(dists, losses, nets, z_dim):
    et, el, es, dt, do = nets

    class Q(dists.Normal):
        def __init__(self):
            super().__init__(var=["z"], cond_var=["x"], name="q")
            self.et, self.el, self.es = et, el, es

        def forward(self, x):
            h = self.et(x)
            return {"loc": self.el(h), "scale": F.softplus(self.es(h))}

    class P(dists.Bernoulli):
        def __init__(self):
            super().__init__(var=["x"], cond_var=["z"], name="p")
            self.dt, self.do = dt, do

        def forward(self, z):
            return {"probs": torch.sigmoid(self.do(self.dt(z)))}

    p, q = P(), Q()
    prior = dists.Normal(loc=torch.tensor(0.0), scale=torch.tensor(1.0), var=["z"], features_shape=[z_dim],
                         name="p_{prior}")
    loss = (losses.KullbackLeibler(q, prior) - losses.Expectation(q, losses.LogProb(p))).mean()
    return p, q, loss


def vae_hand_loss(nets, x):
    et, el, es, dt, do = nets
    h = et(x)
    loc, scale = el(h), F.softplus(es(h))
    kl = (0.5 * (scale**2 + loc**2 - 1) - scale.log()).sum(-1)
    z = loc + scale * torch.randn_like(loc)
    probs = torch.sigmoid(do(dt(z)))
    rec = -F.binary_cross_entropy(probs, x, reduction="none").sum(-1)
    return (kl - rec).mean()


def bench_vae_step(args, x_dim, z_dim, hidden, batch, title):
    init = vae_nets(x_dim, z_dim, hidden)
    x = torch.rand(batch, x_dim).bernoulli()
    nets = copy.deepcopy(init)
    opt = optim.Adam([p for m in nets for p in m.parameters()], lr=1e-3)
    counters = {}

    def reseed(name):
        counters[name] = counters.get(name, 0) + 1
        torch.manual_seed(counters[name])

    def hand():
        reseed("hand")
        opt.zero_grad(set_to_none=True)
        vae_hand_loss(nets, x).backward()
        opt.step()

    p, q, loss = vae_lib(D, L, copy.deepcopy(init), z_dim)
    model = Model(loss, distributions=[p, q], optimizer=optim.Adam, optimizer_params={"lr": 1e-3})

    def ours():
        reseed("ours")
        model.train({"x": x})

    fns = {"hand-written": hand, "pixyz_like": ours}
    if PD is not None:
        pp, pq, ploss = vae_lib(PD, PL, copy.deepcopy(init), z_dim)
        pmodel = PzModel(ploss, distributions=[pp, pq], optimizer=optim.Adam, optimizer_params={"lr": 1e-3})

        def pz():
            reseed("pixyz")
            pmodel.train({"x": x.clone()})

        fns["pixyz 0.3.3"] = pz
    show(title, interleaved(fns, args.rounds, blocks=3, per_block=args.calls(batch)))


def bench_tiny(args):
    bench_vae_step(args, 2, 1, 8, 1, "tiny VAE train step (x 2, z 1, hidden 8, batch 1)")


def bench_batch16(args):
    bench_vae_step(args, 784, 64, 512, 16, "quick-start VAE train step (784-512-64), batch 16")


def bench_expect(args):
    nets = vae_nets(20, 4, 32)
    x = torch.rand(16, 20)
    p, q, _ = vae_lib(D, L, nets, 4)
    e = L.Expectation(q, L.LogProb(p))
    et, el, es, dt, do = nets

    def hand():
        h = et(x)
        z = el(h) + F.softplus(es(h)) * torch.randn(16, 4)
        probs = torch.sigmoid(do(dt(z)))
        return -F.binary_cross_entropy(probs, x, reduction="none").sum(-1)

    fns = {"hand-written": hand, "pixyz_like": lambda: e.eval({"x": x})}
    if PD is not None:
        pp, pq, _ = vae_lib(PD, PL, nets, 4)
        pe = PL.Expectation(pq, PL.LogProb(pp))
        fns["pixyz 0.3.3"] = lambda: pe.eval({"x": x.clone()})
    with torch.no_grad():
        show("Expectation S=1, tiny VAE (x 20, z 4, hidden 32, batch 16)",
             interleaved(fns, args.rounds, blocks=5, per_block=args.calls(16) * 4))


# ------------------------------------------------------------------------------------------------ chains
def chain_lib(dists, n, d):
    class Link(dists.Normal):
        def __init__(self, i):
            super().__init__(var=[f"x{i}"], cond_var=[f"x{i - 1}"], name=f"p{i}")
            self.fc = nn.Linear(d, d)
            self.i = i

        def forward(self, **kw):
            return {"loc": self.fc(kw[f"x{self.i - 1}"]), "scale": 1.0}

    links = [Link(i) for i in range(1, n)]
    joint = dists.Normal(loc=torch.zeros(d), scale=torch.ones(d), var=["x0"], name="p0")
    for link in links:
        joint = link * joint
    return joint, links


def chain_hand(links, xs):
    """log N(x0; 0, 1) + sum_i log N(x_i; fc_i(x_{i-1}), 1), and ancestral sampling, by hand."""
    c = 0.5 * math.log(2 * math.pi)

    def log_prob():
        total = (-0.5 * xs[0] ** 2 - c).sum(-1)
        for i, link in enumerate(links, 1):
            total = total + (-0.5 * (xs[i] - link.fc(xs[i - 1])) ** 2 - c).sum(-1)
        return total

    def sample():
        x = torch.randn_like(xs[0])
        out = [x]
        for link in links:
            x = link.fc(x) + torch.randn_like(x)
            out.append(x)
        return out

    return log_prob, sample


def bench_chain(args):
    d, batch = 8, 16
    rows = {}
    for n in (2, 4, 8):
        joint, links = chain_lib(D, n, d)
        xs = [torch.randn(batch, d) for _ in range(n)]
        x_dict = {f"x{i}": xs[i] for i in range(n)}
        hand_lp, hand_s = chain_hand(links, xs)
        fns = {"hand-written": hand_lp, "pixyz_like": lambda j=joint, x=x_dict: j.log_prob().eval(x),
               "hand sample": hand_s, "pixyz_like sample": lambda j=joint: j.sample(batch_n=batch)}
        # compiled, both sides, timed as a pair of their own after the eager rows (the library's checks
        # of the draws are skipped inside torch.compile)
        compiled = {"compiled hand sample": torch.compile(hand_s),
                    "compiled pixyz_like sample": torch.compile(lambda j=joint: j.sample(batch_n=batch))}
        if PD is not None:
            pj, _ = chain_lib(PD, n, d)
            pj.load_state_dict(joint.state_dict(), strict=False)
            fns["pixyz 0.3.3"] = lambda j=pj, x=x_dict: j.log_prob().eval({k: v.clone() for k, v in x.items()})
            fns["pixyz 0.3.3 sample"] = lambda j=pj: j.sample(batch_n=batch)
        with torch.no_grad():
            rows[n] = interleaved(fns, args.rounds, blocks=5, per_block=args.calls(16) * 2)
            for fn in compiled.values():
                fn()  # (compiled here, before its timing)
            rows[n].update(interleaved(compiled, args.rounds, base="compiled hand sample", blocks=5,
                                       per_block=args.calls(16) * 2))
        show(f"chain joint, {n} factors (d {d}, batch {batch}; the compiled pair timed apart, its ratios to "
             "the compiled hand loop)", rows[n])
        if n == 8:
            explained = torch._dynamo.explain(lambda j=joint: j.sample(batch_n=batch))()
            print(f"  compiled sampling, 8 factors: {explained.graph_count} graph(s), "
                  f"{explained.graph_break_count} graph break(s)")
    def slope(ts):
        ns = list(rows)
        mn, mt = statistics.mean(ns), statistics.mean(ts)
        return sum((a - mn) * (b - mt) for a, b in zip(ns, ts)) / sum((a - mn) ** 2 for a in ns)

    print("  per factor (least squares over 2/4/8 factors): time, and overhead over the hand-written loop")
    print("  (the median over rounds of the paired difference, so load drift cancels)")
    for k in rows[2]:
        base = "hand-written" if "sample" not in k else "hand sample"
        base = "compiled hand sample" if k.startswith("compiled") else base
        own = slope([rows[n][k][0] * 1e6 for n in rows])
        over = slope([(rows[n][k][0] - rows[n][base][0]) * 1e6 for n in rows])
        paired = slope([rows[n][k][5] * 1e6 - (rows[n][base][5] * 1e6) for n in rows])
        print(f"    {k:<28} {own:7.1f} us/factor   overhead {over:7.1f} (paired {paired:7.1f}) us/factor")
    print()


# ---------------------------------------------------------------------------------------------------- DMM
def dmm_nets(h_dim=32, hidden=32, z_dim=16, u_dim=1):
    """The DMM notebook's networks as plain modules (shared by weights copies)."""

    class Enc(nn.Module):  # the notebook's RNN: conv features, bidirectional GRU
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 4, 2, 1)
            self.conv2 = nn.Conv2d(64, 128, 4, 2, 1)
            self.fc1, self.fc2 = nn.Linear(128 * 7 * 7, 256), nn.Linear(256, 32)
            self.rnn = nn.GRU(32, h_dim, bidirectional=True)
            self.h0 = nn.Parameter(torch.zeros(2, 1, h_dim))

        def forward(self, x):
            t, b = x.shape[:2]
            h = F.relu(self.conv2(F.relu(self.conv1(x.reshape(-1, 3, 28, 28)))))
            h = F.relu(self.fc2(F.relu(self.fc1(h.reshape(h.shape[0], -1))))).reshape(t, b, 32)
            return self.rnn(h, self.h0.expand(2, b, h_dim).contiguous())[0]

    class Dec(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(z_dim, 256), nn.Linear(256, 128 * 7 * 7)
            self.conv1 = nn.ConvTranspose2d(128, 64, 4, 2, 1)
            self.conv2 = nn.ConvTranspose2d(64, 3, 4, 2, 1)

        def forward(self, z):
            h = F.relu(self.fc2(F.relu(self.fc1(z)))).reshape(z.shape[0], 128, 7, 7)
            return self.conv2(F.relu(self.conv1(h)))

    class Inf(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(z_dim + u_dim, h_dim * 2)
            self.fc21, self.fc22 = nn.Linear(h_dim * 2, z_dim), nn.Linear(h_dim * 2, z_dim)

        def forward(self, h, z_prev, u):
            h = 0.5 * (h + torch.tanh(self.fc1(torch.cat((z_prev, u), 1))))
            return self.fc21(h), F.softplus(self.fc22(h))

    class Pri(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(z_dim + u_dim, hidden)
            self.fc21, self.fc22 = nn.Linear(hidden, z_dim), nn.Linear(hidden, z_dim)

        def forward(self, z_prev, u):
            h = F.relu(self.fc1(torch.cat((z_prev, u), 1)))
            return self.fc21(h), F.softplus(self.fc22(h))

    return Enc(), Dec(), Inf(), Pri()


def dmm_lib(dists, losses, nets, t_max):
    enc, dec, inf, pri = nets

    class RNN(dists.Deterministic):
        def __init__(self):
            super().__init__(var=["h"], cond_var=["x"])
            self.net = enc

        def forward(self, x):
            return {"h": self.net(x)}

    class Generator(dists.Normal):
        def __init__(self):
            super().__init__(var=["x"], cond_var=["z"])
            self.net = dec

        def forward(self, z):
            return {"loc": self.net(z), "scale": 1.0}

    class Inference(dists.Normal):
        def __init__(self):
            super().__init__(var=["z"], cond_var=["h", "z_prev", "u"])
            self.net = inf

        def forward(self, h, z_prev, u):
            loc, scale = self.net(h, z_prev, u)
            return {"loc": loc, "scale": scale}

    class Prior(dists.Normal):
        def __init__(self):
            super().__init__(var=["z"], cond_var=["z_prev", "u"])
            self.net = pri

        def forward(self, z_prev, u):
            loc, scale = self.net(z_prev, u)
            return {"loc": loc, "scale": scale}

    rnn, encoder, decoder, prior = RNN(), Inference(), Generator(), Prior()
    step = -losses.Expectation(encoder, losses.LogProb(decoder)) + losses.KullbackLeibler(encoder, prior)
    it = losses.IterativeLoss(step, max_iter=t_max, series_var=["x", "h", "u"], update_value={"z": "z_prev"})
    loss = losses.Expectation(rnn, it).mean()
    return Model(loss, distributions=[rnn, encoder, decoder, prior], optimizer=optim.RMSprop,
                 optimizer_params={"lr": 5e-4}, clip_grad_value=10) if dists is D else (
        PzModel(loss, distributions=[rnn, encoder, decoder, prior], optimizer=optim.RMSprop,
                optimizer_params={"lr": 5e-4}, clip_grad_value=10))


def dmm_hand_loss(nets, x, u, z_prev):
    enc, dec, inf, pri = nets
    h = enc(x)
    total = 0.0
    c = 0.5 * math.log(2 * math.pi)
    for t in range(x.shape[0]):
        loc, scale = inf(h[t], z_prev, u[t])
        z = loc + scale * torch.randn_like(loc)
        mean = dec(z)
        rec = (-0.5 * (x[t] - mean) ** 2 - c).sum((1, 2, 3))
        ploc, pscale = pri(z_prev, u[t])
        kl = (pscale.log() - scale.log() + (scale**2 + (loc - ploc) ** 2) / (2 * pscale**2) - 0.5).sum(-1)
        total = total + kl - rec
        z_prev = z
    return total.mean()


def bench_dmm(args):
    t_max, batch, z_dim = 30, args.dmm_batch, 16
    init = dmm_nets()
    x = torch.rand(t_max, batch, 3, 28, 28)
    u = torch.randint(0, 2, (t_max, batch, 1)).float()
    z0 = torch.zeros(batch, z_dim)
    nets = copy.deepcopy(init)
    params = [p for m in nets for p in m.parameters()]
    opt = optim.RMSprop(params, lr=5e-4)

    def hand():
        opt.zero_grad(set_to_none=True)
        dmm_hand_loss(nets, x, u, z0).backward()
        torch.nn.utils.clip_grad_value_(params, 10)
        opt.step()

    model = dmm_lib(D, L, copy.deepcopy(init), t_max)
    fns = {"hand-written": hand, "pixyz_like": lambda: model.train({"x": x, "z_prev": z0, "u": u})}
    if PD is not None:
        pmodel = dmm_lib(PD, PL, copy.deepcopy(init), t_max)
        fns["pixyz 0.3.3"] = lambda: pmodel.train({"x": x.clone(), "z_prev": z0.clone(), "u": u.clone()})
    show(f"DMM train step (notebook networks, T={t_max}, batch {batch})",
         interleaved(fns, max(3, args.rounds // 4), blocks=1, per_block=2, warmup=1), unit=1e3, label="ms")


# ----------------------------------------------------------------------------------------- log_marginal
def bench_logmarg(args):
    import bench_log_marginal as blm

    q, p = blm.Inference().eval(), blm.Generator().eval()
    prior = D.Normal(loc=0.0, scale=1.0, var=["z"], features_shape=[blm.Z_DIM], name="p_{prior}")
    joint = p * prior
    x = torch.rand(16, blm.X_DIM).bernoulli()
    k = 5000 if not args.quick else 500
    chunk = max(1, 1024 // 16)
    torch.manual_seed(0)
    a = L.log_marginal(joint, q, {"x": x}, k=k)
    torch.manual_seed(0)
    b = blm.hand_written(q, p, x, k, chunk)
    print(f"log_marginal k={k}: max |ours - hand| = {(a - b).abs().max():.2e} nats with the same seed "
          f"(estimates {a.mean():.2f} / {b.mean():.2f})")
    fns = {"hand-written": lambda: blm.hand_written(q, p, x, k, chunk),
           "pixyz_like": lambda: L.log_marginal(joint, q, {"x": x}, k=k)}
    show(f"log_marginal k={k}, quick-start VAE, batch 16 (chunk {chunk})",
         interleaved(fns, max(3, args.rounds // 4), blocks=1, per_block=1, warmup=1), unit=1e3, label="ms")


# ------------------------------------------------------------------------------------------------ compile
def bench_compile(args):
    import torch._dynamo as dynamo

    init = vae_nets(784, 64, 512)
    x = torch.rand(128, 784).bernoulli()
    nets = copy.deepcopy(init)
    p, q, loss = vae_lib(D, L, copy.deepcopy(init), 64)

    def ours_fn(x):
        return loss.eval({"x": x})

    def hand_fn(x):
        return vae_hand_loss(nets, x)

    for name, fn in (("pixyz_like", ours_fn), ("hand-written", hand_fn)):
        ex = dynamo.explain(fn)(x)
        print(f"  torch._dynamo.explain {name}: {ex.graph_count} graphs, {ex.graph_break_count} graph breaks")
        for r in ex.break_reasons[:3]:
            print(f"    break: {str(r.reason)[:150]}")
        dynamo.reset()
    c_ours, c_hand = torch.compile(ours_fn), torch.compile(hand_fn)
    opt_o = optim.Adam([p_ for m in (p, q) for p_ in m.parameters()], lr=1e-3)
    opt_h = optim.Adam([p_ for m in nets for p_ in m.parameters()], lr=1e-3)

    def step(fn, opt):
        def run():
            opt.zero_grad(set_to_none=True)
            fn(x).backward()
            opt.step()
        return run

    t0 = time.perf_counter()
    step(c_ours, opt_o)(), step(c_hand, opt_h)()
    print(f"  compile time (both): {time.perf_counter() - t0:.1f} s")
    fns = {"hand-written": step(c_hand, opt_h), "pixyz_like": step(c_ours, opt_o),
           "hand-written eager": step(hand_fn, opt_h)}
    show("compiled loss + Adam step, quick-start VAE batch 128",
         interleaved(fns, max(3, args.rounds // 2), blocks=3, per_block=3), unit=1e3, label="ms")


# ------------------------------------------------------------------------------------------------- import
def bench_import(args):
    runs = {"torch": "import torch", "torch + pixyz_like": "import torch; import pixyz_like"}
    times = {k: [] for k in runs}
    for _ in range(3 if args.quick else 7):
        for k, code in runs.items():
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
            times[k].append(time.perf_counter() - t0)
    diffs = [b - a for a, b in zip(times["torch"], times["torch + pixyz_like"])]
    print("import time (fresh interpreter, wall clock)")
    for k, ts in times.items():
        print(f"  {k:<24} {statistics.median(ts):.3f} s")
    print(f"  pixyz_like adds {statistics.median(diffs):.3f} s (median of paired differences; target <= 0.3 s)\n")


ROWS = {"tiny": bench_tiny, "batch16": bench_batch16, "chain": bench_chain, "expect": bench_expect,
        "dmm": bench_dmm, "logmarg": bench_logmarg, "compile": bench_compile, "import": bench_import}


def fix_malloc(default_malloc: bool) -> str:
    """Re-run this process with glibc's trimming fixed (unless asked not to); return a description."""
    if not default_malloc and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})
    return "glibc default" if default_malloc else ", ".join(f"{k}={v}" for k, v in MALLOC_ENV.items())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", default=",".join(ROWS), help=f"rows to run, among {','.join(ROWS)}")
    parser.add_argument("--default-malloc", action="store_true", help="keep glibc's trimming (no env vars)")
    parser.add_argument("--dmm-batch", type=int, default=16)
    parser.add_argument("--cpu-clock", action="store_true",
                        help="time with this thread's CPU time, not wall clock (for a loaded machine)")


def run_rows(args) -> None:
    if getattr(args, "cpu_clock", False):
        CLOCK[0] = time.thread_time
        print("clock: thread CPU time (time.thread_time)\n")
    args.rounds = 4 if args.quick else 15
    args.calls = lambda batch: (20 if args.quick else 100) if batch <= 16 else 5
    for name in args.only.split(","):
        if name:
            ROWS[name](args)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    add_arguments(parser)
    args = parser.parse_args(argv)
    malloc = fix_malloc(args.default_malloc)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    random.seed(0)
    print(f"torch {torch.__version__}, 1 CPU thread, malloc: {malloc}; Pixyz {'found' if PD else 'absent'}\n")
    run_rows(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
