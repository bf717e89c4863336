"""What a newcomer gets: the built wheel's files and metadata, the project files, the extras the docs
and examples name, and the two scripts run from another directory.

The script tests use the environment the scripts build (``.ci/env.sh``) and never build one: with
``PIXYZ_LIKE_ENV_REUSE_ONLY=1`` the script stops (status 3) when it is not built, and the test is
skipped saying so. CI runs them: ``bash scripts/test.sh`` has just built it.
"""

from __future__ import annotations

import ast
import email
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]


def _requirement_names(reqs: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in reqs}


# ------------------------------------------------------------------ the wheel
@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The wheel built from a copy of the sources (building in the clone would leave build/ there)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "pixyz_like", src / "pixyz_like", ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist"),
         str(src)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"pip wheel failed:\n{proc.stdout}\n{proc.stderr}"
    (path,) = (tmp / "dist").glob("pixyz_like-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_ships_the_package_its_type_marker_and_license(wheel):
    names = set(wheel.namelist())
    assert "pixyz_like/py.typed" in names
    licenses = [n for n in names if re.fullmatch(r"pixyz_like-[^/]+\.dist-info/licenses/LICENSE", n)]
    assert licenses and "MIT License" in wheel.read(licenses[0]).decode()
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "pixyz_like").rglob("*.py")}
    assert sources <= names, f"modules missing from the wheel: {sorted(sources - names)[:5]}"
    outside = {n.split("/")[0] for n in names} - {"pixyz_like"} - {n.split("/")[0] for n in names
                                                                      if ".dist-info/" in n}
    assert not outside, f"the wheel holds more than the package: {outside}"


def test_wheel_metadata(wheel):
    (meta_name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    meta = email.message_from_bytes(wheel.read(meta_name))
    assert meta["License-Expression"] == "MIT" and meta["License-File"] == "LICENSE"
    assert meta["Requires-Python"] == PROJECT["requires-python"]
    assert set(meta.get_all("Provides-Extra")) == set(EXTRAS)
    urls = meta.get_all("Project-URL") or []
    assert urls and all(re.fullmatch(r"[^,]+, https://\S+", u) for u in urls), urls


# ------------------------------------------------------------------ project files
def test_project_files_exist_and_say_what_they_should():
    assert PROJECT["license"] == "MIT"
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in license_text
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text()
    assert PROJECT["version"] in (ROOT / "CHANGELOG.md").read_text()
    assert (ROOT / "pixyz_like" / "py.typed").is_file()


def test_contributing_covers_tests_benchmarks_docs_and_the_pixyz_suite():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    assert "bash scripts/test.sh" in text and "mkdocs" in text
    assert "scripts/pixyz_suite.py" in text
    benchmarks = sorted(p.name for p in (ROOT / "benchmarks").glob("bench_*.py"))
    assert benchmarks
    missing = [b for b in benchmarks if f"benchmarks/{b}" not in text]
    assert not missing, f"benchmarks not described in CONTRIBUTING.md: {missing}"


def test_every_example_names_the_examples_extra_and_it_installs_their_imports():
    scripts = sorted(p for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))
    assert scripts
    lacking = [p.name for p in scripts if 'pixyz_like[examples]' not in (ast.get_docstring(ast.parse(p.read_text()))
                                                                          or "")]
    assert not lacking, f'examples whose docstring does not say: pip install "pixyz_like[examples]": {lacking}'
    imported = set()
    for path in (ROOT / "examples").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    provided = _requirement_names(PROJECT["dependencies"] + EXTRAS["examples"]) | {"pixyz_like", "tensorboardx"}
    local = {p.stem for p in (ROOT / "examples").glob("*.py")}
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m not in local}
    assert {m.lower() for m in third_party} <= provided, sorted(third_party - provided)


def test_jupyter_commands_in_the_docs_come_with_an_extra_that_installs_jupyter():
    pages = {p: p.read_text() for p in (ROOT / "docs").rglob("*.md")}
    pages[ROOT / "README.md"] = (ROOT / "README.md").read_text()
    for path, text in pages.items():
        if not re.search(r"^jupyter ", text, flags=re.MULTILINE):
            continue
        named = {e for group in re.findall(r'\.\[([\w,]+)\]', text) for e in group.split(",")}
        jupyter = [e for e in named if {"jupyterlab", "nbconvert"} <= _requirement_names(EXTRAS.get(e, []))]
        assert jupyter, f"{path.name} shows jupyter commands but none of the extras it names installs Jupyter"


