r"""Volume-preserving reshapes and permutations, and the logit preprocessing of images.

:class:`Squeeze`, :class:`Unsqueeze`, :class:`Permutation` (and :class:`Shuffle`, :class:`Reverse`)
and :class:`Flatten` only move entries around, so :math:`\log|\det J| = 0`. :class:`Preprocess`
dequantises pixels and maps them to the real line (Dinh et al., 2017, section 4.1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ParameterError, ShapeError
from .flows import Flow, FlowOutput

__all__ = ["Squeeze", "Unsqueeze", "Permutation", "Shuffle", "Reverse", "Flatten", "Preprocess"]


class Squeeze(Flow):
    r"""Space-to-depth: ``(C, H, W) -> (4C, H/2, W/2)``; each 2x2 block becomes 4 channels.

    Output channel :math:`4c + 2i + j` holds pixel :math:`(2h + i, 2w + j)` of channel :math:`c`
    (Pixyz's layout). Volume-preserving: :math:`\log|\det J| = 0`.

    >>> a = torch.arange(1., 17.).view(1, 1, 4, 4)
    >>> z = Squeeze()(a)
    >>> z[0, :, 0, 0]
    tensor([1., 2., 5., 6.])
    >>> torch.equal(Squeeze().inverse(z), a)
    True
    """

    def __init__(self) -> None:
        super().__init__(None)

    def _squeeze(self, x: torch.Tensor, action: str) -> torch.Tensor:
        if x.ndim != 4 or x.shape[2] % 2 or x.shape[3] % 2:
            raise ShapeError(
                f"{type(self).__name__}.{action}: expected an image batch (batch, channels, height, width) "
                f"with even height and width, got {tuple(x.shape)}"
            )
        return F.pixel_unshuffle(x, 2)

    def _unsqueeze(self, z: torch.Tensor, action: str) -> torch.Tensor:
        if z.ndim != 4 or z.shape[1] % 4:
            raise ShapeError(
                f"{type(self).__name__}.{action}: expected an image batch (batch, channels, height, width) "
                f"with channels divisible by 4, got {tuple(z.shape)}"
            )
        return F.pixel_shuffle(z, 2)

    def transform(self, x: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True) -> FlowOutput:
        z = self._squeeze(x, "forward")
        return z, (self._zero_logdet(x) if compute_jacobian else None)

    def inverse_transform(
        self, z: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True
    ) -> FlowOutput:
        x = self._unsqueeze(z, "inverse")
        return x, (self._zero_logdet(z) if compute_jacobian else None)

    def extra_repr(self) -> str:
        return ""


class Unsqueeze(Squeeze):
    r"""Depth-to-space: ``(C, H, W) -> (C/4, 2H, 2W)``, the inverse of :class:`Squeeze`.

    >>> a = torch.arange(1., 17.).view(1, 4, 2, 2)
    >>> z = Unsqueeze()(a)
    >>> z.shape, torch.equal(Unsqueeze().inverse(z), a)
    (torch.Size([1, 1, 4, 4]), True)
    """

    def transform(self, x: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True) -> FlowOutput:
        z = self._unsqueeze(x, "forward")
        return z, (self._zero_logdet(x) if compute_jacobian else None)

    def inverse_transform(
        self, z: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True
    ) -> FlowOutput:
        x = self._squeeze(z, "inverse")
        return x, (self._zero_logdet(z) if compute_jacobian else None)


class Permutation(Flow):
    r"""Reorder the features (channels for images): :math:`z_i = x_{\pi(i)}`. :math:`\log|\det J| = 0`.

    Args:
        permute_indices: the permutation :math:`\pi` of ``0..D-1`` (list, array or tensor).

    >>> f = Permutation([0, 3, 1, 2])
    >>> f(torch.tensor([[10., 11., 12., 13.]]))
    tensor([[10., 13., 11., 12.]])
    """

    permute_indices: torch.Tensor
    inv_permute_indices: torch.Tensor

    def __init__(self, permute_indices: Sequence[int] | torch.Tensor) -> None:
        idx = (
            torch.as_tensor(list(permute_indices) if not isinstance(permute_indices, torch.Tensor) else permute_indices)
            .long()
            .flatten()
        )
        n = idx.numel()
        if n == 0 or not torch.equal(torch.sort(idx).values, torch.arange(n)):
            raise ParameterError(
                f"{type(self).__name__}: permute_indices must be a permutation of 0..n-1, got {idx.tolist()}"
            )
        super().__init__(n)
        self.register_buffer("permute_indices", idx)
        self.register_buffer("inv_permute_indices", torch.argsort(idx))

    def transform(self, x: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True) -> FlowOutput:
        self._check_input(x, "forward")
        return x[:, self.permute_indices], (self._zero_logdet(x) if compute_jacobian else None)

    def inverse_transform(
        self, z: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True
    ) -> FlowOutput:
        self._check_input(z, "inverse")
        return z[:, self.inv_permute_indices], (self._zero_logdet(z) if compute_jacobian else None)


class Shuffle(Permutation):
    """A random :class:`Permutation` of ``in_features`` features, drawn once with torch's RNG.

    The permutation is a buffer, so it is saved and restored with the ``state_dict``.

    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> sorted(Shuffle(5).permute_indices.tolist())
    [0, 1, 2, 3, 4]
    """

    def __init__(self, in_features: int) -> None:
        if not isinstance(in_features, int) or in_features < 1:
            raise ParameterError(f"Shuffle: in_features must be a positive int, got {in_features!r}")
        super().__init__(torch.randperm(in_features))


class Reverse(Permutation):
    """Reverse the order of the ``in_features`` features (channels for images).

    >>> Reverse(3)(torch.tensor([[1., 2., 3.]]))
    tensor([[3., 2., 1.]])
    """

    def __init__(self, in_features: int) -> None:
        if not isinstance(in_features, int) or in_features < 1:
            raise ParameterError(f"Reverse: in_features must be a positive int, got {in_features!r}")
        super().__init__(torch.arange(in_features - 1, -1, -1))


class Flatten(Flow):
    r"""Flatten ``(batch, *in_size)`` to ``(batch, prod(in_size))``. :math:`\log|\det J| = 0`.

    ``in_size`` (e.g. ``(C, H, W)``) is needed by :meth:`inverse`; when not given, it is fixed by the
    first call of :meth:`forward` and checked on every later one (it is part of the ``state_dict``).

    >>> f = Flatten((2, 3, 3))
    >>> z = f(torch.zeros(4, 2, 3, 3))
    >>> z.shape, f.inverse(z).shape
    (torch.Size([4, 18]), torch.Size([4, 2, 3, 3]))
    """

    def __init__(self, in_size: Sequence[int] | None = None) -> None:
        super().__init__(None)
        self.in_size = None if in_size is None else torch.Size(in_size)

    def transform(self, x: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True) -> FlowOutput:
        if x.ndim < 2:
            raise ShapeError(f"Flatten.forward: expected (batch, *in_size), got {tuple(x.shape)}")
        if self.in_size is None:
            self.in_size = x.shape[1:]
        elif x.shape[1:] != self.in_size:
            raise ShapeError(
                f"Flatten.forward: expected input of shape (batch, {', '.join(map(str, self.in_size))}), "
                f"got {tuple(x.shape)}"
            )
        return x.reshape(x.shape[0], -1), (self._zero_logdet(x) if compute_jacobian else None)

    def inverse_transform(
        self, z: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True
    ) -> FlowOutput:
        if self.in_size is None:
            raise self._no_inverse("in_size is unknown: give Flatten(in_size=...) or call forward first")
        if z.ndim != 2 or z.shape[1] != math.prod(self.in_size):
            raise ShapeError(
                f"Flatten.inverse: expected input of shape (batch, {math.prod(self.in_size)}), got {tuple(z.shape)}"
            )
        return z.reshape(z.shape[0], *self.in_size), (self._zero_logdet(z) if compute_jacobian else None)

    def get_extra_state(self) -> Any:
        return {"in_size": None if self.in_size is None else tuple(self.in_size)}

    def set_extra_state(self, state: Any) -> None:
        size = state.get("in_size") if isinstance(state, dict) else None
        self.in_size = None if size is None else torch.Size(size)

    def extra_repr(self) -> str:
        return f"in_size={None if self.in_size is None else tuple(self.in_size)}"


class Preprocess(Flow):
    r"""Dequantise pixels in :math:`[0, 1]` and map them to the real line with a logit.

    .. math:: \tilde x = \frac{255\,x + u}{256},\ u \sim U[0, 1)^D; \qquad
        p = \frac{\alpha}{2} + (1 - \alpha)\,\tilde x; \qquad z = \log\frac{p}{1 - p},

    where :math:`\alpha` (``data_constraint``, 0.05) keeps :math:`p` away from 0 and 1. The flow is the
    deterministic map :math:`\tilde x \mapsto z`, with
    :math:`\log|\det J| = \sum_i \log(1-\alpha) - \log p_i - \log(1 - p_i)`; :meth:`inverse` returns
    :math:`\tilde x`. ``dequantize=False`` skips the noise (then :math:`\tilde x = x`).

    >>> f = Preprocess(dequantize=False).double()
    >>> x = torch.rand(2, 1, 2, 2, dtype=torch.float64)
    >>> torch.allclose(f.inverse(f(x)), x)
    True
    """

    data_constraint: torch.Tensor

    def __init__(self, dequantize: bool = True, data_constraint: float = 0.05) -> None:
        super().__init__(None)
        if not 0.0 < data_constraint < 1.0:
            raise ParameterError(f"Preprocess: data_constraint must be in (0, 1), got {data_constraint}")
        self.dequantize = dequantize
        self.register_buffer("data_constraint", torch.tensor([float(data_constraint)]))

    def _logdet(self, z: torch.Tensor) -> torch.Tensor:
        # log|d logit(p)/dp| = -log p - log(1-p) = softplus(z) + softplus(-z).
        per_dim = F.softplus(z) + F.softplus(-z) + torch.log1p(-self.data_constraint)
        return per_dim.flatten(1).sum(-1)

    def transform(self, x: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True) -> FlowOutput:
        if x.ndim < 2:
            raise ShapeError(f"Preprocess.forward: expected (batch, *features), got {tuple(x.shape)}")
        if self.dequantize:
            x = (x * 255.0 + torch.rand_like(x)) / 256.0
        a = self.data_constraint
        p = a / 2 + (1 - a) * x
        z = p.log() - torch.log1p(-p)
        return z, (self._logdet(z) if compute_jacobian else None)

    def inverse_transform(
        self, z: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True
    ) -> FlowOutput:
        if z.ndim < 2:
            raise ShapeError(f"Preprocess.inverse: expected (batch, *features), got {tuple(z.shape)}")
        a = self.data_constraint
        x = (torch.sigmoid(z) - a / 2) / (1 - a)
        return x, (-self._logdet(z) if compute_jacobian else None)

    def extra_repr(self) -> str:
        return f"dequantize={self.dequantize}, data_constraint={self.data_constraint.item()}"
