r"""The :class:`Flow` base class and :class:`FlowList`, a composition of flows.

A flow is an invertible map :math:`z = f(x)` (optionally conditioned on a tensor :math:`y`) that
returns its log-determinant **together with its output**:

* ``forward(x, y=None, compute_jacobian=True) -> (z, logdet)`` with
  :math:`\mathrm{logdet} = \log\left|\det \partial f(x)/\partial x\right|`, one value per row;
* ``inverse(z, y=None, compute_jacobian=True) -> (x, logdet_inverse)`` with
  :math:`\log\left|\det \partial f^{-1}(z)/\partial z\right| = -\mathrm{logdet}(f^{-1}(z))`.

``logdet`` is ``None`` when ``compute_jacobian=False`` (the work is skipped). Nothing about the last
call is kept on the module (Pixyz stored it in ``flow.logdet_jacobian``, which went stale as soon as
the flow was called again), so one flow can be used by several distributions and losses at once.

Inputs have shape ``(batch, *features)``: ``(batch, in_features)`` for vectors and
``(batch, channels, height, width)`` for images, where ``in_features`` counts the channels.

Conditional flows take the condition ``y`` (shape ``(batch, ...)``); each flow passes it on to its
networks (``net(x, y)``) and flows that have no use for it ignore it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import NotDefinedError, ParameterError, ShapeError

__all__ = ["Flow", "FlowList"]

# Messages of torch errors caused by tensors of the wrong shape (other errors pass through untouched).
_SHAPE_ERROR = re.compile(r"shape|size|mat1|mat2|dimension|must match|broadcast", re.IGNORECASE)

FlowOutput = tuple[torch.Tensor, "torch.Tensor | None"]


class Flow(nn.Module):
    r"""Base class of every flow: an invertible map returning its output and log-determinant.

    Subclasses implement :meth:`forward` and, where the map has a computable inverse, :meth:`inverse`.
    The identity map (this base class) has :math:`\log|\det J| = 0`.

    Args:
        in_features: the number of features (channels for images) the flow expects, or ``None``
            when it works on any size.

    >>> f = Flow(3)
    >>> z, logdet = f(torch.ones(2, 3))
    >>> z.shape, logdet
    (torch.Size([2, 3]), tensor([0., 0.]))
    """

    #: whether ``inverse(forward(x)) == x``; ``False`` for layers that drop dimensions (:class:`Split`).
    bijective = True
    #: whether it only takes vectors ``(batch, in_features)`` (then a distribution knows its features).
    vector_only = False

    def __init__(self, in_features: int | None = None) -> None:
        super().__init__()
        if in_features is not None and (not isinstance(in_features, int) or in_features < 1):
            raise ParameterError(
                f"{type(self).__name__}: in_features must be a positive int or None, got {in_features!r}"
            )
        self._in_features = in_features

    @property
    def in_features(self) -> int | None:
        """The number of features (channels for images) this flow expects; ``None`` for any."""
        return self._in_features

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True) -> FlowOutput:
        """Map ``x`` to ``z = f(x)``; return ``(z, log|det df/dx|)`` (``logdet`` of shape ``(batch,)``)."""
        self._check_input(x, "forward")
        return x, (self._zero_logdet(x) if compute_jacobian else None)

    def inverse(self, z: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True) -> FlowOutput:
        """Map ``z`` back to ``x = f^{-1}(z)``; return ``(x, log|det df^{-1}/dz|)``."""
        self._check_input(z, "inverse")
        return z, (self._zero_logdet(z) if compute_jacobian else None)

    # ------------------------------------------------------------------ helpers for subclasses
    def _name(self) -> str:
        return f"{type(self).__name__}(in_features={self._in_features})"

    @staticmethod
    def _zero_logdet(x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0])

    def _check_input(self, x: torch.Tensor, action: str, ndims: Sequence[int] = (2, 4)) -> None:
        """Raise a :class:`ShapeError` unless ``x`` is ``(batch, in_features[, H, W])``."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self._name()}.{action}: expected a tensor, got {type(x).__name__}")
        feat = "in_features" if self._in_features is None else str(self._in_features)
        expected = " or ".join(
            {2: f"(batch, {feat})", 4: f"(batch, {feat}, height, width)", 3: f"(batch, {feat}, length)"}[n]
            for n in ndims
        )
        if x.ndim not in ndims or (self._in_features is not None and x.shape[1] != self._in_features):
            raise ShapeError(f"{self._name()}.{action}: expected input of shape {expected}, got {tuple(x.shape)}")

    def _call_net(self, net: Callable, x: torch.Tensor, y: torch.Tensor | None) -> Any:
        """Call a user network as ``net(x)`` or, with a condition, ``net(x, y)``.

        A torch shape error from inside it becomes a :class:`ShapeError` naming this flow and the shapes
        it was given (a conditional network called without ``y`` fails this way, for instance).
        """
        try:
            return net(x) if y is None else net(x, y)
        except (RuntimeError, TypeError) as e:
            if isinstance(e, TypeError) and "argument" not in str(e):
                raise
            if isinstance(e, RuntimeError) and not _SHAPE_ERROR.search(str(e)):
                raise
            yshape = None if y is None else tuple(y.shape)
            raise ShapeError(
                f"{self._name()}: its network failed on an input of shape {tuple(x.shape)} "
                f"(condition y: {yshape}); a conditional network needs y: {e}"
            ) from e

    def _no_inverse(self, why: str) -> NotDefinedError:
        return NotDefinedError(f"{self._name()}: the inverse is not available: {why}")

    def extra_repr(self) -> str:
        return f"in_features={self._in_features}"


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None:
        return b
    return a + b


