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
from typing import Any, NamedTuple

import torch
from torch import nn

from .._batch import infer_batch_n, repeat_batch
from .._context import EvalContext
from .._latex import convert_latex_name, float_latex, format_number, latex_to_tag
from .._options import check_options
from .._terms import TermRecorder
from ..distributions.distributions import Distribution
from ..distributions.protocol import SampleSpec, broadcast_shapes
from ..errors import InputTypeError, MissingVariableError, ShapeError, missing_variable_error

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
    # Pixyz's names for the base classes of this module
    "Divergence",
    "LossOperator",
    "LossSelfOperator",
    "Detach",
]

# Precedence of a printed loss: sums bind loosest, then products; _NEG marks "- " followed by a
# product or an atom; atoms (functions, brackets, names) never need brackets.
_ADD, _MUL, _NEG, _ATOM = 1, 2, 3, 4


class _Text(NamedTuple):
    """A printed loss split for its parent: an optional leading minus sign and the rest.

    Products, quotients and numbers pull their sign to the front (``a (-b)`` prints ``- a b``, as
    Pixyz prints it), so parents combine signs instead of printing ``- -`` or ``4.0 - b``.
    """

    neg: bool  # the formula is "- " + body
    body: str  # the text without the sign
    prec: int  # the precedence of body: _ADD (a sum), _MUL (a product) or _ATOM
    greedy: bool = False  # body ends in a prefix operator (\sum_t ...) whose operand runs to the right

    def full(self) -> str:
        return f"- {self.body}" if self.neg else self.body

    def negated(self) -> _Text:
        if self.prec <= _ADD:  # - (a + b): the sum keeps its brackets
            return _Text(True, _brackets(self.full()), _ATOM)
        return self._replace(neg=not self.neg)


def _brackets(text: str) -> str:
    return f"\\left({text}\\right)"


