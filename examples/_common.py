"""Helpers shared by the example scripts: command line, data, figures and networks.

Every example is a script with the same options (``--epochs --batch-size --lr --device --seed --data-dir
--out --smoke --no-progress``) and a ``main(argv) -> history`` function returning what ``Model.fit``
returns (one dict of epoch means per epoch), so the test suite can run each one in-process with
``--smoke`` (a few steps on small random data of the right shape).

There is no training loop here: every example trains with ``Model.fit`` (TensorBoard logs with
``log_dir=`` or a ``TensorBoardLogger``, figures and metrics with ``EveryEpoch`` callbacks, weights
with ``schedules=``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset, default_collate

from pixyz_like.distributions import Bernoulli, Categorical, Normal

__all__ = [
    "make_parser",
    "prepare",
    "smoke_images",
    "mnist",
    "cifar10",
    "loaders",
    "with_one_hot",
    "collate",
    "save_grid",
    "plot_density_2d",
    "one_hot",
    "binarize",
    "mlp",
    "NormalMLP",
    "BernoulliMLP",
    "CategoricalMLP",
    "ScaleTranslate",
    "ImageScaleTranslate",
    "multiscale_flow",
]

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


def prepare(args: argparse.Namespace, smoke_epochs: int = 3) -> None:
    """Seed and create ``--out`` (where ``Model.fit`` writes the TensorBoard log); ``--smoke`` caps the
    epochs and the batch size."""
    if args.smoke:
        args.epochs = min(args.epochs, smoke_epochs)
        args.batch_size = min(args.batch_size, 32)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)


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


def collate(transform: Callable[[Any], Any] | None):
    """A ``DataLoader`` ``collate_fn``: torch's default collation, then ``transform(batch)`` (e.g. a
    fresh binarisation of every batch); ``None`` for torch's default."""
    if transform is None:
        return None
    return lambda items: transform(default_collate(items))


def loaders(args: argparse.Namespace, train, test, drop_last: bool = False,
            transform: Callable[[Any], Any] | None = None,
            test_transform: Callable[[Any], Any] | None = None) -> tuple[DataLoader, DataLoader]:
    """Shuffled (seeded) training loader and ordered test loader; each batch goes through
    ``transform`` (the test batches through ``test_transform``)."""
    g = torch.Generator().manual_seed(args.seed)
    return (DataLoader(train, batch_size=args.batch_size, shuffle=True, generator=g, drop_last=drop_last,
                       collate_fn=collate(transform)),
            DataLoader(test, batch_size=args.batch_size, shuffle=False, collate_fn=collate(test_transform)))


def with_one_hot(dataset: TensorDataset, n: int = 10) -> TensorDataset:
    """``(x, label)`` pairs as ``(x, one-hot label)``: what a formula over a categorical ``y`` reads."""
    x, y = dataset.tensors
    return TensorDataset(x, one_hot(y, n))


def one_hot(y: torch.Tensor, n: int = 10) -> torch.Tensor:
    """Class indices to float one-hot vectors."""
    return torch.nn.functional.one_hot(y, n).to(torch.get_default_dtype())


def binarize(batch: Any) -> Any:
    """Dynamic binarisation (Salakhutdinov & Murray, 2008): a fresh Bernoulli draw of every grey level
    of an image batch, or of the images (first element) of an ``(images, ...)`` batch."""
    if isinstance(batch, torch.Tensor):
        return torch.bernoulli(batch)
    return (torch.bernoulli(batch[0]), *batch[1:])


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
