"""Builtin reporters: write a finished run's result to a directory.

A reporter is an object with ``report(result, destination) -> list[Path]``; reporters are
chosen by name (``reporting: {reporters: [parquet, summary]}`` in a config, or
``engine.report(result, "out/", reporters=["parquet"])``).

The same result always gives the same bytes: values of the wall clock (the result's
``created_at``, its elapsed time) are left out of the files the reporters write. The run
manifest of ``ml4t-backtest run`` (``run_manifest.json``) records them instead.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..markers import hookimpl

if TYPE_CHECKING:
    from ..core.results import BacktestResult

__all__ = ["WALL_CLOCK_KEYS", "ParquetReporter", "SummaryReporter", "ml4t_register_reporters"]

#: metadata keys whose values depend on when (or where) the run happened, not on its input
WALL_CLOCK_KEYS = ("created_at",)
_FRAMES = ("trades", "exit_trades", "fills", "orders", "portfolio", "account_events")


def reproducible(result: BacktestResult) -> BacktestResult:
    """Return a shallow copy of ``result`` whose metadata has no wall-clock values."""
    if not any(key in result.metadata for key in WALL_CLOCK_KEYS):
        return result
    out = copy.copy(result)
    out.metadata = {k: v for k, v in result.metadata.items() if k not in WALL_CLOCK_KEYS}
    return out


class ParquetReporter:
    """Write every frame as Parquet plus ``metrics.json`` and ``metadata.json``.

    See :meth:`BacktestResult.to_parquet`. The metadata written (in ``metadata.json`` and
    in each Parquet file's key-value metadata) leaves out :data:`WALL_CLOCK_KEYS`, so the
    same run writes the same bytes.
    """

    def report(self, result: BacktestResult, destination: Path) -> list[Path]:
        """Write the files and return their paths."""
        out = reproducible(result).to_parquet(destination)
        frames = [out / f"{n}.parquet" for n in _FRAMES if (out / f"{n}.parquet").is_file()]
        return [*frames, out / "metrics.json", out / "metadata.json"]

    def __repr__(self) -> str:
        return "ParquetReporter()"


class SummaryReporter:
    """Write ``summary.txt``: the metrics table of :meth:`BacktestResult.summary`.

    The ``elapsed_time`` row (wall-clock seconds) is left out, so the same run writes the
    same bytes.

    Parameters
    ----------
    filename : str, default "summary.txt"
        Name of the file written in the destination directory.
    """

    def __init__(self, filename: str = "summary.txt") -> None:
        if not filename or Path(filename).name != filename:
            raise ValueError(f"filename must be a plain file name, got {filename!r}")
        self.filename = filename

    def report(self, result: BacktestResult, destination: Path) -> list[Path]:
        """Write the summary and return its path."""
        path = Path(destination) / self.filename
        rows = [r for r in result.summary().splitlines() if not r.startswith("elapsed_time ")]
        path.write_text("\n".join(rows) + "\n")
        return [path]

    def __repr__(self) -> str:
        return f"SummaryReporter(filename={self.filename!r})"


@hookimpl(trylast=True)
def ml4t_register_reporters() -> Iterable[tuple[str, Callable[..., Any]]]:
    """Register ``parquet`` and ``summary``."""
    return [("parquet", ParquetReporter), ("summary", SummaryReporter)]