class FlowList(Flow):
    r"""A composition of flows :math:`f = f_K \circ \dots \circ f_1`, applied in list order.

    .. math:: \log\left|\det \frac{\partial f}{\partial x}\right| = \sum_{k=1}^K \log\left|\det
        \frac{\partial f_k}{\partial h_{k-1}}\right|, \qquad h_0 = x,\ h_k = f_k(h_{k-1}).

    The condition ``y`` is passed to every flow. A ``FlowList`` is indexable and iterable.

    >>> from pixyz_like.flows import Reverse, PlanarFlow
    >>> f = FlowList([PlanarFlow(2), Reverse(2)])
    >>> z, logdet = f(torch.randn(5, 2))
    >>> z.shape, logdet.shape, len(f), type(f[1]).__name__
    (torch.Size([5, 2]), torch.Size([5]), 2, 'Reverse')
    """

    def __init__(self, flow_list: Sequence[Flow]) -> None:
        flow_list = list(flow_list)
        if not flow_list:
            raise ParameterError("FlowList: flow_list must hold at least one flow")
        for i, f in enumerate(flow_list):
            if not isinstance(f, Flow):
                raise TypeError(f"FlowList: item {i} is a {type(f).__name__}, not a Flow")
        in_features = next((f.in_features for f in flow_list if f.in_features is not None), None)
        super().__init__(in_features)
        self.flow_list = nn.ModuleList(flow_list)
        self.bijective = all(f.bijective for f in flow_list)
        self.vector_only = any(f.vector_only for f in flow_list)

    def __len__(self) -> int:
        return len(self.flow_list)

    def __iter__(self) -> Iterator[Flow]:
        return iter(self.flow_list)

    def __getitem__(self, i: int | slice) -> Flow:
        if isinstance(i, slice):
            return FlowList(list(self.flow_list)[i])
        return self.flow_list[i]

    def forward(self, x, y=None, compute_jacobian=True):
        logdet = None
        for flow in self.flow_list:
            x, ld = flow(x, y, compute_jacobian)
            logdet = _add(logdet, ld)
        return x, logdet

    def inverse(self, z, y=None, compute_jacobian=True):
        logdet = None
        for flow in reversed(self.flow_list):
            z, ld = flow.inverse(z, y, compute_jacobian)
            logdet = _add(logdet, ld)
        return z, logdet

    def __repr__(self) -> str:
        return self.flow_list.__repr__().replace("ModuleList", "FlowList", 1)
