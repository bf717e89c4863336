"""Network building blocks for flows (e.g. the scale/translate networks of coupling layers)."""

from .resnet import ResidualBlock, ResNet

__all__ = ["ResNet", "ResidualBlock"]

# Causal layers for autoregressive models (pixyz_like.autoregressions).
from .masked import (  # noqa: E402
    CausalConv1d,
    GatedPixelCNN,
    GatedPixelCNNBlock,
    MaskedConv2d,
    StepCache,
    WaveNet,
    causal_mask,
)

__all__ += ["causal_mask", "MaskedConv2d", "GatedPixelCNNBlock", "GatedPixelCNN", "StepCache", "CausalConv1d",
            "WaveNet"]
