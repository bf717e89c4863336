"""docs/architecture.md stays true: every module it names imports, and the training layer's parts it
lists are the modules of ``pixyz_like.models`` (a new module there is added to the map)."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
NAMED = sorted(set(re.findall(r"`(pixyz_like(?:\.\w+)*)`", PAGE.read_text())))


def test_the_page_names_modules():
    assert len(NAMED) >= 20, NAMED


@pytest.mark.parametrize("name", NAMED)
def test_every_module_the_page_names_imports(name):
    module = importlib.import_module(name)
    assert module.__name__ == name


def test_every_module_of_the_training_layer_is_on_the_map():
    import pixyz_like.models as models

    modules = {f"pixyz_like.models.{m.name}" for m in pkgutil.iter_modules(models.__path__)}
    # Callbacks that are features rather than parts of the loop need not be on the map.
    features = {"pixyz_like.models.ema", "pixyz_like.models.codebook", "pixyz_like.models.wandb_logger"}
    missing = sorted(modules - set(NAMED) - features)
    assert not missing, f"modules of pixyz_like.models that docs/architecture.md does not place: {missing}"


def _layers() -> dict[str, int]:
    """``{package or module: layer index}`` from the page's Layers table (its rows in order)."""
    section = PAGE.read_text().split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`pixyz_like" in line]
    return {name: i for i, row in enumerate(rows) for name in re.findall(r"`(pixyz_like\.\w+)`", row.split("|")[2])}


def _top_level_imports(path: Path, module: str) -> set[str]:
    """The pixyz_like modules ``module`` imports at module level (``TYPE_CHECKING`` blocks aside)."""
    import ast

    found = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.startswith("pixyz_like.")}


def test_module_level_imports_follow_the_layers():
    layers = _layers()
    assert len(set(layers.values())) == 5, layers
    root = PAGE.parents[1] / "pixyz_like"

    def layer(module: str) -> int:
        return layers[".".join(module.split(".")[:2])]

    upward = []
    for path in sorted(root.rglob("*.py")):
        module = ".".join(path.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
        if module == "pixyz_like":
            continue  # the package imports every layer
        for target in _top_level_imports(path, module):
            if layer(target) > layer(module):
                upward.append(f"{module} imports {target}")
    assert not upward, upward


def test_no_function_in_the_package_is_longer_than_a_screen():
    """Issue 11's rule: no function over 80 lines (docstring included), so each reads on one screen."""
    root = PAGE.parents[1] / "pixyz_like"
    long = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long
