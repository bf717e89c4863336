"""Models: a loss, an optimizer and the distributions they train."""

from .model import CheckpointError, Model

__all__ = ["Model", "CheckpointError"]

# Ready-made models (Pixyz's pixyz.models): each builds its loss from the distributions given.
from .gan import GAN  # noqa: E402
from .ml import ML  # noqa: E402
from .vae import VAE  # noqa: E402
from .vi import VI  # noqa: E402

__all__ += ["VAE", "VI", "ML", "GAN"]

# The training loop (Model.fit) and its callback protocol.
from .training import Callback, FitState, NonFiniteLossError, TensorBoardLogger  # noqa: E402

__all__ += ["Callback", "FitState", "NonFiniteLossError", "TensorBoardLogger"]
