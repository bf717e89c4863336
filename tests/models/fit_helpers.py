"""Models and data shared by the fit, checkpoint and distributed tests; also the script their
subprocesses run (``python tests/models/fit_helpers.py <mode> ...``)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[2]
if __package__:
    from ..quickstart import make
else:  # run as a script by a subprocess
    sys.path.insert(0, str(ROOT))
    from tests.quickstart import make  # noqa: E402

from pixyz_like.distributions import Normal  # noqa: E402
from pixyz_like.losses import Expectation as E  # noqa: E402
from pixyz_like.losses import KullbackLeibler, LogProb, Parameter  # noqa: E402
from pixyz_like.models import Model  # noqa: E402

X_DIM, Z_DIM, HIDDEN = 12, 3, 16


def make_vae(lr: float = 1e-3, beta: bool = False, hidden: int = HIDDEN) -> Model:
    """The quick-start VAE at small sizes (optionally with a scheduled weight ``beta`` on the KL)."""
    p, q, prior = make(x_dim=X_DIM, z_dim=Z_DIM, hidden=hidden)
    kl = KullbackLeibler(q, prior)
    loss = ((Parameter("beta") * kl if beta else kl) - E(q, LogProb(p))).mean()
    return Model(loss, distributions=[p, q], optimizer_params={"lr": lr})


def vae_data(n: int = 96, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, X_DIM, generator=g) > 0.5).float()


class Regressor(Normal):
    """p(x|y) = N(x; W y + b, exp(s)): a deterministic loss (no sampling), for exact comparisons."""

    def __init__(self, y_dim: int = 3, x_dim: int = 2) -> None:
        super().__init__(var=["x"], cond_var=["y"], name="p")
        self.net = nn.Linear(y_dim, x_dim)
        self.log_scale = nn.Parameter(torch.zeros(x_dim))

    def forward(self, y):
        return {"loc": self.net(y), "scale": self.log_scale.exp().expand(y.shape[0], -1)}


def make_regression(optimizer=torch.optim.SGD, lr: float = 0.05) -> Model:
    p = Regressor()
    return Model(-p.log_prob().mean(), distributions=[p], optimizer=optimizer, optimizer_params={"lr": lr})


def regression_data(n: int = 32, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(n, 3, generator=g)
    x = y[:, :2] * 2.0 + 0.1 * torch.randn(n, 2, generator=g)
    return x, y


def params(model: Model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.distributions.state_dict().items()}


# ---------------------------------------------------------------------- resume run (fresh process)
RESUME = {"epochs": 3, "batch_size": 12, "n": 80}


def resume_loaders():
    data = vae_data(RESUME["n"])
    train = DataLoader(TensorDataset(data), batch_size=RESUME["batch_size"], shuffle=True)
    test = DataLoader(TensorDataset(data[:24]), batch_size=12)
    return train, test


def resume_fit(model: Model, max_steps: int | None, epochs: int = RESUME["epochs"], **kw):
    from pixyz_like.losses.schedules import linear_warmup

    train, test = resume_loaders()
    return model.fit(train, epochs, test, keys=("x",), progress=False, max_steps=max_steps,
                     schedules={"beta": linear_warmup(0.1, 1.0, steps=8)}, **kw)


def _resume_main(max_steps: int, *ckpts_and_outs: str) -> None:
    for ckpt, out in zip(ckpts_and_outs[::2], ckpts_and_outs[1::2], strict=True):
        torch.manual_seed(123)  # a different state: everything must come from the checkpoint
        model = make_vae(lr=1e-2, beta=True)
        history = resume_fit(model, max_steps, resume=ckpt)
        torch.save({"params": params(model), "history": history}, out)


# ---------------------------------------------------------------------- kill mid-save
def _save_forever(ckpt: str, size: int = 4_000_000) -> None:
    import io
    import time

    from pixyz_like.models._checkpoint import atomic_save

    atomic_save({"version": 0, "w": torch.zeros(10)}, ckpt)
    big = torch.randn(size)
    atomic_save({"version": 1, "w": big}, ckpt)  # the last good checkpoint
    real_save = torch.save

    def stalled_save(obj, f, *args, **kwargs):
        # Write half of the serialised bytes to the temporary file, then block: the parent kills the
        # process exactly while a checkpoint is half written (no race with the timing of the kill).
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        print("mid-write", flush=True)
        time.sleep(600)

    torch.save = stalled_save
    print("ready", flush=True)
    atomic_save({"version": 2, "w": big * 2}, ckpt)


# ---------------------------------------------------------------------- torchrun worker
DDP = {"steps": 12, "batch_size": 8, "n": 64}


def _ddp_main(out_dir: str) -> None:
    from pixyz_like.models import distributed as pdist
    from pixyz_like.models import resume
    from pixyz_like.models.training import Callback

    torch.set_num_threads(1)
    pdist.init_distributed()
    rank = pdist.get_rank()
    saves = []
    real_save = resume.write_checkpoint
    resume.write_checkpoint = lambda obj, path: (saves.append(str(path)), real_save(obj, path))

    class Record(Callback):
        def __init__(self):
            self.losses = []

        def on_step_end(self, model, state, logs):
            self.losses.append(logs["loss"])

    # Different seeds per rank: fit must start every rank from rank 0's parameters.
    torch.manual_seed(rank)
    vae = make_vae(lr=1e-2)
    rec = Record()
    loader = DataLoader(TensorDataset(vae_data(DDP["n"])), batch_size=DDP["batch_size"], shuffle=True)
    vae.fit(loader, epochs=100, keys=("x",), progress=False, max_steps=DDP["steps"], callbacks=[rec],
            checkpoint=os.path.join(out_dir, "vae.pt"), log_dir=os.path.join(out_dir, "tb"))

    torch.manual_seed(0)
    reg = make_regression()
    x, y = regression_data()
    reg_loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=False)
    reg_hist = reg.fit(reg_loader, epochs=2, keys=("x", "y"), progress=False)

    torch.save({"vae": params(vae), "losses": rec.losses, "saves": saves, "reg": params(reg),
                "reg_history": reg_hist}, os.path.join(out_dir, f"rank{rank}.pt"))
    pdist.cleanup_distributed()


if __name__ == "__main__":
    torch.set_num_threads(1)
    mode = sys.argv[1]
    if mode == "resume":
        _resume_main(int(sys.argv[2]), *sys.argv[3:])
    elif mode == "save_forever":
        _save_forever(sys.argv[2], *map(int, sys.argv[3:4]))
    elif mode == "ddp":
        _ddp_main(sys.argv[2])
    else:
        print(json.dumps({"error": f"unknown mode {mode}"}))
        sys.exit(2)
