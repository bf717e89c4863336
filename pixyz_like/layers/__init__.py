"""Network building blocks for flows (e.g. the scale/translate networks of coupling layers)."""

from .resnet import ResidualBlock, ResNet

__all__ = ["ResNet", "ResidualBlock"]
