r"""The :class:`Flow` base class and :class:`FlowList`, a composition of flows.

A flow is an invertible map :math:`z = f(x)` (optionally conditioned on a tensor :math:`y`). Every
flow has two pairs of methods:

* **Pixyz's calling convention**, for programs: ``flow(x, y=None, compute_jacobian=True)`` (that is,
  ``forward``) returns the tensor :math:`z` and stores :math:`\log|\det \partial f/\partial x|` in
  the read-only property :attr:`Flow.logdet_jacobian`; ``flow.inverse(z, y=None)`` returns the
  tensor :math:`x = f^{-1}(z)`.
* **The stateless pair**, used by all of pixyz_like's own code:
  ``transform(x, y=None, compute_jacobian=True) -> (z, logdet)`` and
  ``inverse_transform(z, y=None, compute_jacobian=True) -> (x, logdet_inverse)``, with
  :math:`\mathrm{logdet\_inverse} = \log|\det \partial f^{-1}(z)/\partial z| = -\mathrm{logdet}(f^{-1}(z))`,
  one value per row (``None`` when ``compute_jacobian=False``: the work is skipped).

``logdet_jacobian`` only reports the last call of ``forward`` made by *your* code: nothing in
pixyz_like reads it, so one flow can serve several distributions and losses at once without a
stale value ever reaching a result (Pixyz read it back inside its distributions).

**Flows written for Pixyz** — a subclass that overrides ``forward`` to return a tensor and set
``self._logdet_jacobian``, and ``inverse(z, y=None)`` — work unchanged, inside a
:class:`FlowList` and the flow distributions too. When a class defines ``forward`` but not
``transform``, its ``transform`` calls that ``forward`` and reads ``self._logdet_jacobian``
immediately after that same call: the one place pixyz_like reads the attribute, and only for flows
written the Pixyz way. Its ``inverse_transform`` calls its ``inverse`` and gets the log-determinant
from one forward pass at the result (Pixyz's inverses compute none). A Pixyz-style flow that defines
no inverse has none: ``inverse`` raises :class:`~pixyz_like.errors.NotDefinedError` (Pixyz's base
class silently returned its input).

Inputs have shape ``(batch, *features)``: ``(batch, in_features)`` for vectors and
``(batch, channels, height, width)`` for images, where ``in_features`` counts the channels.

Conditional flows take the condition ``y`` (shape ``(batch, ...)``); each flow passes it on to its
networks (``net(x, y)``) and flows that have no use for it ignore it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import torch
from torch import nn

from ..errors import NotDefinedError, ParameterError, ShapeError

__all__ = ["Flow", "FlowList"]

# Messages of torch errors caused by tensors of the wrong shape (other errors pass through untouched).

FlowOutput = tuple[torch.Tensor, "torch.Tensor | None"]


def _native(cls: type, name: str) -> Callable:
    """The lowest ``name`` (``"transform"`` or ``"inverse_transform"``) in ``cls``'s MRO that does
    its own work, skipping the adapters that call a Pixyz-style ``forward``/``inverse``.

    ``Flow.forward`` and ``Flow.inverse`` use it: a Pixyz-style ``forward`` that calls
    ``super().forward(...)`` then reaches its parent's maths instead of calling itself again.
    """
    for klass in cls.__mro__:
        fn = klass.__dict__.get(name)
        if fn is not None and not getattr(fn, "_calls_pixyz_method", False):
            return fn
    raise AssertionError(f"{cls.__name__} has no {name}")  # unreachable: Flow defines both


def _as_int(n: Any) -> int:
    """``n`` as an int if it is one (a Python or numpy integer), else -1."""
    try:
        return operator.index(n)
    except TypeError:
        return -1


class Flow(nn.Module):
    r"""Base class of every flow: an invertible map with a tractable log-determinant.

    Write a flow by implementing :meth:`transform` and, where the map has a computable inverse,
    :meth:`inverse_transform`, each returning ``(output, logdet)``; ``forward`` (``flow(x)``),
    ``inverse`` and :attr:`logdet_jacobian` then follow Pixyz's convention by themselves. A flow
    written for Pixyz (overriding ``forward`` and ``inverse``) works too; see
    :mod:`pixyz_like.flows.flows`. The identity map (this base class) has :math:`\log|\det J| = 0`.

    Args:
        in_features: the number of features (channels for images) the flow expects, or ``None``
            when it works on any size.

    >>> f = Flow(3)
    >>> f.logdet_jacobian is None
    True
    >>> z = f(torch.ones(2, 3))  # Pixyz's convention: a tensor, the log-det kept for you
    >>> z.shape, f.logdet_jacobian
    (torch.Size([2, 3]), tensor([0., 0.]))
    >>> z, logdet = f.transform(torch.ones(2, 3))  # stateless: both together
    >>> logdet
    tensor([0., 0.])
    """

    #: whether ``inverse(forward(x)) == x``; ``False`` for layers that drop dimensions (:class:`Split`).
    bijective = True
    #: whether it only takes vectors ``(batch, in_features)`` (then a distribution knows its features).
    vector_only = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        pixyz_forward = "forward" in own and "transform" not in own
        # The adapters are installed on the subclass on purpose (mypy forbids assigning to a method).
        if pixyz_forward:
            cls.transform = _transform_via_forward  # type: ignore[method-assign]
        if "inverse" in own and "inverse_transform" not in own:
            cls.inverse_transform = _inverse_transform_via_inverse  # type: ignore[method-assign]
        elif pixyz_forward and _native(cls, "inverse_transform") is Flow.__dict__["inverse_transform"]:
            # A Pixyz-style map with no inverse of its own: the identity would be a wrong answer.
            cls.inverse_transform = _no_pixyz_inverse  # type: ignore[method-assign]

    def __init__(self, in_features: int | None = None) -> None:
        super().__init__()
        if in_features is not None:
            size = -1 if isinstance(in_features, bool) else _as_int(in_features)
            if size < 1:
                raise ParameterError(
                    f"{type(self).__name__}: in_features must be a positive int or None, got {in_features!r}"
                )
            in_features = size
        self._in_features = in_features
        self._logdet_jacobian: Any = None

    @property
    def in_features(self) -> int | None:
        """The number of features (channels for images) this flow expects; ``None`` for any."""
        return self._in_features

    @property
    def logdet_jacobian(self) -> Any:
        """The log-determinant computed by the last call of :meth:`forward` (Pixyz's attribute).

        ``None`` before any call and after ``forward(..., compute_jacobian=False)``. It reports the
        last call your code made; nothing in pixyz_like reads it (the library uses
        :meth:`transform`), so it never feeds a stale value into a result.
        """
        return self._logdet_jacobian

    def transform(self, x: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True) -> FlowOutput:
        """Map ``x`` to ``z = f(x)``; return ``(z, log|det df/dx|)``, the log-det of shape ``(batch,)``.

        Stateless: nothing is stored on the flow. ``logdet`` is ``None`` when ``compute_jacobian`` is false.
        """
        self._check_input(x, "forward")
        return x, (self._zero_logdet(x) if compute_jacobian else None)

    def inverse_transform(
        self, z: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True
    ) -> FlowOutput:
        """Map ``z`` back to ``x = f^{-1}(z)``; return ``(x, log|det df^{-1}/dz|)``. Stateless."""
        self._check_input(z, "inverse")
        return z, (self._zero_logdet(z) if compute_jacobian else None)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True) -> torch.Tensor:
        """Pixyz's convention: return ``z = f(x)`` and keep its log-det in :attr:`logdet_jacobian`."""
        z, logdet = _native(type(self), "transform")(self, x, y, compute_jacobian)
        self._logdet_jacobian = logdet
        return z

    def inverse(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Pixyz's convention: return ``x = f^{-1}(z)`` (no log-determinant is computed)."""
        x, _ = _native(type(self), "inverse_transform")(self, z, y, False)
        return x

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
        except Exception as e:
            yshape = None if y is None else tuple(y.shape)
            e.add_note(f"raised in {self._name()}: its network, on an input of shape {tuple(x.shape)} "
                       f"(condition y: {yshape}; a conditional network needs y)")
            raise

    def _no_inverse(self, why: str) -> NotDefinedError:
        return NotDefinedError(f"{self._name()}: the inverse is not available: {why}")

    def extra_repr(self) -> str:
        return f"in_features={self._in_features}"


def _pixyz_logdet(flow: Flow, x: torch.Tensor) -> torch.Tensor:
    """The log-det a Pixyz-style ``forward`` just stored, as a ``(batch,)`` tensor."""
    ld = flow._logdet_jacobian
    if ld is None:
        raise NotDefinedError(
            f"{flow._name()}.forward(..., compute_jacobian=True) did not set self._logdet_jacobian: a flow "
            "written for Pixyz must store its log-determinant there (or implement transform(x, y, "
            "compute_jacobian) returning (z, logdet))"
        )
    batch = x.shape[0]
    got: tuple[int, ...] | str
    if isinstance(ld, (int, float)) and not isinstance(ld, bool):
        return x.new_full((batch,), float(ld))
    if isinstance(ld, torch.Tensor):
        if ld.numel() == 1:
            return ld.reshape(()).expand(batch)
        if tuple(ld.shape) == (batch,):
            return ld
        got = tuple(ld.shape)
    else:
        got = type(ld).__name__
    raise ShapeError(
        f"{flow._name()}.forward stored a log-determinant of shape {got} in self._logdet_jacobian; "
        f"expected one value per row, shape ({batch},), or a single number"
    )


def _transform_via_forward(
    self: Flow, x: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True
) -> FlowOutput:
    """``transform`` of a flow written for Pixyz: its ``forward``, then the log-det it stored.

    ``self._logdet_jacobian`` is read immediately after the same call that set it, so it cannot be
    another call's value; this is the only place pixyz_like reads the attribute.
    """
    z = self.forward(x, y, compute_jacobian)
    if not isinstance(z, torch.Tensor):
        raise TypeError(
            f"{self._name()}.forward returned a {type(z).__name__}, not a tensor: forward follows Pixyz's "
            "convention (return z, store the log-det in self._logdet_jacobian); to return (z, logdet) "
            "implement transform() instead"
        )
    return z, (_pixyz_logdet(self, x) if compute_jacobian else None)


_transform_via_forward._calls_pixyz_method = True  # type: ignore[attr-defined]


def _inverse_transform_via_inverse(
    self: Flow, z: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True
) -> FlowOutput:
    """``inverse_transform`` of a flow written for Pixyz: its ``inverse(z, y)``; the log-det, which
    Pixyz's inverses do not compute, is minus the forward log-det at the result (one forward pass)."""
    try:
        x = self.inverse(z) if y is None else self.inverse(z, y)
    except NotImplementedError as e:
        raise self._no_inverse(f"its inverse raised NotImplementedError({e})") from e
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{self._name()}.inverse returned a {type(x).__name__}, not a tensor: inverse follows Pixyz's "
            "convention (return x); to return (x, logdet) implement inverse_transform() instead"
        )
    if not compute_jacobian:
        return x, None
    _, logdet = self.transform(x, y, True)
    if logdet is None:
        raise NotDefinedError(f"{self._name()}.transform(..., compute_jacobian=True) returned no log-determinant")
    return x, -logdet


_inverse_transform_via_inverse._calls_pixyz_method = True  # type: ignore[attr-defined]


def _no_pixyz_inverse(
    self: Flow, z: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True
) -> FlowOutput:
    """``inverse_transform`` of a Pixyz-style flow that defines ``forward`` but no ``inverse``."""
    raise self._no_inverse(f"{type(self).__name__} defines forward but no inverse")


def _add(a: torch.Tensor | None, b: torch.Tensor | None, flow: Flow) -> torch.Tensor | None:
    """The running log-det ``a`` plus ``flow``'s ``b`` (``None``: not computed, compute_jacobian=False)."""
    if a is None:
        return b
    if b is None:
        raise NotDefinedError(f"{flow._name()}.transform returned no log-determinant where the flows before it did")
    return a + b


class FlowList(Flow):
    r"""A composition of flows :math:`f = f_K \circ \dots \circ f_1`, applied in list order.

    .. math:: \log\left|\det \frac{\partial f}{\partial x}\right| = \sum_{k=1}^K \log\left|\det
        \frac{\partial f_k}{\partial h_{k-1}}\right|, \qquad h_0 = x,\ h_k = f_k(h_{k-1}).

    The condition ``y`` is passed to every flow. A ``FlowList`` is indexable and iterable. Called
    the Pixyz way (``f(x)``) it returns the tensor and keeps the summed log-det in its own
    :attr:`~Flow.logdet_jacobian` (the members' attributes are left alone: the composition runs
    through their stateless :meth:`~Flow.transform`).

    >>> from pixyz_like.flows import Reverse, PlanarFlow
    >>> f = FlowList([PlanarFlow(2), Reverse(2)])
    >>> z = f(torch.randn(5, 2))
    >>> z.shape, f.logdet_jacobian.shape, len(f), type(f[1]).__name__
    (torch.Size([5, 2]), torch.Size([5]), 2, 'Reverse')
    >>> z, logdet = f.transform(torch.randn(5, 2))
    >>> logdet.shape
    torch.Size([5])
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
        # Every member is a Flow (checked in __init__); ModuleList's stubs only know Module.
        return cast(Iterator[Flow], iter(self.flow_list))

    def __getitem__(self, i: int | slice) -> Flow:
        if isinstance(i, slice):
            return FlowList(list(self)[i])
        return cast(Flow, self.flow_list[i])

    def transform(self, x: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True) -> FlowOutput:
        logdet: torch.Tensor | None = None
        for flow in self:
            x, ld = flow.transform(x, y, compute_jacobian)
            logdet = _add(logdet, ld, flow)
        return x, logdet

    def inverse_transform(
        self, z: torch.Tensor, y: torch.Tensor | None = None, compute_jacobian: bool = True
    ) -> FlowOutput:
        logdet: torch.Tensor | None = None
        for flow in reversed(list(self)):
            z, ld = flow.inverse_transform(z, y, compute_jacobian)
            logdet = _add(logdet, ld, flow)
        return z, logdet

    def __repr__(self) -> str:
        return self.flow_list.__repr__().replace("ModuleList", "FlowList", 1)


def _pixyz_inverse(flow: Flow) -> bool:
    """Whether ``flow.inverse_transform`` (or a member's, in a :class:`FlowList`) can get its log-det
    only from an extra forward pass, being the inverse of a flow written for Pixyz."""
    if isinstance(flow, FlowList):
        return any(_pixyz_inverse(f) for f in flow)
    return bool(getattr(type(flow).inverse_transform, "_calls_pixyz_method", False))
