"""Every example script runs end to end with ``--smoke`` and its training loss falls.

The list of scripts is read from the ``examples/`` folder, so a new example is tested without being
registered anywhere. Each runs in-process (``main(argv)``) on a few steps of small random data.
"""

import importlib.util
import math
import sys
from glob import glob
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = sorted(p for p in glob(str(EXAMPLES_DIR / "*.py")) if not Path(p).name.startswith("_"))


def _load(path: str):
    # the scripts import their shared helpers as ``_common`` (their folder is on sys.path when run)
    if str(EXAMPLES_DIR) not in sys.path:
        sys.path.insert(0, str(EXAMPLES_DIR))
    name = f"example_{Path(path).stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_examples_are_found():
    assert len(SCRIPTS) >= 1
    assert all(Path(p).suffix == ".py" for p in SCRIPTS)


@pytest.mark.parametrize("path", SCRIPTS, ids=[Path(p).stem for p in SCRIPTS])
def test_example_smoke(path, tmp_path, capsys):
    module = _load(path)
    history = module.main(["--smoke", "--no-progress", "--device", "cpu", "--out", str(tmp_path)])
    losses = history["train"]
    assert len(losses) >= 2, "a smoke run must train for at least two epochs to show the loss falling"
    assert all(math.isfinite(v) for v in losses + history.get("test", [])), losses
    assert losses[-1] < losses[0], f"the training loss did not fall: {losses}"
    figures = list(tmp_path.rglob("*.png"))
    assert figures, "the example wrote no PNG figure"
    assert list(tmp_path.rglob("events.out.tfevents.*")), "the example wrote no TensorBoard log"
