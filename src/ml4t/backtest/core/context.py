"""Market-wide context (VIX, SPY, rates, regime flags) with as-of lookups.

Context series are stored once per timestamp of their own, never repeated per asset. A
lookup at time ``t`` returns the latest value at or before ``t`` (``NaN`` before the first
observation), so a strategy can never read a context value from its future.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import polars as pl

from ..errors import DataValidationError
from ..io import to_polars_frame

__all__ = ["Context", "series_from_frame"]

_TS_NAMES = ("timestamp", "datetime", "date", "time", "dt")


def series_from_frame(
    df: pl.DataFrame, source: str, timezone: str | bool | None = False
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Split a wide frame (timestamp + value columns) into ``name -> (ts_ns, values)``.

    Parameters
    ----------
    df : polars.DataFrame
        One row per timestamp, sorted ascending, unique.
    source : str
        Name used in error messages.
    timezone : str, None or False
        Expected timezone; ``False`` skips the check.
    """
    lower = {c.lower(): c for c in df.columns}
    ts_col = next((lower[n] for n in _TS_NAMES if n in lower), None)
    if ts_col is None:
        raise DataValidationError(
            f"{source}: missing required column 'timestamp'; columns are {df.columns}"
        )
    dtype = df.schema[ts_col]
    if isinstance(dtype, pl.Datetime):
        tz = dtype.time_zone
    elif dtype == pl.Date:
        tz = None
    else:
        raise DataValidationError(f"{source}: column {ts_col!r} must be Datetime/Date, got {dtype}")
    if timezone is not False and (tz is None) != (timezone is None):
        raise DataValidationError(
            f"{source}: column {ts_col!r} has timezone {tz!r} but the market data has "
            f"{timezone!r}; make both timezone-aware or both naive"
        )
    ts = df[ts_col].cast(pl.Datetime("ns", tz)).dt.epoch("ns")
    if ts.null_count():
        raise DataValidationError(f"{source}: column {ts_col!r} has a null timestamp")
    ts_np = ts.to_numpy()
    bad = np.flatnonzero(np.diff(ts_np) <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise DataValidationError(
            f"{source}: column {ts_col!r} must be strictly increasing (one row per timestamp); "
            f"row {i} ({df[ts_col][i]}) does not follow row {i - 1}"
        )
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for col in df.columns:
        if col == ts_col:
            continue
        if not (df.schema[col].is_numeric() or df.schema[col] == pl.Boolean):
            raise DataValidationError(
                f"{source}: context column {col!r} must be numeric, got {df.schema[col]}"
            )
        values = df[col].cast(pl.Float64).fill_null(float("nan")).to_numpy()
        out[col] = (ts_np, np.ascontiguousarray(values))
    return out


class Context(Mapping[str, float]):
    """Market-wide values served as-of the current timestamp.

    Parameters
    ----------
    data : mapping or DataFrame, optional
        Either one wide frame (a timestamp column plus one column per value) or a mapping
        ``name -> frame`` where each frame has a timestamp column and one value column
        (or a column named like the key). polars and pandas frames are accepted.
    max_staleness : datetime.timedelta, optional
        When set, a value older than this at lookup time is reported as ``NaN``.

    Examples
    --------
    >>> ctx = Context({"VIX": vix_df})          # doctest: +SKIP
    >>> ctx.get("VIX")                          # latest VIX at or before now
    """

    def __init__(self, data: Any = None, *, max_staleness: Any = None) -> None:
        self._series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._raw = data
        self._max_stale_ns = (
            None if max_staleness is None else int(max_staleness.total_seconds() * 1e9)
        )
        self._clock: Any = None
        self._view_ts: int | None = None
        self._view: Mapping[str, float] | None = None

    # --- set-up (engine) ------------------------------------------------------------
    def bind(
        self, clock: Any, timezone: str | None, extra: Mapping[str, tuple[np.ndarray, np.ndarray]]
    ) -> None:
        """Convert the frames (checking their timezone) and follow ``clock`` for "now"."""
        self._clock = clock
        self._series = {}
        data = self._raw
        if data is not None:
            if isinstance(data, Mapping):
                for key, frame in data.items():
                    df = to_polars_frame(frame, f"context {key!r}")
                    series = series_from_frame(df, f"context {key!r}", timezone)
                    if key in series:
                        self._series[key] = series[key]
                    elif len(series) == 1:
                        self._series[key] = next(iter(series.values()))
                    else:
                        raise DataValidationError(
                            f"context {key!r}: frame has columns {list(series)}; give one value "
                            f"column or name it {key!r}"
                        )
            else:
                df = to_polars_frame(data, "context")
                self._series.update(series_from_frame(df, "context", timezone))
        for key, value in extra.items():
            if key in self._series:
                raise DataValidationError(f"context value {key!r} is provided twice")
            self._series[key] = value
        self._view_ts = None
        self._view = None

    # --- lookups --------------------------------------------------------------------
    def _value(self, name: str, ts_ns: int) -> float:
        ts, values = self._series[name]
        i = int(np.searchsorted(ts, ts_ns, side="right")) - 1
        if i < 0:
            return float("nan")
        if self._max_stale_ns is not None and ts_ns - int(ts[i]) > self._max_stale_ns:
            return float("nan")
        return float(values[i])

    def as_of(self, ts_ns: int) -> Mapping[str, float]:
        """Return a read-only mapping of every value as of ``ts_ns``."""
        if ts_ns == self._view_ts and self._view is not None:
            return self._view
        view = MappingProxyType({k: self._value(k, ts_ns) for k in self._series})
        self._view_ts, self._view = ts_ns, view
        return view

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        """Return ``name`` as of the current timestamp, or ``default`` if unknown."""
        if name not in self._series:
            if default is not None:
                return default
            raise KeyError(f"no context value {name!r}; available: {sorted(self._series)}")
        now = self.current_time_ns
        if now is None:
            raise RuntimeError("context has no current time; it is set while a backtest runs")
        return self.as_of(now)[name]

    def __getitem__(self, name: str) -> float:
        return self.get(name)  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[str]:
        return iter(self._series)

    def __len__(self) -> int:
        return len(self._series)

    @property
    def names(self) -> list[str]:
        """Return the names of the context values."""
        return list(self._series)

    @property
    def current_time_ns(self) -> int | None:
        """Return the current timestamp (int ns) or ``None`` outside a run."""
        if self._clock is None or self._clock.now_ns < 0:
            return None
        return int(self._clock.now_ns)

    def __repr__(self) -> str:
        return f"Context({sorted(self._series)})"
