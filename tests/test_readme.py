"""The README is true: its code runs and prints what it says, its headline counts are right, and its
commands and claims match the scripts and ``pyproject.toml``."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _text() -> str:
    return README.read_text()


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_readme_code_runs_and_prints_as_claimed(capsys, tmp_path, monkeypatch):
    """Every ``python`` block runs, in order, in one namespace; every ``print(...)  # text`` prints
    ``text``, and a trailing ``# a b`` comment on a print names the whole line it prints."""
    monkeypatch.chdir(tmp_path)  # fit() writes runs/readme/ under the current directory
    blocks = _python_blocks(_text())
    assert len(blocks) >= 2, "the README's VAE and training blocks were not found"
    namespace: dict = {"__name__": "__readme__"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"README.md[python block {i}]", "exec"), namespace)
        out = capsys.readouterr().out.splitlines()
        claims = re.findall(r"^print\(.*\)\s+# (.*)$", code, flags=re.MULTILINE)
        for claim in claims:
            assert claim.strip() in (line.strip() for line in out), (claim, out)
    assert (tmp_path / "runs" / "readme" / "ckpt.pt").is_file()
    assert list((tmp_path / "runs" / "readme").glob("events.out.tfevents.*"))


def test_vae_heading_counts_the_lines_of_its_block():
    text = _text()
    m = re.search(r"^## A VAE in (\d+) lines\n\n```python\n(.*?)```", text, flags=re.MULTILINE | re.DOTALL)
    assert m, "the README's 'A VAE in N lines' section is missing"
    lines = [line for line in m.group(2).splitlines() if line.strip()]
    assert len(lines) == int(m.group(1)), f"the heading says {m.group(1)} lines; the block has {len(lines)}"
    # The sentence under the block repeats the count.
    assert f"({m.group(1)} lines of code" in text


def test_readme_quick_start_has_exactly_two_commands():
    text = _text()
    block = re.search(r"## Quick start\n.*?```bash\n(.*?)```", text, re.S).group(1)
    commands = [line for line in block.splitlines() if line.strip()]
    assert len(commands) == 2
    assert commands[0].startswith("bash scripts/vae.sh") and commands[1].startswith("bash scripts/test.sh")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in ci


def test_readme_shows_the_training_api():
    """The quick start shows fit, checkpoint/resume, schedules and callbacks, not only a hand loop."""
    code = "\n".join(_python_blocks(_text()))
    for needle in ("model.fit(", "checkpoint=", "resume=", "schedules=", "linear_warmup", "Callback"):
        assert needle in code, f"no {needle!r} in the README's code"


def test_python_version_claim_matches_pyproject_and_env_script():
    """The README claims the interpreter versions pyproject requires and .ci/env.sh enforces."""
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"
    text = _text()
    assert "Python 3.11 or newer" in text and "Python 3.11 is the version CI tests" in text
    assert "3.10" not in text
    assert "sys.version_info < (3, 11)" in (ROOT / ".ci" / "env.sh").read_text()


def test_readme_extras_exist():
    """Every ``pip install -e ".[extra]"`` the README shows names extras pyproject defines."""
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    named = {e.strip() for group in re.findall(r'\.\[([\w,\s-]+)\]', _text()) for e in group.split(",")}
    assert named, "the README names no extra"
    assert named <= extras, f"extras named in the README but not in pyproject.toml: {named - extras}"
