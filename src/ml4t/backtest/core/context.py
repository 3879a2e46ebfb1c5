"""Market-wide context (VIX, SPY, rates, regime flags) with as-of lookups.

Context series are stored once per timestamp of their own, never repeated per asset. A
lookup at time ``t`` returns the latest value visible at or before ``t`` (``NaN`` before
the first observation), so a strategy can never read a context value from its future.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import polars as pl

from ..errors import DataValidationError
from .asof import AsOfRows, AsOfTable, parse_duration_ns
from .data import TIMESTAMP_ALIASES, find_column
from .sources import to_polars_frame

__all__ = ["Context", "series_from_frame", "visible_times"]


def series_from_frame(
    df: pl.DataFrame,
    source: str,
    timezone: str | bool | None = False,
    available_at: str | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Split a wide frame (timestamp + value columns) into ``name -> (ts, values, visible)``.

    Parameters
    ----------
    df : polars.DataFrame
        One row per timestamp, sorted ascending, unique.
    source : str
        Name used in error messages.
    timezone : str, None or False
        Expected timezone; ``False`` skips the check.
    available_at : str, optional
        Column holding when each row becomes known (defaults to ``available_at`` when
        the frame has it); a value is invisible before then.

    Notes
    -----
    A missing observation (null or NaN) is dropped from its column, so the as-of value
    stays the previous observation (bound its age with ``max_staleness``).
    """
    ts_col = find_column(df.columns, TIMESTAMP_ALIASES)
    if ts_col is None:
        raise DataValidationError(
            f"{source}: missing required column 'timestamp'; columns are {df.columns}"
        )
    tz = _zone(df, ts_col, source)
    if timezone is not False and (tz is None) != (timezone is None):
        raise DataValidationError(
            f"{source}: column {ts_col!r} has timezone {tz!r} but the market data has "
            f"{timezone!r}; make both timezone-aware or both naive"
        )
    ts_np = _epoch_ns(df, ts_col, tz, source)
    bad = np.flatnonzero(np.diff(ts_np) <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise DataValidationError(
            f"{source}: column {ts_col!r} must be strictly increasing (one row per timestamp); "
            f"row {i} ({df[ts_col][i]}) does not follow row {i - 1}"
        )
    avail = available_at or ("available_at" if "available_at" in df.columns else None)
    visible = ts_np
    if avail is not None:
        if avail not in df.columns:
            raise DataValidationError(
                f"{source}: available_at column {avail!r} not found; columns are {df.columns}"
            )
        visible = visible_times(df, avail, ts_np, tz, source)
    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for col in df.columns:
        if col in (ts_col, avail):
            continue
        if not (df.schema[col].is_numeric() or df.schema[col] == pl.Boolean):
            raise DataValidationError(
                f"{source}: context column {col!r} must be numeric, got {df.schema[col]}"
            )
        values = df[col].cast(pl.Float64).fill_null(float("nan")).to_numpy()
        keep = ~np.isnan(values)
        out[col] = (ts_np[keep], np.ascontiguousarray(values[keep]), visible[keep])
    return out


def _zone(df: pl.DataFrame, col: str, source: str) -> str | None:
    dtype = df.schema[col]
    if isinstance(dtype, pl.Datetime):
        return dtype.time_zone
    if dtype == pl.Date:
        return None
    raise DataValidationError(f"{source}: column {col!r} must be Datetime/Date, got {dtype}")


def _epoch_ns(df: pl.DataFrame, col: str, tz: str | None, source: str) -> np.ndarray:
    ts = df[col].cast(pl.Datetime("ns", tz)).dt.epoch("ns")
    if ts.null_count():
        raise DataValidationError(f"{source}: column {col!r} has a null timestamp")
    return ts.to_numpy()


def visible_times(
    df: pl.DataFrame, col: str, ts_ns: np.ndarray, timezone: str | None, source: str
) -> np.ndarray:
    """Return when each row becomes visible: ``max(timestamp, available_at)`` in int ns.

    ``available_at`` must have the same kind of timezone as the timestamps; a null means
    "known at its timestamp".
    """
    tz = _zone(df, col, f"{source} available_at")
    if (tz is None) != (timezone is None):
        raise DataValidationError(
            f"{source}: column {col!r} has timezone {tz!r} but the timestamps have "
            f"{timezone!r}; make both timezone-aware or both naive"
        )
    avail = df[col].cast(pl.Datetime("ns", tz)).dt.epoch("ns").fill_null(-(2**62)).to_numpy()
    visible: np.ndarray = np.maximum(ts_ns, avail)
    return visible


class Context(Mapping[str, float]):
    """Market-wide values served as-of the current timestamp.

    Each value is stored once per timestamp of its own (never per asset or per bar) and
    looked up as-of: the latest observation at or before now, ``NaN`` before the first.

    Parameters
    ----------
    data : mapping or DataFrame, optional
        Either one wide frame (a timestamp column plus one column per value) or a mapping
        ``name -> frame`` where each frame has a timestamp column and one value column
        (or a column named like the key). polars and pandas frames are accepted. A frame
        may carry an ``available_at`` column: a row is invisible before that time even
        when its timestamp is earlier.
    max_staleness : timedelta or str, optional
        When set (``timedelta`` or ``"3d"``, ``"36h"``, ``"90m"``), a value observed
        longer ago than this at lookup time is reported as ``NaN``.
    available_at : str, optional
        Name of the availability column when it is not ``available_at``.

    Notes
    -----
    A null or NaN in a column is a missing observation: it does not overwrite the
    previous value. Naive timestamps are compared with the market data's naive
    timestamps, aware ones in UTC.

    Examples
    --------
    >>> ctx = Context({"VIX": vix_df}, max_staleness="3d")   # doctest: +SKIP
    >>> ctx.get("VIX")                                        # latest VIX at or before now
    """

    def __init__(
        self, data: Any = None, *, max_staleness: Any = None, available_at: str | None = None
    ) -> None:
        self._tables: dict[str, AsOfTable] = {}
        self._raw = data
        self._available_at = available_at
        self.max_staleness_ns = parse_duration_ns(max_staleness, "Context max_staleness")
        self._clock: Any = None
        self._view_ts: int | None = None
        self._view: Mapping[str, float] | None = None
        self._converted = False

    # --- set-up (engine) ------------------------------------------------------------
    def bind(self, clock: Any, timezone: str | None, extra: Mapping[str, tuple[Any, ...]]) -> None:
        """Convert the frames (checking their timezone) and follow ``clock`` for "now".

        ``extra`` holds series from feeds: ``name -> (ts, values)`` or
        ``(ts, values, visible)``.
        """
        self._clock = clock
        self._convert(timezone, extra)

    def _convert(self, timezone: str | bool | None, extra: Mapping[str, tuple[Any, ...]]) -> None:
        series: dict[str, tuple[Any, ...]] = {}
        data = self._raw
        avail = self._available_at
        if data is not None:
            if isinstance(data, Mapping):
                for key, frame in data.items():
                    df = to_polars_frame(frame, f"context {key!r}")
                    found = series_from_frame(df, f"context {key!r}", timezone, avail)
                    if key in found:
                        series[key] = found[key]
                    elif len(found) == 1:
                        series[key] = next(iter(found.values()))
                    else:
                        raise DataValidationError(
                            f"context {key!r}: frame has columns {list(found)}; give one value "
                            f"column or name it {key!r}"
                        )
            else:
                df = to_polars_frame(data, "context")
                series.update(series_from_frame(df, "context", timezone, avail))
        for key, value in extra.items():
            if key in series:
                raise DataValidationError(f"context value {key!r} is provided twice")
            series[key] = value
        self._tables = {k: self._table(k, v) for k, v in series.items()}
        self._view_ts = None
        self._view = None
        self._converted = True

    def _ensure(self) -> None:
        """Convert the frames on first use outside a run (no timezone check)."""
        if not self._converted:
            self._convert(False, {})

    def _table(self, name: str, parts: tuple[Any, ...]) -> AsOfTable:
        ts, values = np.asarray(parts[0], dtype=np.int64), np.asarray(parts[1], dtype=np.float64)
        visible = np.asarray(parts[2], dtype=np.int64) if len(parts) > 2 else ts
        keep = ~np.isnan(values)
        rows = AsOfRows(
            np.zeros(int(keep.sum()), dtype=np.int64),
            ts[keep],
            visible[keep],
            {name: values[keep]},
            self.max_staleness_ns,
            f"context {name!r}",
        )
        return AsOfTable(rows, 1)

    # --- lookups --------------------------------------------------------------------
    def _value(self, name: str, ts_ns: int) -> float:
        return self._tables[name].scalar(name, ts_ns)

    def as_of(self, ts_ns: int) -> Mapping[str, float]:
        """Return a read-only mapping of every value as of ``ts_ns``."""
        if ts_ns == self._view_ts and self._view is not None:
            return self._view
        view = MappingProxyType({k: self._value(k, ts_ns) for k in self._tables})
        self._view_ts, self._view = ts_ns, view
        return view

    def values_at(self, name: str, ts_ns: np.ndarray) -> np.ndarray:
        """Return the as-of values of ``name`` at many timestamps (int64 ns), vectorised."""
        self._ensure()
        if name not in self._tables:
            raise KeyError(f"no context value {name!r}; available: {sorted(self._tables)}")
        return self._tables[name].lookup(name, np.asarray(ts_ns, dtype=np.int64), 0)

    def as_frame(self, timestamps: Any) -> pl.DataFrame:
        """Return a frame of every context value as of each of ``timestamps``.

        ``timestamps`` is a polars Series or sequence of datetimes (or int64 ns). The
        result has a ``timestamp`` column (the input) and one column per value, ready to
        join to a batch of asset rows on ``timestamp``. Works outside a run too.
        """
        self._ensure()
        series = timestamps if isinstance(timestamps, pl.Series) else pl.Series(timestamps)
        if isinstance(series.dtype, pl.Datetime):
            ns = series.cast(pl.Datetime("ns", series.dtype.time_zone)).dt.epoch("ns").to_numpy()
        else:
            ns = series.cast(pl.Int64).to_numpy()
        cols = {k: self.values_at(k, ns) for k in self._tables}
        return pl.DataFrame({"timestamp": series, **cols})

    def join(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Return ``frame`` with every context value as of now added as columns.

        For batch strategies: ``context.join(asset_batch)`` puts VIX (etc.) beside every
        asset's row of the current timestamp.
        """
        now = self.current_time_ns
        if now is None:
            raise RuntimeError("context has no current time; it is set while a backtest runs")
        values = self.as_of(now)
        return frame.with_columns(pl.lit(v, dtype=pl.Float64).alias(k) for k, v in values.items())

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        """Return ``name`` as of the current timestamp, or ``default`` if unknown."""
        if name not in self._tables:
            if default is not None:
                return default
            raise KeyError(f"no context value {name!r}; available: {sorted(self._tables)}")
        now = self.current_time_ns
        if now is None:
            raise RuntimeError("context has no current time; it is set while a backtest runs")
        return self.as_of(now)[name]

    def __getitem__(self, name: str) -> float:
        return self.get(name)  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[str]:
        self._ensure()
        return iter(self._tables)

    def __len__(self) -> int:
        self._ensure()
        return len(self._tables)

    @property
    def names(self) -> list[str]:
        """Return the names of the context values."""
        self._ensure()
        return list(self._tables)

    @property
    def nbytes(self) -> int:
        """Return the memory the context's values and indexes hold, in bytes."""
        return sum(t.nbytes for t in self._tables.values())

    @property
    def current_time_ns(self) -> int | None:
        """Return the current timestamp (int ns) or ``None`` outside a run."""
        if self._clock is None or self._clock.now_ns < 0:
            return None
        return int(self._clock.now_ns)

    def __repr__(self) -> str:
        return f"Context({sorted(self._tables)})"
