"""Lint and type checks run as part of the test suite, so CI enforces them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_SOURCES = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("plugins/*/src"))


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_lint_passes() -> None:
    proc = _run("ruff", "check", "src", "tests", "benchmarks", "examples", "plugins")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format_is_clean() -> None:
    proc = _run("ruff", "format", "--check", "src", *PLUGIN_SOURCES)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict_passes_on_src() -> None:
    proc = _run("mypy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
