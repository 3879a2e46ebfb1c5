"""The README's promises: the set-up commands CI runs and a quick start that runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _setup_commands() -> list[str]:
    block = re.search(r"## Set up\n.*?```bash\n(.*?)```", README, re.S)
    assert block is not None, "README has no '## Set up' bash block"
    return [ln for ln in block.group(1).splitlines() if ln and not ln.startswith("#")]


def test_readme_has_exactly_two_setup_commands() -> None:
    commands = _setup_commands()
    assert len(commands) == 2
    assert "ml4t-backtest demo" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _setup_commands()[1] in ci


def test_readme_quick_start_runs_as_written(tmp_path: Path) -> None:
    code = re.search(r"## Quick start\n.*?```python\n(.*?)```", README, re.S)
    assert code is not None
    script = tmp_path / "quickstart.py"
    script.write_text(code.group(1))
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "total_return" in proc.stdout
    assert (tmp_path / "quickstart_output" / "trades.parquet").is_file()
