"""Glow (Kingma & Dhariwal, 2018) on CIFAR-10.

    x = f^{-1}(z), z ~ N(0, I);   log p(x) = log N(f(x); 0, I) + log |det df(x)/dx|
    each scale: squeeze, then K steps of [actnorm -> invertible 1x1 convolution -> affine coupling],
                then split (half the channels leave the flow, scored by a learned Gaussian)
    loss = - mean( log p(x) )   (maximum likelihood, the ``ML`` model)

ActNorm initialises its scale and bias from the first batch; the 1x1 convolution's log-determinant
is ``H W log|det W|``. Pixels are dequantised and logit-transformed first. CIFAR-10 comes from
torchvision (downloaded when online, or from ``--data-dir``); ``--smoke`` uses random (3, 32, 32)
tensors. The loss is in nats per image and logged in bits per dimension. Figures: samples.

    python examples/glow_cifar.py --epochs 5 --batch-size 64

Install: ``pip install "pixyz_like[examples]"`` (what every example needs).
"""

from __future__ import annotations

from realnvp_cifar import train_image_flow


def main(argv=None) -> list[dict[str, float]]:
    """Train; returns the history of per-epoch train/test negative log-likelihoods (nats per image)."""
    return train_image_flow(argv, __doc__, "runs/glow_cifar", glow=True)


if __name__ == "__main__":
    main()
