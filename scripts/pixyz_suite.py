#!/usr/bin/env python3
"""Run Pixyz's own test suite and example notebooks against pixyz_like, with only the imports changed.

Usage::

    python scripts/pixyz_suite.py PIXYZ_CHECKOUT [--library pixyz_like|pixyz] [--only NAME ...]
                                  [--no-tests] [--no-notebooks] [--tutorials] [--out DIR]

``PIXYZ_CHECKOUT`` is a checkout of https://github.com/masa-su/pixyz (its head matches the 0.3.3
wheel). Nothing of it is copied into this project: the programs are read from the checkout, rewritten
in a temporary folder and run there.

What is changed in the programs, and nothing else:

* imports: ``pixyz`` becomes ``pixyz_like`` in ``import``/``from`` lines and in ``pixyz.<name>``
  attribute uses (``--library pixyz`` leaves them alone, to run the same harness on Pixyz itself);
* the notebooks' epoch counts (a line ``epochs = N``) are capped at ``--epochs`` (default 2).

The environment, not the programs, is adjusted by a prelude cell run before each notebook (there is
no internet at test time):

* MNIST comes from ``--mnist`` (default ``../shared/data/mnist/raw``, the real 10,000-digit test
  split; the training split is the same digits), laid out where the notebooks' ``root`` points;
* CIFAR-10 is random images of the right shape and label range;
* every ``DataLoader`` iteration stops after ``--max-batches`` batches (default 3), and its
  iterators answer ``.next()``, which current torch dropped;
* matplotlib draws off screen.

The report gives, per test and per notebook, passed/failed with the error, then the counts; with
``--json FILE`` it is also written as JSON (used by ``docs/pixyz.md`` and by the comparison of
printed outputs between the two libraries, ``--compare OTHER.json``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MNIST = ROOT.parent / "shared" / "data" / "mnist" / "raw"

_FROM = re.compile(r"^(\s*)from\s+pixyz(?=[\s.])", re.MULTILINE)
_IMPORT = re.compile(r"^(\s*)import\s+pixyz(\.[\w.]+)?\s*$", re.MULTILINE)
_EPOCHS = re.compile(r"^(\s*)epochs\s*=\s*(\d+)\s*$", re.MULTILINE)

NEXT_PATCH = r'''
import torch.utils.data as _tud

_orig_iter = _tud.DataLoader.__iter__


def _iter_with_next(self):
    it = _orig_iter(self)
    if not hasattr(type(it), "next"):
        type(it).next = type(it).__next__
    return it


_tud.DataLoader.__iter__ = _iter_with_next
'''

PRELUDE = r'''
import os as _os, sys as _sys, itertools as _it
_os.environ.setdefault("MPLBACKEND", "Agg")
import matplotlib as _mpl
_mpl.use("Agg")
import torch as _torch
import torch.utils.data as _tud

_MAX_BATCHES = {max_batches}


class _NextIter:
    """An iterator over at most _MAX_BATCHES batches that also answers the old ``.next()``."""

    def __init__(self, it):
        self._it = _it.islice(it, _MAX_BATCHES)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._it)

    next = __next__


_orig_iter = _tud.DataLoader.__iter__
_tud.DataLoader.__iter__ = lambda self: _NextIter(_orig_iter(self))

import torchvision.datasets as _tvd
import numpy as _np
from PIL import Image as _Image


class _RandomCIFAR10(_tud.Dataset):
    """CIFAR-10 stand-in: random 32x32 RGB images, labels 0-9 (no download possible here)."""

    def __init__(self, root=None, train=True, transform=None, target_transform=None, download=False):
        g = _np.random.default_rng(0 if train else 1)
        n = 256 if train else 128
        self.data = g.integers(0, 256, size=(n, 32, 32, 3), dtype=_np.uint8)
        self.targets = list(g.integers(0, 10, size=n))
        self.transform, self.target_transform = transform, target_transform

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        img, target = _Image.fromarray(self.data[i]), int(self.targets[i])
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target


_tvd.CIFAR10 = _RandomCIFAR10
'''


def rewrite(source: str, library: str, epochs: int | None = None) -> str:
    """The program with its imports pointed at ``library`` (and its epoch count capped).

    ``from pixyz.x import y`` becomes ``from pixyz_like.x import y``; ``import pixyz`` (or
    ``import pixyz.x``) becomes an import of the same module of ``library`` bound to the name
    ``pixyz``, so the program's ``pixyz.__version__`` or ``pixyz.x.y`` reads the same.
    """
    if library != "pixyz":
        source = _FROM.sub(lambda m: f"{m.group(1)}from {library}", source)
        source = _IMPORT.sub(
            lambda m: f"{m.group(1)}import {library}{m.group(2) or ''}; import {library} as pixyz", source
        )
    if epochs is not None:
        source = _EPOCHS.sub(lambda m: f"{m.group(1)}epochs = {min(int(m.group(2)), epochs)}", source)
    return source


# --------------------------------------------------------------------------- Pixyz's tests


def run_tests(checkout: Path, work: Path, library: str, timeout: float) -> list[dict]:
    """Copy Pixyz's ``tests/`` with rewritten imports, run pytest on all of it, return the outcomes."""
    dest = work / "pixyz_tests"
    shutil.copytree(checkout / "tests", dest / "tests")
    for path in (dest / "tests").rglob("*.py"):
        path.write_text(rewrite(path.read_text(), library))
    # Pixyz's own pytest.ini asks for flake8 and coverage plugins; run with a plain configuration
    # that selects every test, the "performance" ones included (Pixyz: -m "performance or not ...").
    (dest / "pytest.ini").write_text("[pytest]\nmarkers =\n    performance: Pixyz's example runs\n")
    # The tests' example runs call ``iter(loader).next()``, which current torch dropped.
    (dest / "conftest.py").write_text(NEXT_PATCH)
    xml = dest / "report.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tb=short", "-rN",
           "--continue-on-collection-errors", "--import-mode=importlib", f"--junitxml={xml}", "tests"]
    try:
        proc = subprocess.run(cmd, cwd=dest, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "MPLBACKEND": "Agg"})
        log = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        log = f"timed out after {timeout} s\n{e.stdout or ''}"
    (work / "tests.log").write_text(log)
    if not xml.exists():
        return [{"name": "tests (collection)", "outcome": "error", "message": log[-3000:]}]
    results = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (node.get("message") or "") + "\n" + (node.text or "")
                break
        results.append({"name": name, "outcome": outcome, "message": message.strip()[-3000:]})
    return results


