"""The tutorial notebooks run from a clean kernel and show distributions, losses and models as LaTeX.

Each notebook under ``examples/notebooks/`` is executed with nbclient in a fresh ``python3`` kernel,
from its own folder (the overview finds MNIST at ``<repo>/../shared/data/mnist/raw``), and must run
without error. Cells tagged ``latex-distribution``, ``latex-loss`` and ``latex-model`` display such
an object as their result; both the committed outputs and the fresh ones must hold a ``text/latex``
rendering for at least one distribution, one loss and one model per notebook.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbclient
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "examples" / "notebooks").glob("*.ipynb"))
KINDS = ("distribution", "loss", "model")


def _latex_outputs(nb) -> dict[str, list[tuple[str, str]]]:
    """``{kind: [(latex, plain text), ...]}`` for the results of the tagged cells."""
    found: dict[str, list[tuple[str, str]]] = {k: [] for k in KINDS}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kinds = [t.removeprefix("latex-") for t in cell.metadata.get("tags", []) if t.startswith("latex-")]
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/latex" not in data:
                continue
            for kind in kinds:
                found[kind].append((data["text/latex"], data.get("text/plain", "")))
    return found


def _check_latex(nb, name: str) -> None:
    found = _latex_outputs(nb)
    for kind in KINDS:
        assert found[kind], f"{name}: no text/latex output for a {kind} (cells tagged latex-{kind})"
        for latex, _ in found[kind]:
            assert re.fullmatch(r"\$.+\$", latex.strip(), flags=re.DOTALL), f"{name}: not LaTeX math: {latex!r}"
    # The plain-text form tells which object produced the LaTeX: a distribution is an nn.Module
    # listing its variables, a model is a pixyz_like.models object, a loss prints as Class(formula).
    assert any("var=[" in plain for _, plain in found["distribution"]), f"{name}: no distribution shown"
    assert any("pixyz_like.models" in plain for _, plain in found["model"]), f"{name}: no model shown"
    assert any(re.match(r"\w+\(", plain) and "var=[" not in plain for _, plain in found["loss"]), (
        f"{name}: no loss shown"
    )


def test_there_are_tutorials():
    names = {p.name for p in NOTEBOOKS}
    assert {"01_overview.ipynb", "02_distributions.ipynb", "03_losses.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_outputs(path):
    """The notebook is committed executed, in order, with its LaTeX outputs and no error."""
    nb = nbformat.read(path, as_version=4)
    counts = [c.get("execution_count") for c in nb.cells if c.cell_type == "code"]
    assert all(isinstance(n, int) for n in counts), f"{path.name}: a code cell was not executed"
    assert counts == sorted(counts), f"{path.name}: cells were executed out of order"
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: committed with an error output"
    _check_latex(nb, path.name)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_executes_from_clean_kernel(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # start from nothing: no stale outputs can satisfy the checks below
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    _check_latex(nb, path.name)
