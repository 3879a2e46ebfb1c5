"""Builtin reporters: write a finished run's result to a directory.

A reporter is an object with ``report(result, destination) -> list[Path]``; reporters are
chosen by name (``reporting: {reporters: [parquet, summary]}`` in a config, or
``engine.report(result, "out/", reporters=["parquet"])``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..hookspecs import hookimpl

if TYPE_CHECKING:
    from ..core.results import BacktestResult

__all__ = ["ParquetReporter", "SummaryReporter", "ml4t_register_reporters"]


class ParquetReporter:
    """Write every frame as Parquet plus ``metrics.json`` and ``metadata.json``.

    See :meth:`BacktestResult.to_parquet`.
    """

    def report(self, result: BacktestResult, destination: Path) -> list[Path]:
        """Write the files and return their paths."""
        out = result.to_parquet(destination)
        names = ("trades", "fills", "orders", "portfolio", "account_events")
        return [out / f"{n}.parquet" for n in names] + [out / "metrics.json", out / "metadata.json"]

    def __repr__(self) -> str:
        return "ParquetReporter()"


class SummaryReporter:
    """Write ``summary.txt``: the metrics table of :meth:`BacktestResult.summary`.

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
        path.write_text(result.summary() + "\n")
        return [path]

    def __repr__(self) -> str:
        return f"SummaryReporter(filename={self.filename!r})"


@hookimpl(trylast=True)
def ml4t_register_reporters() -> Iterable[tuple[str, Callable[..., Any]]]:
    """Register ``parquet`` and ``summary``."""
    return [("parquet", ParquetReporter), ("summary", SummaryReporter)]
