r"""The loss terms of VQ-VAE (van den Oord et al., 2017): the codebook and the commitment losses.

With :math:`e` the nearest code of the encoder's output :math:`z_e` (a
:class:`~pixyz_like.distributions.VectorQuantizer`) and :math:`\mathrm{sg}` the stop-gradient,

* :class:`CodebookLoss` :math:`\|\mathrm{sg}[z_e] - e\|^2` moves the codes toward the encoder's
  outputs (not needed with ``ema=True``, where moving averages move them);
* :class:`CommitmentLoss` :math:`\beta\,\|z_e - \mathrm{sg}[e]\|^2` keeps the encoder's outputs close
  to their codes.

Each evaluates to one value per data point (the squared distance summed over the data point's
vectors and components), read from the variable :math:`z_e` of the input dict, so both sit inside an
expectation over the encoder next to the reconstruction term:

>>> from pixyz_like.distributions import Deterministic, VectorQuantizer
>>> from pixyz_like.losses import Expectation as E
>>> class Encoder(Deterministic):
...     def __init__(self):
...         super().__init__(var=["z_e"], cond_var=["x"], name="q")
...         self.net = torch.nn.Linear(4, 2)
...     def forward(self, x):
...         return {"z_e": self.net(x)}
>>> vq = VectorQuantizer(16, 2)
>>> terms = E(Encoder(), CodebookLoss(vq) + CommitmentLoss(vq, beta=0.25))
>>> print(terms)
\mathbb{E}_{q(z_{e}|x)} \left[\| sg[z_{e}] - e \|^2 + 0.25 \| z_{e} - sg[e] \|^2 \right]
>>> terms.eval({"x": torch.zeros(3, 4)}).shape
torch.Size([3])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from .._context import EvalContext
from .._latex import convert_latex_name
from ..errors import NotDefinedError
from .losses import Loss, _number_latex

if TYPE_CHECKING:  # for the annotations; the run-time import stays inside _check_quantizer
    from ..distributions.vq import VectorQuantizer

__all__ = ["CodebookLoss", "CommitmentLoss"]


def _check_quantizer(owner: str, vq: object) -> None:
    from ..distributions.vq import VectorQuantizer

    if not isinstance(vq, VectorQuantizer):
        raise TypeError(f"{owner}: expected a VectorQuantizer, got {type(vq).__name__}")


def _per_point(sq: torch.Tensor) -> torch.Tensor:
    """Sum a squared difference over every dimension but the first (one value per data point)."""
    return sq.sum(dim=tuple(range(1, sq.ndim))) if sq.ndim > 1 else sq


class CodebookLoss(Loss):
    r"""The codebook loss :math:`\|\mathrm{sg}[z_e] - e\|^2` of a vector quantiser, per data point.

    Its gradient reaches the codebook only. Refused for an ``ema=True`` quantiser, whose codebook is
    not learnt by a loss.

    >>> from pixyz_like.distributions import VectorQuantizer
    >>> vq = VectorQuantizer(2, 1)
    >>> vq.codebook.data = torch.tensor([[0.0], [1.0]])
    >>> loss = CodebookLoss(vq)
    >>> print(loss), loss.eval({"z_e": torch.tensor([[0.25], [2.0]])}).tolist()   # codes 0 and 1
    \| sg[z_{e}] - e \|^2
    (None, [0.0625, 1.0])
    """

    def __init__(self, quantizer: VectorQuantizer) -> None:
        _check_quantizer("CodebookLoss", quantizer)
        if quantizer.ema:
            raise NotDefinedError(
                f"CodebookLoss({quantizer.prob_text}): the quantiser's codebook is learnt by moving averages "
                "(ema=True), not by a loss; use CommitmentLoss alone, or ema=False"
            )
        super().__init__(quantizer.cond_var)
        self.quantizer = quantizer
        self._z = convert_latex_name(quantizer.cond_var[0])

    def _latex(self) -> str:
        return f"\\| sg[{self._z}] - e \\|^2"

    def _eval(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
        z_e = x_dict[self.quantizer.cond_var[0]].detach()
        e, _ = self.quantizer.quantize(z_e)
        return _per_point((z_e - e) ** 2), {}


class CommitmentLoss(Loss):
    r"""The commitment loss :math:`\beta\,\|z_e - \mathrm{sg}[e]\|^2` of a vector quantiser, per data point.

    ``beta`` is a number (printed as such; the paper uses 0.25) or the name of a variable read from
    the input dict, e.g. one fed by a schedule of ``Model.fit`` (printed as its symbol).

    >>> from pixyz_like.distributions import VectorQuantizer
    >>> vq = VectorQuantizer(2, 1)
    >>> vq.codebook.data = torch.tensor([[0.0], [1.0]])
    >>> loss = CommitmentLoss(vq, beta="beta")
    >>> print(loss), loss.eval({"z_e": torch.tensor([[0.25], [2.0]]), "beta": 0.5})
    \beta \| z_{e} - sg[e] \|^2
    (None, tensor([0.0312, 0.5000]))
    """

    def __init__(self, quantizer: VectorQuantizer, beta: float | str = 0.25) -> None:
        _check_quantizer("CommitmentLoss", quantizer)
        if isinstance(beta, str):
            if not beta:
                raise TypeError("CommitmentLoss: beta must be a number or a variable name, got ''")
            super().__init__(list(quantizer.cond_var) + [beta])
            self._beta_text = convert_latex_name(beta)
        else:
            if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0:
                raise TypeError(f"CommitmentLoss: beta must be a non-negative number or a variable name, got {beta!r}")
            super().__init__(quantizer.cond_var)
            self._beta_text = _number_latex(beta)
        self.quantizer = quantizer
        self.beta = beta
        self._z = convert_latex_name(quantizer.cond_var[0])

    def _latex(self) -> str:
        return f"{self._beta_text} \\| {self._z} - sg[e] \\|^2"

    def _eval(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
        z_e = x_dict[self.quantizer.cond_var[0]]
        e, _ = self.quantizer.quantize(z_e.detach())
        beta = x_dict[self.beta] if isinstance(self.beta, str) else self.beta
        if isinstance(beta, torch.Tensor):
            beta = beta.to(z_e.dtype)
        return beta * _per_point((z_e - e.detach()) ** 2), {}
