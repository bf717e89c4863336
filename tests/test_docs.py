"""The documentation: its code runs and the API is documented (the built site: tests/test_site.py).

* Every ``python`` code block of every page runs, top to bottom, in one namespace per page (blocks
  fenced as ``py`` are shown, not run: launch commands, sketches needing data). A page that needs an
  optional package says so in a first-line comment ``<!-- requires: lightning -->``; without that
  package its code is skipped, with the reason.
* Every public name in the ``__all__`` of each subpackage has a docstring with a doctested example
  (the doctests themselves run in CI through ``pytest --doctest-modules pixyz_like``).
* Every subpackage has an API reference page.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import pixyz_like

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

def _subpackages() -> list[str]:
    names = []
    for info in pkgutil.iter_modules(pixyz_like.__path__):
        if info.name.startswith("_"):
            continue
        names.append(f"pixyz_like.{info.name}")
    return sorted(names)


def _public_objects():
    """``(qualified name, object)`` for every public name in a subpackage's ``__all__``."""
    seen: set[int] = set()
    for modname in _subpackages():
        module = importlib.import_module(modname)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if inspect.ismodule(obj) or id(obj) in seen:
                continue
            if not (inspect.isclass(obj) or inspect.isroutine(obj)):
                continue  # constants and aliases of values carry no docstring of their own
            seen.add(id(obj))
            yield f"{modname}.{name}", obj


def _own_doc(obj) -> str:
    # A class's __doc__ is not inherited, so an undocumented subclass is caught here.
    return obj.__doc__ or ""


def test_public_names_have_docstrings():
    missing = [name for name, obj in _public_objects() if not _own_doc(obj).strip()]
    assert not missing, f"public names without a docstring: {missing}"


def test_public_names_have_examples():
    lacking = [name for name, obj in _public_objects() if ">>>" not in _own_doc(obj)]
    assert not lacking, f"public names whose docstring has no '>>>' example: {lacking}"


def test_every_subpackage_has_a_reference_page():
    text = "\n".join(p.read_text() for p in (DOCS / "reference").glob("*.md"))
    documented = set(re.findall(r"^::: (pixyz_like[\w.]*)", text, flags=re.MULTILINE))
    missing = [m for m in _subpackages() if m not in documented]
    assert not missing, f"subpackages without a '::: module' entry under docs/reference/: {missing}"


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "_ext" not in p.parts)


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_page_code_runs(page, tmp_path, monkeypatch):
    """The ``python`` blocks of a page run in order, in a scratch directory, in one namespace."""
    text = page.read_text()
    needs = re.match(r"<!-- requires: ([\w, ]+) -->", text)
    for module in needs.group(1).replace(",", " ").split() if needs else ():
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{page.relative_to(DOCS)} needs {module}: pip install \"pixyz_like[{module}]\"")
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)
        except Exception as e:  # re-raise naming the page and block
            raise AssertionError(f"{page.relative_to(DOCS)}, python block {i} failed: {e!r}\n{code}") from e


def test_griffe_extension_doctests():
    """The docstring converter used by the site (docs/_ext/griffe_rst.py) does what it says."""
    path = DOCS / "_ext" / "griffe_rst.py"
    spec = importlib.util.spec_from_file_location("griffe_rst", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
