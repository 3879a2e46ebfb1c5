"""The validation matrix as tests: every scenario × VectorBT/Backtrader, and our own modes.

A cell passes when it matches within the scenario's tolerance, or when the scenario
documents why it differs *and* the difference shows (a documented difference that has
vanished fails as stale). Cells the framework cannot express must say why. Our own modes
(per-bar strategy, config, batch, declarative) must agree exactly; the declarative mode
must run for every scenario that long-only signals with a fixed or single-asset
percent-of-equity size can express, and reach the Numba kernel where its documented
conditions hold. Deselect locally with ``-m 'not validation'``; Zipline cells run with
``-m zipline`` (``validation/runners/test_zipline_runner.py`` and the last test below).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

from validation.harness import Cell, run_cell, write_report
from validation.runners import ml4t as ml4t_runner
from validation.scenario import Scenario, Signals, Unsupported
from validation.scenarios import SCENARIOS

pytestmark = pytest.mark.validation

NAMES = list(SCENARIOS)


@pytest.mark.parametrize("framework", ["vectorbt", "backtrader"])
@pytest.mark.parametrize("name", NAMES)
def test_scenario_agrees_with_framework_or_documents_why(name: str, framework: str) -> None:
    scenario = SCENARIOS[name]
    cell = run_cell(scenario, framework)
    assert cell.status in ("match", "documented", "n/a"), f"{cell.status}: {cell.detail}"
    if cell.status == "n/a":
        assert cell.detail, "a cell that cannot run must say why"
        return
    assert cell.ours is not None and cell.theirs is not None
    assert cell.ours.fills, "a scenario that trades nothing proves nothing"
    if cell.status == "documented":
        diff = scenario.differences[framework]
        assert diff.reason and diff.source
        assert cell.comparison is not None and not cell.comparison.ok


@cache
def _modes(name: str) -> Cell:
    return run_cell(SCENARIOS[name], "modes")


def _declarable(sc: Scenario) -> bool:
    """What a SignalStrategy with signal rules, not_in_position and Fixed/PercentSizer says.

    Long-only signals (an entry never on an exit's bar: SignalStrategy does not re-enter
    on the bar it exits), sized by a fixed count or, for a single asset entered while flat
    (cash = equity), by a fraction of equity.
    """
    prog, size = sc.compiled, sc.sizing.kind
    return (
        isinstance(prog, Signals)
        and sc.direction == "long_only"
        and not (prog.entries & prog.exits).any()
        and (size == "fixed" or (size == "percent_equity" and len(sc.bars.assets) == 1))
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_modes_agree_exactly(name: str) -> None:
    cell = _modes(name)
    assert cell.status == "match", cell.detail
    presets = ", ".join(f for f in SCENARIOS[name].frameworks)
    if _declarable(SCENARIOS[name]):
        assert cell.detail.startswith(f"strategy = config = batch = declarative for {presets};")
    else:
        head, _, reason = cell.detail.partition("; declarative skipped: ")
        assert head == f"strategy = config = batch for {presets}" and reason, cell.detail


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NAMES if _declarable(SCENARIOS[n])])
def test_modes_declarative_path_is_reported(name: str) -> None:
    """The vectorbt and backtrader presets run the declarative mode in the kernel; the
    zipline preset runs it compiled unless its volume limit is on (then on the event path,
    with the reason). Every preset's path is reported."""
    detail = _modes(name).detail
    ran = detail.partition("; declarative ran ")[2]
    path = {
        preset: how
        for how, group in re.findall(r"(compiled|event: .*?) \(([^()]*)\)", ran)
        for preset in group.split(", ")
    }
    assert set(path) == set(SCENARIOS[name].frameworks), detail
    for preset, how in path.items():
        if preset in ("vectorbt", "backtrader"):
            assert how == "compiled", detail
        else:
            assert how == "compiled" or how == "event: volume_limit is set", detail


@pytest.mark.slow
def test_modes_report_section_lists_what_ran(tmp_path: Path) -> None:
    names = ["stop_loss_take_profit", "long_short_reversal"]
    report = tmp_path / "REPORT.md"
    write_report([_modes(n) for n in names], SCENARIOS, ["modes"], report, {})
    text = report.read_text()
    modes = text[text.index("## Modes") : text.index("## Scenarios")]
    assert "- **stop_loss_take_profit**: strategy = config = batch = declarative for" in modes
    assert "declarative ran compiled (vectorbt, backtrader)" in modes
    assert "- **long_short_reversal**: strategy = config = batch for vectorbt, backtrader;" in modes
    assert "declarative skipped: short positions" in modes


def test_modes_runner_rejects_what_it_cannot_declare() -> None:
    with pytest.raises(Unsupported, match="short positions"):
        ml4t_runner.run(SCENARIOS["long_short_reversal"], "backtrader", "declarative")
    with pytest.raises(Unsupported, match="explicit orders"):
        ml4t_runner.run(SCENARIOS["insufficient_cash"], "backtrader", "declarative")
    with pytest.raises(ValueError, match="unknown mode 'vector'"):
        ml4t_runner.run(SCENARIOS["insufficient_cash"], "backtrader", "vector")


@pytest.mark.zipline
@pytest.mark.parametrize("name", [n for n in NAMES if "zipline" in SCENARIOS[n].frameworks])
def test_zipline_scenario_agrees_or_documents_why(name: str) -> None:
    scenario = SCENARIOS[name]
    cell = run_cell(scenario, "zipline")
    assert cell.status in ("match", "documented", "n/a"), f"{cell.status}: {cell.detail}"
    if cell.status != "n/a":
        assert cell.ours is not None and cell.ours.fills
