"""The README's code runs and prints what the README says it prints."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_vae_runs_and_prints_as_claimed(capsys):
    text = README.read_text()
    code = re.search(r"## A VAE in 15 lines\n\n```python\n(.*?)```", text, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    for claim in re.findall(r"print\(.*?\)\s+# (.*)", code):
        assert claim in out


def test_readme_quick_start_has_exactly_two_commands():
    text = README.read_text()
    block = re.search(r"## Quick start\n.*?```bash\n(.*?)```", text, re.S).group(1)
    commands = [line for line in block.splitlines() if line.strip()]
    assert len(commands) == 2
    assert commands[0].startswith("bash scripts/vae.sh") and commands[1].startswith("bash scripts/test.sh")
    ci = (README.parent / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in ci
