"""Small helpers shared by distributions, losses and models: names, LaTeX, dicts and options."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import sympy
import torch

__all__ = [
    "tolist",
    "convert_latex_name",
    "print_latex",
    "latex_to_tag",
    "check_options",
    "format_number",
    "infer_batch_n",
    "repeat_batch",
]


def tolist(a: Any) -> list:
    """Return ``a`` as a list: a string or other scalar becomes a one-element list.

    >>> tolist("x"), tolist(("x", "z")), tolist(None)
    (['x'], ['x', 'z'], [])
    """
    if a is None:
        return []
    if isinstance(a, str):
        return [a]
    if isinstance(a, Iterable):
        return list(a)
    return [a]


def convert_latex_name(name: str) -> str:
    r"""Return the LaTeX of a variable or distribution name, as sympy writes a symbol.

    >>> convert_latex_name("p_prior"), convert_latex_name("alpha"), convert_latex_name("q1")
    ('p_{prior}', '\\alpha', 'q_{1}')
    >>> convert_latex_name("p_{prior}")
    'p_{prior}'
    """
    return sympy.latex(sympy.Symbol(name))


def format_number(value: Any) -> str:
    """Print a number as written: integers without a decimal point, floats as Python writes them.

    >>> format_number(2), format_number(2.5), format_number(torch.tensor(3))
    ('2', '2.5', '3')
    """
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return "c"
        value = value.item()
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def print_latex(obj: Any):
    """Render a distribution, loss or model as LaTeX in a notebook (returns ``IPython.display.Math``).

    >>> from pixyz_like.distributions import Normal
    >>> p = Normal(loc="z", scale=1., var=["x"], cond_var=["z"])
    >>> print_latex(p).data
    'p(x|z)'
    >>> print(print_latex(p.log_prob()).data)
    \\log p(x|z)
    """
    from IPython.display import Math

    if hasattr(obj, "prob_joint_factorized_and_text"):
        text = obj.prob_joint_factorized_and_text
    elif hasattr(obj, "loss_text"):
        text = obj.loss_text
    elif hasattr(obj, "loss_cls"):
        text = obj.loss_cls.loss_text
    else:
        raise TypeError(f"print_latex expects a Distribution, Loss or Model, got {type(obj).__name__}")
    return Math(text)


_TAG_REPLACEMENTS = [
    (r"\\left|\\right", ""),
    (r"\\mathbb\{E\}", "E"),
    (r"\\log ", "log "),
    (r"D_\{KL\}", "KL"),
    (r"\\", ""),
    (r"[{}]", ""),
    (r"\s+", " "),
    (r"\s*([\[\]|,])\s*", r"\1"),
]


def latex_to_tag(text: str) -> str:
    r"""Turn a LaTeX formula into a short plain-text tag for logs (TensorBoard, progress bars).

    >>> latex_to_tag(r"D_{KL} \left[q(z|x)||p_{prior}(z) \right]")
    'KL[q(z|x)||p_prior(z)]'
    """
    for pattern, repl in _TAG_REPLACEMENTS:
        text = re.sub(pattern, repl, text)
    return text.strip()


def check_options(where: str, options: Mapping[str, Any], valid: Iterable[str]) -> None:
    """Refuse unknown option keywords with a ``TypeError`` that lists the valid ones.

    Pixyz silently ignored unknown options (``model.train(batch_size=128)`` trained on one sample);
    here a misspelt or misplaced option always fails loudly.

    >>> check_options("Model.train()", {"batch_size": 128}, ["return_terms"])
    Traceback (most recent call last):
    ...
    TypeError: Model.train() got unknown option(s) ['batch_size']; valid options: return_terms
    """
    valid = sorted(set(valid))
    unknown = sorted(k for k in options if k not in valid)
    if unknown:
        listed = ", ".join(valid) if valid else "none"
        raise TypeError(f"{where} got unknown option(s) {unknown}; valid options: {listed}")


def infer_batch_n(x_dict: Mapping[str, Any], names: Iterable[str]) -> int | None:
    """Return the leading (batch) size of the first tensor among ``names`` in ``x_dict``, if any.

    >>> infer_batch_n({"x": torch.zeros(5, 3), "beta": 0.5}, ["beta", "x"]), infer_batch_n({}, ["x"])
    (5, None)
    """
    for name in names:
        value = x_dict.get(name)
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            return value.shape[0]
    return None


def repeat_batch(x: torch.Tensor, n: int) -> torch.Tensor:
    """Repeat a batch-first tensor ``n`` times, merged into the batch dimension: ``(n * batch, ...)``.

    This is how ``n`` samples per data point are "folded into the batch", so that a network runs once
    on ``n * batch`` rows; row ``i * batch + b`` is data point ``b`` of copy ``i``.

    >>> repeat_batch(torch.tensor([[1], [2]]), 3).flatten().tolist()
    [1, 2, 1, 2, 1, 2]
    """
    return x.unsqueeze(0).expand(n, *x.shape).reshape(n * x.shape[0], *x.shape[1:])
