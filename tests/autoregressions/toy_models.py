"""Small autoregressive models shared by the tests (built in the default dtype: the tests use float64)."""

from __future__ import annotations

import torch

from pixyz_like.autoregressions import (
    AutoregressiveBernoulli,
    AutoregressiveCategorical,
    DiscretizedLogisticMixture,
)
from pixyz_like.layers import GatedPixelCNN, WaveNet


class BernoulliImage(AutoregressiveBernoulli):
    """p(x|z) over (1, 3, 4) binary images, a gated PixelCNN conditioned on a vector z (dim 2)."""

    def __init__(self, cond: bool = True) -> None:
        super().__init__(var=["x"], cond_var=["z"] if cond else [], features_shape=[1, 3, 4], name="p")
        self.net = GatedPixelCNN(1, 1, channels=6, n_layers=3, cond_channels=2 if cond else 0)
        self.calls = 0

    def forward(self, x, z=None):
        self.calls += 1
        return {"logits": self.net(x, z)}


class CategoricalRGB(AutoregressiveCategorical):
    """p(x) over (3, 2, 3) images of 4 levels, channels in R, G, B order within a pixel."""

    def __init__(self) -> None:
        super().__init__(var=["x"], features_shape=[3, 2, 3], n_levels=4)
        self.net = GatedPixelCNN(3, 3 * 4, channels=6, n_layers=3, channel_groups=3)

    def forward(self, x):
        return {"logits": self.net(x)}


class MixtureRGB(DiscretizedLogisticMixture):
    """PixelCNN++ likelihood over (3, 2, 3) images of 256 levels, 3 components, coupled channels."""

    def __init__(self, n_levels: int = 256) -> None:
        super().__init__(var=["x"], features_shape=[3, 2, 3], n_mixtures=3, n_levels=n_levels)
        self.net = GatedPixelCNN(3, self.n_output_channels, channels=6, n_layers=3)

    def forward(self, x):
        return self.split_output(self.net(x))


class SequenceCategorical(AutoregressiveCategorical):
    """p(x|z) over (1, L) sequences of 8 levels, a WaveNet with a step cache, conditioned on z (dim 3)."""

    def __init__(self, length: int = 12, cond: bool = True) -> None:
        super().__init__(var=["x"], cond_var=["z"] if cond else [], features_shape=[1, length], n_levels=8)
        self.net = WaveNet(1, 8, channels=6, dilations=(1, 2, 4), cond_channels=3 if cond else 0)
        self.calls = {"forward": 0, "forward_step": 0}

    def forward(self, x, z=None):
        self.calls["forward"] += 1
        return {"logits": self.net(x, z)}

    def forward_step(self, cache, t, x, z=None):
        self.calls["forward_step"] += 1
        return {"logits": self.net.step(x, cache, z)}


class SequenceMixture(DiscretizedLogisticMixture):
    """Discretised logistic mixture over (2, L) sequences (two coupled channels), with a step cache."""

    def __init__(self, length: int = 10) -> None:
        super().__init__(var=["x"], features_shape=[2, length], n_mixtures=2, n_levels=256)
        self.net = WaveNet(2, self.n_output_channels, channels=6, dilations=(1, 2))

    def forward(self, x):
        return self.split_output(self.net(x))

    def forward_step(self, cache, t, x):
        return self.split_output(self.net.step(x, cache))


class TableCategorical(AutoregressiveCategorical):
    """p(x_0, x_1) over two positions of K levels with explicit tables: logits a for x_0, B[x_0] for x_1."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__(var=["x"], features_shape=[1, 2], n_levels=a.shape[0])
        self.register_buffer("a", a)
        self.register_buffer("b", b)

    def forward(self, x):
        k = self.n_levels
        idx = (x[:, 0, 0] * (k - 1)).round().long()
        first = self.a.expand(x.shape[0], k)
        second = self.b[idx]
        return {"logits": torch.stack([first, second], -1)}  # (n, K, 2)


class ConstantMixture(DiscretizedLogisticMixture):
    """One pixel of C channels: the same mixture parameters for every data point."""

    def __init__(self, params: dict[str, torch.Tensor], n_levels: int) -> None:
        c = params["loc"].shape[0]
        super().__init__(var=["x"], features_shape=[c, 1], n_mixtures=params["logits"].shape[0], n_levels=n_levels)
        for k, v in params.items():
            self.register_buffer(k, v)
        self.keys = list(params)

    def forward(self, x):
        n = x.shape[0]
        return {k: getattr(self, k).unsqueeze(0).unsqueeze(-1).expand(n, *getattr(self, k).shape, 1)
                for k in self.keys}


def random_levels(shape, n_levels: int) -> torch.Tensor:
    """Values on the levels k / (K - 1)."""
    return torch.randint(0, n_levels, shape).to(torch.get_default_dtype()) / (n_levels - 1)
