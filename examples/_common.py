"""Helpers shared by the example scripts: command line, data, the training loop, logging and figures.

Every example is a script with the same options (``--epochs --batch-size --lr --device --seed --data-dir
--out --smoke --no-progress``) and a ``main(argv) -> history`` function, so the test suite can run each
one in-process with ``--smoke`` (a few steps on small random data of the right shape).

The training loop here is deliberately plain: one call per batch that returns ``(loss, {term: value})``,
an evaluation pass per epoch, TensorBoard scalars for the loss and each named term, and a callback for
the example's figures.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from pixyz_like.distributions import Bernoulli, Categorical, Normal

__all__ = [
    "make_parser",
    "prepare",
    "smoke_images",
    "mnist",
    "cifar10",
    "loaders",
    "fit",
    "save_grid",
    "plot_density_2d",
    "one_hot",
    "cycle",
    "binarize",
    "mlp",
    "NormalMLP",
    "BernoulliMLP",
    "CategoricalMLP",
    "ScaleTranslate",
    "ImageScaleTranslate",
    "multiscale_flow",
]

StepFn = Callable[[Any], tuple[torch.Tensor, Mapping[str, torch.Tensor]]]


def make_parser(doc: str | None, out: str, epochs: int = 10, batch_size: int = 128,
                lr: float = 1e-3) -> argparse.ArgumentParser:
    """The options every example accepts; an example may add its own before parsing."""
    first = (doc or "").strip().splitlines()[0] if doc else ""
    parser = argparse.ArgumentParser(description=first)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data-dir", default=None, help="dataset folder (MNIST IDX files or torchvision's "
                        "root); default: download to ~/.cache/pixyz_like/data")
    parser.add_argument("--out", default=out, help="TensorBoard logs and PNG figures go here")
    parser.add_argument("--smoke", action="store_true", help="a few steps on small random data (for tests)")
    parser.add_argument("--no-progress", action="store_true", help="hide the tqdm progress bar")
    return parser


def prepare(args: argparse.Namespace, smoke_epochs: int = 3):
    """Seed, create ``--out`` and return a TensorBoard writer; ``--smoke`` caps the epochs."""
    if args.smoke:
        args.epochs = min(args.epochs, smoke_epochs)
        args.batch_size = min(args.batch_size, 32)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    from tensorboardX import SummaryWriter

    return SummaryWriter(args.out)


def smoke_images(n: int, shape: tuple[int, ...], n_classes: int = 10, seed: int = 0,
                 binary: bool = True) -> TensorDataset:
    """Random images with learnable structure: ``n_classes`` random prototypes (the same for every
    ``seed``, so train and test sets share them), each pixel drawn around its class's prototype. A
    model fitted to them has a loss that falls reliably."""
    protos = torch.rand(n_classes, *shape, generator=torch.Generator().manual_seed(12345)) * 0.8 + 0.1
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % n_classes
    labels = labels[torch.randperm(n, generator=g)]
    probs = protos[labels]
    x = torch.bernoulli(probs, generator=g) if binary else (probs + 0.05 * torch.randn(probs.shape, generator=g))
    return TensorDataset(x.clamp(0, 1), labels)


def mnist(args: argparse.Namespace, flatten: bool = True, n_smoke: tuple[int, int] = (320, 64)):
    """``(train, test)`` MNIST datasets of ``(x, label)``, grey levels in [0, 1] (random under ``--smoke``)."""
    shape = (784,) if flatten else (1, 28, 28)
    if args.smoke:
        return (smoke_images(n_smoke[0], shape, seed=args.seed),
                smoke_images(n_smoke[1], shape, seed=args.seed + 1000))
    from pixyz_like.datasets import load_mnist

    return load_mnist(args.data_dir, flatten=flatten)


def cifar10(args: argparse.Namespace, n_smoke: tuple[int, int] = (64, 32)):
    """``(train, test)`` CIFAR-10 as ``(3, 32, 32)`` tensors in [0, 1] (torchvision; random under ``--smoke``)."""
    if args.smoke:
        return (smoke_images(n_smoke[0], (3, 32, 32), seed=args.seed, binary=False),
                smoke_images(n_smoke[1], (3, 32, 32), seed=args.seed + 1000, binary=False))
    from torchvision import datasets, transforms

    root = args.data_dir or os.path.join(os.path.expanduser("~"), ".cache", "pixyz_like", "data")
    tf = transforms.ToTensor()
    try:
        return (datasets.CIFAR10(root, train=True, download=True, transform=tf),
                datasets.CIFAR10(root, train=False, download=True, transform=tf))
    except Exception as e:  # offline: say what to do instead of a deep urllib trace
        raise SystemExit(f"CIFAR-10 is not under {root} and could not be downloaded ({e}); "
                         "pass --data-dir pointing at torchvision's CIFAR-10 root folder") from e


def loaders(args: argparse.Namespace, train, test, drop_last: bool = False) -> tuple[DataLoader, DataLoader]:
    """Shuffled (seeded) training loader and ordered test loader."""
    g = torch.Generator().manual_seed(args.seed)
    return (DataLoader(train, batch_size=args.batch_size, shuffle=True, generator=g, drop_last=drop_last),
            DataLoader(test, batch_size=args.batch_size, shuffle=False))


def one_hot(y: torch.Tensor, n: int = 10) -> torch.Tensor:
    """Class indices to float one-hot vectors."""
    return torch.nn.functional.one_hot(y, n).to(torch.get_default_dtype())


def binarize(x: torch.Tensor) -> torch.Tensor:
    """Dynamic binarisation (Salakhutdinov & Murray, 2008): a fresh Bernoulli draw of every grey level."""
    return torch.bernoulli(x)


def cycle(iterable: Iterable):
    """Repeat a (re-iterable) loader forever, e.g. the few labelled batches in semi-supervised learning."""
    while True:
        yield from iterable


def _batch_len(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return len(batch)
    if isinstance(batch, Mapping):
        return len(next(iter(batch.values())))
    return _batch_len(batch[0])


def fit(
    args: argparse.Namespace,
    writer,
    train_loader: Iterable,
    test_loader: Iterable | None,
    train_step: StepFn,
    test_step: StepFn | None = None,
    on_epoch_end: Callable[[int], Mapping[str, float] | None] | None = None,
    steps_per_epoch: int | None = None,
) -> dict[str, list[float]]:
    """Train for ``args.epochs`` epochs and return the history.

    ``train_step(batch)`` and ``test_step(batch)`` return ``(loss, {term: value})`` (what
    ``Model.train(..., return_terms=True)`` returns). The loss and each term are logged to TensorBoard
    per step (train) and per epoch (test, averaged over data points). ``on_epoch_end(epoch)`` draws the
    figures and may return extra metrics (e.g. accuracy), logged and added to the history.

    The history holds ``train`` and ``test`` (per-epoch mean losses per data point), ``steps`` (every
    training step's loss) and any extra metric.
    """
    from tqdm import tqdm

    history: dict[str, list[float]] = {"train": [], "test": [], "steps": []}
    step = 0
    for epoch in range(1, args.epochs + 1):
        total, n = 0.0, 0
        bar = tqdm(train_loader, desc=f"epoch {epoch}", disable=args.no_progress, file=sys.stdout,
                   total=steps_per_epoch)
        for i, batch in enumerate(bar):
            if steps_per_epoch is not None and i >= steps_per_epoch:
                break
            loss, terms = train_step(batch)
            value = float(loss)
            if not math.isfinite(value):
                raise FloatingPointError(f"epoch {epoch}, step {step}: the training loss is {value}")
            step += 1
            size = _batch_len(batch)
            total, n = total + value * size, n + size
            history["steps"].append(value)
            writer.add_scalar("train/loss", value, step)
            for tag, v in terms.items():
                writer.add_scalar(f"train/{tag}", float(v), step)
            bar.set_postfix(loss=f"{value:.3f}")
        history["train"].append(total / max(n, 1))
        line = f"Epoch {epoch}: train loss {history['train'][-1]:.4f}"
        if test_step is not None and test_loader is not None:
            total, n = 0.0, 0
            sums: dict[str, float] = {}
            for batch in test_loader:
                loss, terms = test_step(batch)
                size = _batch_len(batch)
                total, n = total + float(loss) * size, n + size
                for tag, v in terms.items():
                    sums[tag] = sums.get(tag, 0.0) + float(v) * size
            history["test"].append(total / max(n, 1))
            writer.add_scalar("test/loss", history["test"][-1], epoch)
            for tag, v in sums.items():
                writer.add_scalar(f"test/{tag}", v / n, epoch)
            line += f", test loss {history['test'][-1]:.4f}"
        if on_epoch_end is not None:
            with torch.no_grad():
                extra = on_epoch_end(epoch) or {}
            for key, v in extra.items():
                history.setdefault(key, []).append(float(v))
                writer.add_scalar(f"test/{key}", float(v), epoch)
                line += f", {key} {float(v):.4f}"
        print(line)
    writer.close()
    return history


def save_grid(images: torch.Tensor, path: str, nrow: int = 8, shape: tuple[int, ...] = (1, 28, 28)) -> None:
    """Save a batch of images (flat or not) as one PNG grid."""
    from torchvision.utils import save_image

    images = images.detach().float().cpu()
    if images.ndim == 2:
        images = images.reshape(-1, *shape)
    save_image(images.clamp(0, 1), path, nrow=nrow)


def plot_density_2d(path: str, log_density: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    samples: torch.Tensor | None = None, lim: float = 4.0, n: int = 200,
                    title: str = "") -> None:
    """Save a PNG of a 2-D density on a grid (and/or a scatter of samples) with matplotlib (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    if log_density is not None:
        xs = torch.linspace(-lim, lim, n)
        grid = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), -1).reshape(-1, 2)
        with torch.no_grad():
            density = log_density(grid).exp().reshape(n, n).cpu()
        ax.imshow(density.numpy(), extent=(-lim, lim, -lim, lim), origin="lower", cmap="viridis")
    if samples is not None:
        s = samples.detach().cpu()
        ax.scatter(s[:, 0].numpy(), s[:, 1].numpy(), s=2, c="w" if log_density is not None else "k", alpha=0.5)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- networks
