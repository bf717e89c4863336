"""Printed formulas say what is computed: random arithmetic trees of losses, printed, read back, evaluated.

Each tree mixes numbers (ints, floats, negatives, a tiny float sympy writes as ``1.0 \\cdot 10^{-5}``),
leaves printed as plain symbols (``Parameter("a")`` prints ``a``), ``+ - * /`` (also with plain
Python numbers on either side), unary minus, ``.mean()``, ``.sum()``, ``.detach()``, ``MinLoss`` and
``MaxLoss``. The text is turned into sympy syntax by mapping the LaTeX constructs one to one
(``\\left(`` to ``(``, ``\\frac{A}{B}`` to ``((A)/(B))``, juxtaposition to multiplication), parsed
with ``parse_expr`` and evaluated with numpy; it must equal what ``eval`` computes. A wrong bracket
or a lost sign (``4.0 * -a`` once printed ``4.0 - a``) changes the value read back.

``.abs()`` is left out: ``|a |b||`` cannot be read back without knowing the tree (Pixyz's notation,
kept for parity; it is tested on fixed cases in test_printing.py).
"""

import random
import re

import numpy as np
import pytest
import sympy
import torch
from sympy.parsing.sympy_parser import implicit_multiplication, parse_expr, standard_transformations

from pixyz_like.losses import MaxLoss, MinLoss, Parameter, ValueLoss
from pixyz_like.losses.losses import DivLoss

LEAVES = ("a", "b", "c")
NUMBERS = (1, 2, 3, 5, -2, 0.5, 2.5, -0.5, 4.0, 1e-5)
SYMBOLS = {name: sympy.Symbol(name) for name in LEAVES}
FUNCTIONS = {name: sympy.Function(name) for name in ("mean", "sum", "detach")}
LOCALS = {**SYMBOLS, **FUNCTIONS, "min": sympy.Min, "max": sympy.Max}
NUMPY = [{"mean": np.mean, "sum": np.sum, "detach": lambda v: v}, "numpy"]
TRANSFORMS = standard_transformations + (implicit_multiplication,)


def random_tree(rng: random.Random, depth: int):
    if depth == 0 or rng.random() < 0.2:
        return Parameter(rng.choice(LEAVES)) if rng.random() < 0.6 else ValueLoss(rng.choice(NUMBERS))
    sub = lambda: random_tree(rng, depth - 1)  # noqa: E731
    number = rng.choice(NUMBERS)
    op = rng.randrange(14)
    if op == 0:
        return sub() + sub()
    if op == 1:
        return sub() - sub()
    if op == 2:
        return sub() * sub()
    if op == 3:
        return sub() / sub()
    if op == 4:
        return -sub()
    if op == 5:
        return number * sub()  # a Python number on the left: 4.0 * -a
    if op == 6:
        return sub() * number
    if op == 7:
        return number - sub()
    if op == 8:
        return sub() + number
    if op == 9:
        return number / sub()
    if op == 10:
        return sub().mean()
    if op == 11:
        return sub().sum()
    if op == 12:
        return sub().detach()
    return (MinLoss if rng.random() < 0.5 else MaxLoss)(sub(), sub())


def _matching_brace(text: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return i
    raise AssertionError(f"unbalanced braces in {text!r}")


def to_sympy_syntax(latex: str) -> str:
    """Map our LaTeX to sympy's input syntax, construct by construct (no knowledge of the tree)."""
    text = latex.replace(r"\left(", "(").replace(r"\right)", ")").replace(r"\cdot", "*")
    while r"\frac{" in text:
        start = text.index(r"\frac{")
        num_end = _matching_brace(text, start + 5)
        den_end = _matching_brace(text, num_end + 1)
        num, den = text[start + 6 : num_end], text[num_end + 2 : den_end]
        text = f"{text[:start]}(({num})/({den})){text[den_end + 1:]}"
    while "^{" in text:
        start = text.index("^{")
        end = _matching_brace(text, start + 1)
        text = f"{text[:start]}**({text[start + 2 : end]}){text[end + 1:]}"
    text = re.sub(r"\b(mean|sum|detach|min|max) \(", r"\1(", text)
    assert "\\" not in text and "{" not in text, f"unmapped LaTeX left in {text!r} (from {latex!r})"
    return text


def denominators_safe(loss, values) -> bool:
    """Whether every quotient's denominator stays away from zero (else float error swamps the check)."""
    for m in loss.modules():
        if isinstance(m, DivLoss) and m.loss2.eval(values).abs().min() < 0.05:
            return False
    return True


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # numbers built by the trees are float64 like the leaves
    yield
    torch.set_default_dtype(old)


def test_random_trees_read_back_to_their_value(float64):
    rng = random.Random(20240607)
    values = {name: torch.tensor([0.7, 1.3, 1.9, 0.9]) * (i + 1) for i, name in enumerate(LEAVES)}
    args = [SYMBOLS[n] for n in LEAVES]
    checked = 0
    while checked < 400:
        loss = random_tree(rng, rng.randint(1, 5))
        if not denominators_safe(loss, values):
            continue
        latex = str(loss)
        assert latex.count(r"\left(") == latex.count(r"\right)"), latex
        assert "- -" not in latex and "+ -" not in latex, latex
        expr = parse_expr(to_sympy_syntax(latex), local_dict=LOCALS, transformations=TRANSFORMS)
        read_back = sympy.lambdify(args, expr, modules=NUMPY)(*(values[n].numpy() for n in LEAVES))
        computed = loss.eval(values).numpy()
        np.testing.assert_allclose(np.broadcast_to(read_back, computed.shape), computed, rtol=1e-7, atol=1e-9,
                                   err_msg=f"{latex}\nread as {expr}")
        checked += 1


@pytest.mark.parametrize("build, text", [
    (lambda a, b: 4.0 * -a, r"- 4.0 a"),
    (lambda a, b: -a * 4.0, r"- 4.0 a"),
    (lambda a, b: a * (-2), r"- 2 a"),
    (lambda a, b: -a * -b, r"a b"),
    (lambda a, b: 2 * (3 * a), r"2 \cdot 3 a"),
    (lambda a, b: 1e-5 * a, r"1.0 \cdot 10^{-5} a"),
    (lambda a, b: a - (-b), r"a + b"),
    (lambda a, b: a - (-2) * b, r"a + 2 b"),
    (lambda a, b: a + (-3), r"a - 3"),
    (lambda a, b: a - (a + b), r"a - \left(a + b\right)"),
    (lambda a, b: a + (b - a), r"a + b - a"),
    (lambda a, b: -(a + b) * 2, r"- 2 \left(a + b\right)"),
    (lambda a, b: -a / 2, r"- \frac{a}{2}"),
    (lambda a, b: a / (-b), r"- \frac{a}{b}"),
    (lambda a, b: (a + b) / (a - b), r"\frac{a + b}{a - b}"),
    (lambda a, b: a.__neg__().__neg__(), "a"),  # -(-a)
    (lambda a, b: -(a.mean()), r"- mean \left(a \right)"),
    (lambda a, b: (-a).mean(), r"mean \left(- a \right)"),
    (lambda a, b: ValueLoss(-2), "-2"),
    (lambda a, b: 2 * ValueLoss(-2), r"- 2 \cdot 2"),
])
def test_signs_and_brackets(build, text):
    assert str(build(Parameter("a"), Parameter("b"))) == text
