"""``ml4t-backtest validate``: run the matrix, print the table, write the report."""

from __future__ import annotations

import argparse
import platform
import sys
from importlib import metadata
from pathlib import Path

from .harness import STATUSES, Cell, format_table, run_matrix, write_report
from .scenario import FRAMEWORKS
from .scenarios import SCENARIOS

__all__ = ["main"]

#: exit status when a cell is a mismatch, stale documentation or an error
FAILED = 3


def _versions(frameworks: list[str]) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("ml4t-backtest", "vectorbt", "backtrader", "numpy", "pandas", "polars"):
        if dist in ("vectorbt", "backtrader") and dist not in frameworks:
            continue
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    if "zipline" in frameworks:
        out["zipline-reloaded"] = "3.2.1 (own virtual environment)"
    return out


def main(args: argparse.Namespace, root: Path) -> int:
    """Run ``ml4t-backtest validate`` with parsed ``args`` in checkout ``root``."""
    if args.list:
        for name, sc in SCENARIOS.items():
            print(f"{name:34s} {sc.fill_timing:15s} {','.join(sc.frameworks):30s}")
        return 0
    frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    unknown = [f for f in frameworks if f not in FRAMEWORKS]
    if unknown:
        print(
            f"validate: unknown framework(s) {unknown}; choose from {FRAMEWORKS}", file=sys.stderr
        )
        return 2
    names = args.scenario or list(SCENARIOS)
    missing = [n for n in names if n not in SCENARIOS]
    if missing:
        print(f"validate: unknown scenario(s) {missing}; see --list", file=sys.stderr)
        return 2
    columns = [*frameworks, "modes"]

    def progress(cell: Cell) -> None:
        if not args.quiet:
            print(f"  {cell.scenario} / {cell.framework}: {cell.status}", file=sys.stderr)

    cells = run_matrix([SCENARIOS[n] for n in names], columns, progress)
    print(format_table(cells, columns))
    report = Path(args.report) if args.report else root / "validation" / "REPORT.md"
    write_report(cells, SCENARIOS, columns, report, _versions(frameworks))
    if not args.quiet:
        print(f"wrote {report}")
    bad = [c for c in cells if c.status in STATUSES[2:4] or c.status == "error"]
    for c in bad:
        print(f"{c.status}: {c.scenario} / {c.framework}: {c.detail.strip()}", file=sys.stderr)
    return FAILED if bad else 0
