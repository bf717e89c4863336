r"""The base of autoregressive distributions: one parallel pass to score, one element at a time to sample.

An autoregressive distribution factorises its variable in a fixed order,

.. math:: p(x \mid z) = \prod_i p(x_i \mid x_{<i}, z),

and a *causal* network (masked or causal convolutions, :mod:`pixyz_like.layers`) computes the
parameters of every conditional from the whole of ``x`` at once, each from the elements before it
only. So ``get_log_prob`` is one network pass; ``sample`` must generate ``x_1``, then ``x_2`` given
``x_1``, and so on — one pass per element, or one cheap *step* per element when the network keeps a
:class:`~pixyz_like.layers.StepCache`.

The variable has ``features_shape = (channels, *positions)``: ``(C, H, W)`` for images (raster order
over the rows, then the columns) or ``(C, L)`` for sequences. The channels of one position are
either separate steps in their order (``channels="sequential"``, the network masks its channel groups:
R, then G given R, then B given R and G) or one step, independent given the earlier positions
(``channels="joint"``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from types import EllipsisType
from typing import Any

import torch

from .._batch import infer_batch_n, repeat_batch
from .._context import EvalContext
from .._options import check_options
from ..distributions._validation import validation_enabled
from ..distributions.distributions import Distribution, _check_inputs, call_user_function
from ..distributions.protocol import SampleSpec, ScoreSpec, reduce_features
from ..errors import GraphError, NotDefinedError, ParameterError, ShapeError
from ..layers.masked import StepCache

__all__ = ["AutoregressiveDistribution"]


def _validating() -> bool:
    """Whether values and parameters are checked now (``pixyz_like.set_validation``; never when compiling)."""
    return validation_enabled() and not torch.compiler.is_compiling()


def _subscript(latex: str, sub: str) -> str:
    """``x`` -> ``x_{i}``; a name that already has a subscript or superscript is braced first."""
    return f"{{{latex}}}_{{{sub}}}" if any(ch in latex for ch in "_^") else f"{latex}_{{{sub}}}"


class AutoregressiveDistribution(Distribution):
    r"""A distribution :math:`p(x|z) = \prod_i p(x_i \mid x_{<i}, z)` over one variable.

    Subclass a family (:class:`~pixyz_like.autoregressions.AutoregressiveBernoulli`,
    :class:`~pixyz_like.autoregressions.AutoregressiveCategorical`,
    :class:`~pixyz_like.autoregressions.DiscretizedLogisticMixture`) and define

    * ``forward(**inputs)``: called with the variable itself (under its name, shape
      ``(batch, *features_shape)``) and the conditioning variables; returns the parameters of *every*
      conditional at once. The parameters at element ``i`` must depend only on the elements before
      ``i`` — the network's first layer is type-A masked (or the sequence is shifted right by one);
    * optionally ``forward_step(cache, t, **inputs)`` for sequences (``features_shape = (C, L)``):
      called with the *previous* element ``x_{t-1}`` (shape ``(batch, C, 1)``, zeros at ``t = 0``)
      under the variable's name, a :class:`~pixyz_like.layers.StepCache` and the conditioning
      variables; returns the parameters of step ``t`` alone (positions of length 1). ``sample`` then
      generates in ``O(L)`` steps instead of ``O(L)`` full passes.

    ``get_log_prob`` is one call of ``forward``; ``sample`` generates element by element. Sampling
    takes ``temperature`` (1: the model; below 1: sharper; 0: each element the mode of its
    conditional given the elements before it — greedy decoding; see each family for what is scaled)
    and ``use_cache`` (default: whenever ``forward_step`` is defined). The joint mean has no closed
    form; ``sample_mean(x_dict)`` and ``sample_mode(x_dict)`` give every conditional's mean or mode
    given the value of ``x`` in ``x_dict`` (one pass).

    Args:
        var: the one variable.
        cond_var: the conditioning variables.
        name: the name printed in formulas.
        features_shape: ``(channels, *positions)`` of one data point (required: sampling starts from
            nothing).
        channels: ``"sequential"`` (the channels of a position are ordered steps) or ``"joint"``.

    >>> from torch import nn
    >>> from pixyz_like.autoregressions import AutoregressiveBernoulli
    >>> from pixyz_like.layers import CausalConv1d
    >>> class Sequence(AutoregressiveBernoulli):   # p(x) over binary sequences of length 6
    ...     def __init__(self):
    ...         super().__init__(var=["x"], features_shape=[1, 6], name="p")
    ...         self.conv = CausalConv1d(1, 1, kernel_size=3, mask_type="A")
    ...     def forward(self, x):
    ...         return {"logits": self.conv(x)}
    >>> p = Sequence()
    >>> print(p.prob_joint_factorized_and_text)
    p(x) = \prod_{i} p(x_{i}|x_{<i})
    >>> x = p.sample(batch_n=4)["x"]
    >>> x.shape, p.get_log_prob({"x": x}).shape
    (torch.Size([4, 1, 6]), torch.Size([4]))
    """

    distribution_name = "Autoregressive"
    params_keys: tuple[str, ...] = ()
    event_ndim = 0
    has_reparam = False
    #: ``True`` for families whose channels of one position are always drawn together.
    joint_channels_only = False

    def __init__(
        self,
        var: Sequence[str] | str = ("x",),
        cond_var: Sequence[str] | str = (),
        name: str = "p",
        features_shape: Sequence[int] | torch.Size = torch.Size(),
        channels: str = "sequential",
    ) -> None:
        super().__init__(var=var, cond_var=cond_var, name=name, features_shape=features_shape)
        if len(self._var) != 1:
            raise GraphError(f"{self._owner()}: an autoregressive distribution is over one variable, got {self._var}")
        fs = self._features_shape
        if len(fs) < 2 or any(int(s) < 1 for s in fs):
            raise ParameterError(
                f"{self._owner()}: features_shape must be (channels, *positions), e.g. (1, 28, 28) for images "
                f"or (1, L) for sequences, got {tuple(fs)}"
            )
        if channels not in ("sequential", "joint"):
            raise ParameterError(f"{self._owner()}: channels must be 'sequential' or 'joint', got {channels!r}")
        self._channels = "joint" if self.joint_channels_only else channels
        self._has_step = type(self).forward_step is not AutoregressiveDistribution.forward_step
        if self._has_step and len(fs) != 2:
            raise ParameterError(f"{self._owner()}: forward_step (cached generation) is for sequences, "
                                 f"features_shape (C, L); got {tuple(fs)}")
        if self._has_step and self._per_channel:
            raise ParameterError(
                f"{self._owner()}: forward_step generates a whole position per step, so its {fs[0]} channels "
                "must be drawn together: pass channels='joint'"
            )

    # ------------------------------------------------------------------ properties and text
    @property
    def n_channels(self) -> int:
        """The number of channels ``C`` (``features_shape[0]``)."""
        return int(self._features_shape[0])

    @property
    def positions(self) -> tuple[int, ...]:
        """The shape of the positions, ordered in raster order (``(H, W)`` or ``(L,)``)."""
        return tuple(int(s) for s in self._features_shape[1:])

    @property
    def supports_cache(self) -> bool:
        """Whether ``forward_step`` is defined, so that ``sample`` can generate with a cache."""
        return self._has_step

    @property
    def _per_channel(self) -> bool:
        return self._channels == "sequential" and self.n_channels > 1

    @property
    def prob_factorized_text(self) -> str:
        var = self._latex_name_of(self._var[0])
        given = ",".join([_subscript(var, "<i")] + [self._latex_name_of(v) for v in self._cond_var])
        return f"\\prod_{{i}} {self._name_latex}({_subscript(var, 'i')}|{given})"

    def extra_repr(self) -> str:
        return super().extra_repr() + f", channels={self._channels}"

    # ------------------------------------------------------------------ user hooks
    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """The parameters of every conditional from the variable and the conditioning variables."""
        raise NotDefinedError(
            f"{self._owner()}: define forward({', '.join(self._var + self._cond_var)}) returning the parameters "
            f"{list(self.params_keys)} of every conditional"
        )

    def forward_step(self, cache: StepCache, t: int, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """The parameters of step ``t`` from the previous element (optional; enables cached sampling)."""
        raise NotDefinedError(f"{self._owner()}: forward_step is not defined")

    # ------------------------------------------------------------------ family hooks (override)
    def _keys_ok(self, keys: set[str]) -> bool:
        return keys == set(self.params_keys)

    def _expected_shapes(self, n: int, positions: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def _log_prob_elements(self, params: dict[str, torch.Tensor], value: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _draw_at(self, params: dict[str, torch.Tensor], channel: int | None, temperature: float) -> torch.Tensor:
        raise NotImplementedError

    def _point_all(self, params: dict[str, torch.Tensor], value: torch.Tensor, kind: str) -> torch.Tensor:
        raise NotImplementedError

    # ------------------------------------------------------------------ inputs and parameters
    def _check_value(self, value: Any) -> torch.Tensor:
        var, fs = self._var[0], tuple(self._features_shape)
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{self._owner()}: variable {var!r} must be a tensor, got {type(value).__name__}")
        if value.ndim < len(fs) + 1 or tuple(value.shape[value.ndim - len(fs):]) != fs:
            raise ShapeError(
                f"{self._owner()}: variable {var!r} has shape {tuple(value.shape)}; expected "
                f"(*sample_shape, batch, {', '.join(map(str, fs))})"
            )
        return value if value.is_floating_point() else value.to(torch.get_default_dtype())

    def _flat_inputs(self, x_dict: Mapping[str, Any], value: torch.Tensor) -> tuple[dict[str, Any], torch.Size]:
        """The variable and conditioning variables with the sample and batch dims merged into one."""
        lead = value.shape[: value.ndim - len(self._features_shape)]
        n = math.prod(lead)
        flat: dict[str, Any] = {self._var[0]: value.reshape(n, *self._features_shape)}
        for v in self._cond_var:
            c = x_dict[v]
            if isinstance(c, torch.Tensor) and len(lead) > 1:
                if tuple(c.shape[: len(lead)]) == tuple(lead):
                    c = c.reshape(n, *c.shape[len(lead):])
                elif c.ndim and c.shape[0] == lead[-1]:  # (batch, ...) given with (S, batch, ...) values
                    c = c.expand(*lead[:-1], *c.shape).reshape(n, *c.shape[1:])
            flat[v] = c
        return flat, lead

    def _call(self, fn: Any, what: str, args: tuple, kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
        _check_inputs(self._owner, kwargs, False, f"{what}()")
        out = call_user_function(self._owner(), fn, what, args, kwargs)
        if not isinstance(out, Mapping):
            raise ParameterError(f"{self._owner()}: {what}() must return a dict of parameters "
                                 f"{list(self.params_keys)}, got {type(out).__name__}")
        return dict(out)

    def _check_params(self, params: dict[str, Any], n: int, positions: tuple[int, ...], what: str) -> None:
        if not self._keys_ok(set(params)):
            raise ParameterError(
                f"{self._owner()}: {what}() returned the parameters {sorted(params)}, but a "
                f"{self.distribution_name} expects {list(self.params_keys)}"
            )
        expected = self._expected_shapes(n, positions)
        for key, value in params.items():
            if not isinstance(value, torch.Tensor):
                raise ParameterError(f"{self._owner()}: parameter {key} must be a tensor, got {type(value).__name__}")
            if tuple(value.shape) != expected[key]:
                raise ShapeError(
                    f"{self._owner()}: {what}() returned {key} of shape {tuple(value.shape)}; a "
                    f"{self.distribution_name} with features_shape {tuple(self._features_shape)} expects "
                    f"{expected[key]} for a batch of {n}"
                )
        if _validating():
            for key, value in params.items():
                nan = torch.isnan(value.detach())
                if bool(nan.any()):
                    first = tuple(int(i) for i in torch.nonzero(nan)[0])
                    raise ParameterError(f"{self._owner()}: {what}() returned {key} with NaN entries, the first at "
                                         f"index {first}")

    def _params(self, flat: dict[str, Any], n: int, ctx: Any = None, key: tuple = ()) -> dict[str, torch.Tensor]:
        memo = ctx.memo if ctx is not None else None
        if memo is not None:
            hit = memo.get(self, key)
            if hit is not None:
                return hit
        params = self._call(self.forward, "forward", (), flat)
        self._check_params(params, n, self.positions, "forward")
        if memo is not None:
            memo.put(self, key, params)
        return params

    def get_params(self, params_dict: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        """The parameters of every conditional for the value of the variable given in the dict."""
        check_options(lambda: f"{self._owner()}.get_params()", kwargs, ())
        x_dict = self._as_dict(params_dict, "get_params")
        self._require(x_dict, self.var + self.input_var, "get_params")
        flat, lead = self._flat_inputs(x_dict, self._check_value(x_dict[self._var[0]]))
        return self._params(flat, math.prod(lead))

    # ------------------------------------------------------------------ density
    def _log_prob(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: ScoreSpec) -> torch.Tensor:
        value = self._check_value(x_dict[self._var[0]])
        flat, lead = self._flat_inputs(x_dict, value)
        key = (x_dict[self._var[0]], *(x_dict[v] for v in self._cond_var))
        params = self._params(flat, math.prod(lead), ctx, key)
        lp = self._log_prob_elements(params, flat[self._var[0]])
        lp = lp.reshape(*lead, *lp.shape[1:])
        return reduce_features(lp, lp.ndim - len(lead), spec)

    def _point(self, x_dict: Any, kind: str) -> torch.Tensor:
        x_dict = self._as_dict(x_dict, f"sample_{kind}")
        if self._var[0] not in x_dict:
            raise NotDefinedError(
                f"{self._owner()}: the {kind} of an autoregressive distribution has no closed form; "
                f"sample_{kind}(x_dict) with {self._var[0]!r} in it gives every conditional's {kind} given the "
                "elements of the data before it, and sample(temperature=0) decodes greedily"
            )
        self._require(x_dict, self.input_var, f"sample_{kind}")
        value = self._check_value(x_dict[self._var[0]])
        flat, lead = self._flat_inputs(x_dict, value)
        params = self._params(flat, math.prod(lead))
        out = self._point_all(params, flat[self._var[0]], kind)
        return out.reshape(*lead, *out.shape[1:])

    def sample_mean(self, x_dict: Mapping[str, Any] | None = None) -> torch.Tensor:
        """Every conditional's mean :math:`E[x_i \\mid x_{<i}, z]`, ``x`` read from ``x_dict`` (one pass)."""
        return self._point(x_dict, "mean")

    def sample_mode(self, x_dict: Mapping[str, Any] | None = None) -> torch.Tensor:
        """Every conditional's mode given the elements of ``x`` (from ``x_dict``) before it (one pass)."""
        return self._point(x_dict, "mode")

    def _support(self, value: torch.Tensor) -> torch.Tensor:
        """The value checked to lie in the family's support (override)."""
        return value

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        x_dict: Mapping[str, Any] | torch.Tensor | None = None,
        batch_n: int | None = None,
        sample_shape: Sequence[int] | torch.Size = torch.Size(),
        return_all: bool = True,
        reparam: bool = False,
        sample_mean: bool = False,
        temperature: float = 1.0,
        use_cache: bool | None = None,
        **options: Any,
    ) -> dict[str, torch.Tensor]:
        """Generate element by element (see the class docstring for ``temperature`` and ``use_cache``)."""
        x_dict = self._sample_inputs(x_dict, options, reparam, sample_mean, ("temperature", "use_cache"))
        if sample_mean:
            self._no_sample_mean()
        if isinstance(temperature, torch.Tensor) and temperature.numel() == 1:
            temperature = float(temperature)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature >= 0:
            raise ParameterError(f"{self._owner()}: temperature must be a number >= 0, got {temperature!r}")
        if use_cache and not self._has_step:
            raise NotDefinedError(f"{self._owner()}: use_cache=True needs forward_step, which it does not define")
        cached = self._has_step if use_cache is None else bool(use_cache)
        shape = self._sample_shape(sample_shape)
        out = {self._var[0]: self._generate(x_dict, batch_n, shape, float(temperature), cached)}
        return self._sample_result(x_dict, out, return_all)

    def _no_sample_mean(self) -> None:
        raise NotDefinedError(
            f"{self._owner()}: the mean of an autoregressive distribution has no closed form; use "
            "sample(temperature=0) for greedy decoding, or sample_mean(x_dict) for every conditional's mean "
            "given the data"
        )

    def _sample(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: SampleSpec) -> dict[str, torch.Tensor]:
        if spec.sample_mean:
            self._no_sample_mean()
        return {self._var[0]: self._generate(x_dict, spec.batch_n, spec.sample_shape, 1.0, self._has_step)}

    def _like(self, conds: Mapping[str, Any]) -> torch.Tensor:
        """A tensor whose dtype and device the samples take: a conditioning input's, else a parameter's."""
        for c in itertools.chain(conds.values(), self.parameters(), self.buffers()):
            if isinstance(c, torch.Tensor) and c.is_floating_point():
                return c
        return torch.zeros(())

    def _generate(
        self, x_dict: Mapping[str, Any], batch_n: int | None, sample_shape: torch.Size, temperature: float, cached: bool
    ) -> torch.Tensor:
        conds = {v: x_dict[v] for v in self._cond_var}
        batch = infer_batch_n(conds, self._cond_var)
        if batch is None:
            batch = 1 if batch_n is None else int(batch_n)
        elif batch_n is not None and batch_n != batch:
            raise ShapeError(f"{self._owner()}: batch_n={batch_n} conflicts with the batch size {batch} of its inputs")
        n = sample_shape.numel() if len(sample_shape) else 1
        if n > 1:
            conds = {k: repeat_batch(v, n) if isinstance(v, torch.Tensor) and v.ndim else v for k, v in conds.items()}
        like = self._like(conds)
        x = torch.zeros(n * batch, *self._features_shape, dtype=like.dtype, device=like.device)
        with torch.no_grad():
            if cached:
                self._generate_cached(x, conds, temperature)
            else:
                self._generate_full(x, conds, temperature)
        return x.reshape(*sample_shape, batch, *self._features_shape)

    def _generate_full(self, x: torch.Tensor, conds: dict[str, Any], temperature: float) -> None:
        """One full pass of ``forward`` per element: ``O(L)`` passes over ``L`` elements."""
        n, var = x.shape[0], self._var[0]
        channels = range(self.n_channels) if self._per_channel else (None,)
        for pos in itertools.product(*(range(s) for s in self.positions)):
            at_pos: tuple[EllipsisType | int, ...] = (..., *pos)
            for c in channels:
                params = self._params({var: x, **conds}, n)
                at = {k: p[at_pos] for k, p in params.items()}
                index: tuple[slice | int, ...] = (slice(None), slice(None) if c is None else c, *pos)
                x[index] = self._draw_at(at, c, temperature)

    def _generate_cached(self, x: torch.Tensor, conds: dict[str, Any], temperature: float) -> None:
        """One ``forward_step`` per position, the network's history kept in a fresh :class:`StepCache`."""
        n, var = x.shape[0], self._var[0]
        cache = StepCache()
        prev = torch.zeros_like(x[..., :1])
        for t in range(self.positions[0]):
            params = self._call(self.forward_step, "forward_step", (cache, t), {var: prev, **conds})
            self._check_params(params, n, (1,), "forward_step")
            x[:, :, t] = self._draw_at({k: p[..., 0] for k, p in params.items()}, None, temperature)
            prev = x[:, :, t : t + 1]
