"""Action-conditional Deep Markov Model (Krishnan, Shalit & Sontag, 2017) with ``IterativeLoss``.

Toy video: a 3x3 square on a 16x16 screen moved by actions a_t (stay, up, down, left, right).

    p(x_1:T, z_1:T | a) = prod_t p(x_t|z_t) p(z_t|z_{t-1}, a_{t-1})        (z_0 = 0)
    q(z_1:T | x_1:T)    = prod_t q(z_t|z_{t-1}, h_t),  h_t = RNN(x_t, ..., x_T)  (a backward GRU)
    step loss_t = - E_q(z_t|z_{t-1},h_t)[log p(x_t|z_t)] + KL[q(z_t|z_{t-1},h_t) || p(z_t|z_{t-1},a_{t-1})]
    loss = mean( E_{h ~ RNN(x)}[ sum_t step loss_t ] )

``IterativeLoss`` slices the series x, h and a at each step and carries the sampled z into z_prev
(``update_value={"z": "z_prev"}``), as in Pixyz's DMM notebook. Figures: reconstructions, and
"imagined" futures: from the first frame's state, the transition model alone rolls the square along
the recorded actions.

    python examples/dmm.py --epochs 20

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import os

import torch
from _common import BernoulliMLP, NormalMLP, collate, make_parser, one_hot, prepare, save_grid
from torch import nn, optim
from torch.utils.data import DataLoader, TensorDataset

from pixyz_like.distributions import Deterministic
from pixyz_like.losses import Expectation as E
from pixyz_like.losses import IterativeLoss, KullbackLeibler, LogProb
from pixyz_like.models import EpochPrinter, EveryEpoch, Model

SIDE, N_ACTIONS, Z_DIM, H_DIM = 16, 5, 16, 64
X_DIM = SIDE * SIDE
MOVES = torch.tensor([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]])


def moving_square(n: int, t_max: int, seed: int):
    """``(x, a)``: frames ``(T, n, 256)`` and one-hot actions ``(T, n, 5)``; ``a[t]`` led to frame ``t``."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.randint(1, SIDE - 1, (n, 2), generator=g)
    acts = torch.randint(0, N_ACTIONS, (t_max, n), generator=g)
    acts[0] = 0
    frames = []
    for t in range(t_max):
        pos = (pos + MOVES[acts[t]]).clamp(1, SIDE - 2)
        img = torch.zeros(n, SIDE, SIDE)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                img[torch.arange(n), pos[:, 0] + dr, pos[:, 1] + dc] = 1.0
        frames.append(img.reshape(n, X_DIM))
    return torch.stack(frames), one_hot(acts, N_ACTIONS)


class BackwardRNN(Deterministic):
    """h_t = GRU(x_t, h_{t+1}): a summary of the present and future frames."""

    def __init__(self) -> None:
        super().__init__(var=["h"], cond_var=["x"], name="f")
        self.gru = nn.GRU(X_DIM, H_DIM)

    def forward(self, x):
        h, _ = self.gru(x.flip(0))
        return {"h": h.flip(0)}


def build(device: str = "cpu", lr: float = 1e-3):
    """The distributions, the iterative loss and the Model."""
    rnn = BackwardRNN()
    transition = NormalMLP("z", ["z_prev", "a"], Z_DIM + N_ACTIONS, Z_DIM, hidden=(64,), name="p")
    emission = BernoulliMLP("x", ["z"], Z_DIM, X_DIM, hidden=(128,), name="p")
    q = NormalMLP("z", ["h", "z_prev"], H_DIM + Z_DIM, Z_DIM, hidden=(64,), name="q")
    step_loss = -E(q, LogProb(emission)) + KullbackLeibler(q, transition)
    loss = IterativeLoss(step_loss, series_var=["x", "h", "a"], update_value={"z": "z_prev"}).expectation(rnn).mean()
    model = Model(loss, distributions=[rnn, transition, emission, q], optimizer=optim.Adam,
                  optimizer_params={"lr": lr}, device=device)
    return {"rnn": rnn, "transition": transition, "emission": emission, "q": q}, loss, model


def main(argv=None) -> list[dict[str, float]]:
    """Train; returns the history of per-epoch train/test losses (per sequence)."""
    parser = make_parser(__doc__, "runs/dmm", epochs=20, batch_size=64)
    parser.add_argument("--steps", type=int, default=10, help="frames per sequence")
    args = parser.parse_args(argv)
    prepare(args)
    if args.smoke:
        args.steps = min(args.steps, 5)
    n_train, n_test = (96, 32) if args.smoke else (4000, 500)
    x_tr, a_tr = moving_square(n_train, args.steps, args.seed)
    x_te, a_te = moving_square(n_test, args.steps, args.seed + 1000)
    g = torch.Generator().manual_seed(args.seed)

    def time_first(b):  # loaders batch along dim 0: store (n, T, ...), give the loss time-first sequences
        x, a = b[0].transpose(0, 1), b[1].transpose(0, 1)
        return {"x": x, "a": a, "z_prev": torch.zeros(x.shape[1], Z_DIM)}

    train_loader = DataLoader(TensorDataset(x_tr.transpose(0, 1), a_tr.transpose(0, 1)), batch_size=args.batch_size,
                              shuffle=True, generator=g, collate_fn=collate(time_first))
    test_loader = DataLoader(TensorDataset(x_te.transpose(0, 1), a_te.transpose(0, 1)), batch_size=args.batch_size,
                             collate_fn=collate(time_first))
    d, loss, model = build(args.device, args.lr)
    print("Loss:", loss)
    print(model)

    def figures(epoch, logs):
        x, a = x_te[:, :8].to(args.device), a_te[:, :8].to(args.device)
        h = d["rnn"].sample({"x": x})["h"]
        z, recon, imagined = torch.zeros(8, Z_DIM, device=args.device), [], []
        for t in range(args.steps):  # reconstruction: filter with q, decode the mean
            z = d["q"].sample({"h": h[t], "z_prev": z}, sample_mean=True)["z"]
            recon.append(d["emission"].sample_mean({"z": z}))
        z = d["q"].sample({"h": h[0], "z_prev": torch.zeros(8, Z_DIM, device=args.device)}, sample_mean=True)["z"]
        for t in range(args.steps):  # imagination: the transition alone, driven by the actions
            if t > 0:
                z = d["transition"].sample({"z_prev": z, "a": a[t]}, sample_mean=True)["z"]
            imagined.append(d["emission"].sample_mean({"z": z}))
        rows = torch.cat([x.transpose(0, 1), torch.stack(recon, 1), torch.stack(imagined, 1)], 0)
        save_grid(rows.reshape(-1, X_DIM), os.path.join(args.out, f"sequences_epoch{epoch}.png"), nrow=args.steps,
                  shape=(1, SIDE, SIDE))

    return model.fit(train_loader, args.epochs, test_loader, log_dir=args.out,
                     callbacks=[EveryEpoch(figures), EpochPrinter()], progress=not args.no_progress)


if __name__ == "__main__":
    main()
