"""Models: a loss, an optimizer and the distributions they train."""

from .model import CheckpointError, Model

__all__ = ["Model", "CheckpointError"]
