"""Align lower-frequency data to bars up front, with polars ``join_asof``.

:func:`align_asof` gives the same values the engine serves for
``PolarsDataFeed(bars, signal_data=...)``, but as ordinary columns of the bars frame, for
users who prefer to prepare one frame (and pay its memory: one value per bar and asset).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import polars as pl

from .core.asof import parse_duration_ns
from .core.data import ASSET_ALIASES, TIMESTAMP_ALIASES, check_distinct_names, find_column
from .core.sources import FeedSource, to_polars_frame
from .errors import DataValidationError

__all__ = ["align_asof"]

_VIS = "__ml4t_visible"
_ROW = "__ml4t_row"
_SIG_TS = "__ml4t_signal_ts"


def align_asof(
    bars: FeedSource,
    signals: FeedSource,
    *,
    columns: Sequence[str] | None = None,
    on: str | None = None,
    by: str | None = None,
    available_at: str | None = None,
    max_staleness: Any = None,
) -> pl.DataFrame:
    """Return ``bars`` with the as-of values of ``signals`` joined as columns.

    For every bar (timestamp ``t``, asset ``a``) the value comes from the signal row of
    ``a`` with the latest timestamp among those already available at ``t`` (timestamp and
    ``available_at`` both at or before ``t``); on ties the row available last (a revision)
    wins. Bars before any available signal get null.

    Parameters
    ----------
    bars, signals : DataFrame, LazyFrame, pandas.DataFrame or path
        The bars (any columns) and the signal rows (timestamp, asset, values, optionally
        ``available_at``).
    columns : sequence of str, optional
        Signal columns to join; default every column but the keys.
    on : str, optional
        Timestamp column, in both frames (detected: ``timestamp``, ``datetime``, ...).
    by : str, optional
        Asset column, in both frames (detected: ``asset_id``, ``symbol``); none for
        single-asset frames.
    available_at : str, optional
        Availability column of ``signals`` (default ``available_at`` when present).
    max_staleness : timedelta or str, optional
        Null a value whose timestamp is older than this at the bar (``"3d"``).

    Returns
    -------
    polars.DataFrame
        ``bars`` in its original row order, plus the signal columns.
    """
    left = to_polars_frame(bars, "align_asof bars")
    right = to_polars_frame(signals, "align_asof signals")
    check_distinct_names(left.columns, "align_asof bars")
    check_distinct_names(right.columns, "align_asof signals")
    on = on or find_column(left.columns, TIMESTAMP_ALIASES)
    if on is None:
        raise DataValidationError(
            f"align_asof bars: missing timestamp column; columns are {left.columns}"
        )
    if on not in right.columns:
        raise DataValidationError(f"align_asof signals: missing timestamp column {on!r}")
    if by is None:
        by = find_column(left.columns, ASSET_ALIASES)
    if by is not None and by not in right.columns:
        raise DataValidationError(f"align_asof signals: missing asset column {by!r}")
    avail = available_at or ("available_at" if "available_at" in right.columns else None)
    if avail is not None and avail not in right.columns:
        raise DataValidationError(f"align_asof signals: missing available_at column {avail!r}")
    keys = {on, by, avail}
    cols = list(columns) if columns is not None else [c for c in right.columns if c not in keys]
    clash = [c for c in cols if c in left.columns]
    if clash:
        raise DataValidationError(f"align_asof: columns {clash} are in both frames")
    dtype = left.schema[on]
    for col in (on, avail):
        if col is not None and _zone(right.schema[col]) != _zone(dtype):
            raise DataValidationError(
                f"align_asof signals: column {col!r} has timezone {_zone(right.schema[col])!r} "
                f"but the bars' {on!r} has {_zone(dtype)!r}; make both aware or both naive"
            )
    dup_keys = [c for c in (by, on, avail) if c is not None]
    dup = right.filter(pl.struct(dup_keys).is_duplicated()).head(1)
    if dup.height:
        row = dup.row(0, named=True)
        asset = f"asset {row[by]!r} at " if by is not None else ""
        when = row[on].isoformat() if hasattr(row[on], "isoformat") else row[on]
        raise DataValidationError(
            f"align_asof signals: duplicate row for {asset}timestamp {when}; give each "
            "(asset, timestamp) once, or distinct available_at times for revisions"
        )
    ts = pl.col(on).cast(dtype)
    vis = ts if avail is None else pl.max_horizontal(ts, pl.col(avail).cast(dtype).fill_null(ts))
    group = [by] if by is not None else []
    running = pl.col(_SIG_TS).cum_max()
    right = (
        right.select(*group, ts.alias(_SIG_TS), vis.alias(_VIS), *cols)
        .sort([*group, _VIS, _SIG_TS])
        # drop rows superseded by a newer timestamp that became available earlier
        .filter(pl.col(_SIG_TS) >= (running.over(group) if group else running))
        .sort(_VIS, maintain_order=True)
    )
    with warnings.catch_warnings():
        # both sides are sorted above; polars cannot verify it per `by` group and says so
        warnings.filterwarnings("ignore", message="Sortedness of columns cannot be checked")
        joined = (
            left.with_row_index(_ROW)
            .sort(on, maintain_order=True)
            .join_asof(right, left_on=on, right_on=_VIS, by=by, strategy="backward")
        )
    stale_ns = parse_duration_ns(max_staleness, "align_asof max_staleness")
    if stale_ns is not None:
        age = pl.col(on).cast(pl.Datetime("ns")) - pl.col(_SIG_TS).cast(pl.Datetime("ns"))
        fresh = age.dt.total_nanoseconds() <= stale_ns
        joined = joined.with_columns(pl.when(fresh).then(pl.col(c)).alias(c) for c in cols)
    return joined.sort(_ROW).drop(_ROW, _VIS, _SIG_TS)


def _zone(dtype: pl.DataType) -> str | bool | None:
    """Return a Datetime's time zone (None when naive); Date counts as naive."""
    return dtype.time_zone if isinstance(dtype, pl.Datetime) else None
