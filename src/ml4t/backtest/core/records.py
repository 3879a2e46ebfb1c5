"""Values a strategy records with :meth:`~ml4t.backtest.Strategy.record`.

Kept as ``(timestamp index, name, value)`` while the run goes; turned into
``result.records_df`` once: one row per timestamp of the run (the rows of
``portfolio_df``), one column per recorded name, each value carried forward until it is
recorded again (as Zipline's ``record`` does) and null before its first record.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real
from typing import Any

import numpy as np
import polars as pl

__all__ = ["check_record_name", "records_frame"]


def check_record_name(name: str) -> None:
    """Raise ``ValueError`` for a name that cannot be a ``records_df`` column."""
    if not name.isidentifier():
        raise ValueError(f"record() names must be identifiers, got {name!r}")
    if name == "timestamp":
        raise ValueError("record(timestamp=...) is not allowed: records_df has that column")


def records_frame(records: Sequence[tuple[int, str, Any]], timestamps: pl.Series) -> pl.DataFrame:
    """Build ``records_df`` from the recorded values and the run's timestamps.

    Numbers become ``Float64`` columns, booleans ``Boolean``, strings ``String``; any
    other value (a Series, a dict) is kept as it is in an ``Object`` column. Within one
    timestamp the last value recorded wins.
    """
    n = timestamps.len()
    by_name: dict[str, list[tuple[int, Any]]] = {}
    for index, name, value in records:
        if 0 <= index < n:
            by_name.setdefault(name, []).append((index, value))
    columns: list[pl.Series] = [timestamps.alias("timestamp")]
    for name in sorted(by_name):
        columns.append(_column(name, by_name[name], n))
    return pl.DataFrame(columns)


def _column(name: str, entries: list[tuple[int, Any]], n: int) -> pl.Series:
    values = [v for _, v in entries]
    idx = np.fromiter((i for i, _ in entries), dtype=np.int64, count=len(entries))
    # carry forward: row r takes the last entry recorded at or before r
    last = np.searchsorted(idx, np.arange(n), side="right") - 1
    if all(isinstance(v, bool | np.bool_) for v in values):
        dtype: Any = pl.Boolean
    elif all(isinstance(v, Real) and not isinstance(v, bool) for v in values):
        dtype = pl.Float64
        values = [float(v) for v in values]
    elif all(isinstance(v, str) for v in values):
        dtype = pl.String
    else:
        dtype = pl.Object
    filled = [None if k < 0 else values[k] for k in last.tolist()]
    return pl.Series(name, filled, dtype=dtype)
