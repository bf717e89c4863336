r"""``fit(compile=True)``: the loss evaluation through :func:`torch.compile`.

Only the failures that mean *torch.compile cannot work here* fall back to eager evaluation, each
with a :class:`RuntimeWarning` naming the reason, and compilation stays off for the rest of the run:

* TorchDynamo is unsupported on this platform or Python (:func:`torch._dynamo.is_dynamo_supported`
  is false), checked once when the run starts;
* the compiler backend failed (:class:`torch._dynamo.exc.BackendCompilerFailed`, e.g. no C++
  compiler for inductor), Triton is missing for a GPU backend, or TorchDynamo itself crashed
  (:class:`~torch._dynamo.exc.InternalTorchDynamoError`).

Everything else propagates unchanged: an error in the formula or the data (a named
:class:`~pixyz_like.errors.PixyzLikeError`, a shape error raised by torch), an out-of-memory error
(also one raised while compiling), an invalid ``torch.compile`` argument or backend name.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .model import Model

__all__ = ["CompiledLoss", "compile_failures"]

LossResult = tuple[torch.Tensor, dict[str, torch.Tensor]]


def compile_failures() -> tuple[type[BaseException], ...]:
    """The exception types that mean compilation, not the computation, failed.

    >>> all(issubclass(e, RuntimeError) for e in compile_failures())
    True
    """
    from torch._dynamo import exc

    found: list[type[BaseException]] = [exc.BackendCompilerFailed, exc.InternalTorchDynamoError]
    triton = getattr(exc, "TritonUnavailableError", None)
    if isinstance(triton, type):
        found.append(triton)
    return tuple(found)


def _out_of_memory(e: BaseException) -> bool:
    inner = getattr(e, "inner_exception", None)
    return isinstance(e, torch.OutOfMemoryError) or isinstance(inner, torch.OutOfMemoryError)


def _reason(e: BaseException) -> str:
    """``BackendCompilerFailed: RuntimeError: no C++ compiler``: the failure and what caused it."""
    inner = getattr(e, "inner_exception", None)
    text = f"{type(inner).__name__}: {inner}" if inner is not None else (str(e).splitlines() or [""])[0]
    return f"{type(e).__name__}: {text}"


class CompiledLoss:
    """The training loss ``model.loss_cls.eval(x_dict, return_terms=True, **options)`` as a function of
    the batch, compiled with ``torch.compile(**compile_options)`` (see the module for what falls back).

    >>> from pixyz_like.distributions import Normal
    >>> p = Normal(loc=torch.zeros(1), scale=1., var=["x"], name="p")
    >>> p.loc = torch.nn.Parameter(p.loc.clone())
    >>> from pixyz_like.models import Model
    >>> fn = CompiledLoss(Model(-p.log_prob().mean(), distributions=[p]), {}, compile_options=None)
    >>> fn.compiled is None   # compile_options=None: eager
    True
    >>> loss, terms = fn({"x": torch.zeros(3, 1)})
    >>> round(loss.item(), 4), list(terms)
    (0.9189, ['log p(x)'])
    """

    def __init__(self, model: Model, options: Mapping[str, Any],
                 compile_options: Mapping[str, Any] | None) -> None:
        self.loss, self.options = model.loss_cls, dict(options)
        self.compiled: Callable[[dict[str, Any]], LossResult] | None = None
        if compile_options is None:
            return
        if not torch._dynamo.is_dynamo_supported():
            self._fall_back("TorchDynamo is not supported on this platform or Python version")
            return
        self.compiled = torch.compile(self.eager, **dict(compile_options))

    def eager(self, x_dict: dict[str, Any]) -> LossResult:
        """The loss and its terms, evaluated eagerly."""
        return self.loss.eval(x_dict, return_terms=True, **self.options)

    def _fall_back(self, reason: str) -> None:
        warnings.warn(f"Model.fit(compile=...): torch.compile cannot run here ({reason}); training eagerly",
                      RuntimeWarning, stacklevel=5)
        self.compiled = None

    def __call__(self, x_dict: dict[str, Any]) -> LossResult:
        if self.compiled is not None:
            try:
                return self.compiled(x_dict)
            except compile_failures() as e:
                if _out_of_memory(e):
                    raise
                self._fall_back(_reason(e))
        return self.eager(x_dict)
