"""The validation matrix as tests: every scenario × VectorBT/Backtrader, and our own modes.

A cell passes when it matches within the scenario's tolerance, or when the scenario
documents why it differs *and* the difference shows (a documented difference that has
vanished fails as stale). Cells the framework cannot express must say why. Deselect locally
with ``-m 'not validation'``; Zipline cells run with ``-m zipline``
(``validation/runners/test_zipline_runner.py`` and the last test below).
"""

from __future__ import annotations

import pytest

from validation.harness import run_cell
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


@pytest.mark.parametrize("name", NAMES)
def test_python_api_and_config_runs_agree(name: str) -> None:
    cell = run_cell(SCENARIOS[name], "modes")
    assert cell.status == "match", cell.detail


@pytest.mark.zipline
@pytest.mark.parametrize("name", [n for n in NAMES if "zipline" in SCENARIOS[n].frameworks])
def test_zipline_scenario_agrees_or_documents_why(name: str) -> None:
    scenario = SCENARIOS[name]
    cell = run_cell(scenario, "zipline")
    assert cell.status in ("match", "documented", "n/a"), f"{cell.status}: {cell.detail}"
    if cell.status != "n/a":
        assert cell.ours is not None and cell.ours.fills