def _number_latex(value: Any) -> str:
    """A constant as sympy (so Pixyz) writes it: ``2``, ``0.5``, ``1.0 \\cdot 10^{-5}``, ``\\infty``."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)):
        return float_latex(float(value))
    return format_number(value)


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

    @property
    def _precedence(self) -> int:
        """How the printed formula binds (an atom unless it is arithmetic), for the parent's brackets."""
        return _ATOM

    #: Whether the loss is a named term of a larger formula (KL, expectation...), reported by
    #: ``eval(..., return_terms=True)``. Operators and constants are not terms.
    _is_term = True
    #: The name :meth:`named` gave the formula (its tag in ``return_terms``), or ``None``.
    _term_name: str | None = None

    def __init__(self, input_var: Sequence[str] = ()) -> None:
        super().__init__()
        self._input_var = list(dict.fromkeys(input_var))

    def named(self, name: str) -> Loss:
        r"""Report this formula as one term called ``name`` in ``eval(..., return_terms=True)``, and so
        in ``Model.fit``'s logs and TensorBoard (``train/<name>``), instead of a tag made from its
        LaTeX. A named sum or product is one term (its parts are no longer reported apart). Printing
        is unchanged. Returns the loss itself.

        >>> from pixyz_like.distributions import Normal
        >>> p = Normal(loc=0., scale=1., var=["x"], name="p")
        >>> loss = ((-p.log_prob()).named("nll") + 2).mean()
        >>> _, terms = loss.eval({"x": torch.zeros(4, 1)}, return_terms=True)
        >>> terms
        {'nll': tensor(0.9189)}
        >>> print(loss)
        mean \left(- \log p(x) + 2 \right)
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{type(self).__name__}.named(): a name must be a non-empty string, got {name!r}")
        self._term_name = name.strip()
        return self

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

    #: Whether the formula is a prefix operator whose operand runs to the right (``\sum_t f``): a
    #: parent brackets it unless it stands last, so ``(\sum_t f) g`` is not read ``\sum_t (f g)``.
    _greedy = False

    def _render(self) -> _Text:
        """The formula split into its sign and the rest, for the parent's printing.

        The arithmetic losses build it from their operands; any other loss prints as ``_latex()``,
        where a ``_precedence`` of ``_NEG`` means the text is ``"- "`` followed by a product or an
        atom (the form :class:`NegLoss` prints, which losses forwarding to one keep).
        """
        text, prec = self._latex(), self._precedence
        if prec == _NEG and text.startswith("- "):
            return _Text(True, text[2:], _MUL, self._greedy)
        return _Text(False, text, min(prec, _ATOM), self._greedy)

    # ------------------------------------------------------------------ structure
    def _children(self) -> list[Loss]:
        return [m for m in self.children() if isinstance(m, Loss)]

    def terms(self) -> list[Loss]:
        """The named terms of the formula: the largest sub-formulas that are not arithmetic (or that
        :meth:`named` named)."""
        if self._is_term or self._term_name is not None:
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
        if ctx.recorder is not None:
            ctx.recorder.record(self, value)
        return value, samples

    def _checked_inputs(self, x_dict: Any) -> dict[str, Any]:
        """``x_dict`` as a dict, refusing a tensor given in its place and an empty batch."""
        if x_dict is None:
            return {}
        if not isinstance(x_dict, Mapping):
            raise InputTypeError(
                f"loss {self._latex()}: eval expects a dict {{name: tensor}} of its variables {self._input_var}, "
                f"got a {type(x_dict).__name__}"
            )
        x_dict = dict(x_dict)
        for name in self._input_var:
            value = x_dict.get(name)
            if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == 0:
                raise ShapeError(
                    f"loss {self._latex()}: variable {name!r} has an empty batch (shape {tuple(value.shape)}); "
                    "expected at least one data point (a mean over none is NaN)"
                )
        return x_dict

    def eval(  # Pixyz's API: evaluate the formula (not nn.Module.eval(), see Model.test for eval mode)
        self,
        x_dict: Mapping[str, Any] | None = None,
        return_dict: bool = False,
        return_all: bool = True,
        return_terms: bool = False,
        **options: Any,
    ) -> Any:
        """Evaluate the loss.

        Args:
            x_dict: values of the input variables.
            return_dict: also return the dict of variables (inputs and samples drawn).
            return_all: with ``return_dict``, include the inputs, not only the samples.
            return_terms: also return ``{tag: value}`` with the batch mean of each named term
                (e.g. the KL and the reconstruction term), detached, for logging.
            options: options understood by losses in the formula (``batch_n`` for the number of
                samples of a distribution without inputs, ``sample_mean`` to use means instead of
                draws in expectations, ``test_mode`` for networks in ``eval()`` mode); unknown ones
                raise ``TypeError``.

        Returns ``loss``, or a tuple ``(loss, dict)``, ``(loss, terms)`` or ``(loss, dict, terms)``.
        """
        x_dict = self._checked_inputs(x_dict)
        test_mode = False
        if options:  # walking the tree for the valid options costs more than the whole tiny evaluation
            options = self._checked_options(options, x_dict)
            test_mode = bool(options.pop("test_mode", False))
        missing = [v for v in self._input_var if v not in x_dict]
        if missing:
            raise missing_variable_error(f"loss {self._latex()}", "eval", missing, x_dict.keys())
        term_list = self.terms() if return_terms else []
        recorder = TermRecorder(term_list) if return_terms else None
        ctx = EvalContext(options, recorder)
        if test_mode:
            value, samples = self._evaluate_in_test_mode(x_dict, ctx)
        else:
            value, samples = self._evaluate(x_dict, ctx)
        out: list[Any] = [value]
        if return_dict:
            out.append({**x_dict, **samples} if return_all else samples)
        if recorder is not None:
            out.append(self._term_values(term_list, recorder))
        return value if len(out) == 1 else tuple(out)

    def eval_options(self) -> frozenset[str]:
        """Every keyword option :meth:`eval` accepts for this formula (``Model`` checks against it once).

        >>> from pixyz_like.distributions import Normal
        >>> q = Normal(loc=0., scale=1., var=["z"], features_shape=[1])
        >>> sorted(Expectation(q, q.log_prob()).eval_options())
        ['batch_n', 'batch_size', 'return_all', 'return_dict', 'return_terms', 'sample_mean', 'test_mode']
        """
        valid = self._valid_options() | {"test_mode", "return_dict", "return_all", "return_terms"}
        if "batch_n" in valid and not self._input_var:
            valid.add("batch_size")
        return frozenset(valid)

    def _checked_options(self, options: dict[str, Any], x_dict: Mapping[str, Any]) -> dict[str, Any]:
        """The evaluation options, checked: unknown ones raise, ``batch_size`` reads as ``batch_n``.

        Every loss takes ``test_mode`` (evaluate with the networks in ``eval()`` mode). A formula that
        takes no inputs at all (variational inference with a global posterior) reads ``batch_size`` as
        ``batch_n``, the number of samples: Pixyz accepted and ignored it there, so
        ``model.train(batch_size=128)`` drew one sample. Anywhere else ``batch_size`` is an unknown
        option and raises. A ``batch_n`` that contradicts the batch of the inputs is a ``ShapeError``.
        """
        valid = self._valid_options() | {"test_mode"}
        options = dict(options)
        if "batch_size" in options and "batch_n" in valid and "batch_n" not in options and not self._input_var:
            options["batch_n"] = options.pop("batch_size")
        check_options(f"{type(self).__name__}.eval()", options, valid)
        n = options.get("batch_n")
        if n is not None:
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"{type(self).__name__}.eval(): batch_n must be a positive int, got {n!r}")
            data_n = infer_batch_n(x_dict, self._input_var)
            if data_n is not None and data_n != n:
                raise ShapeError(
                    f"loss {self._latex()}: batch_n={n} contradicts the batch size {data_n} of the inputs"
                )
        return options

    def _evaluate_in_test_mode(
        self, x_dict: dict[str, Any], ctx: EvalContext
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Evaluate with every module of the formula in ``eval()`` mode, then restore each one's mode."""
        modes = [(m, m.training) for m in self.modules()]
        for m, _ in modes:
            m.train(False)
        try:
            return self._evaluate(x_dict, ctx)
        finally:
            for m, mode in modes:
                m.train(mode)

    @staticmethod
    def _term_values(term_list: list[Loss], recorder: TermRecorder) -> dict[str, torch.Tensor]:
        values: dict[str, torch.Tensor] = {}
        for t in term_list:
            v = recorder.value(t)
            if v is None:
                continue
            tag = t._term_name if t._term_name is not None else t._tag()
            base, i = tag, 2
            while tag in values:
                tag, i = f"{base} #{i}", i + 1
            if isinstance(v, torch.Tensor):
                v = v.detach()
                values[tag] = (v if v.dtype is torch.float32 else v.float()).mean()
            else:
                values[tag] = torch.tensor(float(v))
        return values

    def _tag(self) -> str:
        """The plain-text tag of this formula for logs, made from its LaTeX; the conversion is redone
        only when the LaTeX changes (a renamed distribution), so a logged step does not rerun it."""
        text = self._latex()
        known = self.__dict__.get("_tag_of")
        if known is None or known[0] != text:
            known = (text, latex_to_tag(text))
            self.__dict__["_tag_of"] = known
        return known[1]

    def forward(self, x_dict: Mapping[str, Any] | None = None, **options: Any) -> Any:
        """``loss(x_dict)`` is ``loss.eval(x_dict, return_dict=True)`` (used by ``DataParallel``)."""
        return self.eval(x_dict, return_dict=True, **options)

    # ------------------------------------------------------------------ algebra
    def __add__(self, other: Any) -> Loss:
        return AddLoss(self, _as_loss(other))

    def __radd__(self, other: Any) -> Loss:
        return AddLoss(_as_loss(other), self)

    def __sub__(self, other: Any) -> Loss:
        return SubLoss(self, _as_loss(other))

    def __rsub__(self, other: Any) -> Loss:
        return SubLoss(_as_loss(other), self)

    def __mul__(self, other: Any) -> Loss:
        return MulLoss(self, _as_loss(other))

    def __rmul__(self, other: Any) -> Loss:
        return MulLoss(_as_loss(other), self)

    def __truediv__(self, other: Any) -> Loss:
        return DivLoss(self, _as_loss(other))

    def __rtruediv__(self, other: Any) -> Loss:
        return DivLoss(_as_loss(other), self)

    def __neg__(self) -> Loss:
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

    def expectation(
        self, p: Distribution, sample_shape: Sequence[int] | torch.Size = torch.Size([1]), reparam: bool = True
    ) -> Loss:
        """:math:`\\mathbb{E}_{p}[\\text{loss}]` estimated with ``sample_shape`` draws."""
        return Expectation(p, self, sample_shape=sample_shape, reparam=reparam)

    def constant_var(self, constant_dict: Mapping[str, Any]) -> Loss:
        """The loss with some variables fixed to constants."""
        return ConstantVar(self, constant_dict)


