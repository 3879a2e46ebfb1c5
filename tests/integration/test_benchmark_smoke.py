"""The benchmark runner works end to end on small sizes, and its frameworks agree.

``python -m benchmarks.run --quick --no-probe`` runs W1-W3 through ml4t's three modes,
VectorBT and Backtrader in subprocesses (about 40 s). The run must succeed, every
workload's sanity check must report the same fills (or, for VectorBT on W2 and W3, the
documented "close, not equal"), and every ml4t declarative run must have been compiled.
Timings are not asserted: speed is measured by the benchmarks, not by tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_benchmark_runner_quick_run_agrees(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--no-probe", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    checks = data["checks"]
    assert len(checks) >= 11  # W1: 3, W2: 4, W3: 4 comparisons
    for line in checks:
        assert "same fills" in line or "close, not equal, as expected" in line, line
        if "close, not equal" in line:
            assert "vectorbt" in line and not line.startswith("W1"), line
    assert "DIFFERENT" not in proc.stdout
    modes = {
        (workload, runner): (row.get("metadata") or {}).get("mode")
        for workload, rows in data["results"].items()
        for runner, row in rows.items()
        if runner.startswith("ml4t")
    }
    assert {m for (_, runner), m in modes.items() if runner == "ml4t-signal"} == {"compiled"}
    assert {m for (_, runner), m in modes.items() if runner == "ml4t-batch"} == {"batch"}
