"""Low-frequency signals kept at their own frequency and aligned to the bars as-of.

``PolarsDataFeed(bars, signal_data=predictions)`` reads a frame of (timestamp, asset,
signal columns[, available_at]) rows: daily predictions beside minute bars, say. The rows
are stored once (memory proportional to the predictions, not to assets x bars) and the
engine serves, at each bar, the latest prediction already available (see
:mod:`ml4t.backtest.core.asof`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from ..core.asof import AsOfRows, check_rows, parse_duration_ns
from ..core.context import visible_times
from ..core.data import ASSET_ALIASES, TIMESTAMP_ALIASES, check_distinct_names, find_column
from ..core.sources import FeedSource, to_polars_frame
from ..errors import DataValidationError

__all__ = ["SignalData", "read_signal_data"]


class SignalData:
    """The columns of a ``signal_data`` frame, before they are read.

    Attributes
    ----------
    frame : polars.DataFrame
        The frame as given.
    ts_col, asset_col, avail_col : str or None
        Detected key columns.
    value_columns : list of str
        Numeric columns other than the keys (candidate signals and indicators).
    """

    def __init__(
        self,
        data: FeedSource,
        source: str,
        available_at: str | None,
        asset_column: str | None,
    ) -> None:
        self.source = source
        self.frame = to_polars_frame(data, source)
        cols = self.frame.columns
        check_distinct_names(cols, source)
        self.ts_col = find_column(cols, TIMESTAMP_ALIASES)
        if self.ts_col is None:
            raise DataValidationError(
                f"{source}: missing required column 'timestamp'; columns are {cols}"
            )
        self.asset_col = asset_column or find_column(cols, ASSET_ALIASES)
        if asset_column is not None and asset_column not in cols:
            raise DataValidationError(f"{source}: asset column {asset_column!r} not found")
        if available_at is not None and available_at not in cols:
            raise DataValidationError(
                f"{source}: available_at column {available_at!r} not found; columns are {cols}"
            )
        self.avail_col = available_at or ("available_at" if "available_at" in cols else None)
        keys = {self.ts_col, self.asset_col, self.avail_col}
        schema = self.frame.schema
        self.value_columns = [
            c for c in cols if c not in keys and (schema[c].is_numeric() or schema[c] == pl.Boolean)
        ]

    def check_column(self, name: str) -> None:
        """Raise unless ``name`` is a numeric value column of the frame."""
        if name not in self.value_columns:
            raise DataValidationError(
                f"{self.source}: column {name!r} is not a numeric column of signal_data; "
                f"numeric columns are {self.value_columns}"
            )


def read_signal_data(
    sd: SignalData,
    names: Sequence[str],
    asset_ids: Sequence[str],
    single_asset: str | None,
    timezone: str | None,
    max_staleness: Any,
) -> AsOfRows:
    """Return the rows of ``names`` as :class:`AsOfRows` with the feed's local codes.

    Rows of assets the bars do not have are dropped (a prediction universe is often wider
    than the traded one). Timestamps must be of the same kind (aware or naive) as the
    bars'. Duplicate ``(asset, timestamp, available_at)`` rows are an error.
    """
    df, src = sd.frame, sd.source
    ts_col = sd.ts_col
    assert ts_col is not None
    dtype = df.schema[ts_col]
    tz = dtype.time_zone if isinstance(dtype, pl.Datetime) else None
    if not isinstance(dtype, pl.Datetime) and dtype != pl.Date:
        raise DataValidationError(
            f"{src}: column {ts_col!r} must be a Datetime or Date, got {dtype}"
        )
    if (tz is None) != (timezone is None):
        raise DataValidationError(
            f"{src}: column {ts_col!r} has timezone {tz!r} but the bars have {timezone!r}; "
            "make both timezone-aware or both naive"
        )
    if sd.asset_col is None and single_asset is None:
        raise DataValidationError(
            f"{src}: no 'asset_id' or 'symbol' column; a multi-asset feed needs one to "
            "know which asset each prediction is for"
        )
    ts = df[ts_col].cast(pl.Datetime("ns", tz)).dt.epoch("ns")
    if ts.null_count():
        row = int(ts.is_null().arg_true()[0])
        raise DataValidationError(f"{src}: column {ts_col!r} has a null timestamp at row {row}")
    ts_np = ts.to_numpy()
    if sd.asset_col is None:
        code = np.zeros(df.height, dtype=np.int64)
        keep = np.ones(df.height, dtype=bool)
    else:
        assets = df[sd.asset_col].cast(pl.String)
        if assets.null_count():
            row = int(assets.is_null().arg_true()[0])
            raise DataValidationError(f"{src}: column {sd.asset_col!r} is null at row {row}")
        lookup = {a: k for k, a in enumerate(asset_ids)}
        code = np.array([lookup.get(a, -1) for a in assets.to_list()], dtype=np.int64)
        keep = code >= 0
    visible = ts_np
    if sd.avail_col is not None:
        visible = visible_times(df, sd.avail_col, ts_np, tz, src)
    values = {n: _values(df[n])[keep] for n in names}
    rows = AsOfRows(
        code[keep],
        ts_np[keep],
        visible[keep],
        values,
        parse_duration_ns(max_staleness, f"{src}: max_staleness"),
        src,
    )
    check_rows(rows, dict(enumerate(asset_ids)))
    return rows


def _values(series: pl.Series) -> np.ndarray:
    arr = series.cast(pl.Float64).fill_null(float("nan")).to_numpy()
    return np.ascontiguousarray(arr, dtype=np.float64)
