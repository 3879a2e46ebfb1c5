"""Builtin data feeds: :class:`PolarsDataFeed` and :class:`ParquetDataFeed`.

A feed validates its source once, at the boundary, and turns it into contiguous numpy
arrays (see :mod:`ml4t.backtest.core.data`). In-memory frames are converted whole; lazy
sources (LazyFrame, Parquet path or glob) are read one time window at a time with the
window's predicate pushed down, so memory stays bounded by the window size.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from ..core.asof import AsOfRows
from ..core.data import (
    ASSET_ALIASES,
    PRICE_COLUMNS,
    TIMESTAMP_ALIASES,
    RawBlock,
    check_distinct_names,
    find_column,
)
from ..core.sources import FeedSource, read_ohlcv_csv, to_polars
from ..errors import DataValidationError
from ..markers import hookimpl
from .feed_checks import (
    ASSET,
    ROW,
    TS,
    check_text_numbers,
    duplicate_error,
    unsorted_error,
    validate_rows,
    where,
)
from .signal_data import SignalData, read_signal_data

if TYPE_CHECKING:
    from ..core.data import Feed
    from ..registry import PluginRegistry

__all__ = [
    "ParquetDataFeed",
    "PolarsDataFeed",
    "csv_feed",
    "ml4t_make_feed",
    "ml4t_register_feeds",
]


class PolarsDataFeed:
    """A feed over a polars frame, a pandas frame or Parquet files.

    Parameters
    ----------
    data : DataFrame, LazyFrame, pandas.DataFrame, str or Path
        Bars with a timestamp column, ``open, high, low, close, volume`` and extra
        columns. Column names are matched case-insensitively, so two names that differ
        only by case (``close`` and ``Close``) are an error. The timestamp column is
        ``timestamp`` (or ``datetime``/``date``/``time``), a polars ``Datetime`` or
        ``Date``. Long multi-asset frames carry an ``asset_id`` or ``symbol`` column.
    asset_id : str, optional
        Asset of a single-asset frame (one without an asset column).
    signal_columns : list of str, optional
        Columns delivered as ``event.signals``. When neither this nor ``asset_columns``
        is given, every extra numeric column is a signal.
    indicator_columns : list of str, optional
        Columns delivered as ``event.indicators``.
    asset_columns : dict, optional
        ``{"signals": [...], "indicators": [...]}``; an alternative to the two above.
    context_data : DataFrame, optional
        Market-wide columns (VIX, SPY, ...) with a timestamp column, one row per
        timestamp. Served through ``Context`` with as-of semantics.
    signal_data : DataFrame, LazyFrame, pandas.DataFrame, str or Path, optional
        Signals at their own, lower frequency (daily predictions beside minute bars):
        rows of timestamp, asset (``asset_id``/``symbol``; optional for a single-asset
        feed), value columns and optionally ``available_at``. Stored once and served
        as-of at each bar: the latest prediction whose timestamp *and* availability time
        are at or before the bar. Its numeric columns are signals unless
        ``signal_columns``/``indicator_columns`` name them.
    available_at : str, optional
        The availability column of ``signal_data`` (default ``available_at`` when
        present). A prediction is invisible before it, even if its timestamp is earlier.
    signal_max_staleness : timedelta or str, optional
        Serve a ``signal_data`` value only while its timestamp is at most this old
        (``"3d"``, ``"36h"``); older values read as ``NaN``.
    timestamp_column, asset_column : str, optional
        Override the column names that are detected automatically.
    chunk_size : str or int, optional
        How much of the data the engine handles at once (one *window*); lazy sources are
        read one window at a time, with the window's time filter and the needed columns
        pushed down into the Parquet scan, so memory is bounded by the window. One of:

        - a duration: ``"1d"``, ``"2w"``, ``"1mo"`` (or ``"1month"``), ``"1y"``. Windows
          start at calendar boundaries (UTC midnight, Mondays, the first of a month or of
          a year, counted from the one at or before the first bar). A very large duration
          (``"100y"``) gives one window, i.e. the whole lazy source in memory;
        - a row count: ``500_000``, ``"500k rows"``, ``"1.5m rows"``, ``"500000 rows"``;
        - a memory size: ``"256MB"``, ``"1GB"`` (decimal) or ``"256MiB"``, ``"1GiB"``
          (binary), turned into a row count with 8 bytes per float column read (prices,
          volume, signals, indicators), 8 for the timestamp and 4 for the asset code.

        A row window never splits a timestamp: all rows of one timestamp are in the same
        window, so a timestamp with more rows than the limit is a window of its own.
        With several feeds the clock cuts at the union of their windows' edges (the
        smallest duration, plus every feed's row edges), so each feed's limit holds.
        Defaults to one month for lazy sources; an in-memory frame is one window unless
        ``chunk_size`` is given. Results never depend on the chunk size: orders, positions,
        sessions and ``history`` carry across window edges.
    name : str, optional
        Name used in error messages (defaults to the file path or ``"frame"``).

    Notes
    -----
    Signal values may be null or NaN: they reach the strategy as ``float('nan')``.
    Prices and volume may not: every bar must have positive finite OHLC with
    ``low <= open, close <= high`` and a non-negative volume. Prices stored as text are
    read as numbers (``"101.5"``); text that is not a number (``"n/a"``) is an error
    naming the column, row, timestamp and asset. Signals, indicators and ``context_data``
    columns may not be named like a price column.
    """

    def __init__(
        self,
        data: FeedSource,
        asset_id: str | None = None,
        *,
        signal_columns: Sequence[str] | None = None,
        indicator_columns: Sequence[str] | None = None,
        asset_columns: Mapping[str, Sequence[str]] | None = None,
        context_data: FeedSource | None = None,
        signal_data: FeedSource | None = None,
        available_at: str | None = None,
        signal_max_staleness: Any = None,
        timestamp_column: str | None = None,
        asset_column: str | None = None,
        chunk_size: str | int | None = None,
        name: str | None = None,
    ) -> None:
        self.name = name or (str(data) if isinstance(data, str | Path) else "frame")
        frame = to_polars(data, self.name)
        self._lazy = isinstance(frame, pl.LazyFrame)
        lf = frame.lazy()
        schema = _collect_schema(lf, self.name)
        check_distinct_names(list(schema), self.name)
        sig_from, ind_from = "signal_columns", "indicator_columns"
        if asset_columns is not None:
            unknown = set(asset_columns) - {"signals", "indicators"}
            if unknown:
                raise DataValidationError(
                    f"{self.name}: asset_columns keys must be 'signals'/'indicators', "
                    f"got {sorted(unknown)}"
                )
            if "signals" in asset_columns:
                sig_from = "asset_columns['signals']"
            if "indicators" in asset_columns:
                ind_from = "asset_columns['indicators']"
            signal_columns = list(asset_columns.get("signals", signal_columns or []))
            indicator_columns = list(asset_columns.get("indicators", indicator_columns or []))
        rename, ts_col, asset_col = self._resolve_columns(
            schema, timestamp_column, asset_column, asset_id
        )
        self.timezone = _timezone_of(schema[ts_col], ts_col, self.name)
        sd = (
            None
            if signal_data is None
            else SignalData(signal_data, f"{self.name} signal_data", available_at, asset_column)
        )
        if sd is None and (available_at is not None or signal_max_staleness is not None):
            raise DataValidationError(
                f"{self.name}: available_at and signal_max_staleness apply to signal_data, "
                "which is not given"
            )
        self.indicator_names = tuple(indicator_columns or ())
        origin: dict[str, str] = {}  # signals not named by sig_from
        if signal_columns is None:
            taken = {ts_col, asset_col, *rename, *self.indicator_names}
            signal_columns = [c for c, t in schema.items() if c not in taken and t.is_numeric()]
            if sd is not None:
                skip = {*self.indicator_names, *signal_columns}  # a clash is named below
                extra = [c for c in sd.value_columns if c not in skip]
                origin.update(dict.fromkeys(extra, "signal_data"))
                signal_columns += extra
        self.signal_names = tuple(signal_columns)
        listed = [(c, origin.get(c, sig_from)) for c in self.signal_names]
        listed += [(c, ind_from) for c in self.indicator_names]
        _check_value_names(self.name, listed, (ts_col, asset_col))
        asof_names: list[str] = []
        for col in (*self.signal_names, *self.indicator_names):
            if sd is not None and col in sd.value_columns:
                if col in schema:
                    raise DataValidationError(
                        f"{self.name}: column {col!r} is in both the bars and signal_data; "
                        "rename one of them"
                    )
                asof_names.append(col)
                continue
            if col not in schema:
                raise DataValidationError(
                    f"{self.name}: signal/indicator column {col!r} not found; columns are "
                    f"{list(schema)}" + ("" if sd is None else f" and {sd.value_columns}")
                )
            if not schema[col].is_numeric() and schema[col] != pl.Boolean:
                raise DataValidationError(
                    f"{self.name}: column {col!r} must be numeric, got {schema[col]}"
                )
        self.asof_names = tuple(asof_names)
        self._value_cols = [
            c for c in (*self.signal_names, *self.indicator_names) if c not in self.asof_names
        ]
        #: price columns read from text: price column -> (source column, its text column)
        self._text: dict[str, tuple[str, str]] = {}
        exprs = [
            pl.col(ts_col).cast(pl.Datetime("ns", self.timezone)).dt.epoch("ns").alias(TS),
            *(self._price_expr(src, dst, schema[src]) for src, dst in rename.items()),
            *(pl.col(c).cast(pl.Float64) for c in self._value_cols),
        ]
        exprs += [pl.col(src).cast(pl.String).alias(text) for src, text in self._text.values()]
        if asset_col is not None:
            exprs.append(pl.col(asset_col).cast(pl.String).alias(ASSET))
        self._source, self._exprs = lf, exprs
        self._ts_col, self._ts_dtype = ts_col, schema[ts_col]
        self._frame = lf.with_row_index(ROW).select(pl.col(ROW), *exprs)
        #: (end of the last window loaded, source rows before it)
        self._next_load: tuple[int, int] | None = None
        self._has_asset_col = asset_col is not None
        self._asset_col = asset_col
        self._asset_dtype = schema[asset_col] if asset_col is not None else None
        self._single_asset = asset_id
        row_bytes = 8 * (len(PRICE_COLUMNS) + len(self._value_cols)) + 8 + 4
        #: the duration part of ``chunk_size`` (read by the clock), or None
        self.chunk_size: str | None
        #: the row limit per window (from a row count or a memory size), or None
        self.chunk_rows: int | None
        self.chunk_size, self.chunk_rows = _parse_chunk(
            "1mo" if chunk_size is None and self._lazy else chunk_size, self.name, row_bytes
        )
        self._key_counts: tuple[np.ndarray, np.ndarray] | None = None
        self._context = _context_series(context_data, self.name, self.timezone)
        if self._lazy:
            self._scan_lazy()
        else:
            self._load_eager()
        self._asof: AsOfRows | None = None
        if sd is not None:
            self._asof = read_signal_data(
                sd, self.asof_names, self.asset_ids, asset_id, self.timezone, signal_max_staleness
            )

    # --- set-up -------------------------------------------------------------------
    def _resolve_columns(
        self,
        schema: Mapping[str, pl.DataType],
        timestamp_column: str | None,
        asset_column: str | None,
        asset_id: str | None,
    ) -> tuple[dict[str, str], str, str | None]:
        lower = {c.lower(): c for c in schema}
        ts_col = timestamp_column or find_column(list(schema), TIMESTAMP_ALIASES)
        if ts_col is None or ts_col not in schema:
            raise DataValidationError(
                f"{self.name}: missing required column 'timestamp' (or datetime/date); "
                f"columns are {list(schema)}"
            )
        missing = [c for c in PRICE_COLUMNS if c not in lower]
        if missing:
            raise DataValidationError(
                f"{self.name}: missing required column(s) {missing}; columns are {list(schema)}"
            )
        rename = {lower[c]: c for c in PRICE_COLUMNS}
        asset_col = asset_column or find_column(list(schema), ASSET_ALIASES)
        if asset_column is not None and asset_column not in schema:
            raise DataValidationError(f"{self.name}: asset column {asset_column!r} not found")
        if asset_col is None and asset_id is None:
            raise DataValidationError(
                f"{self.name}: no 'asset_id' or 'symbol' column; pass asset_id= for a "
                "single-asset frame"
            )
        if asset_col is not None and asset_id is not None:
            raise DataValidationError(
                f"{self.name}: the frame has an asset column {asset_col!r}; asset_id= is only "
                "for single-asset frames"
            )
        return rename, ts_col, asset_col

    def _price_expr(self, src: str, dst: str, dtype: pl.DataType) -> pl.Expr:
        """Return the Float64 expression of price column ``src`` (renamed ``dst``).

        Text is read as numbers (``"101.5"``, surrounding blanks ignored); an entry that is
        not a number is reported by :meth:`_check_text` with its row.
        """
        col = pl.col(src)
        if dtype.is_numeric() or dtype == pl.Null:
            return col.cast(pl.Float64).alias(dst)
        if dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum):
            self._text[dst] = (src, f"__ml4t_text_{dst}")
            text = col.cast(pl.String).str.strip_chars()
            return text.cast(pl.Float64, strict=False).alias(dst)
        raise DataValidationError(
            f"{self.name}: column {src!r} must be numeric (or text of numbers), got {dtype}"
        )

    def _check_text(self, df: pl.DataFrame) -> pl.DataFrame:
        """Raise on a price given as text that is not a number; drop the text columns."""
        if not self._text:
            return df
        check_text_numbers(df, self.name, self._text, self.timezone)
        return df.drop(text for _, text in self._text.values())

    def _load_eager(self) -> None:
        df = self._check_text(self._frame.collect())
        validate_rows(df, self.name, self._value_cols, self.timezone)
        self._set_assets(df)
        self._ts = df[TS].to_numpy()
        self._code = self._codes(df)
        self._cols = {c: _f64(df[c]) for c in (*PRICE_COLUMNS, *self._value_cols)}

    def _scan_lazy(self) -> None:
        """Read only the keys (timestamp, asset code) of every row, and check them.

        The asset ids come from one streaming ``unique``; the keys are then read as an
        int64 timestamp and a uint32 code per row (12 bytes), and sortedness, nulls and
        duplicates are checked with numpy. Nothing else of the data is read here.
        """
        src = self._source
        ts_expr = self._exprs[0]
        try:
            if self._asset_col is not None:
                asset = pl.col(self._asset_col)
                if self._asset_dtype not in (pl.String, pl.Categorical) and not isinstance(
                    self._asset_dtype, pl.Enum | pl.Categorical
                ):
                    asset = asset.cast(pl.String)
                query = src.select(ts_expr, asset.cast(pl.Categorical).alias(ASSET))
                keys = query.collect(engine="streaming")
            else:
                self.asset_ids: tuple[str, ...] = (str(self._single_asset),)
                keys = src.select(ts_expr).collect(engine="streaming")
        except pl.exceptions.PolarsError as exc:
            raise DataValidationError(f"{self.name}: cannot read the data: {exc}") from exc
        if keys[TS].null_count():
            row = int(keys[TS].is_null().arg_true()[0])
            raise DataValidationError(
                f"{self.name}: column 'timestamp' has a null value at row {row}"
            )
        if self._has_asset_col and keys[ASSET].null_count():
            row = int(keys[ASSET].is_null().arg_true()[0])
            raise DataValidationError(
                f"{self.name}: column 'asset_id' has a null value at row {row}"
            )
        ts = keys[TS].to_numpy()
        codes = self._sorted_codes(keys[ASSET]) if self._has_asset_col else None
        self._check_keys(ts, codes)
        self._bounds = (int(ts[0]), int(ts[-1])) if ts.shape[0] else (0, -1)
        if self.chunk_rows is not None:  # keep rows per timestamp, not every key
            self._key_counts = _timestamp_counts(ts)

    def _sorted_codes(self, assets: pl.Series) -> np.ndarray:
        """Set ``asset_ids`` (sorted) and return each row's index into them.

        ``assets`` is Categorical: its distinct values are few, so the ids come from them
        and a small lookup table maps each row's physical code to the sorted position.
        """
        distinct = assets.unique()
        names = distinct.cast(pl.String).to_list()
        physical = distinct.to_physical().to_numpy().astype(np.int64)
        order = sorted(range(len(names)), key=lambda i: names[i])
        self.asset_ids = tuple(names[i] for i in order)
        lut = np.zeros(int(physical.max()) + 1 if physical.shape[0] else 1, dtype=np.uint32)
        lut[physical[order]] = np.arange(len(order), dtype=np.uint32)
        codes: np.ndarray = lut[assets.to_physical().to_numpy()]
        return codes

    def _check_keys(self, ts: np.ndarray, codes: np.ndarray | None) -> None:
        """Raise on decreasing timestamps or a repeated (timestamp, asset) pair."""
        has_asset = codes is not None

        def at(i: int) -> str:
            row: dict[str, object] = {ROW: i, TS: int(ts[i])}
            if codes is not None:
                row[ASSET] = self.asset_ids[int(codes[i])]
            return where(row, has_asset, self.timezone)

        down = np.flatnonzero(ts[1:] < ts[:-1])
        if down.shape[0]:
            raise unsorted_error(self.name, at(int(down[0]) + 1))
        same = ts[1:] == ts[:-1]
        if codes is None:
            dup = np.flatnonzero(same)
        elif (same & (codes[1:] < codes[:-1])).any():  # assets unordered within a timestamp
            order = np.lexsort((codes, ts))
            s_ts, s_codes = ts[order], codes[order]
            pair = np.flatnonzero((s_ts[1:] == s_ts[:-1]) & (s_codes[1:] == s_codes[:-1]))
            rows = np.concatenate((order[pair], order[pair + 1]))
            dup = rows[:1] if not rows.shape[0] else np.array([rows.min()])
        else:
            dup = np.flatnonzero(same & (codes[1:] == codes[:-1]))
        if dup.shape[0]:
            raise duplicate_error(self.name, has_asset, at(int(dup[0])))

    def _set_assets(self, df: pl.DataFrame) -> None:
        if self._has_asset_col:  # in-memory frames (lazy sources: _scan_lazy)
            self.asset_ids = tuple(sorted(df[ASSET].unique().to_list()))
        else:
            self.asset_ids = (str(self._single_asset),)

    def _codes(self, df: pl.DataFrame) -> np.ndarray:
        if not self._has_asset_col:
            return np.zeros(df.height, dtype=np.int32)
        enum = pl.Enum(list(self.asset_ids))
        return df[ASSET].cast(enum).to_physical().to_numpy().astype(np.int32)

    # --- Feed protocol ---------------------------------------------------------------
    def time_bounds(self) -> tuple[int, int]:
        """Return the first and last timestamp (int ns UTC)."""
        if self._lazy:
            return self._bounds
        if not self._ts.shape[0]:
            return (0, -1)
        return int(self._ts[0]), int(self._ts[-1])

    def load(self, start_ns: int, end_ns: int) -> RawBlock:
        """Return validated rows with ``start_ns <= ts < end_ns`` (local asset codes)."""
        if not self._lazy:
            lo, hi = np.searchsorted(self._ts, [start_ns, end_ns], side="left")
            return RawBlock(
                self._ts[lo:hi], self._code[lo:hi], {c: v[lo:hi] for c, v in self._cols.items()}
            )
        last = self._next_load
        first_row = last[1] if last is not None and last[0] == start_ns else None
        try:
            if first_row is None:  # not the window after the last one: count rows before
                before = self._source.filter(pl.col(self._ts_col) < self._ts_literal(start_ns))
                first_row = int(before.select(pl.len()).collect().item())
            df = self._window_query(start_ns, end_ns).collect()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise DataValidationError(f"{self.name}: cannot read the data: {exc}") from exc
        df = df.with_row_index(ROW, offset=first_row)  # source row numbers, for messages
        self._next_load = (end_ns, first_row + df.height)
        df = self._check_text(df)
        validate_rows(df, self.name, self._value_cols, self.timezone, keys_checked=True)
        if self._has_asset_col:
            extra = set(df[ASSET].unique().to_list()) - set(self.asset_ids)
            if extra:  # pragma: no cover - the data changed under us
                raise DataValidationError(f"{self.name}: unexpected assets {sorted(extra)}")
        return RawBlock(
            df[TS].to_numpy(),
            self._codes(df),
            {c: _f64(df[c]) for c in (*PRICE_COLUMNS, *self._value_cols)},
        )

    def has_rows(self, start_ns: int, end_ns: int) -> bool:
        """Return True when some row has ``start_ns <= ts < end_ns`` (int ns UTC).

        The clock asks before a run with a period, so that a period between bars fails at
        set-up. In-memory: a binary search; lazy: one count query with the time filter
        pushed into the scan.
        """
        if not self._lazy:
            lo, hi = np.searchsorted(self._ts, [start_ns, end_ns], side="left")
            return bool(hi > lo)
        first, last = self._bounds
        if last < first or last < start_ns or first >= end_ns:
            return False
        if self._key_counts is not None:  # the distinct timestamps are known already
            uniq = self._key_counts[0]
            lo, hi = np.searchsorted(uniq, [start_ns, end_ns], side="left")
            return bool(hi > lo)
        col = pl.col(self._ts_col)
        window = (col >= self._ts_literal(start_ns)) & (col < self._ts_literal(end_ns))
        try:
            count = self._source.filter(window).select(pl.len()).collect().item()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise DataValidationError(f"{self.name}: cannot read the data: {exc}") from exc
        return int(count) > 0

    def window_edges(self, lo: int, hi: int) -> list[int] | None:
        """Return where windows must start to honour the row limit, or None without one.

        The timestamps in ``(lo, hi)`` (int ns UTC) at which a new window starts, so that
        no window holds more than ``chunk_rows`` of this feed's rows, unless it is a single
        timestamp. Rows are counted from ``lo``; the clock merges these with its other
        window edges.
        """
        if self.chunk_rows is None:
            return None
        if self._key_counts is None:  # in-memory frame: counted once, from the arrays
            self._key_counts = _timestamp_counts(self._ts)
        uniq, cum = self._key_counts
        return _row_cuts(uniq, cum, self.chunk_rows, lo, hi)

    def _window_query(self, start_ns: int, end_ns: int) -> pl.LazyFrame:
        """Return the query reading ``start_ns <= ts < end_ns`` from the lazy source.

        The filter is on the source's own timestamp column, compared with literals of its
        type, so polars pushes it into the Parquet scan (row groups outside the window are
        skipped) and reads only the columns the feed uses. No row index is taken in the
        query (it can keep the filter out of the scan); ``load`` numbers the rows after.
        """
        col = pl.col(self._ts_col)
        lo, hi = self._ts_literal(start_ns), self._ts_literal(end_ns)
        return self._source.filter((col >= lo) & (col < hi)).select(self._exprs)

    def _ts_literal(self, ns: int) -> pl.Expr:
        return _ts_literal(ns, self._ts_dtype)

    def context_frames(self) -> Mapping[str, tuple[np.ndarray, ...]]:
        """Return the market-wide series carried by ``context_data``."""
        return self._context

    def asof_rows(self) -> AsOfRows | None:
        """Return the ``signal_data`` rows (local asset codes), or ``None``."""
        return self._asof

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, assets={len(self.asset_ids)}, "
            f"signals={list(self.signal_names)})"
        )


class ParquetDataFeed(PolarsDataFeed):
    """A :class:`PolarsDataFeed` reading Parquet file(s) lazily, one window at a time.

    Parameters
    ----------
    path : str or Path
        A Parquet file or a glob of files.
    **kwargs
        As for :class:`PolarsDataFeed`.
    """

    def __init__(self, path: str | Path, asset_id: str | None = None, **kwargs: Any) -> None:
        path = str(path)
        if path.lower().endswith(".csv"):
            raise DataValidationError(f"{path}: ParquetDataFeed reads Parquet; use read_ohlcv_csv")
        super().__init__(path, asset_id, **kwargs)


def _check_value_names(
    source: str, listed: Sequence[tuple[str, str]], keys: tuple[str, str | None]
) -> None:
    """Raise if a signal or indicator is a price or key column, or is listed twice.

    ``listed`` holds ``(column, option that names it)`` pairs; ``keys`` the timestamp and
    asset columns.
    """
    seen: dict[str, str] = {}
    for col, option in listed:
        if col.lower() in PRICE_COLUMNS:
            raise DataValidationError(
                f"{source}: {option} names {col!r}, a price column; open, high, low, close "
                "and volume reach the strategy as event.open ... event.volume, never as "
                f"signals or indicators: remove {col!r} from {option} (or rename the column "
                "if it holds another series)"
            )
        if col in keys:
            raise DataValidationError(
                f"{source}: {option} names {col!r}, the timestamp or asset column"
            )
        if col in seen:
            raise DataValidationError(
                f"{source}: column {col!r} is listed twice, in {seen[col]} and {option}"
            )
        seen[col] = option


def _collect_schema(lf: pl.LazyFrame, source: str) -> dict[str, pl.DataType]:
    try:
        return dict(lf.collect_schema())
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataValidationError(f"{source}: cannot read the data: {exc}") from exc


def _timezone_of(dtype: pl.DataType, col: str, source: str) -> str | None:
    if isinstance(dtype, pl.Datetime):
        return dtype.time_zone
    if dtype == pl.Date:
        return None
    raise DataValidationError(
        f"{source}: column {col!r} must be a Datetime or Date, got {dtype}; parse it first, "
        f"e.g. pl.col({col!r}).str.to_datetime()"
    )


def _f64(series: pl.Series) -> np.ndarray:
    if series.null_count():  # nulls become NaN (signals may have them)
        series = series.fill_null(float("nan"))
    return np.ascontiguousarray(series.to_numpy(), dtype=np.float64)


_DURATION = re.compile(r"^(\d+)\s*(mo|months?|w|weeks?|d|days?|y|years?)$")
_ROWS = re.compile(r"^(\d[\d_,]*(?:\.\d+)?)\s*([km]?)\s*rows?$")
_BYTES = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)$")
_ROW_SCALE = {"": 1, "k": 1_000, "m": 1_000_000}
_BYTE_SCALE = {"b": 1} | {
    f"{p}{i}b": (1024 if i else 1000) ** (k + 1) for k, p in enumerate("kmgt") for i in ("", "i")
}


def _parse_chunk(
    chunk: str | int | None, source: str, row_bytes: int
) -> tuple[str | None, int | None]:
    """Return ``(duration, rows)`` from a ``chunk_size`` (at most one is not None)."""
    if chunk is None:
        return None, None
    what = (
        f"{source}: chunk_size {chunk!r} is not a duration ('1d', '2w', '1mo', '1y'), a row "
        "count (500_000 or '500k rows') or a memory size ('256MB', '1GiB')"
    )
    if isinstance(chunk, Integral) and not isinstance(chunk, bool):
        if chunk <= 0:
            raise DataValidationError(f"{what}: a row count must be >= 1")
        return None, int(chunk)
    if not isinstance(chunk, str):
        raise DataValidationError(f"{what}: got a {type(chunk).__name__}")
    text = chunk.strip().lower()
    if match := _DURATION.match(text):
        n, unit = int(match.group(1)), match.group(2)
        if n <= 0:
            raise DataValidationError(f"{what}: a duration must be at least 1")
        return f"{n}{'mo' if unit.startswith('mo') else unit[0]}", None
    if match := _ROWS.match(text):
        number = Decimal(match.group(1).replace("_", "").replace(",", ""))
        count = number * _ROW_SCALE[match.group(2)]
        if count < 1 or count != int(count):
            raise DataValidationError(f"{what}: a row count must be a whole number >= 1")
        return None, int(count)
    if match := _BYTES.match(text):
        size = Decimal(match.group(1)) * _BYTE_SCALE[match.group(2)]
        rows = int(size // row_bytes)
        if rows < 1:
            raise DataValidationError(
                f"{what}: it is less than one row ({row_bytes} bytes for the columns read)"
            )
        return None, rows
    raise DataValidationError(what)


def _ts_literal(ns: int, dtype: pl.DataType) -> pl.Expr:
    """Return the smallest value ``v`` of ``dtype`` whose instant is at or after ``ns``.

    So ``col >= lit(start)`` and ``col < lit(end)`` select exactly the rows with
    ``start <= ts_ns < end`` whatever the column's resolution.
    """
    if isinstance(dtype, pl.Datetime):
        step = {"ns": 1, "us": 1_000, "ms": 1_000_000}[dtype.time_unit or "us"]
        return pl.lit(-(-ns // step), dtype=pl.Int64).cast(dtype)
    day = 86_400 * 10**9
    return pl.lit(-(-ns // day), dtype=pl.Int32).cast(pl.Date)


def _timestamp_counts(ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the distinct timestamps of sorted ``ts`` and the rows before each (+ total)."""
    ts = np.asarray(ts, dtype=np.int64)
    if not ts.shape[0]:
        return ts, np.zeros(1, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], ts[1:] != ts[:-1])))
    return ts[starts], np.append(starts, ts.shape[0]).astype(np.int64)


