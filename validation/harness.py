"""Run the scenario × framework matrix, classify each cell, print the table, write the report.

Each cell runs the scenario through ml4t.backtest with the framework's preset and through
the framework itself, and compares the two (:mod:`validation.compare`). A cell is

``match``
    within the scenario's named tolerance;
``documented``
    outside it, and the scenario documents why (the report lists the reason, the source
    and the measured size);
``mismatch``
    outside it with no documented reason: a bug on one side, to be found;
``stale``
    the scenario documents a difference that no longer shows: the documentation is wrong;
``n/a``
    the framework cannot express the scenario (the runner says why) or the scenario is
    not meant for it;
``error``
    a runner failed.

Our own modes must agree exactly (the ``modes`` column): per scenario and preset, the
per-bar strategy through the Python API, the same run built from a config
(``execution.preset``), the batch strategy and the declarative ``SignalStrategy`` give the
same fills, equity, cash and rejections. A scenario the declarative mode cannot express is
skipped for it (the detail says why). The detail also says whether the declarative mode ran
in the Numba kernel (``compiled``) or fell back to the event path, and why.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

from .compare import Comparison, compare, tolerance
from .runners import ml4t as ml4t_runner
from .scenario import FRAMEWORKS, RunResult, Scenario, Unsupported

__all__ = ["Cell", "format_table", "run_cell", "run_matrix", "write_report"]

STATUSES = ("match", "documented", "mismatch", "stale", "n/a", "error")


def _runner(framework: str) -> Callable[[Scenario], RunResult]:
    module = import_module(f"validation.runners.{framework}")
    fn: Callable[[Scenario], RunResult] = module.run
    return fn


@dataclass
class Cell:
    """One scenario × framework result."""

    scenario: str
    framework: str
    status: str
    detail: str
    comparison: Comparison | None = None
    seconds: float = 0.0
    ours: RunResult | None = None
    theirs: RunResult | None = None


def run_cell(scenario: Scenario, framework: str) -> Cell:
    """Run one scenario through ml4t (with ``framework``'s preset) and ``framework``."""
    start = time.perf_counter()
    name = scenario.name
    if framework == "modes":
        return _modes_cell(scenario, start)
    if framework not in scenario.frameworks:
        return Cell(name, framework, "n/a", "not part of this scenario")
    try:
        theirs = _runner(framework)(scenario)
    except Unsupported as exc:
        return Cell(name, framework, "n/a", f"cannot express: {exc}")
    except Exception:
        return Cell(name, framework, "error", traceback.format_exc(limit=6))
    try:
        ours = ml4t_runner.run(scenario, framework)
    except Exception:
        return Cell(name, framework, "error", "ml4t: " + traceback.format_exc(limit=6))
    cmp = compare(ours, theirs, tolerance(scenario.tolerance))
    documented = scenario.differences.get(framework)
    if cmp.ok:
        status = "stale" if documented else "match"
        detail = cmp.size()
        if documented:
            detail = f"documented difference not observed ({documented.reason})"
    elif documented:
        status, detail = "documented", cmp.size()
    else:
        status, detail = "mismatch", "; ".join(cmp.problems[:3])
    seconds = time.perf_counter() - start
    return Cell(name, framework, status, detail, cmp, seconds, ours, theirs)


def _disagreement(a: RunResult, b: RunResult) -> list[str]:
    """Return how two runs of our own engine differ (empty when identical)."""
    tol = tolerance("exact")
    cmp = compare(a, b, tol)
    problems = list(cmp.problems)
    if not problems and a.fills != b.fills:
        k = next(i for i, (x, y) in enumerate(zip(a.fills, b.fills, strict=True)) if x != y)
        problems.append(f"fill {k}: {a.fills[k]} vs {b.fills[k]}")
    if not problems and cmp.cash_abs > tol.money_abs:
        problems.append(f"cash differs by up to {cmp.cash_abs:.6g}")
    if a.rejected != b.rejected:
        problems.append(f"{a.rejected} rejected orders vs {b.rejected}")
    return problems


def _modes_cell(scenario: Scenario, start: float) -> Cell:
    """Require every mode of our engine to agree exactly, for every preset the scenario uses.

    Compares the ``strategy`` run with ``config``, ``batch`` and ``declarative`` (the last
    unless :func:`~validation.runners.ml4t.declarative_problem` says the scenario cannot be
    declared).
    """
    name = scenario.name
    presets = [f for f in scenario.frameworks if f in FRAMEWORKS]
    skip = ml4t_runner.declarative_problem(scenario)
    modes = [m for m in ml4t_runner.MODES if not (skip and m == "declarative")]
    problems: list[str] = []
    paths: dict[str, str] = {}  # preset -> "compiled" or "event: why"
    for preset in presets:
        runs: dict[str, RunResult] = {}
        current = ""
        try:
            for current in modes:
                runs[current] = ml4t_runner.run(scenario, preset, current)
        except Exception:
            failed = f"ml4t[{preset}] {current}: "
            return Cell(name, "modes", "error", failed + traceback.format_exc(limit=6))
        for x, y in [("strategy", m) for m in modes[1:]]:
            bad = _disagreement(runs[x], runs[y])
            if bad:
                problems.append(f"{preset} {x} vs {y}: " + "; ".join(bad[:2]))
        if "declarative" in runs:
            paths[preset] = runs["declarative"].notes[0]
    seconds = time.perf_counter() - start
    if problems:
        return Cell(name, "modes", "mismatch", " | ".join(problems), seconds=seconds)
    detail = f"{' = '.join(modes)} for {', '.join(presets)}"
    if skip:
        detail += f"; declarative skipped: {skip}"
    else:
        detail += f"; declarative ran {_grouped(paths)}"
    return Cell(name, "modes", "match", detail, seconds=seconds)


def _grouped(paths: dict[str, str]) -> str:
    """``{"vectorbt": "compiled", "zipline": "compiled"}`` -> ``"compiled (vectorbt, zipline)"``."""
    by: dict[str, list[str]] = {}
    for preset, how in paths.items():
        by.setdefault(how, []).append(preset)
    return ", ".join(f"{how} ({', '.join(presets)})" for how, presets in by.items())


def run_matrix(
    scenarios: Iterable[Scenario],
    frameworks: Sequence[str],
    progress: Callable[[Cell], None] | None = None,
) -> list[Cell]:
    """Run every scenario through every framework (plus ``"modes"`` if listed)."""
    cells = []
    for sc in scenarios:
        for fw in frameworks:
            cell = run_cell(sc, fw)
            cells.append(cell)
            if progress is not None:
                progress(cell)
    return cells


def _deviation(cell: Cell) -> str:
    c = cell.comparison
    if c is None:
        return ""
    parts = []
    if c.price_rel:
        parts.append(f"px {c.price_rel:.1e}")
    if c.equity_abs:
        parts.append(f"eq {c.equity_abs:.2g}")
    return " ".join(parts) or "0"


def format_table(cells: Sequence[Cell], frameworks: Sequence[str]) -> str:
    """Return the scenario × framework table as fixed-width text."""
    names = list(dict.fromkeys(c.scenario for c in cells))
    by = {(c.scenario, c.framework): c for c in cells}
    width = max([len(n) for n in names] + [8])
    col = 30
    lines = ["scenario".ljust(width) + "".join(f" | {fw:<{col}}" for fw in frameworks)]
    lines.append("-" * len(lines[0]))
    for n in names:
        row = n.ljust(width)
        for fw in frameworks:
            cell = by.get((n, fw))
            text = "" if cell is None else f"{cell.status} {_deviation(cell)}".strip()
            row += f" | {text[:col]:<{col}}"
        lines.append(row)
    counts = {s: sum(1 for c in cells if c.status == s) for s in STATUSES}
    lines.append("")
    lines.append(", ".join(f"{k}: {v}" for k, v in counts.items() if v))
    return "\n".join(lines)


def write_report(
    cells: Sequence[Cell],
    scenarios: dict[str, Scenario],
    frameworks: Sequence[str],
    path: Path,
    versions: dict[str, str],
) -> None:
    """Write the Markdown report: the matrix, every documented difference, every problem."""
    names = list(dict.fromkeys(c.scenario for c in cells))
    by = {(c.scenario, c.framework): c for c in cells}
    out = [
        "# Validation report",
        "",
        "Generated by `ml4t-backtest validate`; each cell compares ml4t.backtest run with "
        "the framework's preset against the framework itself (fills, round-trip trades, "
        "equity at every bar). `modes` requires our own modes to agree exactly for each "
        "preset: the per-bar strategy through the Python API, the config-built run, the "
        "batch strategy and the declarative `SignalStrategy` (see *Modes* below). "
        "Tolerances: `validation/tolerances.toml`. Scenarios: `validation/scenarios/`.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
        "| scenario | " + " | ".join(frameworks) + " |",
        "|---|" + "---|" * len(frameworks),
    ]
    for n in names:
        row = [n]
        for fw in frameworks:
            cell = by.get((n, fw))
            if cell is None:
                row.append("")
            elif cell.status == "documented":
                row.append(f"documented ({_deviation(cell)})")
            else:
                row.append(cell.status)
        out.append("| " + " | ".join(row) + " |")
    out += ["", "## Documented differences", ""]
    for n in names:
        sc = scenarios[n]
        for fw in frameworks:
            cell = by.get((n, fw))
            diff = sc.differences.get(fw)
            if cell is None or diff is None:
                continue
            out.append(f"### {n} — {fw}")
            out.append("")
            out.append(f"- **Why**: {diff.reason}")
            out.append(f"- **Source**: {diff.source}")
            out.append(f"- **Measured**: {cell.detail} ({cell.status})")
            out.append("")
    out += ["## Not expressible", ""]
    for c in cells:
        if c.status == "n/a" and c.detail.startswith("cannot express"):
            out.append(f"- **{c.scenario} — {c.framework}**: {c.detail[len('cannot express: ') :]}")
    problems = [c for c in cells if c.status in ("mismatch", "stale", "error")]
    out += ["", "## Problems", ""]
    if not problems:
        out.append(
            "None: every cell matches, carries a documented difference or cannot be "
            "expressed by the framework."
        )
    for c in problems:
        out.append(f"- **{c.scenario} — {c.framework}** ({c.status}): {c.detail.strip()}")
    modes = [c for c in cells if c.framework == "modes" and c.status == "match"]
    if modes:
        out += ["", "## Modes", ""]
        out.append(
            "Which modes ran for each scenario, and whether the declarative mode ran in the "
            "Numba kernel (`compiled`) or on the event path (with the reason)."
        )
        out.append("")
        out += [f"- **{c.scenario}**: {c.detail}" for c in modes]
    out += ["", "## Scenarios", ""]
    for n in names:
        sc = scenarios[n]
        out.append(f"- **{n}** ({sc.fill_timing}, tolerance `{sc.tolerance}`): {sc.description}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("\n".join(out) + "\n")
    tmp.replace(path)
