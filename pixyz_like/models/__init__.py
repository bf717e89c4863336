"""Models: a loss, an optimizer and the distributions they train; ``Model.fit``, the training loop.

The layer's modules (see ``docs/architecture.md``): :mod:`.model` (the :class:`Model`), :mod:`.step`
(the training step ``Model.train`` and ``fit`` share), :mod:`.training` (``fit`` and its
:class:`~.training.Trainer`), :mod:`.callbacks`, :mod:`.batches`, :mod:`.precision`, :mod:`.compiled`,
:mod:`.distributed`, :mod:`.resume`, :mod:`.tensorboard_logger`, and the ready-made models
:mod:`.vae`, :mod:`.vi`, :mod:`.ml`, :mod:`.gan`.
"""

from .model import CheckpointError, Model

__all__ = ["Model", "CheckpointError"]

# Ready-made models (Pixyz's pixyz.models): each builds its loss from the distributions given.
from .gan import GAN  # noqa: E402
from .ml import ML  # noqa: E402
from .vae import VAE  # noqa: E402
from .vi import VI  # noqa: E402

__all__ += ["VAE", "VI", "ML", "GAN"]

# The training loop (Model.fit): its callback protocol, loaders and loggers.
from .batches import ZipLoader  # noqa: E402
from .callbacks import Callback, EpochPrinter, EveryEpoch, FitState  # noqa: E402
from .tensorboard_logger import TensorBoardLogger  # noqa: E402
from .training import NonFiniteLossError  # noqa: E402

__all__ += ["Callback", "EpochPrinter", "EveryEpoch", "FitState", "NonFiniteLossError", "TensorBoardLogger",
            "ZipLoader"]
