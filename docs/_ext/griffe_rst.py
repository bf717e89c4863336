"""A Griffe extension that renders the reStructuredText idioms of our docstrings as Markdown.

The docstrings are written for Python's ``help()`` and for ``pytest --doctest-modules``: doctest
examples start with ``>>>``, formulas use ``.. math::`` and ``:math:``, and cross references use
``:class:`` roles. Markdown would read a ``>>>`` line as a nested block quote and print the roles
verbatim, so before mkdocstrings renders a docstring this extension rewrites, in the rendered copy
only (the source is untouched and the doctests still run on it):

* a run of doctest lines (``>>>``/``...`` and their expected output) -> a fenced ``pycon`` block;
* ``.. math:: formula`` (and its indented continuation) -> a display formula ``$$ ... $$``;
* ``:math:`x``` -> an inline formula ``\\(x\\)``;
* ``:class:`~a.b.C```, ``:func:``, ``:meth:``, ``:mod:``, ``:attr:``, ``:exc:`` -> inline code;
* an ``Args:`` entry naming several parameters (``a, b: text`` or ``a / b: text``) -> one entry per
  parameter, the later ones pointing at the first (Google style has one name per entry).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

__all__ = ["RstToMarkdown", "rst_to_markdown"]

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|exc|obj|data):`(~?)([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_MATH_DIRECTIVE = re.compile(r"^(\s*)\.\. math::\s*(.*)$")
_ARGS_HEADER = re.compile(
    r"^(\s*)(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Other Parameters):\s*$"
)
_MULTI_ARG = re.compile(r"^(\s+)(\*{0,2}\w+(?:\s*(?:,|/)\s*\*{0,2}\w+)+)(\s*(?:\([^)]*\))?:\s.*)$")


def _split_multi_args(lines: list[str]) -> list[str]:
    """``a, b: text`` in an Args section -> ``a: text`` and ``b: see ``a``.``."""
    out: list[str] = []
    section_indent: int | None = None
    pending: tuple[str, str, list[str]] | None = None  # (indent, first name, other names)

    def flush() -> None:
        nonlocal pending
        if pending is not None:
            indent, first, others = pending
            out.extend(f"{indent}{name}: see ``{first}``." for name in others)
            pending = None

    for line in lines:
        header = _ARGS_HEADER.match(line)
        width = len(line) - len(line.lstrip())
        if header:
            flush()
            section_indent = len(header.group(1))
            out.append(line)
            continue
        if section_indent is not None and line.strip() and width <= section_indent:
            flush()
            section_indent = None
        if section_indent is not None:
            m = _MULTI_ARG.match(line)
            # A continuation line (deeper than the pending entry) is description text, not an entry.
            if m and (pending is None or width <= len(pending[0])):
                flush()
                indent, names, rest = m.groups()
                names_list = [n.strip() for n in re.split(r",|/", names)]
                out.append(f"{indent}{names_list[0]}{rest}")
                pending = (indent, names_list[0], names_list[1:])
                continue
            if pending is not None and line.strip() and width <= len(pending[0]):
                flush()
        out.append(line)
    flush()
    return out


def _role(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def rst_to_markdown(text: str) -> str:
    r"""Rewrite doctest blocks, math and cross-reference roles of a docstring as Markdown.

    >>> rst_to_markdown("See :class:`~a.B` and :math:`x^2`.")
    'See `B` and \\(x^2\\).'
    >>> rst_to_markdown("a :math:`x +\n    y` b")
    'a \\(x + y\\) b'
    >>> rst_to_markdown("Example:\n>>> 1 + 1\n2").splitlines()
    ['Example:', '', '```pycon', '>>> 1 + 1', '2', '```']
    >>> rst_to_markdown("Args:\n    a, b: sizes.\n        More.\n    c: other.").splitlines()
    ['Args:', '    a: sizes.', '        More.', '    b: see ``a``.', '    c: other.']
    """
    # Roles first, on the whole text: a formula may wrap onto the next line.
    text = _MATH_ROLE.sub(lambda mm: f"\\({' '.join(mm.group(1).split())}\\)", text)
    text = _ROLE.sub(_role, text)
    lines = _split_multi_args(text.splitlines())
    out: list[str] = []
    i = 0
    in_fence = False
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith("```"):
            in_fence = not in_fence
            out.append(line)
            i += 1
            continue
        if in_fence:
            out.append(line)
            i += 1
            continue
        if stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            block = []
            # A doctest block runs until a blank line (doctest's own rule for the expected output).
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].strip())
                i += 1
            if out and out[-1].strip():
                out.append("")
            out.extend([f"{indent}```pycon", *(indent + b for b in block), f"{indent}```"])
            continue
        m = _MATH_DIRECTIVE.match(line)
        if m:
            indent, first = m.groups()
            formula = [first] if first else []
            i += 1
            # Continuation lines are indented deeper than the directive.
            while i < len(lines) and (
                not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)
            ):
                if lines[i].strip():
                    formula.append(lines[i].strip())
                elif formula:
                    break
                i += 1
            out.extend([f"{indent}$$", *(indent + f for f in formula), f"{indent}$$"])
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


class RstToMarkdown(griffe.Extension):
    """Griffe extension applying :func:`rst_to_markdown` to every docstring it loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
