r"""Maximum likelihood as a ready-made :class:`~pixyz_like.models.Model`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn, optim

from ..distributions.distributions import Distribution
from ..utils import tolist
from .model import Model

__all__ = ["ML"]


class ML(Model):
    r"""Maximum likelihood: minimises the negative log-likelihood :math:`-\mathrm{mean}(\log p(x|y))`.

    For a classifier ``p(y|x)`` this is the cross-entropy; for a density ``p(x)`` the NLL.

    Args:
        p: the distribution to fit; the input dict holds its variables and conditioning variables.
        other_distributions: more distributions (or modules) to train.
        optimizer, optimizer_params, clip_grad_norm, clip_grad_value, retain_graph, device: as for
            :class:`~pixyz_like.models.Model`; other keywords are passed on to it.

    >>> from pixyz_like.distributions import Categorical
    >>> class Classifier(Categorical):
    ...     def __init__(self):
    ...         super().__init__(var=["y"], cond_var=["x"], name="p")
    ...         self.net = torch.nn.Linear(4, 3)
    ...     def forward(self, x):
    ...         return {"probs": torch.softmax(self.net(x), dim=-1)}
    >>> model = ML(Classifier(), optimizer_params={"lr": 1e-2})
    >>> print(model.loss_cls)
    mean \left(- \log p(y|x) \right)
    >>> y = torch.nn.functional.one_hot(torch.tensor([0, 2]), 3).float()
    >>> model.train({"x": torch.randn(2, 4), "y": y}).shape
    torch.Size([])
    """

    def __init__(
        self,
        p: Distribution,
        other_distributions: Sequence[nn.Module] | nn.Module = (),
        optimizer: type[optim.Optimizer] = optim.Adam,
        optimizer_params: Mapping[str, Any] | None = None,
        clip_grad_norm: float | None = None,
        clip_grad_value: float | None = None,
        retain_graph: bool = False,
        device: str | torch.device | None = None,
        **model_options: Any,
    ) -> None:
        self.nll = -p.log_prob(sum_features=True)
        loss = self.nll.mean()
        self.p = p
        # Model's own parameters, in its order: (loss, test_loss, distributions, optimizer, ...).
        super().__init__(loss, loss, [p, *tolist(other_distributions)], optimizer, optimizer_params, clip_grad_norm,
                         clip_grad_value, retain_graph, device, **model_options)
