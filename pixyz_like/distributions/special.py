"""Distributions that are not parametric families: :class:`Deterministic` and :class:`EmpiricalDistribution`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .._context import EvalContext
from ..errors import NotDefinedError, ParameterError
from .distributions import Distribution, _add_note, _check_inputs, _shapes
from .protocol import SampleSpec

__all__ = ["Deterministic", "EmpiricalDistribution"]


class Deterministic(Distribution):
    r"""A point mass :math:`\delta(h - f(x))`: ``forward(**cond_vars)`` returns ``{var: value}``.

    Sampling returns the value (with a ``sample_shape``, repeated along new leading dimensions); the
    log-density is not defined.

    >>> class Square(Deterministic):
    ...     def __init__(self):
    ...         super().__init__(var=["h"], cond_var=["x"], name="f")
    ...     def forward(self, x):
    ...         return {"h": x ** 2}
    >>> Square().sample({"x": torch.tensor([[3.]])})["h"]
    tensor([[9.]])
    """

    distribution_name = "Deterministic"
    has_reparam = True

    def __init__(self, var: Sequence[str] | str, cond_var: Sequence[str] | str = (), name: str = "p",
                 **kwargs: Any) -> None:
        super().__init__(var=var, cond_var=cond_var, name=name, **kwargs)

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError(f"{self._owner()}: a Deterministic subclass must define forward()")

    def _compute(self, x_dict: Mapping[str, Any], ctx: EvalContext | None) -> dict[str, torch.Tensor]:
        inputs = tuple(x_dict[v] for v in self._cond_var)
        memo = ctx.memo if ctx is not None else None
        hit = memo.get(self, inputs) if memo is not None else None
        if hit is not None:
            return hit
        kwargs = dict(zip(self._cond_var, inputs))
        _check_inputs(self._owner, kwargs, True)
        try:
            out = self.forward(**kwargs)
        except Exception as e:
            _add_note(e, f"raised in {self._owner()}.forward() on inputs ({_shapes(kwargs)})")
            raise
        if not isinstance(out, Mapping) or set(out) != set(self._var):
            got = sorted(out) if isinstance(out, Mapping) else type(out).__name__
            raise ParameterError(f"{self._owner()}: forward() must return a dict with keys {self._var}, got {got}")
        out = dict(out)
        if memo is not None:
            memo.put(self, inputs, out)
        return out

    def _sample(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: SampleSpec) -> dict[str, torch.Tensor]:
        out = self._compute(x_dict, ctx)
        if len(spec.sample_shape):
            out = {k: v.expand(*spec.sample_shape, *v.shape) for k, v in out.items()}
        return out

    def sample_mean(self, x_dict: Mapping[str, Any] | None = None) -> torch.Tensor:
        x_dict = self._as_dict(x_dict, "sample_mean")
        self._require(x_dict, self.input_var, "sample_mean")
        out = self._compute(x_dict, None)
        if len(out) != 1:
            raise NotDefinedError(f"{self._owner()}: sample_mean needs a single variable, it has {self._var}")
        return next(iter(out.values()))

    def sample_variance(self, x_dict: Mapping[str, Any] | None = None) -> torch.Tensor:
        return torch.zeros_like(self.sample_mean(x_dict))


class EmpiricalDistribution(Distribution):
    r"""The data distribution :math:`p_{data}(x)`: "sampling" returns the data given in the input dict.

    Its input variables are its own variables, so a loss such as ``E_{p_data(x)}[...]`` asks for ``x``.

    >>> p_data = EmpiricalDistribution(["x"])
    >>> p_data.sample({"x": torch.ones(2, 3)}, return_all=False)["x"].shape
    torch.Size([2, 3])
    """

    distribution_name = "Data distribution"
    has_reparam = True

    def __init__(self, var: Sequence[str] | str, name: str = "p_{data}") -> None:
        super().__init__(var=var, name=name)

    @property
    def input_var(self) -> list[str]:
        return self.var

    def _sample(self, x_dict: dict[str, Any], *, ctx: EvalContext, spec: SampleSpec) -> dict[str, torch.Tensor]:
        out = {v: x_dict[v] for v in self._var}
        if len(spec.sample_shape):
            out = {k: v.expand(*spec.sample_shape, *v.shape) for k, v in out.items()}
        return out
