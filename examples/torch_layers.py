"""pygen's pair on MNIST: one network code as a classifier p(y|x) and, inputs reversed, as a generator p(x|y).

Both are plain PyTorch: an MLP whose last layer is a distribution layer (pixyz_like.distributions.
IndependentCategorical / IndependentBernoulli, as pygen's and TensorFlow Probability's layers), so the
network returns a torch.distributions.Distribution. from_torch makes each a pixyz_like distribution:

    p(y|x) = from_torch(net(x -> IndependentCategorical(10)))          the classifier
    p(x|y) = from_torch(net(one_hot(y) -> IndependentBernoulli([1, 28, 28])))   the conditional generator
    loss = - mean( log p(y|x) + log p(x|y) )

``layer_network`` is the one piece of code building both; its ``params_size()`` gives the width of the
last linear layer. Training is Model.fit on binarised digits; the script reports the classifier's
test accuracy (read off the torch distribution that to_torch returns) and writes digits generated for
each class as PNG.

    python examples/torch_layers.py --epochs 5 --data-dir ../shared/data/mnist/raw

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import os

import torch
from _common import make_parser, mnist, save_grid
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pixyz_like.distributions import IndependentBernoulli, IndependentCategorical, from_torch, to_torch
from pixyz_like.losses import LogProb
from pixyz_like.models import Model
from pixyz_like.models.training import Callback, TensorBoardLogger

SHAPE = [1, 28, 28]


class OneHot(nn.Module):
    """Class indices to one-hot float vectors."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, y):
        return nn.functional.one_hot(y, self.n).float()


def layer_network(in_features: int, layer: nn.Module, hidden: int, first: nn.Module) -> nn.Sequential:
    """``first`` (shaping the input), an MLP, and a distribution layer reading its last dimension."""
    return nn.Sequential(first, nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, layer.params_size()),
                         layer)


class Figures(Callback):
    """After the last epoch: eight digits generated for each class, one row per class."""

    def __init__(self, generator, epochs: int, out: str, per_class: int = 8) -> None:
        self.generator, self.epochs, self.out, self.per_class = generator, epochs, out, per_class
        self.grids: dict[str, torch.Tensor] = {}

    def on_epoch_end(self, model, state, logs):
        self.grids = {}
        if state.epoch + 1 < self.epochs:
            return
        device = next(self.generator.parameters()).device
        y = torch.arange(10, device=device).repeat_interleave(self.per_class)
        with torch.no_grad():
            x = self.generator.sample({"y": y})["x"]
        save_grid(x, os.path.join(self.out, "generated_by_class.png"), nrow=self.per_class, shape=tuple(SHAPE))
        self.grids = {"generated": x}


def accuracy(classifier, loader, device) -> float:
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            probs = to_torch(classifier, {"x": x.to(device)}).probs  # a torch Categorical
            correct += int((probs.argmax(-1).cpu() == y).sum())
            total += len(y)
    return correct / max(total, 1)


def main(argv=None) -> dict:
    """Train both; returns the per-epoch losses and the test accuracy."""
    parser = make_parser(__doc__, "runs/torch_layers", epochs=5, batch_size=128)
    parser.add_argument("--hidden", type=int, default=256)
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.hidden = 3, 16
        args.batch_size = min(args.batch_size, 32)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    train, test = mnist(args, flatten=False)
    train = TensorDataset((train.tensors[0] > 0.5).float(), train.tensors[1])  # binary, as pygen's example
    test = TensorDataset((test.tensors[0] > 0.5).float(), test.tensors[1])
    classifier = from_torch(layer_network(784, IndependentCategorical(10), args.hidden, nn.Flatten()),
                            var=["y"], cond_var=["x"], name="p")
    generator = from_torch(layer_network(10, IndependentBernoulli(SHAPE), args.hidden, OneHot(10)),
                           var=["x"], cond_var=["y"], name="p")
    loss = -(LogProb(classifier) + LogProb(generator)).mean()
    print(loss)
    model = Model(loss, distributions=[classifier, generator], optimizer_params={"lr": args.lr}, device=args.device)
    figures = Figures(generator, args.epochs, args.out)
    g = torch.Generator().manual_seed(args.seed)
    train_loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, generator=g)
    test_loader = DataLoader(test, batch_size=512)
    logs = model.fit(train_loader, args.epochs, test_loader, keys=("x", "y"),
                     callbacks=[figures, TensorBoardLogger(args.out, images=lambda m: figures.grids,
                                                           image_shape=SHAPE)],
                     progress=not args.no_progress)
    history = {"train": [e["train/loss"] for e in logs], "test": [e["test/loss"] for e in logs]}
    for i, e in enumerate(logs, 1):
        print(f"Epoch {i}: train loss {e['train/loss']:.2f}, test loss {e['test/loss']:.2f}")
    acc = accuracy(classifier, test_loader, args.device)
    print(f"classifier p(y|x): test accuracy {100 * acc:.1f}%")
    history["accuracy"] = [acc]
    return history


if __name__ == "__main__":
    main()