# --------------------------------------------------------------------------- notebooks


def _prepare_mnist(mnist: Path, root: Path) -> None:
    """``root/MNIST/raw`` as torchvision expects it, the test split standing in for the training one."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split in ("t10k",):
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            src = mnist / f"{split}-{kind}.gz"
            if src.exists():
                data = gzip.decompress(src.read_bytes())
            else:
                data = (mnist / f"{split}-{kind}").read_bytes()
            (raw / f"t10k-{kind}").write_bytes(data)
            train = raw / f"train-{kind}"
            if not train.exists():
                train.symlink_to(raw / f"t10k-{kind}")


def _outputs(cell) -> list[dict]:
    """The printed text and rich text outputs of an executed cell (what a reader sees)."""
    found = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            found.append({"kind": out.get("name", "stream"), "text": out.get("text", "")})
        elif out.get("output_type") in ("execute_result", "display_data"):
            data = out.get("data", {})
            for mime in ("text/latex", "text/plain"):
                if mime in data:
                    found.append({"kind": mime, "text": data[mime]})
                    break
        elif out.get("output_type") == "error":
            found.append({"kind": "error", "text": f"{out.get('ename')}: {out.get('evalue')}"})
    return found


def run_notebook(path: Path, work: Path, library: str, args: argparse.Namespace) -> dict:
    import nbclient
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = rewrite(cell.source, library, args.epochs)
            cell.outputs = []
    prelude = nbformat.v4.new_code_cell(PRELUDE.format(max_batches=args.max_batches))
    nb.cells.insert(0, prelude)
    folder = work / "notebooks" / path.parent.name
    folder.mkdir(parents=True, exist_ok=True)
    for helper in path.parent.glob("*.py"):  # the tutorials import a utils.py beside them
        shutil.copy(helper, folder / helper.name)
    client = nbclient.NotebookClient(nb, timeout=args.cell_timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(folder)}}, allow_errors=False)
    start = time.perf_counter()
    result = {"name": f"{path.parent.name}/{path.name}", "outcome": "passed", "message": ""}
    try:
        client.execute()
    except Exception as e:  # noqa: BLE001 - the report records whatever stopped the notebook
        result["outcome"] = "failed"
        text = str(e)
        # nbclient's CellExecutionError ends with the error line; keep the traceback tail
        result["message"] = re.sub(r"\x1b\[[0-9;]*m", "", text)[-3000:]
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["cells"] = [_outputs(c) for c in nb.cells[1:] if c.cell_type == "code"]
    nbformat.write(nb, str(folder / path.name))
    return result


def notebook_paths(checkout: Path, tutorials: bool) -> list[Path]:
    paths = sorted((checkout / "examples").glob("*.ipynb"))
    if tutorials:
        paths += sorted((checkout / "tutorial" / "English").glob("*.ipynb"))
    return paths


# --------------------------------------------------------------------------- comparison

_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def _lines(cell: list[dict]) -> list[tuple[str, str]]:
    """``(kind, line)`` for every line a cell showed (errors and warnings left out)."""
    out = []
    for o in cell:
        if o["kind"] in ("error", "stderr"):
            continue
        out += [(o["kind"], ln.rstrip()) for ln in o["text"].splitlines() if ln.strip()]
    return out


def compare(ours: dict, theirs: dict, rel: float) -> list[dict]:
    """Per notebook: the formulas/texts that differ and the printed numbers that disagree.

    A line is compared as text with its numbers taken out; the numbers of lines that match are
    compared with the relative tolerance ``rel``. Lines of module reprs (``Network architecture``
    blocks) are compared as text too.
    """
    theirs_by_name = {r["name"]: r for r in theirs.get("notebooks", [])}
    report = []
    for r in ours.get("notebooks", []):
        t = theirs_by_name.get(r["name"])
        if t is None or r["outcome"] != "passed" or t["outcome"] != "passed":
            continue
        texts, numbers, total_lines, total_numbers = [], [], 0, 0
        for i, (a, b) in enumerate(zip(r["cells"], t["cells"])):
            la, lb = _lines(a), _lines(b)
            for (_, x), (_, y) in zip(la, lb):
                total_lines += 1
                if _NUMBER.sub("#", x) != _NUMBER.sub("#", y):
                    texts.append({"cell": i, "ours": x, "pixyz": y})
                    continue
                for u, v in zip(_NUMBER.findall(x), _NUMBER.findall(y)):
                    total_numbers += 1
                    fu, fv = float(u), float(v)
                    if abs(fu - fv) > rel * max(abs(fu), abs(fv), 1e-12):
                        numbers.append({"cell": i, "ours": x, "pixyz": y})
                        break
            if len(la) != len(lb):
                texts.append({"cell": i, "ours": f"{len(la)} lines", "pixyz": f"{len(lb)} lines"})
        report.append({"name": r["name"], "lines": total_lines, "numbers": total_numbers,
                       "text_differences": texts, "number_differences": numbers})
    return report


def print_comparison(report: list[dict]) -> None:
    for r in report:
        print(f"{r['name']}: {r['lines']} lines compared, {len(r['text_differences'])} differ in text, "
              f"{len(r['number_differences'])} lines with numbers differing")
        for d in r["text_differences"][:12]:
            print(f"    cell {d['cell']}:\n      ours : {d['ours'][:200]}\n      pixyz: {d['pixyz'][:200]}")
        for d in r["number_differences"][:6]:
            print(f"    cell {d['cell']} numbers:\n      ours : {d['ours'][:200]}\n      pixyz: {d['pixyz'][:200]}")


# --------------------------------------------------------------------------- report


def _summary(kind: str, results: list[dict]) -> str:
    counts: dict[str, int] = {}
    for r in results:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    parts = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    return f"{kind}: {len(results)} total: {parts}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, nargs="?", default=None, help="a checkout of masa-su/pixyz")
    parser.add_argument("--library", default="pixyz_like", choices=["pixyz_like", "pixyz"])
    parser.add_argument("--only", nargs="*", default=None, help="notebook names (stems) to run")
    parser.add_argument("--no-tests", action="store_true")
    parser.add_argument("--no-notebooks", action="store_true")
    parser.add_argument("--tutorials", action="store_true", help="also run tutorial/English/*.ipynb")
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST)
    parser.add_argument("--max-batches", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--cell-timeout", type=int, default=1800)
    parser.add_argument("--tests-timeout", type=float, default=1800)
    parser.add_argument("--out", type=Path, default=None, help="keep the rewritten programs here")
    parser.add_argument("--json", type=Path, default=None, help="write the report as JSON")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("OURS.json", "PIXYZ.json"), default=None,
                        help="compare the printed outputs of two earlier runs (no programs are run)")
    parser.add_argument("--rel", type=float, default=0.01, help="relative tolerance for printed numbers")
    args = parser.parse_args(argv)
    if args.compare:
        ours, theirs = (json.loads(p.read_text()) for p in args.compare)
        print_comparison(compare(ours, theirs, args.rel))
        return 0

    if args.checkout is None:
        parser.error("give the path of a Pixyz checkout")
    checkout = args.checkout.resolve()
    if not (checkout / "pixyz").is_dir() or not (checkout / "examples").is_dir():
        parser.error(f"{checkout} is not a checkout of masa-su/pixyz (no pixyz/ and examples/ folders)")
    work = (args.out or Path(tempfile.mkdtemp(prefix="pixyz_suite_"))).resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    _prepare_mnist(args.mnist.resolve(), work / "notebooks" / "data")

    report: dict[str, list[dict]] = {"tests": [], "notebooks": []}
    if not args.no_tests:
        report["tests"] = run_tests(checkout, work, args.library, args.tests_timeout)
        for r in report["tests"]:
            print(f"{r['outcome'].upper():7} test {r['name']}")
            if r["outcome"] in ("failed", "error"):
                print("        " + r["message"].strip().splitlines()[0][:300] if r["message"] else "")
    if not args.no_notebooks:
        for path in notebook_paths(checkout, args.tutorials):
            if args.only and path.stem not in args.only:
                continue
            r = run_notebook(path, work, args.library, args)
            report["notebooks"].append(r)
            print(f"{r['outcome'].upper():7} notebook {r['name']} ({r['seconds']} s)", flush=True)
            if r["outcome"] != "passed":
                lines = [ln for ln in r["message"].strip().splitlines() if ln.strip()]
                print("        " + (lines[-1][:400] if lines else ""))
    print()
    if report["tests"]:
        print(_summary("Pixyz tests", report["tests"]))
    if report["notebooks"]:
        print(_summary("Pixyz notebooks", report["notebooks"]))
    print(f"rewritten programs and logs: {work}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    bad = [r for r in report["tests"] + report["notebooks"] if r["outcome"] in ("failed", "error")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
