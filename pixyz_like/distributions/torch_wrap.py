r"""Bridges to :mod:`torch.distributions`: networks that return a torch distribution, and back.

* :func:`from_torch` turns any :class:`torch.nn.Module` whose ``forward`` returns a
  :class:`torch.distributions.Distribution` (pygen's and TensorFlow Probability's "layers") into a
  pixyz_like distribution over a named variable: it samples, scores, multiplies with ``*``, enters
  losses and prints like any other.
* :func:`from_module` turns a plain :class:`torch.nn.Module` (a network returning tensors) into a
  :class:`~pixyz_like.distributions.Deterministic` distribution, with trainable parameters and no
  random choice (GenPyTorch's "generative function" of a network).
* :func:`to_torch` goes the other way: any pixyz_like distribution over one variable, given its
  conditioning inputs, becomes a :class:`torch.distributions.Distribution` that torch, Pyro or zuko
  code can consume.

Shapes: the torch distribution's first batch dimension is the data point (``batch``); its other batch
dimensions and its event dimensions are the *features* of one data point, so ``get_log_prob`` sums
the other batch dimensions and returns one value per data point, as every pixyz_like distribution
does. ``features_shape`` of a wrapped module is therefore ``batch_shape[1:] + event_shape``, read off
the torch distribution each time it is built.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .._context import EvalContext
from ..errors import NotDefinedError, ParameterError, ShapeError, SupportError
from . import _validation
from .distributions import Distribution
from .protocol import SampleSpec, ScoreSpec, reduce_features
from .special import Deterministic

__all__ = ["TorchDistribution", "ModuleDeterministic", "from_torch", "from_module", "to_torch"]


def _module_name(module: Any) -> str:
    return type(module).__name__


class TorchDistribution(Distribution):
    r"""A distribution computed by a network that returns a :class:`torch.distributions.Distribution`.

    ``module(*inputs)`` is called with the conditioning variables, positionally in ``cond_var`` order
    (``module()`` when there are none), and must return a torch distribution over ``var``. Made by
    :func:`from_torch`; see there for the arguments.

    >>> from torch import nn
    >>> class Head(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = nn.Linear(3, 4)
    ...     def forward(self, x):
    ...         loc, s = self.fc(x).chunk(2, -1)
    ...         return torch.distributions.Normal(loc, nn.functional.softplus(s))
    >>> q = TorchDistribution(Head(), var=["z"], cond_var=["x"], name="q")
    >>> print(q.prob_text, "|", q.distribution_name)
    q(z|x) | torch Head
    >>> q.sample({"x": torch.zeros(5, 3)})["z"].shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        module: nn.Module | Callable[..., torch.distributions.Distribution],
        var: Sequence[str] | str,
        cond_var: Sequence[str] | str = (),
        name: str = "p",
        has_reparam: bool | None = None,
    ) -> None:
        super().__init__(var=var, cond_var=cond_var, name=name)
        if len(self._var) != 1:
            raise ShapeError(
                f"{self._owner()}: a torch distribution is over one tensor, so from_torch takes one variable, "
                f"got {self._var}"
            )
        if not callable(module):
            raise TypeError(f"{self._owner()}: module must be callable (an nn.Module), got {type(module).__name__}")
        if has_reparam not in (None, True, False):
            raise TypeError(f"{self._owner()}: has_reparam must be None, True or False, got {has_reparam!r}")
        self.module = module
        self._reparam_choice = has_reparam

    @property
    def distribution_name(self) -> str:  # type: ignore[override]  # a property for the base's class attribute
        return f"torch {_module_name(self.module)}"

    @property
    def has_reparam(self) -> bool:  # type: ignore[override]  # a property for the base's class attribute
        # None: decided per call from the torch distribution's has_rsample (see from_torch).
        return self._reparam_choice is not False

    def _check_reparam(self) -> None:
        if self._reparam_choice is False:
            super()._check_reparam()

    # ------------------------------------------------------------------ the torch distribution
    def _build(self, x_dict: Mapping[str, Any], ctx: Any) -> torch.distributions.Distribution:
        inputs = tuple(x_dict[v] for v in self._cond_var)
        memo = ctx.memo if ctx is not None else None
        if memo is not None:
            hit = memo.get(self, inputs)
            if hit is not None:
                return hit
        try:
            dist = self.module(*inputs)
        except ValueError as e:  # torch.distributions refusing its parameters (validate_args)
            raise ParameterError(
                f"{self._owner()}: the torch distribution built by {_module_name(self.module)} refused its "
                f"parameters: {e}"
            ) from e
        if not isinstance(dist, torch.distributions.Distribution):
            raise ParameterError(
                f"{self._owner()}: {_module_name(self.module)} must return a torch.distributions.Distribution, "
                f"got {type(dist).__name__}"
            )
        if memo is not None:
            memo.put(self, inputs, dist)
        return dist

    def torch_distribution(self, x_dict: Mapping[str, Any] | None = None) -> torch.distributions.Distribution:
        """The torch distribution the module returns for these inputs (what :func:`to_torch` gives).

        >>> p = from_torch(lambda: torch.distributions.Normal(torch.zeros(1, 2), 1.0), var=["x"])
        >>> p.torch_distribution().batch_shape
        torch.Size([1, 2])
        """
        x_dict = self._as_dict(x_dict, "torch_distribution")
        self._require(x_dict, self.input_var, "torch_distribution")
        return self._build(x_dict, None)

    @staticmethod
    def _n_feat(dist: torch.distributions.Distribution) -> int:
        return max(len(dist.batch_shape) - 1, 0)

    def _batched(
        self, dist: torch.distributions.Distribution, batch_n: int | None
    ) -> tuple[torch.distributions.Distribution, torch.Size]:
        """The distribution with its data-point dimension ``batch_n`` (broadcast from 1, or added)."""
        shape = dist.batch_shape
        if len(shape) == 0:  # no data-point dim: each draw is one data point
            return dist, torch.Size([batch_n if batch_n is not None else 1])
        if batch_n is None or shape[0] == batch_n:
            return dist, torch.Size()
        if shape[0] != 1:
            raise ShapeError(f"{self._owner()}: batch_n={batch_n} conflicts with the batch size {shape[0]} "
                             f"of its torch distribution (batch_shape {tuple(shape)})")
        return dist.expand(torch.Size([batch_n]) + shape[1:]), torch.Size()

    # ------------------------------------------------------------------ protocol
    def _sample(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: SampleSpec) -> dict[str, torch.Tensor]:
        batch_n, sample_shape, reparam, sample_mean = spec
        dist, extra = self._batched(self._build(x_dict, ctx), batch_n if not self._cond_var else None)
        shape = torch.Size(sample_shape) + extra
        if sample_mean:
            mean = dist.mean
            value = mean.expand(shape + mean.shape) if len(shape) else mean
        elif reparam and dist.has_rsample:
            value = dist.rsample(shape)
        elif reparam and self._reparam_choice is True:
            raise NotDefinedError(
                f"{self._owner()}: has_reparam=True, but {type(dist).__name__} has no rsample(); pass "
                "has_reparam=None to draw it without gradient where it has none"
            )
        else:
            value = dist.sample(shape)
        return {self._var[0]: value}

    def _check_value(self, dist: torch.distributions.Distribution, value: Any) -> torch.Tensor:
        var = self._var[0]
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{self._owner()}: variable {var!r} must be a tensor, got {type(value).__name__}")
        tail = tuple(dist.batch_shape[1:] + dist.event_shape)
        if value.ndim < len(tail) or tuple(value.shape[value.ndim - len(tail):]) != tail:
            expected = ", ".join(map(str, (*dist.batch_shape[:1], *tail)))
            raise ShapeError(
                f"{self._owner()}: variable {var!r} has shape {tuple(value.shape)}, but its torch distribution "
                f"{type(dist).__name__} has batch_shape {tuple(dist.batch_shape)} and event_shape "
                f"{tuple(dist.event_shape)}: expected (*sample_shape, {expected})"
            )
        if _validation.validation_enabled() and not torch.compiler.is_compiling():
            support = getattr(dist, "support", None)
            ok = None
            with contextlib.suppress(NotImplementedError, TypeError):
                ok = support.check(value) if support is not None else None
            if ok is not None and not bool(ok.all()):
                index = tuple((~ok).nonzero()[0].tolist()) if ok.ndim else ()
                raise SupportError(
                    f"{self._owner()}: variable {var!r} lies outside the support {support} of its torch "
                    f"distribution {type(dist).__name__}, e.g. at index {index}: {value[index].tolist()}"
                )
        return value

    def _log_prob(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: ScoreSpec) -> torch.Tensor:
        dist = self._build(x_dict, ctx)
        value = self._check_value(dist, x_dict[self._var[0]])
        lp = dist.log_prob(value)
        return reduce_features(lp, self._n_feat(dist), spec)

    def get_entropy(
        self,
        x_dict: Mapping[str, Any] | None = None,
        sum_features: bool = True,
        feature_dims: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """The torch distribution's entropy, summed over the features."""
        x_dict = self._as_dict(x_dict, "get_entropy")
        self._require(x_dict, self.input_var, "get_entropy")
        dist = self._build(x_dict, None)
        try:
            h = dist.entropy()
        except NotImplementedError as e:
            raise NotDefinedError(f"{self._owner()}: {type(dist).__name__} has no closed-form entropy") from e
        return reduce_features(h, self._n_feat(dist), ScoreSpec.of(sum_features, feature_dims))

    def sample_mean(self, x_dict: Mapping[str, Any] | None = None) -> torch.Tensor:
        """The torch distribution's mean."""
        x_dict = self._as_dict(x_dict, "sample_mean")
        self._require(x_dict, self.input_var, "sample_mean")
        return self._moment(self._build(x_dict, None), "mean")

    def sample_variance(self, x_dict: Mapping[str, Any] | None = None) -> torch.Tensor:
        """The torch distribution's variance."""
        x_dict = self._as_dict(x_dict, "sample_variance")
        self._require(x_dict, self.input_var, "sample_variance")
        return self._moment(self._build(x_dict, None), "variance")

    def _moment(self, dist: torch.distributions.Distribution, which: str) -> torch.Tensor:
        try:
            return getattr(dist, which)
        except NotImplementedError as e:
            raise NotDefinedError(f"{self._owner()}: {type(dist).__name__} has no closed-form {which}") from e

    def _network_text(self) -> str:
        return nn.Module.__repr__(self.module) if isinstance(self.module, nn.Module) else repr(self.module)


def from_torch(
    module: nn.Module | Callable[..., torch.distributions.Distribution],
    var: Sequence[str] | str,
    cond_var: Sequence[str] | str = (),
    name: str = "p",
    has_reparam: bool | None = None,
) -> TorchDistribution:
    r"""A pixyz_like distribution from a network that returns a :class:`torch.distributions.Distribution`.

    Args:
        module: called as ``module(*inputs)`` with the conditioning variables in ``cond_var`` order
            (``module()`` with none), returning a torch distribution over ``var``; an
            :class:`~torch.nn.Module` is registered, so its parameters are trained and saved.
        var: the one variable the torch distribution is over.
        cond_var: the variables passed to the module.
        name: the distribution's name, as printed.
        has_reparam: ``None`` (default): reparameterised draws (``rsample``) where the torch
            distribution has them, plain draws otherwise (as a loss treats a family without a
            reparameterised sampler); ``True``: a reparameterised draw is required (an error where
            there is none); ``False``: never reparameterised.

    The value is what the torch distribution samples and scores: class *indices* for
    ``torch.distributions.Categorical`` (pixyz_like's :class:`Categorical` is one-hot, as Pixyz's).
    The first batch dimension is the data point: a prior over two features is written
    ``Normal(torch.zeros(1, 2), 1.)`` (batch 1, broadcast to ``batch_n``) or
    ``Independent(Normal(torch.zeros(2), 1.), 1)`` (no batch dimension, drawn ``batch_n`` times), not
    ``Normal(torch.zeros(2), 1.)``, whose batch shape ``(2,)`` reads as two data points.

    >>> from torch import nn
    >>> decoder = nn.Sequential(nn.Linear(2, 6), nn.Unflatten(-1, (2, 3)))
    >>> p = from_torch(lambda z: torch.distributions.Bernoulli(logits=decoder(z)), var=["x"], cond_var=["z"])
    >>> x = p.sample({"z": torch.zeros(4, 2)})["x"]
    >>> x.shape, p.get_log_prob({"x": x, "z": torch.zeros(4, 2)}).shape     # features (2, 3) summed
    (torch.Size([4, 2, 3]), torch.Size([4]))
    >>> from pixyz_like.distributions import Normal
    >>> prior = Normal(loc=0., scale=1., var=["z"], features_shape=[2], name="p_{prior}")
    >>> print((p * prior).prob_joint_factorized_and_text)
    p(x,z) = p(x|z)p_{prior}(z)
    """
    return TorchDistribution(module, var=var, cond_var=cond_var, name=name, has_reparam=has_reparam)


class ModuleDeterministic(Deterministic):
    r"""A plain network as a :class:`~pixyz_like.distributions.Deterministic` distribution
    :math:`\delta(h - f(x))`; made by :func:`from_module`.

    The module is called positionally with the conditioning variables in ``cond_var`` order and
    returns one tensor per variable of ``var`` (a tuple when there are several).

    >>> f = ModuleDeterministic(torch.nn.Linear(3, 2), var=["h"], cond_var=["x"], name="f")
    >>> f.sample({"x": torch.zeros(4, 3)})["h"].shape
    torch.Size([4, 2])
    """

    def __init__(self, module: nn.Module | Callable[..., Any], var: Sequence[str] | str,
                 cond_var: Sequence[str] | str = (), name: str = "f") -> None:
        super().__init__(var=var, cond_var=cond_var, name=name)
        if not callable(module):
            raise TypeError(f"{self._owner()}: module must be callable (an nn.Module), got {type(module).__name__}")
        self.module = module

    @property
    def distribution_name(self) -> str:  # type: ignore[override]  # a property for the base's class attribute
        return f"Deterministic {_module_name(self.module)}"

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.module(*(inputs[v] for v in self._cond_var))
        if len(self._var) == 1:
            return {self._var[0]: out}
        if not isinstance(out, (tuple, list)) or len(out) != len(self._var):
            got = f"{len(out)} values" if isinstance(out, (tuple, list)) else type(out).__name__
            raise ParameterError(f"{self._owner()}: {_module_name(self.module)} must return one tensor per "
                                 f"variable {self._var}, got {got}")
        return dict(zip(self._var, out))

    def _network_text(self) -> str:
        return nn.Module.__repr__(self.module) if isinstance(self.module, nn.Module) else repr(self.module)


def from_module(module: nn.Module | Callable[..., Any], var: Sequence[str] | str,
                cond_var: Sequence[str] | str = (), name: str = "f") -> ModuleDeterministic:
    r"""A plain network as a deterministic distribution :math:`\delta(h - f(x))`.

    It has trainable parameters and no random choice: sampling returns ``module(*inputs)`` and, in a
    trace (:func:`~pixyz_like.distributions.simulate`), its score is 0, as a GenPyTorch generative
    function wrapping a network.

    >>> f = from_module(torch.nn.Linear(3, 2), var=["h"], cond_var=["x"], name="f")
    >>> print(f.prob_text, "|", f.distribution_name)
    f(h|x) | Deterministic Linear
    """
    return ModuleDeterministic(module, var=var, cond_var=cond_var, name=name)


# ---------------------------------------------------------------------- to torch
class _AsTorch(torch.distributions.Distribution):
    """A pixyz_like distribution over one variable, given its inputs, as a torch distribution."""

    arg_constraints: dict = {}

    def __init__(self, p: Distribution, inputs: dict[str, Any], batch_n: int | None, shape: torch.Size) -> None:
        self.p, self.inputs, self.batch_n, self.var = p, inputs, batch_n, p.var[0]
        super().__init__(shape[:1], shape[1:], validate_args=False)

    @property
    def has_rsample(self) -> bool:  # type: ignore[override]  # a property for the base's class attribute
        return bool(self.p.has_reparam)

    def _draw(self, sample_shape: Sequence[int] | torch.Size, reparam: bool) -> torch.Tensor:
        out = self.p.sample(self.inputs, batch_n=self.batch_n, sample_shape=torch.Size(sample_shape),
                            return_all=False, reparam=reparam)
        return out[self.var]

    def sample(self, sample_shape: Sequence[int] | torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008 - torch's
        with torch.no_grad():
            return self._draw(sample_shape, False)

    def rsample(self, sample_shape: Sequence[int] | torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        return self._draw(sample_shape, True)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.p.get_log_prob({**self.inputs, self.var: value})

    @property
    def mean(self) -> torch.Tensor:
        return self.p.sample_mean(self.inputs)

    @property
    def variance(self) -> torch.Tensor:
        return self.p.sample_variance(self.inputs)

    def entropy(self) -> torch.Tensor:
        return self.p.get_entropy(self.inputs)

    def __repr__(self) -> str:
        return f"to_torch({self.p.prob_text}, batch_shape={tuple(self.batch_shape)}, " \
               f"event_shape={tuple(self.event_shape)})"


def _value_shape(p: Distribution, inputs: dict[str, Any], batch_n: int | None) -> torch.Size:
    """``(batch, *features)`` of one draw: from the mean where there is one (no random numbers used),
    else from one draw made with the random state restored afterwards."""
    with torch.no_grad():
        try:
            mean = p.sample_mean(inputs)
            if mean.ndim and (batch_n is None or mean.shape[0] == batch_n):
                return mean.shape
        except NotDefinedError:
            pass
        devices = [t.device.index for t in inputs.values() if isinstance(t, torch.Tensor) and t.is_cuda]
        with torch.random.fork_rng(devices=devices):
            return p.sample(inputs, batch_n=batch_n, return_all=False)[p.var[0]].shape


def to_torch(p: Distribution, x_dict: Mapping[str, Any] | None = None,
             batch_n: int | None = None) -> torch.distributions.Distribution:
    r"""The torch distribution of ``p`` over its variable given the conditioning inputs in ``x_dict``.

    For a :func:`from_torch` distribution it is the module's own torch distribution. For any other
    distribution over one variable it is a :class:`torch.distributions.Distribution` with
    ``batch_shape == (batch,)`` and ``event_shape == features_shape`` whose ``sample``, ``rsample``,
    ``log_prob``, ``mean``, ``variance`` and ``entropy`` are ``p``'s own (so ``log_prob`` gives one
    value per data point, exactly ``p.get_log_prob``). ``batch_n`` sets the batch of a distribution
    without inputs.

    (Named ``to_torch`` rather than Pixyz's ``dist``: in Pixyz ``p.dist`` is an attribute holding the
    torch distribution built by the last ``set_dist`` call.)

    >>> from pixyz_like.distributions import Normal
    >>> p = Normal(loc="y", scale=1.0, var=["x"], cond_var=["y"])
    >>> d = to_torch(p, {"y": torch.zeros(5, 3)})
    >>> d.batch_shape, d.event_shape
    (torch.Size([5]), torch.Size([3]))
    >>> torch.allclose(d.log_prob(torch.ones(5, 3)),
    ...                torch.distributions.Normal(0., 1.).log_prob(torch.ones(5, 3)).sum(-1))
    True
    """
    if not isinstance(p, Distribution):
        raise TypeError(f"to_torch: expected a pixyz_like Distribution, got {type(p).__name__}")
    if len(p.var) != 1:
        raise NotDefinedError(
            f"to_torch: {p.prob_text} is over {len(p.var)} variables {p.var}; a torch distribution is over "
            "one tensor (marginalise or take one factor first)"
        )
    inputs = p._as_dict(x_dict, "to_torch")
    p._require(inputs, p.input_var, "to_torch")
    inputs = {k: inputs[k] for k in p.input_var}
    if isinstance(p, TorchDistribution):
        dist, _ = p._batched(p._build(inputs, None), batch_n if not p.cond_var else None)
        return dist
    return _AsTorch(p, inputs, batch_n, _value_shape(p, inputs, batch_n))