class ValueLoss(Loss):
    r"""A constant; prints as sympy (and so Pixyz) writes the number.

    Integers print without a decimal point, floats as sympy's ``Float``: ``2``, ``0.5``, ``4.0``,
    ``1.0 \cdot 10^{-5}``.

    >>> print(ValueLoss(2)), ValueLoss(2).eval()
    2
    (None, tensor(2.))
    >>> print(ValueLoss(1e-5)), print(ValueLoss(-2.5))
    1.0 \cdot 10^{-5}
    -2.5
    (None, None)
    """

    _is_term = False

    value: torch.Tensor  # a buffer: it moves with .to(device)

    def __init__(self, value: Any) -> None:
        super().__init__()
        self.original_value = value
        tensor = value.detach().clone() if isinstance(value, torch.Tensor) else torch.tensor(value)
        if not tensor.is_floating_point():
            tensor = tensor.to(torch.get_default_dtype())
        self.register_buffer("value", tensor)
        self._text = _number_latex(value)  # once: sympy is slow, and terms are printed for every log

    def _latex(self) -> str:
        return self._text

    def _render(self) -> _Text:
        # A negative number standing alone prints -2 (as sympy); inside a formula its sign is pulled
        # out like any other: a (-2) prints - 2 a, b + (-2) prints b - 2.
        if self._text.startswith("-"):
            return _Text(True, self._text[1:], _ATOM)
        return _Text(False, self._text, _ATOM)

    @property
    def _precedence(self) -> int:
        return _NEG if self._text.startswith("-") else _ATOM

    def _eval(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
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

    def _eval(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
        value = x_dict[self._input_var[0]]
        if not isinstance(value, torch.Tensor):
            if not isinstance(value, numbers.Real):
                raise InputTypeError(
                    f"Parameter {self._input_var[0]!r}: expected a number or a tensor, got "
                    f"{type(value).__name__} {value!r:.40}"
                )
            value = torch.tensor(value, dtype=torch.get_default_dtype())
        return value, {}


class _PrintedAs(Loss):
    """A loss that prints as another one, :attr:`_shown`, in every form its parent asks for (its LaTeX,
    its sign-split rendering, how it binds): the wrappers that change how a loss is evaluated, not
    what it is (bound constants, a constrained objective, data-parallel replicas)."""

    @property
    def _shown(self) -> Loss:
        raise NotImplementedError

    def _latex(self) -> str:
        return self._shown._latex()

    def _render(self) -> _Text:
        return self._shown._render()

    @property
    def _precedence(self) -> int:
        return self._shown._precedence


class ConstantVar(_PrintedAs):
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

    @property
    def _shown(self) -> Loss:
        return self.base_loss

    def _eval(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
        return self.base_loss._evaluate({**x_dict, **self.constant_dict}, ctx)


class _Binary(Loss):
    _is_term = False

    @staticmethod
    def _op(a: Any, b: Any) -> Any:
        """The operation on the two values."""
        raise NotImplementedError

    def __init__(self, loss1: Loss, loss2: Loss) -> None:
        super().__init__(loss1.input_var + loss2.input_var)
        self.loss1 = loss1
        self.loss2 = loss2

    def _eval(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
        a, sa = self.loss1._evaluate(x_dict, ctx)
        b, sb = self.loss2._evaluate(x_dict, ctx)
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape != b.shape:
            try:
                broadcast_shapes([a.shape, b.shape])
            except RuntimeError as e:
                raise ShapeError(
                    f"loss {self._latex()}: its terms {self.loss1._latex()} (shape {tuple(a.shape)}) and "
                    f"{self.loss2._latex()} (shape {tuple(b.shape)}) do not broadcast; expected per-batch "
                    "values of one batch size, or scalars"
                ) from e
        return self._op(a, b), {**sa, **sb}


class _Arithmetic:
    """Printing shared by the arithmetic losses: ``_latex`` and ``_precedence`` follow ``_render``."""

    def _render(self) -> _Text:
        raise NotImplementedError

    def _latex(self) -> str:
        return self._render().full()

    @property
    def _precedence(self) -> int:
        text = self._render()
        return _NEG if text.neg else text.prec


def _sum_terms(loss: Loss) -> list[_Text]:
    """The signed terms of a sum, flattened through ``+`` (``a + (b - c)`` is ``a + b - c``)."""
    if isinstance(loss, AddLoss):
        return _sum_terms(loss.loss1) + _sum_terms(loss.loss2)
    if isinstance(loss, SubLoss):  # a - (b + c) keeps its brackets: the terms of b + c are not negated
        return _sum_terms(loss.loss1) + [loss.loss2._render().negated()]
    return [loss._render()]


def _join_terms(terms: list[_Text]) -> _Text:
    parts: list[str] = []
    for i, term in enumerate(terms):
        body = term.body
        last = i == len(terms) - 1
        if (term.prec <= _ADD and i > 0) or (term.greedy and not last):
            body = _brackets(body)  # a forwarded sum after a sign, or \sum_t f before other terms
        if i == 0:
            parts.append(f"- {body}" if term.neg else body)
        else:
            parts.append(f" - {body}" if term.neg else f" + {body}")
    return _Text(False, "".join(parts), _ADD, terms[-1].greedy)


class AddLoss(_Arithmetic, _Binary):
    r"""The sum ``a + b`` of two losses (or a loss and a number), written by ``loss1 + loss2``.

    ``a + (-b)`` prints ``a - b``; a sum added to a sum needs no brackets.

    >>> a, b = ValueLoss(2), Parameter("beta")
    >>> print(a + b), (a + b).eval({"beta": 0.5})
    2 + \beta
    (None, tensor(2.5000))
    >>> print(a + -b)
    2 - \beta
    """

    def _render(self) -> _Text:
        return _join_terms(_sum_terms(self))

    @staticmethod
    def _op(a: Any, b: Any) -> Any:
        return a + b


class SubLoss(_Arithmetic, _Binary):
    r"""The difference ``a - b``, written by ``loss1 - loss2``; a subtracted sum keeps its brackets.

    >>> print(ValueLoss(2) - Parameter("beta")), (ValueLoss(2) - Parameter("beta")).eval({"beta": 0.5})
    2 - \beta
    (None, tensor(1.5000))
    >>> a, b = Parameter("a"), Parameter("b")
    >>> print(a - (a + b)), print(a - (-b)), print(a - (-2) * b)
    a - \left(a + b\right)
    a + b
    a + 2 b
    (None, None, None)
    """

    def _render(self) -> _Text:
        return _join_terms(_sum_terms(self))

    @staticmethod
    def _op(a: Any, b: Any) -> Any:
        return a - b


def _product_factors(loss: Loss) -> list[Loss]:
    if isinstance(loss, MulLoss):
        return _product_factors(loss.loss1) + _product_factors(loss.loss2)
    return [loss]


class MulLoss(_Arithmetic, _Binary):
    r"""The product ``a b``, written by ``loss1 * loss2``.

    Constant factors are printed first and the signs of the factors in front, as Pixyz prints them:
    ``loss * 2`` prints ``2 loss`` and ``4.0 * -loss`` prints ``- 4.0 loss``; a sum is bracketed.

    >>> loss = Parameter("beta") * 3
    >>> print(loss), loss.eval({"beta": 0.5})
    3 \beta
    (None, tensor(1.5000))
    >>> a, b = Parameter("a"), Parameter("b")
    >>> print(4.0 * -a), print((a + b) * -2), print(2 * (3 * a))
    - 4.0 a
    - 2 \left(a + b\right)
    2 \cdot 3 a
    (None, None, None)
    """

    def _render(self) -> _Text:
        factors = _product_factors(self)
        numbers_first: list[Loss] = [f for f in factors if isinstance(f, ValueLoss)]
        numbers_first += [f for f in factors if not isinstance(f, ValueLoss)]
        neg, text, greedy = False, "", False
        for i, factor in enumerate(numbers_first):
            part = factor._render()
            neg ^= part.neg
            last = i == len(numbers_first) - 1
            body = part.body
            if part.prec <= _ADD or (part.greedy and not last):
                body = _brackets(body)
            # Juxtaposition multiplies; two numbers side by side would read as one (2 3 is not 23).
            text += body if i == 0 else (f" \\cdot {body}" if body[:1].isdigit() or body[:1] == "." else f" {body}")
            greedy = part.greedy and last
        return _Text(neg, text, _MUL, greedy)

    @staticmethod
    def _op(a: Any, b: Any) -> Any:
        return a * b


class DivLoss(_Arithmetic, _Binary):
    r"""The quotient ``a / b``, written by ``loss1 / loss2``; prints as a fraction, its sign in front.

    >>> loss = Parameter("beta") / 2
    >>> print(loss), loss.eval({"beta": 0.5})
    \frac{\beta}{2}
    (None, tensor(0.2500))
    >>> print(-Parameter("a") / 2)
    - \frac{a}{2}
    """

    def _render(self) -> _Text:
        num, den = self.loss1._render(), self.loss2._render()
        return _Text(num.neg != den.neg, f"\\frac{{{num.body}}}{{{den.body}}}", _ATOM)

    @staticmethod
    def _op(a: Any, b: Any) -> Any:
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
    def _op(a: Any, b: Any) -> Any:
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
    def _op(a: Any, b: Any) -> Any:
        return torch.maximum(torch.as_tensor(a), torch.as_tensor(b))


class _Unary(Loss):
    _is_term = False

    @staticmethod
    def _op(a: Any) -> Any:
        """The operation on the value."""
        raise NotImplementedError

    def __init__(self, loss1: Loss) -> None:
        super().__init__(loss1.input_var)
        self.loss1 = loss1

    def _eval(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
        a, samples = self.loss1._evaluate(x_dict, ctx)
        return self._op(a), samples


class NegLoss(_Arithmetic, _Unary):
    """The negation ``-a``, written by ``-loss``; signs cancel (``-(-a)`` prints ``a``).

    >>> print(-Parameter("beta")), (-Parameter("beta")).eval({"beta": 0.5})
    - \\beta
    (None, tensor(-0.5000))
    >>> print(-(Parameter("a") + 1)), print(-(-Parameter("a")))
    - \\left(a + 1\\right)
    a
    (None, None)
    """

    def _render(self) -> _Text:
        return self.loss1._render().negated()

    @staticmethod
    def _op(a: Any) -> Any:
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
    def _op(a: Any) -> Any:
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
    def _op(a: Any) -> Any:
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
    def _op(a: Any) -> Any:
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
    def _op(a: Any) -> Any:
        return a.detach()


def _fold_dict(x_dict: Mapping[str, Any], n: int, batch: int) -> dict[str, Any]:
    """Repeat every batch tensor ``n`` times, merged into the batch dimension (``(n * batch, ...)``)."""
    out = {}
    for k, v in x_dict.items():
        if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == batch:
            v = repeat_batch(v, n)
        out[k] = v
    return out


_ONE_DRAW = torch.Size([1])


def sample_folded(
    p: Distribution, x_dict: dict[str, Any], ctx: EvalContext, spec: SampleSpec, one_plain: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, Any], int, int]:
    """Draw ``spec.sample_shape`` samples of ``p`` and return ``(samples, folded_dict, n, batch)``.

    ``folded_dict`` holds the inputs and the samples with the sample dimensions merged into the batch
    dimension, so a function of them runs each network once on ``n * batch`` rows instead of ``n``
    times. ``samples`` keeps the ``sample_shape + (batch, ...)`` layout, unless ``one_plain`` and a
    single draw is asked for: then it is drawn as ``(batch, ...)`` (the same numbers, with no sample
    dimension to add and fold away).
    """
    sample_shape = spec.sample_shape
    n = sample_shape.numel() if len(sample_shape) else 1
    if n == 1 and one_plain:
        if len(sample_shape) or (spec.reparam and not p.has_reparam):
            spec = SampleSpec(spec.batch_n, torch.Size(), spec.reparam and p.has_reparam, spec.sample_mean)
        samples = p._sample(x_dict, ctx=ctx, spec=spec)
        first = next(iter(samples.values()))
        return samples, {**x_dict, **samples}, 1, first.shape[0] if first.ndim else 1
    if not len(sample_shape) or (spec.reparam and not p.has_reparam):
        spec = SampleSpec(spec.batch_n, sample_shape if len(sample_shape) else _ONE_DRAW,
                          spec.reparam and p.has_reparam, spec.sample_mean)
    samples = p._sample(x_dict, ctx=ctx, spec=spec)
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

    def __init__(self, p: Distribution, f: Loss, sample_shape: Sequence[int] | torch.Size = torch.Size([1]),
                 reparam: bool = True) -> None:
        f = _as_loss(f)
        super().__init__(p.input_var + [v for v in f.input_var if v not in p.var])
        self.p = p
        self.f = f
        self.sample_shape = torch.Size(sample_shape)
        self.reparam = reparam

    def _latex(self) -> str:
        return f"\\mathbb{{E}}_{{{self.p.prob_text}}} \\left[{self.f._latex()} \\right]"

    _options = ("batch_n", "sample_mean")

    def _eval(self, x_dict: dict[str, Any], ctx: EvalContext) -> tuple[torch.Tensor, dict[str, Any]]:
        batch_n = None
        if not any(v in x_dict for v in self.p.input_var):
            # p has no inputs (a prior): draw one sample per data point of the rest of the formula,
            # or as many as the batch_n option asks for.
            batch_n = infer_batch_n(x_dict, self.f.input_var)
            if batch_n is None:
                batch_n = ctx.options.get("batch_n")
        spec = SampleSpec(batch_n, self.sample_shape, self.reparam, bool(ctx.options.get("sample_mean", False)))
        # One draw is reported as (batch, ...), as Pixyz does, so a step's samples can feed the next step
        # (IterativeLoss's update_value) with the shapes of the inputs.
        samples, folded, n, batch = sample_folded(self.p, x_dict, ctx, spec, one_plain=True)
        value, inner = self.f._evaluate(folded, ctx)
        if n > 1 and isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == n * batch:
            value = value.reshape(n, batch, *value.shape[1:]).mean(0)
        return value, samples


class Divergence(Loss):
    r"""Base class of the losses that compare two distributions ``p`` and ``q`` (KL, MMD, Wasserstein, adversarial).

    Pixyz's ``pixyz.losses.losses.Divergence``: ``isinstance(loss, Divergence)`` tells a divergence
    from the rest of the algebra.

    >>> from pixyz_like.losses import KullbackLeibler
    >>> from pixyz_like.distributions import Normal
    >>> p = Normal(loc=0., scale=1., var=["z"], features_shape=[1])
    >>> isinstance(KullbackLeibler(p, p), Divergence)
    True
    """


#: Pixyz's name for the base of the binary operators (``+ - * /``, min, max).
LossOperator = _Binary
#: Pixyz's name for the base of the unary operators (``-``, abs, mean, sum, detach).
LossSelfOperator = _Unary
#: Pixyz's name for :class:`DetachLoss`.
Detach = DetachLoss


def __getattr__(name: str) -> Any:
    # Pixyz defined REINFORCE and DataParalleledLoss in this module; here they have their own modules
    # (imported on first use: they import this one).
    if name == "REINFORCE":
        from .reinforce import REINFORCE

        return REINFORCE
    if name == "DataParalleledLoss":
        from .parallel import DataParalleledLoss

        return DataParalleledLoss
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
