"""The built documentation site: it builds with warnings as errors, and every rendered page is checked.

* ``mkdocs build --strict`` succeeds (broken links, unknown pages, docstrings griffe cannot parse and
  missing reference targets are all warnings, hence failures);
* every Markdown table row has as many cells as its header, counting a ``|`` inside a formula
  ``\\(...\\)`` or a code span as part of the cell (Python-Markdown splits the cell there, silently
  dropping the cells past the header's count) — in the source and in the rendered page;
* every formula is rendered as one: no ``\\(`` or ``\\[`` is left in a page's text outside MathJax's
  spans (a split cell leaves such debris);
* MathJax is served by the site itself (with its fonts and licence), not a CDN, so the built site
  shows formulas offline;
* the API reference names no private class (``Bases: _Binary``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "_ext" not in p.parts)


def _html_of(site: Path, page: Path) -> Path:
    rel = page.relative_to(DOCS).with_suffix("")
    return site / rel.parent / "index.html" if rel.name == "index" else site / rel / "index.html"


# ------------------------------------------------------------------ Markdown tables in the source
_MARKDOWN_ATOM = re.compile(r"(`+).*?\1|\\\|")  # what Python-Markdown's table splitter leaves whole
_AUTHOR_ATOM = re.compile(r"\\\(.*?\\\)|(`+).*?\1|\\\|")  # ... and what an author means whole: formulas


def _cells(row: str, as_markdown_splits: bool = False) -> list[str]:
    """A table row's cells as its author means them (a ``|`` in a formula or code span is content),
    or, with ``as_markdown_splits``, as Python-Markdown splits them (a ``|`` in a formula splits)."""
    atom = _MARKDOWN_ATOM if as_markdown_splits else _AUTHOR_ATOM
    protected = atom.sub(lambda m: "x" * len(m.group(0)), row)
    row, protected = row.strip(), protected.strip()
    if protected.startswith("|"):
        row, protected = row[1:], protected[1:]
    if protected.endswith("|"):
        row, protected = row[:-1], protected[:-1]
    cells, start = [], 0
    for i, ch in enumerate(protected):
        if ch == "|":
            cells.append(row[start:i])
            start = i + 1
    cells.append(row[start:])
    return [c.strip() for c in cells]


def _source_tables(text: str) -> list[list[str]]:
    """The Markdown tables of a page (outside fenced code), each a list of its rows' source lines."""
    tables: list[list[str]] = []
    lines = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL).splitlines()
    i = 0
    while i + 1 < len(lines):
        if lines[i].lstrip().startswith("|") and re.fullmatch(r"\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*",
                                                               lines[i + 1]):
            rows = [lines[i]]
            j = i + 2
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                rows.append(lines[j])
                j += 1
            tables.append(rows)
            i = j
        else:
            i += 1
    return tables


def test_cells_splitter():
    row = r"| \(p(x|z)\) | `a|b` | c \| d |"
    assert _cells(row) == [r"\(p(x|z)\)", "`a|b`", r"c \| d"]
    assert _cells(row, as_markdown_splits=True) == [r"\(p(x", r"z)\)", "`a|b`", r"c \| d"]


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_source_table_rows_have_the_header_column_count(page):
    """As Python-Markdown splits them, every row has its header's cell count and the cells its author
    meant (a ``|`` inside a formula adds a cell: write ``\\vert`` or ``\\Vert`` there)."""
    bad = []
    for table in _source_tables(page.read_text()):
        width = len(_cells(table[0], as_markdown_splits=True))
        bad += [row for row in table if len(_cells(row, as_markdown_splits=True)) != width
                or len(_cells(row)) != width]
    assert not bad, f"{page.relative_to(DOCS)}: rows split into the wrong number of cells:\n" + "\n".join(bad)


# ------------------------------------------------------------------ the rendered pages
class _Tables(HTMLParser):
    """Rows of every ``<table>`` as lists of (cell text, number of rendered formulas)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[list]]] = []
        self.cell: list | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th") and self.tables and self.tables[-1]:
            self.cell = ["", 0]
            self.tables[-1][-1].append(self.cell)
        elif tag == "span" and self.cell is not None and ("class", "arithmatex") in attrs:
            self.cell[1] += 1

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[0] += data


def _markdown_pages() -> list[Path]:
    return [p for p in _pages() if not re.search(r"^::: ", p.read_text(), flags=re.MULTILINE)]


@pytest.mark.parametrize("page", _markdown_pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_rendered_table_rows_match_the_source(site, page):
    """Each rendered row has the source's cells, and each cell as many rendered formulas as its source."""
    parser = _Tables()
    parser.feed(_html_of(site, page).read_text())
    source = _source_tables(page.read_text())
    assert len(parser.tables) == len(source), (page.name, len(source), "tables written", len(parser.tables), "rendered")
    for rows, rendered in zip(source, parser.tables, strict=True):
        for row, cells in zip(rows, [r for r in rendered if r], strict=True):
            want = _cells(row)
            assert len(cells) == len(want), f"{page.name}: row {row!r} renders as {len(cells)} cells: {cells}"
            for text, (_, formulas) in zip(want, cells, strict=True):
                n = len(re.findall(r"\\\(.*?\\\)", text))
                assert formulas == n, f"{page.name}: cell {text!r} renders {formulas} of its {n} formulas"


