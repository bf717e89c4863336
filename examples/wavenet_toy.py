"""A WaveNet-style model (van den Oord et al., 2016) of toy waveforms, generated with a step cache.

    p(x|y) = prod_t Categorical(x_t; softmax(f_t(x_<t, y))),   x_t in {0, 1/(K-1), ..., 1}
    loss = - mean( log p(x|y) )      (nats per sequence; also bits per step)

The data are noisy sine waves of four frequencies (the class y, given one-hot) with random phases
and amplitudes, quantised to K levels. f is a stack of dilated causal convolutions with gated
activations (pixyz_like.layers.WaveNet), conditioned on y. The distribution defines
``forward_step``, so generation runs one cheap step per time step with a StepCache (Paine et al.,
2016, "Fast WaveNet") instead of one full pass over the prefix per time step; the script checks that
both give the same samples from the same noise and prints both timings (the tests check the equality
in float64; in float32 a draw within rounding of a category boundary could in principle differ).
Figures: generated waveforms per class beside data (PNG and TensorBoard).

    python examples/wavenet_toy.py --epochs 10

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import math
import os
import time

import torch
from _common import loaders, make_parser, prepare
from torch import optim
from torch.utils.data import TensorDataset

from pixyz_like.autoregressions import AutoregressiveCategorical
from pixyz_like.layers import WaveNet
from pixyz_like.losses import LogProb
from pixyz_like.models import EpochPrinter, EveryEpoch, Model, TensorBoardLogger

N_CLASSES = 4


def waveforms(n: int, length: int, n_levels: int, seed: int) -> TensorDataset:
    """``(x, y)``: ``x`` of shape ``(n, 1, length)`` on the levels k/(K-1), ``y`` one-hot classes."""
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, N_CLASSES, (n,), generator=g)
    freq = (label + 1).double() * 2 * math.pi / length * 2
    phase = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
    amp = 0.25 + 0.15 * torch.rand(n, generator=g, dtype=torch.float64)
    t = torch.arange(length, dtype=torch.float64)
    wave = 0.5 + amp[:, None] * torch.sin(freq[:, None] * t + phase[:, None])
    wave = wave + 0.02 * torch.randn(n, length, generator=g, dtype=torch.float64)
    x = (wave.clamp(0, 1) * (n_levels - 1)).round() / (n_levels - 1)
    y = torch.nn.functional.one_hot(label, N_CLASSES)
    return TensorDataset(x.unsqueeze(1).to(torch.get_default_dtype()), y.to(torch.get_default_dtype()))


class ToyWaveNet(AutoregressiveCategorical):
    """p(x|y) over (1, length) sequences of ``n_levels`` levels, with cached generation."""

    def __init__(self, length: int, n_levels: int, channels: int, dilations) -> None:
        super().__init__(var=["x"], cond_var=["y"], features_shape=[1, length], n_levels=n_levels, name="p")
        self.net = WaveNet(1, n_levels, channels=channels, kernel_size=2, dilations=dilations,
                           cond_channels=N_CLASSES)

    def forward(self, x, y):
        return {"logits": self.net(x, y)}

    def forward_step(self, cache, t, x, y):
        return {"logits": self.net.step(x, cache, y)}


def build(length: int, n_levels: int, channels: int, dilations, device: str = "cpu", lr: float = 1e-3):
    """The distribution, the loss -mean log p(x|y) and its Model."""
    p = ToyWaveNet(length, n_levels, channels, dilations)
    loss = -LogProb(p).mean()
    model = Model(loss, distributions=[p], optimizer=optim.Adam, optimizer_params={"lr": lr}, device=device)
    return p, loss, model


def compare_generation(p, y: torch.Tensor, seed: int) -> dict[str, float]:
    """Generate with and without the cache from the same noise: the samples and both timings."""
    out = {}
    for cached in (True, False):
        torch.manual_seed(seed)
        start = time.perf_counter()
        out[cached] = p.sample({"y": y}, use_cache=cached)["x"]
        out[f"seconds_{cached}"] = time.perf_counter() - start
    return {"identical": float(torch.equal(out[True], out[False])), "cached_s": out["seconds_True"],
            "uncached_s": out["seconds_False"], "samples": out[True]}


def plot(path: str, samples: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """Generated waveforms (one row per class) beside a data waveform of the same class: saved as a PNG
    and returned as an image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(N_CLASSES, 2, figsize=(8, 1.6 * N_CLASSES), sharey=True)
    for c in range(N_CLASSES):
        axes[c, 0].plot(samples[c, 0].cpu().numpy(), lw=1)
        axes[c, 1].plot(data[c, 0].cpu().numpy(), lw=1, color="k")
        axes[c, 0].set_ylabel(f"class {c}")
    axes[0, 0].set_title("generated (cached)")
    axes[0, 1].set_title("data")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    fig.canvas.draw()  # the same figure as an image tensor (1, 3, H, W) in [0, 1], for TensorBoard
    rgba = torch.from_numpy(np.asarray(fig.canvas.buffer_rgba()).copy())
    plt.close(fig)
    return rgba[..., :3].permute(2, 0, 1).unsqueeze(0).float() / 255


def main(argv=None) -> list[dict[str, float]]:
    """Train; returns the history of per-epoch train/test NLL (nats per sequence)."""
    parser = make_parser(__doc__, "runs/wavenet_toy", epochs=10, batch_size=64)
    parser.add_argument("--length", type=int, default=96)
    parser.add_argument("--levels", type=int, default=32)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--dilations", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--n-train", type=int, default=2000)
    args = parser.parse_args(argv)
    if args.smoke:
        args.length, args.channels, args.dilations, args.n_train = 32, 8, [1, 2, 4], 256
    prepare(args)
    train = waveforms(args.n_train, args.length, args.levels, seed=args.seed)
    test = waveforms(max(args.n_train // 4, 64), args.length, args.levels, seed=args.seed + 1000)
    train_loader, test_loader = loaders(args, train, test)
    p, loss, model = build(args.length, args.levels, args.channels, args.dilations, args.device, args.lr)
    print(p.prob_joint_factorized_and_text)
    print("Loss:", loss)
    y_show = torch.eye(N_CLASSES, device=args.device)
    data_show = torch.stack([test.tensors[0][test.tensors[1].argmax(1) == c][0] for c in range(N_CLASSES)])

    grids: dict[str, torch.Tensor] = {}

    def figures(epoch, logs):
        gen = compare_generation(p, y_show, seed=args.seed + epoch)
        grids["samples"] = plot(os.path.join(args.out, f"samples_epoch{epoch}.png"), gen["samples"], data_show)
        print(f"  generation of {N_CLASSES} x {args.length} steps: cached {gen['cached_s']:.3f} s, "
              f"uncached {gen['uncached_s']:.3f} s, identical samples: {bool(gen['identical'])}")
        return {"test/bits_per_step": logs["test/loss"] / (args.length * math.log(2)),
                "test/cached_equals_uncached": gen["identical"]}

    logger = TensorBoardLogger(args.out, images=lambda model: grids)  # the figure drawn at each epoch end
    history = model.fit(train_loader, args.epochs, test_loader, keys=("x", "y"),
                        callbacks=[EveryEpoch(figures), logger, EpochPrinter("test/bits_per_step")],
                        progress=not args.no_progress)
    nats = history[-1]["test/loss"]
    print(f"test NLL {nats:.2f} nats per sequence = {nats / (args.length * math.log(2)):.3f} bits per step "
          f"(uniform over {args.levels} levels: {math.log2(args.levels):.3f})")
    return history


if __name__ == "__main__":
    main()
