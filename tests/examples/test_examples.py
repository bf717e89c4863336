"""Every example script runs end to end with ``--smoke`` and its training loss falls; the main job's
TensorBoard log holds readable tags for the loss and each term, and image grids.

The list of scripts is read from the ``examples/`` folder, so a new example is tested without being
registered anywhere. Each runs in-process (``main(argv)``) on a few steps of small random data and
returns ``Model.fit``'s history (one dict of epoch means per epoch).
"""

import importlib.util
import math
import re
import subprocess
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


def _curves(module, history) -> tuple[list[float], list[float]]:
    """The per-epoch values that must fall (the training loss; a GAN names its critic's, which learns
    first) and the test losses, from ``Model.fit``'s history (a list of epoch dicts) or from a dict of
    per-epoch lists ``{"train": [...], "test": [...]}`` that some examples build from it."""
    if isinstance(history, dict):
        return list(history["train"]), list(history.get("test", []))
    falling = getattr(module, "FALLING", "train/loss")
    return [epoch[falling] for epoch in history], [epoch["test/loss"] for epoch in history if "test/loss" in epoch]


@pytest.mark.parametrize("path", SCRIPTS, ids=[Path(p).stem for p in SCRIPTS])
def test_example_smoke(path, tmp_path, capsys):
    module = _load(path)
    history = module.main(["--smoke", "--no-progress", "--device", "cpu", "--out", str(tmp_path)])
    losses, tests = _curves(module, history)
    assert len(losses) >= 2, "a smoke run must train for at least two epochs to show the loss falling"
    assert all(math.isfinite(v) for v in losses + tests), losses
    assert losses[-1] < losses[0], f"the training loss did not fall: {losses}"
    figures = list(tmp_path.rglob("*.png"))
    assert figures, "the example wrote no PNG figure"
    assert list(tmp_path.rglob("events.out.tfevents.*")), "the example wrote no TensorBoard log"


def test_examples_train_with_model_fit_only():
    """The examples show the library's loop: none writes an optimizer step or an epoch loop of its own."""
    pattern = re.compile(r"optimizer\.step|for epoch")
    found = [f"{Path(p).name}:{i}" for p in glob(str(EXAMPLES_DIR / "*.py"))
             for i, line in enumerate(Path(p).read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, f"training loops outside Model.fit: {found}"


def _events(folder: Path):
    """Scalar and image tags of the TensorBoard event files under ``folder``, read by TensorBoard itself."""
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator", reason='needs pip install "pixyz_like[tensorboard]"')
    acc = accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    return acc, set(tags["scalars"]), set(tags["images"])


def test_vae_main_job_logs_readable_tags_and_image_grids(tmp_path):
    """``examples/vae.py --smoke`` as the main job runs it (a fresh process): the event file holds the loss
    and each term under readable tags (issue 10: not ``train/KL_q_z_x___p_prior_z__``), per step and per
    epoch, train and test, and 4x4 grids of samples and reconstructions."""
    out = tmp_path / "runs"
    proc = subprocess.run([sys.executable, str(EXAMPLES_DIR / "vae.py"), "--smoke", "--no-progress", "--device", "cpu",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    acc, scalars, images = _events(out)
    terms = ["KL[q(z|x)||p_prior(z)]", "E_q(z|x)[log p(x|z)]"]
    for name in ["loss", *terms]:
        for tag in (f"train/{name}", f"train_epoch/{name}", f"test/{name}"):
            assert tag in scalars, (tag, sorted(scalars))
    assert not [t for t in scalars if "__" in t], sorted(scalars)  # nothing mangled
    steps = [e.step for e in acc.Scalars("train/loss")]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 2
    assert [e.step for e in acc.Scalars("test/loss")] == [steps[len(steps) // 2 - 1], steps[-1]]  # 2 epochs
    # the loss is KL - E[log p]: the logged epoch means add up
    loss, kl, rec = (acc.Scalars(f"train_epoch/{n}")[-1].value for n in ["loss", *terms])
    assert loss == pytest.approx(kl - rec, rel=1e-4)
    assert {"samples", "reconstructions"} <= images
    for tag in ("samples", "reconstructions"):
        grid = acc.Images(tag)[-1]
        # 4x4 grid of 28x28 digits, torchvision's 2-pixel padding: 4 * 28 + 5 * 2 = 122
        assert (grid.width, grid.height) == (122, 122), (tag, grid.width, grid.height)
        assert len(acc.Images(tag)) == 2  # one per epoch
    assert "Wrote to" in proc.stdout and "Epoch 2: train loss" in proc.stdout
