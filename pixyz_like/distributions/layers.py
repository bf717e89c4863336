r"""Distribution layers: the last layer of a network, turning its output into a torch distribution.

As in pygen and TensorFlow Probability's ``tfp.layers``, a layer reads the parameters of a
distribution from the **last dimension** of a network's output (``(..., params_size)``, "channel
last") and returns a :class:`torch.distributions.Distribution` whose event is ``event_shape``. Put it
at the end of an :class:`~torch.nn.Sequential` and wrap the whole with
:func:`~pixyz_like.distributions.from_torch` to get a pixyz_like distribution:

>>> from torch import nn
>>> from pixyz_like.distributions import from_torch
>>> head = IndependentCategorical(num_classes=10)
>>> net = nn.Sequential(nn.Flatten(), nn.Linear(784, head.params_size()), head)
>>> p_y = from_torch(net, var=["y"], cond_var=["x"])            # a classifier p(y|x)
>>> p_y.sample({"x": torch.rand(4, 1, 28, 28)})["y"].shape       # class indices
torch.Size([4])

``params_size(event_shape)`` is the width the network's last layer must have: ``prod(event_shape)``
for Bernoulli, twice that for Normal (means, then scales), ``prod(event_shape) * num_classes`` for
Categorical.

**Channel-first images.** The event shape itself follows PyTorch's layout (``[1, 28, 28]`` for an
MNIST image); only the parameters are flat in the last dimension, in the row-major order of
``event_shape`` (+ the parameter axis). So:

* Bernoulli: a convolutional output ``(N, C, H, W)`` of logits is ``out.flatten(1)``.
* Normal: an output ``(N, 2C, H, W)`` whose first ``C`` channels are the means and last ``C`` the
  (pre-softplus) scales is ``out.flatten(1)``: flattening channel-first puts all the means first.
* Categorical over ``K`` classes per element of a ``(C, H, W)`` event: the classes must be the
  fastest-varying axis, so an output ``(N, C*K, H, W)`` (channel ``c``'s ``K`` logits together) is
  ``out.reshape(N, C, K, H, W).permute(0, 1, 3, 4, 2).flatten(1)``; PyTorch's loss layout
  ``(N, K, H, W)`` for ``C = 1`` is ``out.permute(0, 2, 3, 1).flatten(1)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ParameterError, ShapeError

__all__ = ["IndependentBernoulli", "IndependentNormal", "IndependentCategorical"]


def _event_shape(owner: str, event_shape: Any) -> tuple[int, ...]:
    if isinstance(event_shape, int) and not isinstance(event_shape, bool):
        event_shape = (event_shape,)
    try:
        shape = tuple(int(d) for d in event_shape)
    except TypeError as e:
        raise TypeError(f"{owner}: event_shape must be a sequence of positive integers, got {event_shape!r}") from e
    if any(d < 1 for d in shape):
        raise ShapeError(f"{owner}: event_shape must be positive sizes, got {list(shape)}")
    return shape


class _ParamsSize:
    """``params_size`` callable on the class (``Layer.params_size(event_shape)``) or on an instance
    (``layer.params_size()`` for its own event shape, or ``layer.params_size(other_shape)``)."""

    def __init__(self, fn: Callable[..., int]) -> None:
        self.fn = fn
        self.__doc__ = fn.__doc__

    def __get__(self, obj: Any, cls: type) -> Callable[..., int]:
        return functools.partial(self.fn, cls, obj)


class _Layer(nn.Module):
    """Reads the flat parameters of the last dimension and builds the distribution."""

    per_element = 1  # parameters per element of the event

    def __init__(self, event_shape: Sequence[int] | int = ()) -> None:
        super().__init__()
        self.event_shape = _event_shape(type(self).__name__, event_shape)

    @_ParamsSize
    def params_size(  # noqa: N805
        cls: type[_Layer], self: _Layer | None, event_shape: Sequence[int] | int | None = None, **kwargs: Any
    ) -> int:
        """The number of parameters (the last dimension of the network's output) for ``event_shape``."""
        if event_shape is None:
            if self is None:
                raise TypeError(f"{cls.__name__}.params_size() needs an event_shape when called on the class")
            event_shape = self.event_shape
        shape = _event_shape(cls.__name__, event_shape)
        return math.prod(shape) * cls._per_element(self, **kwargs)

    @classmethod
    def _per_element(cls, self: Any, **kwargs: Any) -> int:
        if kwargs:
            raise TypeError(f"{cls.__name__}.params_size() got unexpected arguments {sorted(kwargs)}")
        return cls.per_element

    def _checked(self, params: torch.Tensor, *layout: int) -> torch.Tensor:
        """``(..., params_size)`` reshaped to ``(..., *layout)`` after checking its last dimension."""
        name = type(self).__name__
        if not isinstance(params, torch.Tensor):
            raise TypeError(f"{name}: expects a tensor of parameters, got {type(params).__name__}")
        size = self.params_size()
        if params.ndim < 1 or params.shape[-1] != size:
            raise ShapeError(
                f"{name}(event_shape={list(self.event_shape)}): the last dimension of its input must hold the "
                f"{size} parameters (params_size), got shape {tuple(params.shape)}"
            )
        return params.reshape(*params.shape[:-1], *layout)

    def _independent(self, base: torch.distributions.Distribution) -> torch.distributions.Distribution:
        n = len(self.event_shape)
        return torch.distributions.Independent(base, n) if n else base

    def extra_repr(self) -> str:
        return f"event_shape={list(self.event_shape)}"


class IndependentBernoulli(_Layer):
    r"""Independent Bernoulli variables over ``event_shape``, from ``prod(event_shape)`` logits.

    >>> layer = IndependentBernoulli([1, 28, 28])
    >>> layer.params_size(), IndependentBernoulli.params_size([2, 3])
    (784, 6)
    >>> d = layer(torch.zeros(5, 784))
    >>> d.batch_shape, d.event_shape
    (torch.Size([5]), torch.Size([1, 28, 28]))
    """

    def forward(self, logits: torch.Tensor) -> torch.distributions.Distribution:
        return self._independent(torch.distributions.Bernoulli(logits=self._checked(logits, *self.event_shape)))


class IndependentNormal(_Layer):
    r"""Independent normals over ``event_shape``: means from the first ``prod(event_shape)`` entries,
    scales :math:`\mathrm{softplus}(s) + \epsilon` (``min_scale``) from the next ``prod(event_shape)``.

    >>> layer = IndependentNormal([3])
    >>> layer.params_size()
    6
    >>> d = layer(torch.zeros(4, 6))
    >>> d.mean.shape, round(float(d.stddev[0, 0]), 4)      # softplus(0) = log 2
    (torch.Size([4, 3]), 0.6931)
    """

    per_element = 2

    def __init__(self, event_shape: Sequence[int] | int = (), min_scale: float = 0.0) -> None:
        super().__init__(event_shape)
        if not min_scale >= 0:
            raise ParameterError(f"IndependentNormal: min_scale must be non-negative, got {min_scale!r}")
        self.min_scale = float(min_scale)

    def forward(self, params: torch.Tensor) -> torch.distributions.Distribution:
        both = self._checked(params, 2, *self.event_shape)  # means first, then scales (not interleaved)
        n = len(self.event_shape)
        loc, s = both.select(-1 - n, 0), both.select(-1 - n, 1)
        return self._independent(torch.distributions.Normal(loc, F.softplus(s) + self.min_scale))


class IndependentCategorical(_Layer):
    r"""Independent ``num_classes``-way categoricals over ``event_shape`` (values: class indices), from
    ``prod(event_shape) * num_classes`` logits, the classes of each element together (last).

    >>> layer = IndependentCategorical(num_classes=10)          # one class label per data point
    >>> layer.params_size(), layer.params_size([5]), IndependentCategorical.params_size([5], num_classes=4)
    (10, 50, 20)
    >>> layer(torch.zeros(7, 10)).sample().shape
    torch.Size([7])
    >>> IndependentCategorical(10, event_shape=[5])(torch.zeros(7, 50)).sample([2]).shape
    torch.Size([2, 7, 5])
    """

    def __init__(self, num_classes: int, event_shape: Sequence[int] | int = ()) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ParameterError(f"IndependentCategorical: num_classes must be an integer >= 2, got {num_classes!r}")
        super().__init__(event_shape)
        self.num_classes = num_classes

    @classmethod
    def _per_element(cls, self: Any, num_classes: int | None = None, **kwargs: Any) -> int:
        if kwargs:
            return super()._per_element(self, **kwargs)  # raises: unexpected arguments
        if num_classes is None:
            if self is None:
                raise TypeError("IndependentCategorical.params_size() on the class needs num_classes=")
            return self.num_classes
        return int(num_classes)

    def forward(self, logits: torch.Tensor) -> torch.distributions.Distribution:
        return self._independent(
            torch.distributions.Categorical(logits=self._checked(logits, *self.event_shape, self.num_classes)))

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, event_shape={list(self.event_shape)}"