# MathJax typesets the text of elements of these classes (docs/js/mathjax-config.js): formulas marked
# by arithmatex, and the navigation menu's links, whose table of contents repeats headings as text.
_TYPESET = ("arithmatex", "reference")
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Visible(HTMLParser):
    """The text a reader sees as text: not code, not scripts, not what MathJax typesets."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[bool] = []  # per open element: is its content hidden from the check?
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in _VOID:
            return
        classes = (dict(attrs).get("class") or "").split()
        hidden = tag in ("script", "style", "pre", "code", "title") or any(c in _TYPESET for c in classes) \
            or "headerlink" in classes
        self.stack.append(hidden or bool(self.stack and self.stack[-1]))

    def handle_endtag(self, tag):
        if tag not in _VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if not (self.stack and self.stack[-1]):
            self.text.append(data)


def _visible_text(html: str) -> str:
    parser = _Visible()
    parser.feed(html)
    return "".join(parser.text)


def test_mathjax_typesets_what_the_check_skips():
    config = (DOCS / "js" / "mathjax-config.js").read_text()
    assert re.search(r'processHtmlClass: "([^"]+)"', config).group(1).split("|") == list(_TYPESET)


def test_every_formula_is_rendered(site):
    """Outside MathJax's spans no math delimiter remains, in any page (tables, lists, docstrings)."""
    bad = []
    for html in sorted(site.rglob("*.html")):
        text = _visible_text(html.read_text())
        for m in re.finditer(r"\\\(|\\\)|\\\[|\\\]", text):
            bad.append(f"{html.relative_to(site)}: ...{text[max(0, m.start() - 40):m.end() + 40]!r}")
    assert not bad, "unrendered math:\n" + "\n".join(bad[:20])


def test_mathjax_is_bundled_so_formulas_render_offline(site):
    bundle = site / "js" / "mathjax"
    assert (bundle / "tex-mml-chtml.js").stat().st_size > 500_000
    assert list((bundle / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff")), "MathJax's fonts are missing"
    assert (bundle / "input" / "tex" / "extensions" / "boldsymbol.js").is_file()
    assert "Apache License" in (bundle / "LICENSE").read_text()
    pages = [p for p in site.rglob("*.html") if "arithmatex" in p.read_text()]
    assert pages
    for page in pages:
        scripts = re.findall(r'<script[^>]*src="([^"]+)"', page.read_text())
        mathjax = [s for s in scripts if "mathjax" in s.lower()]
        assert mathjax and all(not s.startswith(("http:", "https:", "//")) for s in mathjax), (page, mathjax)
        # the configuration comes first, then the bundle, which resolves to the file in the site
        assert mathjax[0].endswith("mathjax-config.js") and mathjax[-1].endswith("mathjax/tex-mml-chtml.js")
        assert (page.parent / mathjax[-1]).resolve() == (bundle / "tex-mml-chtml.js").resolve()


def test_reference_is_rendered_and_names_no_private_class(site):
    reference = (site / "reference" / "distributions" / "index.html").read_text()
    # The reference is generated from the docstrings, doctest blocks rendered as code (not quotes).
    assert 'id="pixyz_like.distributions.Normal"' in reference
    assert "<blockquote>" not in reference
    losses = (site / "reference" / "losses" / "index.html").read_text()
    assert "Bases:" in losses
    private = set()
    for page in (site / "reference").rglob("*.html"):
        for line in re.findall(r"Bases: .*", page.read_text()):
            private |= set(re.findall(r">(_\w+)<", line))
    assert not private, f"private classes named in the reference's Bases lines: {sorted(private)}"
    # MinLoss derives from the private _Binary: its public ancestor is shown instead.
    min_loss = losses[losses.index('id="pixyz_like.losses.MinLoss"'):]
    assert re.search(r"Bases: .*?>Loss<", min_loss[:3000])