def test_ci_installs_the_optional_packages_the_tests_use():
    env = (ROOT / ".ci" / "env.sh").read_text()
    m = re.search(r'"\$root\[([\w,]+)\]"', env)
    assert m, "env.sh installs no extras"
    installed = set(m.group(1).split(","))
    assert {"test", "docs", "examples", "lightning", "wandb", "tensorboard"} <= installed
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


# ------------------------------------------------------------------ the scripts, from elsewhere
def _idx(path: Path, data: bytes, dims: tuple[int, ...], magic: int) -> None:
    header = bytes([0, 0, 8, magic]) + b"".join(d.to_bytes(4, "big") for d in dims)
    path.write_bytes(header + data)


def _tiny_mnist(folder: Path) -> None:
    """Both MNIST splits as IDX files, 64 and 16 random digits: found without any download."""
    folder.mkdir(parents=True)
    rng = __import__("random").Random(0)
    for prefix, n in (("train", 64), ("t10k", 16)):
        _idx(folder / f"{prefix}-images-idx3-ubyte", bytes(rng.randrange(256) for _ in range(n * 784)), (n, 28, 28), 3)
        _idx(folder / f"{prefix}-labels-idx1-ubyte", bytes(rng.randrange(10) for _ in range(n)), (n,), 1)


def _run_script(script: str, args: list[str], cwd: Path, timeout: float = 480) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIXYZ_LIKE_ENV_REUSE_ONLY": "1"}
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode == 3 and "PIXYZ_LIKE_ENV_REUSE_ONLY" in proc.stderr:
        pytest.skip("the scripts' environment is not built on this machine (bash scripts/test.sh builds it)")
    return proc


def test_vae_script_from_another_directory_reads_paths_from_there(tmp_path):
    _tiny_mnist(tmp_path / "mnist")
    proc = _run_script("vae.sh", ["--data-dir", "mnist", "--out", "results", "--epochs", "1", "--batch-size", "16",
                                  "--no-progress"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert f"64 training / 16 test images, MNIST from {tmp_path / 'mnist'}" in out
    assert out.count("Loss:") == 1 and out.count(r"D_{KL}") == 1  # the formula once
    assert "param_groups" not in out and "betas" not in out  # no optimizer dump
    assert f"Wrote to {tmp_path / 'results'}:" in out.splitlines()[-4]
    assert (tmp_path / "results" / "samples_epoch1.png").is_file()
    assert list((tmp_path / "results").glob("events.out.tfevents.*"))


def test_vae_script_missing_data_is_one_clear_message(tmp_path):
    proc = _run_script("vae.sh", ["--data-dir", "no/such/folder"], cwd=tmp_path)
    assert proc.returncode != 0
    assert f"no such folder: {tmp_path / 'no' / 'such' / 'folder'}" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_vae_example_offline_without_data_prints_no_traceback(tmp_path, monkeypatch):
    """No data and no network: the loader's message (with the folder it looked in) and nothing else."""
    code = ("import sys, runpy, torchvision.datasets as d\n"
            "def offline(*a, **k): raise RuntimeError('Error downloading train-images-idx3-ubyte.gz')\n"
            "d.MNIST = offline\n"
            "sys.argv = ['vae.py', '--data-dir', 'empty']\n"
            f"runpy.run_path({str(ROOT / 'examples' / 'vae.py')!r}, run_name='__main__')\n")
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr, proc.stderr
    assert f"MNIST is not under {tmp_path / 'empty'}" in proc.stderr and "--data-dir" in proc.stderr


def test_test_script_from_another_directory_takes_the_callers_paths(tmp_path):
    test = "::test_vae_heading_counts_the_lines_of_its_block"
    target = os.path.relpath(ROOT / "tests" / "test_readme.py", tmp_path) + test
    proc = _run_script("test.sh", [target, "-p", "no:cacheprovider"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"^All checks passed!", proc.stdout, flags=re.MULTILINE)  # ruff ran
    assert re.match(r"1 passed in ", proc.stdout.splitlines()[-1]), proc.stdout[-500:]  # that test only
