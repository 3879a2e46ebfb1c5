"""``ml4t-backtest validate``: table, report, exit status and a clear error outside a checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.validation

ROOT = Path(__file__).resolve().parents[1]


def cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run the command line as a user does: ``python -m ml4t.backtest ...``."""
    return subprocess.run(
        [sys.executable, "-m", "ml4t.backtest", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def test_validate_one_scenario_prints_table_and_writes_report(tmp_path: Path) -> None:
    report = tmp_path / "REPORT.md"
    proc = cli(
        [
            "validate",
            "--frameworks",
            "backtrader",
            "--scenario",
            "insufficient_cash",
            "--report",
            str(report),
            "--root",
            str(ROOT),
            "-q",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    assert "insufficient_cash" in proc.stdout and "match" in proc.stdout
    text = report.read_text()
    assert "| insufficient_cash | match | match |" in text
    assert "## Documented differences" in text


def test_validate_documented_cell_is_listed_with_source(tmp_path: Path) -> None:
    report = tmp_path / "r.md"
    args = ["validate", "--frameworks", "backtrader", "--scenario", "all_in_with_fees"]
    proc = cli([*args, "--report", str(report), "--root", str(ROOT), "-q"])
    text = report.read_text()
    assert proc.returncode == 0, proc.stderr
    assert "### all_in_with_fees — backtrader" in text
    assert "bbroker.py L853-870" in text


def test_validate_unknown_scenario_exits_2() -> None:
    proc = cli(["validate", "--scenario", "no_such", "--root", str(ROOT), "-q"])
    assert proc.returncode == 2
    assert "unknown scenario(s) ['no_such']" in proc.stderr


def test_validate_outside_a_checkout_names_the_problem(tmp_path: Path) -> None:
    proc = cli(["validate", "--root", str(tmp_path)])
    assert proc.returncode == 2
    assert "no validation/ harness found in" in proc.stderr and "--root" in proc.stderr
