"""``ml4t-backtest validate``: table, report, exit status and a clear error outside a checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml4t.backtest.cli import main

pytestmark = pytest.mark.validation

ROOT = Path(__file__).resolve().parents[1]


def test_validate_one_scenario_prints_table_and_writes_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "REPORT.md"
    status = main(
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
    out = capsys.readouterr().out
    assert status == 0
    assert "insufficient_cash" in out and "match" in out
    text = report.read_text()
    assert "| insufficient_cash | match | match |" in text
    assert "## Documented differences" in text


def test_validate_documented_cell_is_listed_with_source(tmp_path: Path) -> None:
    report = tmp_path / "r.md"
    args = ["validate", "--frameworks", "backtrader", "--scenario", "all_in_with_fees"]
    status = main([*args, "--report", str(report), "--root", str(ROOT), "-q"])
    text = report.read_text()
    assert status == 0
    assert "### all_in_with_fees — backtrader" in text
    assert "bbroker.py L853-870" in text


def test_validate_unknown_scenario_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["validate", "--scenario", "no_such", "--root", str(ROOT), "-q"])
    assert status == 2
    assert "unknown scenario(s) ['no_such']" in capsys.readouterr().err


def test_validate_outside_a_checkout_names_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["validate", "--root", str(tmp_path)])
    assert status == 2
    err = capsys.readouterr().err
    assert "no validation/ harness found in" in err and "--root" in err
