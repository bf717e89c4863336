"""Maximum-likelihood digit classifier on MNIST: fit p(y|x) by minimising its negative log-likelihood.

    p(y|x) = Categorical(y; softmax(f(x))),   loss = - mean( log p(y|x) )

y is one-hot; f is a 784-512-512-10 MLP (Pixyz's classifier notebook). The test accuracy is logged
and a PNG shows test digits with their predicted classes.

    python examples/classifier.py --epochs 10 --data-dir ../shared/data/mnist/raw

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

import os

from _common import CategoricalMLP, loaders, make_parser, mnist, prepare, with_one_hot
from torch import optim

from pixyz_like.losses import LogProb
from pixyz_like.models import EpochPrinter, EveryEpoch, Model

X_DIM, Y_DIM = 784, 10


def build(device: str = "cpu", lr: float = 1e-3):
    """The classifier ``p(y|x)``, the loss and the Model."""
    p = CategoricalMLP("y", ["x"], X_DIM, Y_DIM, name="p")
    loss = -LogProb(p).mean()
    model = Model(loss, distributions=[p], optimizer=optim.Adam, optimizer_params={"lr": lr}, device=device)
    return p, loss, model


def accuracy(p, loader, device) -> float:
    """Fraction of the loader's data whose most probable class is the label (one-hot)."""
    correct = n = 0
    for x, y in loader:
        probs = p.get_params({"x": x.to(device)})["probs"]
        correct += int((probs.argmax(-1).cpu() == y.argmax(-1)).sum())
        n += len(y)
    return correct / n


def plot_predictions(p, x, path) -> None:
    """A 4x8 grid of digits titled with their predicted class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pred = p.get_params({"x": x})["probs"].argmax(-1).cpu()
    fig, axes = plt.subplots(4, 8, figsize=(8, 4.5))
    for ax, img, k in zip(axes.flat, x.cpu(), pred):
        ax.imshow(img.reshape(28, 28).numpy(), cmap="gray")
        ax.set_title(str(int(k)), fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> list[dict[str, float]]:
    """Train; returns the history of train/test negative log-likelihoods and test accuracy."""
    args = make_parser(__doc__, "runs/classifier").parse_args(argv)
    prepare(args)
    train, test = mnist(args)
    train_loader, test_loader = loaders(args, with_one_hot(train), with_one_hot(test))
    p, loss, model = build(args.device, args.lr)
    print("Loss:", loss)
    print(model)
    x_fixed = next(iter(test_loader))[0][:32].to(args.device)

    def figures(epoch, logs):
        plot_predictions(p, x_fixed, os.path.join(args.out, f"predictions_epoch{epoch}.png"))
        return {"test/accuracy": accuracy(p, test_loader, args.device)}

    return model.fit(train_loader, args.epochs, test_loader, keys=("x", "y"), log_dir=args.out,
                     callbacks=[EveryEpoch(figures), EpochPrinter("test/accuracy")], progress=not args.no_progress)


if __name__ == "__main__":
    main()