def _row_cuts(uniq: np.ndarray, cum: np.ndarray, limit: int, lo: int, hi: int) -> list[int]:
    """Greedy cut points in ``(lo, hi)`` keeping each window within ``limit`` rows.

    ``uniq`` are the distinct timestamps, ``cum[k]`` the rows before ``uniq[k]``. A window
    takes whole timestamps while they fit; a timestamp larger than ``limit`` is alone.
    """
    s = int(np.searchsorted(uniq, lo, side="left"))
    stop = int(np.searchsorted(uniq, hi, side="left"))
    cuts: list[int] = []
    while s < stop:
        e = int(np.searchsorted(cum, cum[s] + limit, side="right")) - 1
        e = max(e, s + 1)
        if e >= stop:
            break
        cuts.append(int(uniq[e]))
        s = e
    return cuts


def _context_series(
    data: FeedSource | None, source: str, timezone: str | None
) -> dict[str, tuple[np.ndarray, ...]]:
    if data is None:
        return {}
    from ..core.context import series_from_frame

    where = f"{source} context_data"
    frame = to_polars(data, where)
    df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
    check_distinct_names(df.columns, where)
    series: dict[str, tuple[np.ndarray, ...]] = dict(series_from_frame(df, where, timezone))
    for name in series:
        if name.lower() in PRICE_COLUMNS:
            raise DataValidationError(
                f"{where}: column {name!r} has the name of a price column; context values "
                "are market-wide (one per timestamp) and would be confused with the bar's "
                f"own {name.lower()}: rename it (e.g. 'spy_{name.lower()}')"
            )
    return series


def csv_feed(
    path: str | Path, asset_id: str | None = None, *, timezone: str | None = None, **kwargs: Any
) -> PolarsDataFeed:
    """Return a :class:`PolarsDataFeed` over an OHLCV CSV file (see ``read_ohlcv_csv``).

    ``asset_id`` names the asset of a single-asset file; other keyword arguments go to
    :class:`PolarsDataFeed`.
    """
    frame = read_ohlcv_csv(path, timezone=timezone)
    kwargs.setdefault("name", str(path))
    return PolarsDataFeed(frame, asset_id, **kwargs)


@hookimpl(trylast=True)
def ml4t_register_feeds() -> Iterable[tuple[str, Callable[..., Any]]]:
    """Register ``polars``, ``parquet`` and ``csv``."""
    return [("polars", PolarsDataFeed), ("parquet", ParquetDataFeed), ("csv", csv_feed)]


@hookimpl(trylast=True)
def ml4t_make_feed(spec: Mapping[str, Any], registry: PluginRegistry) -> Feed:
    """Build the named feed from the registry."""
    return registry.create("feed", spec, where="data.feed")  # type: ignore[no-any-return]