def mlp(sizes: Iterable[int]) -> nn.Sequential:
    """Linear layers of the given sizes with ReLU between them (none after the last)."""
    sizes = list(sizes)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class _MLPMixin:
    """A trunk ``in -> hidden -> ... -> hidden`` (ReLU) over the concatenated conditioning variables."""

    def _build(self, in_dim: int, hidden: Iterable[int]) -> int:
        hidden = list(hidden)
        self.trunk = nn.Sequential(mlp([in_dim, *hidden]), nn.ReLU()) if hidden else nn.Identity()
        return hidden[-1] if hidden else in_dim

    def _h(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        # concatenate in cond_var order: the order the layer was built for
        return self.trunk(torch.cat([inputs[v] for v in self.cond_var], dim=-1))


class NormalMLP(_MLPMixin, Normal):
    """``N(var; mu(h), diag softplus(s(h))^2)`` with ``h`` an MLP of the conditioning variables."""

    def __init__(self, var: str, cond_var: list[str], in_dim: int, out_dim: int,
                 hidden: Iterable[int] = (512, 512), name: str = "q") -> None:
        super().__init__(var=[var], cond_var=cond_var, name=name)
        h = self._build(in_dim, hidden)
        self.fc_loc = nn.Linear(h, out_dim)
        self.fc_scale = nn.Linear(h, out_dim)

    def forward(self, **inputs):
        h = self._h(inputs)
        return {"loc": self.fc_loc(h), "scale": F.softplus(self.fc_scale(h))}


class BernoulliMLP(_MLPMixin, Bernoulli):
    """``Bernoulli(var; sigmoid(f(h)))`` with ``h`` an MLP of the conditioning variables."""

    def __init__(self, var: str, cond_var: list[str], in_dim: int, out_dim: int,
                 hidden: Iterable[int] = (512, 512), name: str = "p") -> None:
        super().__init__(var=[var], cond_var=cond_var, name=name)
        h = self._build(in_dim, hidden)
        self.fc_out = nn.Linear(h, out_dim)

    def forward(self, **inputs):
        return {"probs": torch.sigmoid(self.fc_out(self._h(inputs)))}


class CategoricalMLP(_MLPMixin, Categorical):
    """``Categorical(var; softmax(f(h)))`` (one-hot values) with ``h`` an MLP of the conditioning variables."""

    def __init__(self, var: str, cond_var: list[str], in_dim: int, out_dim: int,
                 hidden: Iterable[int] = (512, 512), name: str = "p") -> None:
        super().__init__(var=[var], cond_var=cond_var, name=name)
        h = self._build(in_dim, hidden)
        self.fc_out = nn.Linear(h, out_dim)

    def forward(self, **inputs):
        return {"probs": F.softmax(self.fc_out(self._h(inputs)), dim=-1)}


# ---------------------------------------------------------------------------------------------- flows
class ScaleTranslate(nn.Module):
    """(s, t) of a vector coupling layer: an MLP of the masked input (and of a condition y); s bounded by tanh."""

    def __init__(self, features: int, hidden: int = 64, cond_features: int = 0, n_hidden: int = 2) -> None:
        super().__init__()
        self.net = mlp([features + cond_features, *[hidden] * n_hidden, 2 * features])
        self.features = features

    def forward(self, h, y=None):
        out = self.net(h if y is None else torch.cat([h, y], -1))
        return torch.tanh(out[:, : self.features]), out[:, self.features:]


class ImageScaleTranslate(nn.Module):
    """(s, t) of an image coupling layer: a ResNet of the masked image; s = scale * tanh(.)."""

    def __init__(self, channels: int, mid_channels: int, num_blocks: int) -> None:
        super().__init__()
        from pixyz_like.layers import ResNet

        self.net = ResNet(channels, mid_channels, 2 * channels, num_blocks=num_blocks, kernel_size=3, padding=1,
                          double_after_norm=True)
        self.scale = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.channels = channels

    def forward(self, h, y=None):
        out = self.net(h)
        s, t = out[:, : self.channels], out[:, self.channels:]
        return self.scale * torch.tanh(s), t


def multiscale_flow(shape: tuple[int, int, int], n_scales: int, n_steps: int, mid_channels: int, num_blocks: int,
                    glow: bool = False):
    """A multi-scale image flow and the shape of its output (what the prior is over).

    RealNVP (Dinh et al., 2017): each scale is ``n_steps`` checkerboard couplings, a squeeze, ``n_steps``
    channel-wise couplings and a split that factors out half the channels (scored by a learned
    Gaussian); the last scale is ``n_steps + 1`` checkerboard couplings. Glow (Kingma & Dhariwal, 2018):
    each scale is a squeeze, ``n_steps`` steps of (actnorm, invertible 1x1 convolution, channel-wise
    coupling) and a split (none after the last scale). Data are dequantised and logit-transformed first.
    """
    from pixyz_like.flows import (
        ActNorm2d,
        AffineCoupling,
        ChannelConv,
        FlowList,
        Preprocess,
        Split,
        Squeeze,
    )

    c, h, w = shape
    layers: list = [Preprocess()]

    def coupling(ch, mask, i):
        return AffineCoupling(ch, mask_type=mask, scale_translate_net=ImageScaleTranslate(ch, mid_channels, num_blocks),
                              inverse_mask=i % 2 == 1)

    for scale in range(n_scales):
        last = scale == n_scales - 1
        if glow:
            layers.append(Squeeze())
            c, h, w = 4 * c, h // 2, w // 2
            for i in range(n_steps):
                layers += [ActNorm2d(c), ChannelConv(c), coupling(c, "channel_wise", i)]
        else:
            for i in range(n_steps + (1 if last else 0)):
                layers.append(coupling(c, "checkerboard", i))
            if last:
                break
            layers.append(Squeeze())
            c, h, w = 4 * c, h // 2, w // 2
            for i in range(n_steps):
                layers.append(coupling(c, "channel_wise", i))
        if not last:
            split = Split(c)
            layers.append(split)
            c = split.out_features
    return FlowList(layers), (c, h, w)
