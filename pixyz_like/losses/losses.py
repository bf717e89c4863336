r"""The :class:`Loss` base class and the loss algebra.

A loss is a formula over named variables. It prints as LaTeX exactly as written (terms keep their
order and never cancel; we format the text ourselves instead of going through sympy's canonical
form) and ``eval(x_dict)`` turns it into a tensor with one value per data point (or a scalar after
``.mean()``/``.sum()``).

Each ``eval`` makes one :class:`~pixyz_like._context.EvalContext`: the parameters of a distribution
evaluated on the same input tensors are computed once inside it and forgotten when it returns.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .._context import EvalContext
from ..errors import MissingVariableError, missing_variable_error
from ..utils import check_options, convert_latex_name, format_number, infer_batch_n, latex_to_tag, repeat_batch

__all__ = [
    "Loss",
    "ValueLoss",
    "Parameter",
    "ConstantVar",
    "MinLoss",
    "MaxLoss",
    "Expectation",
    "AddLoss",
    "SubLoss",
    "MulLoss",
    "DivLoss",
    "NegLoss",
    "AbsLoss",
    "BatchMean",
    "BatchSum",
    "DetachLoss",
]

# Precedence for parenthesising: sums bind loosest, then products, then unary minus, then atoms.
_ADD, _MUL, _NEG, _ATOM = 1, 2, 3, 4

_EVAL_OPTIONS = ("return_dict", "return_all")


def _as_loss(value: Any) -> Loss:
    if isinstance(value, Loss):
        return value
    if isinstance(value, (numbers.Number, torch.Tensor)):
        return ValueLoss(value)
    raise TypeError(f"a loss can be combined with a Loss, a number or a tensor, not {type(value).__name__}")


class Loss(nn.Module):
    r"""Base class of every loss.

    Subclasses implement ``_eval(x_dict, ctx) -> (value, samples)`` and ``_latex() -> str``; parents
    evaluate children through :meth:`_evaluate`.

    >>> from pixyz_like.distributions import Normal
    >>> p = Normal(loc=0., scale=1., var=["x"], name="p")
    >>> loss = -p.log_prob().mean()
    >>> print(loss)
    - mean \left(\log p(x) \right)
    >>> loss.eval({"x": torch.zeros(4, 1)})
    tensor(0.9189)
    """

    _precedence = _ATOM
    #: Whether the loss is a named term of a larger formula (KL, expectation...), reported by
    #: ``eval(..., return_terms=True)``. Operators and constants are not terms.
    _is_term = True

    def __init__(self, input_var: Sequence[str] = ()) -> None:
        super().__init__()
        self._input_var = list(dict.fromkeys(input_var))

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if isinstance(value, nn.Module):
            # Keep a plain reference too, so the evaluation hot path finds child losses and
            # distributions by ordinary attribute lookup instead of nn.Module.__getattr__. Modules are
            # moved by .to() in place, so the reference cannot go stale (buffers are never pinned).
            self.__dict__[name] = value

    # ------------------------------------------------------------------ text
    @property
    def input_var(self) -> list[str]:
        """The variables ``eval`` needs in its input dict."""
        return list(self._input_var)

    def _latex(self) -> str:
        raise NotImplementedError

    @property
    def loss_text(self) -> str:
        """The formula as LaTeX."""
        return self._latex()

    def __str__(self) -> str:
        return self._latex()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._latex()})"

    def _repr_latex_(self) -> str:
        return f"${self._latex()}$"

    def _wrapped(self, precedence: int) -> str:
        """The LaTeX, parenthesised when it binds looser than ``precedence``."""
        text = self._latex()
        return f"\\left({text}\\right)" if self._precedence < precedence else text

    # ------------------------------------------------------------------ structure
    def _children(self) -> list[Loss]:
        return [m for m in self.children() if isinstance(m, Loss)]

    def terms(self) -> list[Loss]:
        """The named terms of the formula: the largest sub-formulas that are not arithmetic."""
        if self._is_term:
            return [self]
        out: list[Loss] = []
        for child in self._children():
            out.extend(t for t in child.terms() if not any(t is o for o in out))
        return out

    def _valid_options(self) -> set[str]:
        opts: set[str] = set(getattr(self, "_options", ()))
        for child in self._children():
            opts |= child._valid_options()
        return opts

    # ------------------------------------------------------------------ evaluation
    def _eval(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
        raise NotImplementedError

    def _evaluate(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
        value, samples = self._eval(x_dict, ctx)
        if ctx.watch is not None and id(self) in ctx.watch:
            ctx.terms[id(self)] = value
        return value, samples

    def eval(  # type: ignore[override]  # Pixyz's API: evaluate the formula, not nn.Module.eval()
        self,
        x_dict: Mapping[str, Any] | None = None,
        return_dict: bool = False,
        return_all: bool = True,
        return_terms: bool = False,
        **options: Any,
    ):
        """Evaluate the loss.

        Args:
            x_dict: values of the input variables.
            return_dict: also return the dict of variables (inputs and samples drawn).
            return_all: with ``return_dict``, include the inputs, not only the samples.
            return_terms: also return ``{tag: value}`` with the batch mean of each named term
                (e.g. the KL and the reconstruction term), detached, for logging.
            options: options understood by losses in the formula; unknown ones raise ``TypeError``.

        Returns ``loss``, or a tuple ``(loss, dict)``, ``(loss, terms)`` or ``(loss, dict, terms)``.
        """
        if options:  # walking the tree for the valid options costs more than the whole tiny evaluation
            check_options(f"{type(self).__name__}.eval()", options, self._valid_options())
        x_dict = {} if x_dict is None else dict(x_dict)
        missing = [v for v in self._input_var if v not in x_dict]
        if missing:
            raise missing_variable_error(f"loss {self._latex()}", "eval", missing, x_dict.keys())
        ctx = EvalContext(options)
        term_list = self.terms() if return_terms else None
        if term_list is not None:
            ctx.watch = {id(t) for t in term_list}
        value, samples = self._evaluate(x_dict, ctx)
        out: list[Any] = [value]
        if return_dict:
            out.append({**x_dict, **samples} if return_all else samples)
        if term_list is not None:
            out.append(self._term_values(term_list, ctx))
        return value if len(out) == 1 else tuple(out)

    @staticmethod
    def _term_values(term_list: list[Loss], ctx: EvalContext) -> dict[str, torch.Tensor]:
        values: dict[str, torch.Tensor] = {}
        for t in term_list:
            if id(t) not in ctx.terms:
                continue
            tag = latex_to_tag(t._latex())
            base, i = tag, 2
            while tag in values:
                tag, i = f"{base} #{i}", i + 1
            v = ctx.terms[id(t)]
            values[tag] = (v.detach().float().mean() if isinstance(v, torch.Tensor) else torch.tensor(float(v)))
        return values

    def forward(self, x_dict: Mapping[str, Any] | None = None, **options: Any):
        """``loss(x_dict)`` is ``loss.eval(x_dict, return_dict=True)`` (used by ``DataParallel``)."""
        return self.eval(x_dict, return_dict=True, **options)

    # ------------------------------------------------------------------ algebra
    def __add__(self, other):
        return AddLoss(self, _as_loss(other))

    def __radd__(self, other):
        return AddLoss(_as_loss(other), self)

    def __sub__(self, other):
        return SubLoss(self, _as_loss(other))

    def __rsub__(self, other):
        return SubLoss(_as_loss(other), self)

    def __mul__(self, other):
        return MulLoss(self, _as_loss(other))

    def __rmul__(self, other):
        return MulLoss(_as_loss(other), self)

    def __truediv__(self, other):
        return DivLoss(self, _as_loss(other))

    def __rtruediv__(self, other):
        return DivLoss(_as_loss(other), self)

    def __neg__(self):
        return NegLoss(self)

    def abs(self) -> Loss:
        """``|loss|``, elementwise."""
        return AbsLoss(self)

    def mean(self) -> Loss:
        """Mean over the batch (and any other dimension): ``mean(loss)``."""
        return BatchMean(self)

    def sum(self) -> Loss:
        """Sum over the batch: ``sum(loss)``."""
        return BatchSum(self)

    def detach(self) -> Loss:
        """The same value with no gradient."""
        return DetachLoss(self)

    def expectation(self, p, sample_shape: Sequence[int] | torch.Size = torch.Size([1]), reparam: bool = True) -> Loss:
        """:math:`\\mathbb{E}_{p}[\\text{loss}]` estimated with ``sample_shape`` draws."""
        return Expectation(p, self, sample_shape=sample_shape, reparam=reparam)

    def constant_var(self, constant_dict: Mapping[str, Any]) -> Loss:
        """The loss with some variables fixed to constants."""
        return ConstantVar(self, constant_dict)


class ValueLoss(Loss):
    """A constant; prints as written (``2`` stays ``2``, ``0.5`` stays ``0.5``).

    >>> print(ValueLoss(2)), ValueLoss(2).eval()
    2
    (None, tensor(2.))
    """

    _is_term = False

    def __init__(self, value: Any) -> None:
        super().__init__()
        self.original_value = value
        tensor = value.detach().clone() if isinstance(value, torch.Tensor) else torch.tensor(value)
        if not tensor.is_floating_point():
            tensor = tensor.to(torch.get_default_dtype())
        self.register_buffer("value", tensor)

    def _latex(self) -> str:
        return format_number(self.original_value)

    @property
    def _precedence(self) -> int:  # type: ignore[override]
        text = self._latex()
        return _NEG if text.startswith("-") else _ATOM

    def _eval(self, x_dict, ctx):
        return self.value, {}


class Parameter(Loss):
    r"""A variable read from the input dict, e.g. a weight ``beta`` fed each step.

    >>> beta = Parameter("beta")
    >>> print(beta), beta.eval({"beta": 0.5})
    \beta
    (None, tensor(0.5000))
    """

    _is_term = False

    def __init__(self, input_var: str) -> None:
        if not isinstance(input_var, str) or not input_var:
            raise TypeError(f"Parameter needs a variable name (a string), got {input_var!r}")
        super().__init__([input_var])

    def _latex(self) -> str:
        return convert_latex_name(self._input_var[0])

    def _eval(self, x_dict, ctx):
        value = x_dict[self._input_var[0]]
        if not isinstance(value, torch.Tensor):
            value = torch.tensor(value, dtype=torch.get_default_dtype())
        return value, {}


class ConstantVar(Loss):
    """A loss with some of its variables fixed to given constants; prints as the loss itself.

    >>> from pixyz_like.distributions import Normal
    >>> p = Normal(loc="mu", scale=1., var=["x"], cond_var=["mu"])
    >>> loss = ConstantVar(p.log_prob(), {"mu": torch.zeros(1, 1)})
    >>> loss.input_var
    ['x']
    >>> loss.eval({"x": torch.zeros(1, 1)})
    tensor([-0.9189])
    """

    _is_term = False

    def __init__(self, base_loss: Loss, constant_dict: Mapping[str, Any]) -> None:
        unknown = sorted(k for k in constant_dict if k not in base_loss.input_var)
        if unknown:
            raise MissingVariableError(
                f"loss {base_loss._latex()}: constant_var got {unknown}, which are not among its input "
                f"variables {base_loss.input_var}"
            )
        super().__init__([v for v in base_loss.input_var if v not in constant_dict])
        self.base_loss = base_loss
        self.constant_dict = dict(constant_dict)

    def _latex(self) -> str:
        return self.base_loss._latex()

    @property
    def _precedence(self) -> int:  # type: ignore[override]
        return self.base_loss._precedence

    def _eval(self, x_dict, ctx):
        return self.base_loss._evaluate({**x_dict, **self.constant_dict}, ctx)


class _Binary(Loss):
    _is_term = False

    def __init__(self, loss1: Loss, loss2: Loss) -> None:
        super().__init__(loss1.input_var + loss2.input_var)
        self.loss1 = loss1
        self.loss2 = loss2

    def _eval(self, x_dict, ctx):
        a, sa = self.loss1._evaluate(x_dict, ctx)
        b, sb = self.loss2._evaluate(x_dict, ctx)
        return self._op(a, b), {**sa, **sb}


class AddLoss(_Binary):
    """The sum ``a + b`` of two losses (or a loss and a number), written by ``loss1 + loss2``.

    >>> a, b = ValueLoss(2), Parameter("beta")
    >>> print(a + b), (a + b).eval({"beta": 0.5})
    2 + \\beta
    (None, tensor(2.5000))
    """

    _precedence = _ADD

    def _latex(self) -> str:
        right = self.loss2
        if isinstance(right, NegLoss):  # a + (-b) reads a - b
            return f"{self.loss1._latex()} - {right.loss1._wrapped(_MUL)}"
        return f"{self.loss1._latex()} + {right._wrapped(_ADD + 1) if right._precedence <= _ADD else right._latex()}"

    @staticmethod
    def _op(a, b):
        return a + b


class SubLoss(_Binary):
    """The difference ``a - b``, written by ``loss1 - loss2``.

    >>> print(ValueLoss(2) - Parameter("beta")), (ValueLoss(2) - Parameter("beta")).eval({"beta": 0.5})
    2 - \\beta
    (None, tensor(1.5000))
    """

    _precedence = _ADD

    def _latex(self) -> str:
        return f"{self.loss1._latex()} - {self.loss2._wrapped(_MUL)}"

    @staticmethod
    def _op(a, b):
        return a - b


class MulLoss(_Binary):
    """The product ``a b``, written by ``loss1 * loss2``; a constant factor is printed first.

    >>> loss = Parameter("beta") * 3
    >>> print(loss), loss.eval({"beta": 0.5})
    3 \\beta
    (None, tensor(1.5000))
    """

    _precedence = _MUL

    def _latex(self) -> str:
        a, b = self.loss1, self.loss2
        if isinstance(b, ValueLoss) and not isinstance(a, ValueLoss):
            a, b = b, a  # a coefficient is written first: loss * 2 prints 2 loss
        return f"{a._wrapped(_MUL)} {b._wrapped(_NEG)}"

    @staticmethod
    def _op(a, b):
        return a * b


class DivLoss(_Binary):
    """The quotient ``a / b``, written by ``loss1 / loss2``; prints as a fraction.

    >>> loss = Parameter("beta") / 2
    >>> print(loss), loss.eval({"beta": 0.5})
    \\frac{\\beta}{2}
    (None, tensor(0.2500))
    """

    _precedence = _ATOM

    def _latex(self) -> str:
        return f"\\frac{{{self.loss1._latex()}}}{{{self.loss2._latex()}}}"

    @staticmethod
    def _op(a, b):
        return a / b


class MinLoss(_Binary):
    r"""Elementwise minimum, ``min(a, b)``.

    >>> loss = MinLoss(Parameter("a"), ValueLoss(1))
    >>> print(loss), loss.eval({"a": torch.tensor([0.5, 2.0])})
    min \left(a, 1\right)
    (None, tensor([0.5000, 1.0000]))
    """

    _is_term = True

    def _latex(self) -> str:
        return f"min \\left({self.loss1._latex()}, {self.loss2._latex()}\\right)"

    @staticmethod
    def _op(a, b):
        return torch.minimum(torch.as_tensor(a), torch.as_tensor(b))


class MaxLoss(_Binary):
    r"""Elementwise maximum, ``max(a, b)``.

    >>> loss = MaxLoss(Parameter("a"), ValueLoss(1))
    >>> print(loss), loss.eval({"a": torch.tensor([0.5, 2.0])})
    max \left(a, 1\right)
    (None, tensor([1., 2.]))
    """

    _is_term = True

    def _latex(self) -> str:
        return f"max \\left({self.loss1._latex()}, {self.loss2._latex()}\\right)"

    @staticmethod
    def _op(a, b):
        return torch.maximum(torch.as_tensor(a), torch.as_tensor(b))


class _Unary(Loss):
    _is_term = False

    def __init__(self, loss1: Loss) -> None:
        super().__init__(loss1.input_var)
        self.loss1 = loss1

    def _eval(self, x_dict, ctx):
        a, samples = self.loss1._evaluate(x_dict, ctx)
        return self._op(a), samples


class NegLoss(_Unary):
    """The negation ``-a``, written by ``-loss``.

    >>> print(-Parameter("beta")), (-Parameter("beta")).eval({"beta": 0.5})
    - \\beta
    (None, tensor(-0.5000))
    """

    _precedence = _NEG

    def _latex(self) -> str:
        return f"- {self.loss1._wrapped(_MUL)}"

    @staticmethod
    def _op(a):
        return -a


class AbsLoss(_Unary):
    """The elementwise absolute value ``|a|``, written by ``loss.abs()``.

    >>> loss = Parameter("a").abs()
    >>> print(loss), loss.eval({"a": torch.tensor([-1.0, 2.0])})
    |a|
    (None, tensor([1., 2.]))
    """

    def _latex(self) -> str:
        return f"|{self.loss1._latex()}|"

    @staticmethod
    def _op(a):
        return a.abs()


class BatchMean(_Unary):
    r"""The mean over every dimension (the batch, usually), written by ``loss.mean()``.

    >>> loss = Parameter("a").mean()
    >>> print(loss), loss.eval({"a": torch.tensor([1.0, 2.0])})
    mean \left(a \right)
    (None, tensor(1.5000))
    """

    def _latex(self) -> str:
        return f"mean \\left({self.loss1._latex()} \\right)"

    @staticmethod
    def _op(a):
        return a.mean()


class BatchSum(_Unary):
    r"""The sum over every dimension (the batch, usually), written by ``loss.sum()``.

    >>> loss = Parameter("a").sum()
    >>> print(loss), loss.eval({"a": torch.tensor([1.0, 2.0])})
    sum \left(a \right)
    (None, tensor(3.))
    """

    def _latex(self) -> str:
        return f"sum \\left({self.loss1._latex()} \\right)"

    @staticmethod
    def _op(a):
        return a.sum()


class DetachLoss(_Unary):
    """The same value cut from the autograd graph, written by ``loss.detach()``.

    >>> a = torch.tensor([1.0], requires_grad=True)
    >>> Parameter("a").detach().eval({"a": a}).requires_grad
    False
    """

    def _latex(self) -> str:
        return f"detach \\left({self.loss1._latex()} \\right)"

    @staticmethod
    def _op(a):
        return a.detach()


def _fold_dict(x_dict: Mapping[str, Any], n: int, batch: int) -> dict[str, Any]:
    """Repeat every batch tensor ``n`` times, merged into the batch dimension (``(n * batch, ...)``)."""
    out = {}
    for k, v in x_dict.items():
        if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == batch:
            v = repeat_batch(v, n)
        out[k] = v
    return out


def sample_folded(p, x_dict: dict[str, Any], ctx: EvalContext, sample_shape: torch.Size, reparam: bool,
                  batch_n: int | None):
    """Draw ``sample_shape`` samples of ``p`` and return ``(samples, folded_dict, n, batch)``.

    ``folded_dict`` holds the inputs and the samples with the sample dimensions merged into the batch
    dimension, so a function of them runs each network once on ``n * batch`` rows instead of ``n``
    times. ``samples`` keeps the ``sample_shape + (batch, ...)`` layout.
    """
    n = sample_shape.numel() if len(sample_shape) else 1
    samples = p._sample(x_dict, ctx, batch_n, sample_shape if len(sample_shape) else torch.Size([1]),
                        reparam and p.has_reparam, False)
    lead = max(len(sample_shape), 1)
    first = next(iter(samples.values()))
    batch = first.shape[lead] if first.ndim > lead else 1
    if n == 1:
        folded = {**x_dict, **{k: v.reshape(v.shape[lead:]) for k, v in samples.items()}}
    else:
        folded = _fold_dict(x_dict, n, batch)
        folded.update({k: v.reshape(n * batch, *v.shape[lead + 1:]) for k, v in samples.items()})
    return samples, folded, n, batch


class Expectation(Loss):
    r"""Monte Carlo expectation :math:`\mathbb{E}_{p}[f] \approx \frac1S \sum_{s=1}^S f(z_s)`, :math:`z_s \sim p`.

    The ``S`` draws are made in one call and folded into the batch, so every network inside ``f``
    runs once per evaluation on ``S * batch`` rows (Pixyz looped ``S`` times). The result has one
    value per data point.

    >>> from pixyz_like.distributions import Normal
    >>> q = Normal(loc="x", scale=1., var=["z"], cond_var=["x"], name="q")
    >>> p = Normal(loc="z", scale=1., var=["x"], cond_var=["z"], name="p")
    >>> e = Expectation(q, p.log_prob(), sample_shape=[10])
    >>> print(e)
    \mathbb{E}_{q(z|x)} \left[\log p(x|z) \right]
    >>> e.eval({"x": torch.zeros(3, 2)}).shape
    torch.Size([3])
    """

    def __init__(self, p, f: Loss, sample_shape: Sequence[int] | torch.Size = torch.Size([1]),
                 reparam: bool = True) -> None:
        f = _as_loss(f)
        super().__init__(p.input_var + [v for v in f.input_var if v not in p.var])
        self.p = p
        self.f = f
        self.sample_shape = torch.Size(sample_shape)
        self.reparam = reparam

    def _latex(self) -> str:
        return f"\\mathbb{{E}}_{{{self.p.prob_text}}} \\left[{self.f._latex()} \\right]"

    def _eval(self, x_dict, ctx):
        batch_n = None
        if not any(v in x_dict for v in self.p.input_var):
            # p has no inputs (a prior): draw one sample per data point of the rest of the formula.
            batch_n = infer_batch_n(x_dict, self.f.input_var)
        samples, folded, n, batch = sample_folded(self.p, x_dict, ctx, self.sample_shape, self.reparam, batch_n)
        value, inner = self.f._evaluate(folded, ctx)
        if n > 1 and isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == n * batch:
            value = value.reshape(n, batch, *value.shape[1:]).mean(0)
        if n == 1:
            # One draw: report it as (batch, ...), as Pixyz does, so a step's samples can feed the next
            # step (IterativeLoss's update_value) with the shapes of the inputs.
            samples = {k: folded[k] for k in samples}
        return value, samples
