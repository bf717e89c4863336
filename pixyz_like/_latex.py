"""How names and numbers print: a variable name as LaTeX (as sympy prints a Symbol, so formulas read as
Pixyz's do), a number as written, and a formula as a short plain-text tag for logs."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import torch

__all__ = ["convert_latex_name", "float_latex", "format_number", "latex_to_tag"]


# The LaTeX sympy gives a Symbol (so Pixyz prints names this way), written here so that importing the library
# does not load sympy (a third of a second). tests/test_utils_latex.py checks parity with sympy itself.
_GREEK = frozenset(
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon "
    "phi chi psi omega".split()
)
_GREEK_SPECIAL = {
    **{
        k: "\\mathrm{" + v + "}"
        for k, v in zip(
            "Alpha Beta Epsilon Zeta Eta Iota Kappa Mu Nu Omicron Rho Tau Chi Khi".split(), "ABEZHIKMNOPTXX"
        )
    },
    **{k: "\\" + k for k in "Gamma Delta Theta Lambda Xi Pi Sigma Upsilon Phi Psi Omega".split()},
    **{k: "\\" + k for k in "varepsilon varkappa varphi varpi varrho varsigma vartheta".split()},
    "omicron": "o",
    "lamda": "\\lambda",
    "Lamda": "\\Lambda",
    "khi": "\\chi",
}
_OTHER_SYMBOLS = frozenset("aleph beth daleth gimel ell eth hbar hslash mho wp".split())


def _wrap(before: str, after: str) -> Callable[[str], str]:
    return lambda s: before + s + after


_MODIFIERS: dict[str, Callable[[str], str]] = {
    **{
        k: _wrap("\\" + k + "{", "}")
        for k in "mathring ddddot dddot ddot dot check breve acute grave tilde hat bar vec".split()
    },
    "prime": _wrap("{", "}'"),
    "prm": _wrap("{", "}'"),
    "bold": _wrap("\\boldsymbol{", "}"),
    "bm": _wrap("\\boldsymbol{", "}"),
    "cal": _wrap("\\mathcal{", "}"),
    "scr": _wrap("\\mathscr{", "}"),
    "frak": _wrap("\\mathfrak{", "}"),
    "norm": _wrap("\\left\\|{", "}\\right\\|"),
    "avg": _wrap("\\left\\langle{", "}\\right\\rangle"),
    "abs": _wrap("\\left|{", "}\\right|"),
    "mag": _wrap("\\left|{", "}\\right|"),
}
_MODIFIER_KEYS = sorted(_MODIFIERS, key=len, reverse=True)
_NAME_WITH_DIGITS = re.compile(r"^([^\W\d_]+)(\d+)$")


def _translate(s: str) -> str:
    """A Greek letter or special symbol name as its command; a trailing modifier (``hat``...) applied."""
    if s in _GREEK_SPECIAL:
        return _GREEK_SPECIAL[s]
    if s.lower() in _GREEK:
        return "\\" + s.lower()
    if s in _OTHER_SYMBOLS:
        return "\\" + s
    for key in _MODIFIER_KEYS:
        if len(s) > len(key) and s.lower().endswith(key):
            return _MODIFIERS[key](_translate(s[: -len(key)]))
    return s


def _split_super_sub(text: str) -> tuple[str, list[str], list[str]]:
    """Split ``a_x^1`` into its name, superscripts (after ``^`` or ``__``) and subscripts (after ``_``)."""
    parts: list[str] = []
    pos = 0
    while pos < len(text):
        start = pos + (2 if text.startswith("__", pos) else 1)
        hat, usc = text.find("^", start), text.find("_", start)
        end = min(hat if hat >= 0 else len(text), usc if usc >= 0 else len(text))
        parts.append(text[pos:end])
        pos = end
    name, supers, subs = (parts[0] if parts else text), [], []
    for part in parts[1:]:
        if part.startswith("__"):
            supers.append(part[2:])
        elif part.startswith("^"):
            supers.append(part[1:])
        else:
            subs.append(part[1:])
    m = _NAME_WITH_DIGITS.match(name)
    if m:  # trailing digits are a subscript too: q1 -> q_{1}
        name = m.group(1)
        subs.insert(0, m.group(2))
    return name, supers, subs


def _symbol_latex(name: str) -> str:
    if "{" in name:
        return name
    base, supers, subs = _split_super_sub(name)
    text = _translate(base)
    if supers:
        text += "^{" + " ".join(_translate(s) for s in supers) + "}"
    if subs:
        text += "_{" + " ".join(_translate(s) for s in subs) + "}"
    return text


def float_latex(value: float) -> str:
    r"""Return a float as sympy's ``latex(Float(value))`` writes it (15 significant digits, zeros stripped).

    >>> float_latex(0.5), float_latex(1e-5), float_latex(1 / 3), float_latex(float("inf"))
    ('0.5', '1.0 \\cdot 10^{-5}', '0.333333333333333', '\\infty')
    """
    if value != value:
        return "\\text{NaN}"
    if value in (float("inf"), float("-inf")):
        return "\\infty" if value > 0 else "-\\infty"
    if value == 0:
        return "0.0"
    sign, digits_t, exp = Decimal(value).as_tuple()
    digits = "".join(map(str, digits_t))
    exponent = len(digits) + int(exp) - 1  # the leading digit's position (exp is an int: value is finite)
    dps = 15
    if len(digits) > dps and digits[dps] in "56789":  # round half up at 15 digits
        rounded = str(int(digits[:dps]) + 1)
        if len(rounded) > dps:
            exponent += 1
        digits = rounded[:dps]
    else:
        digits = digits[:dps].ljust(dps, "0")
    if -5 < exponent < dps:
        if exponent < 0:
            digits, split = "0" * -exponent + digits, 1
        else:
            split = exponent + 1
        exponent = 0
    else:
        split = 1
    mantissa = (digits[:split] + "." + digits[split:]).rstrip("0")
    mantissa = ("-" if sign else "") + mantissa + ("0" if mantissa.endswith(".") else "")
    return mantissa if exponent == 0 else f"{mantissa} \\cdot 10^{{{exponent}}}"


def convert_latex_name(name: str) -> str:
    r"""Return the LaTeX of a variable or distribution name, as sympy writes a symbol.

    Whatever would make the LaTeX invalid is escaped, so every name Pixyz accepts still prints: an
    unmatched brace (Pixyz printed ``p(x})``), the characters ``# $ % &`` and a trailing backslash.
    Balanced braces and LaTeX commands pass unchanged (``p_{prior}``, ``z^{(1)}``, ``\hat{x}``).

    >>> convert_latex_name("p_prior"), convert_latex_name("alpha"), convert_latex_name("q1")
    ('p_{prior}', '\\alpha', 'q_{1}')
    >>> convert_latex_name("p_{prior}"), convert_latex_name("z^{(1)}")
    ('p_{prior}', 'z^{(1)}')
    >>> print(convert_latex_name("x}"), convert_latex_name("{x"), convert_latex_name("50%"))
    x\} \{x 50\%
    """
    text = _symbol_latex(name)
    out: list[str] = []
    unclosed: list[int] = []  # indices in out of the "{" not closed yet
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":  # a command or an escaped character: kept whole; a lone final backslash is escaped
            out.append(text[i : i + 2] if i + 1 < len(text) else "\\backslash")
            i += 2
            continue
        if c == "{":
            unclosed.append(len(out))
        elif c == "}":
            if unclosed:
                unclosed.pop()
            else:
                c = "\\}"
        elif c in "#$%&":
            c = "\\" + c
        out.append(c)
        i += 1
    for j in unclosed:
        out[j] = "\\{"
    return "".join(out)


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



_TAG_REPLACEMENTS = [
    (re.compile(pattern), repl)
    for pattern, repl in (
        (r"\\left|\\right", ""),
        (r"\\mathbb\{E\}", "E"),
        (r"\\log ", "log "),
        (r"D_\{KL\}", "KL"),
        (r"\\", ""),
        (r"[{}]", ""),
        (r"\s+", " "),
        (r"\s*([\[\]|,])\s*", r"\1"),
    )
]


def latex_to_tag(text: str) -> str:
    r"""Turn a LaTeX formula into a short plain-text tag for logs (TensorBoard, progress bars).

    >>> latex_to_tag(r"D_{KL} \left[q(z|x)||p_{prior}(z) \right]")
    'KL[q(z|x)||p_prior(z)]'
    """
    for pattern, repl in _TAG_REPLACEMENTS:
        text = pattern.sub(repl, text)
    return text.strip()
