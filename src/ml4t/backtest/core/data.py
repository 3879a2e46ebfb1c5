"""Columnar market data: the feed contract, blocks of arrays and the hot-loop chunks.

Shapes (``T`` timestamps, ``N`` rows, rows sorted by timestamp then asset code):

- ``Block.ts``       int64[T]   unique timestamps, nanoseconds since the epoch (UTC)
- ``Block.offsets``  int64[T+1] rows of timestamp ``i`` are ``offsets[i]:offsets[i+1]``
- ``Block.code``     int32[N]   global asset code of each row
- ``Block.cols``     float64[N] per column: open, high, low, close, volume, signals, indicators

A feed converts its frame to these arrays once (per time window for lazy sources). The
engine then walks a block in :class:`Chunk` slices whose columns are converted to Python
lists on first use, because indexing a list is several times cheaper than indexing numpy
from Python. No polars call happens per bar.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

import numpy as np

from ..errors import DataValidationError

__all__ = [
    "ASSET_ALIASES",
    "PRICE_COLUMNS",
    "TIMESTAMP_ALIASES",
    "Block",
    "Chunk",
    "Feed",
    "LazyColumns",
    "RawBlock",
    "check_distinct_names",
    "find_column",
    "make_ts_converter",
    "merge_raw_blocks",
    "row_of",
]

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
#: names a timestamp column may have (matched case-insensitively), in order of preference
TIMESTAMP_ALIASES: tuple[str, ...] = ("timestamp", "datetime", "date", "time", "dt")
#: names an asset column may have (matched case-insensitively)
ASSET_ALIASES: tuple[str, ...] = ("asset_id", "symbol")


def find_column(columns: Sequence[str], aliases: Sequence[str]) -> str | None:
    """Return the first of ``columns`` matching ``aliases`` case-insensitively, or None."""
    lower = {c.lower(): c for c in columns}
    return next((lower[a] for a in aliases if a in lower), None)


def check_distinct_names(
    columns: Sequence[str], source: str, normalise: Callable[[str], str] | None = None
) -> None:
    """Raise unless the column names stay distinct once normalised (lower-cased by default).

    Columns are matched case-insensitively (``Close`` is the close), so two names that
    differ only by case (``close`` and ``Close``) would make one silently hide the other.

    Raises
    ------
    DataValidationError
        Naming ``source`` and both columns.
    """
    seen: dict[str, str] = {}
    for name in columns:
        key = normalise(name) if normalise is not None else name.lower()
        other = seen.get(key)
        if other is None:
            seen[key] = name
            continue
        if other == name:
            raise DataValidationError(f"{source}: column {name!r} appears twice")
        how = "differ only by case" if normalise is None else f"both read as {key!r}"
        raise DataValidationError(
            f"{source}: columns {other!r} and {name!r} {how}; column names are matched "
            "case-insensitively, so one would hide the other: rename or drop one"
        )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)


@dataclass
class RawBlock:
    """Rows one feed provides for a time window, before merging.

    ``code`` holds the feed's *local* asset codes (indexes into ``Feed.asset_ids``).
    """

    ts: np.ndarray
    code: np.ndarray
    cols: dict[str, np.ndarray]


@runtime_checkable
class Feed(Protocol):
    """What the engine needs from a data feed.

    A feed owns the conversion from its source (frame, file) to arrays, and validates the
    source at that boundary. ``load`` is called once per time window, in order.

    A feed that streams may also have a ``chunk_size`` attribute: ``"<n>mo"``, ``"<n>w"``,
    ``"<n>d"`` or ``"<n>y"`` (``None`` for one window). The clock cuts time into windows of
    the smallest ``chunk_size`` of its feeds, counted from the unit boundary at or before
    the first bar. A feed may also have ``window_edges(lo, hi) -> list[int] | None``: extra
    cut timestamps in ``(lo, hi)`` (the builtin feeds use it for row and memory limits,
    never splitting a timestamp); the clock cuts at the union of all of them. And it may
    have ``has_rows(start_ns, end_ns) -> bool`` (is any row in ``[start_ns, end_ns)``?):
    with a run period (``BacktestEngine(start=..., end=...)``) the clock asks it before the
    run, so a period that selects no bars fails at set-up; without it the clock finds out
    only after loading every window.
    """

    @property
    def name(self) -> str:
        """Name used in messages (file path or "frame")."""
        ...

    @property
    def asset_ids(self) -> Sequence[str]:
        """Assets the feed provides, sorted; local code = index."""
        ...

    @property
    def signal_names(self) -> Sequence[str]:
        """Signal columns."""
        ...

    @property
    def indicator_names(self) -> Sequence[str]:
        """Indicator columns."""
        ...

    @property
    def timezone(self) -> str | None:
        """Timezone of the timestamps, None when naive."""
        ...

    def time_bounds(self) -> tuple[int, int]:
        """Return the first and last timestamp (int64 ns UTC), inclusive."""
        ...

    def load(self, start_ns: int, end_ns: int) -> RawBlock:
        """Return the validated rows with ``start_ns <= ts < end_ns``."""
        ...

    def context_frames(self) -> Mapping[str, tuple[np.ndarray, ...]]:
        """Return market-wide series the feed carries.

        ``name -> (ts_ns, values)``, or ``(ts_ns, values, visible_ns)`` when rows have an
        availability time later than their timestamp.
        """
        ...


@dataclass
class Block:
    """Merged rows of every feed for one time window (see module docstring for shapes)."""

    ts: np.ndarray
    offsets: np.ndarray
    code: np.ndarray
    cols: dict[str, np.ndarray]
    _rows_by_code: dict[int, np.ndarray] | None = field(default=None, repr=False)
    _row_ts: np.ndarray | None = field(default=None, repr=False)
    _ts_by_code: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _dense: np.ndarray | bool | None = field(default=False, repr=False)

    @property
    def n_rows(self) -> int:
        """Return the number of rows."""
        return int(self.code.shape[0])

    def rows_of(self, code: int) -> np.ndarray:
        """Return the row indexes of one asset, ascending (computed once per block)."""
        if self._rows_by_code is None:
            order = np.argsort(self.code, kind="stable")
            codes_sorted = self.code[order]
            uniq, starts = np.unique(codes_sorted, return_index=True)
            bounds = [*starts.tolist(), len(order)]
            self._rows_by_code = {
                int(c): order[bounds[k] : bounds[k + 1]] for k, c in enumerate(uniq.tolist())
            }
        return self._rows_by_code.get(code, np.empty(0, dtype=np.int64))

    def row_ts(self) -> np.ndarray:
        """Return the timestamp of every row (computed once per block)."""
        if self._row_ts is None:
            self._row_ts = np.repeat(self.ts, np.diff(self.offsets))
        return self._row_ts

    def dense_codes(self) -> np.ndarray | None:
        """Return the asset codes when every timestamp has the same assets, else None.

        Then the rows form a ``(timestamps, assets)`` grid and a column reshapes to it.
        """
        if self._dense is False:
            counts = np.diff(self.offsets)
            k = int(counts[0]) if counts.shape[0] else 0
            first = self.code[:k]
            dense = (
                k > 0
                and bool((counts == k).all())
                and bool((self.code.reshape(-1, k) == first).all())
            )
            self._dense = first.copy() if dense else None
        return self._dense  # type: ignore[return-value]

    def ts_of(self, code: int) -> np.ndarray:
        """Return the timestamps of one asset's rows (cached per asset)."""
        out = self._ts_by_code.get(code)
        if out is None:
            out = self.row_ts()[self.rows_of(code)]
            self._ts_by_code[code] = out
        return out


def merge_raw_blocks(parts: Sequence[RawBlock], column_names: Sequence[str]) -> Block:
    """Merge per-feed rows (already in global codes) into one sorted :class:`Block`.

    Rows are ordered by timestamp, then asset code, so the asset order inside a
    timestamp is stable across runs. Columns a feed lacks are filled with ``NaN``.
    """
    parts = [p for p in parts if p.ts.shape[0]]
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return Block(
            empty,
            np.zeros(1, dtype=np.int64),
            empty.astype(np.int32),
            {c: np.empty(0) for c in column_names},
        )
    if len(parts) == 1:
        p = parts[0]
        ts, code = p.ts, p.code
        cols = {c: _col(p, c) for c in column_names}
        if ts.shape[0] > 1 and not _sorted_by_ts_code(ts, code):
            order = np.lexsort((code, ts))
            ts, code = ts[order], code[order]
            cols = {c: v[order] for c, v in cols.items()}
    else:
        ts = np.concatenate([p.ts for p in parts])
        code = np.concatenate([p.code for p in parts])
        order = np.lexsort((code, ts))
        ts, code = ts[order], code[order]
        cols = {c: np.concatenate([_col(p, c) for p in parts])[order] for c in column_names}
    # ts is sorted here: a timestamp starts wherever it differs from the previous row
    starts = np.flatnonzero(np.concatenate(([True], ts[1:] != ts[:-1])))
    offsets = np.empty(starts.shape[0] + 1, dtype=np.int64)
    offsets[:-1] = starts
    offsets[-1] = ts.shape[0]
    uniq = ts[starts]
    return Block(uniq.astype(np.int64), offsets, code.astype(np.int32, copy=False), cols)


def _col(part: RawBlock, name: str) -> np.ndarray:
    col = part.cols.get(name)
    if col is None:
        return np.full(part.ts.shape[0], np.nan)
    return col


def _sorted_by_ts_code(ts: np.ndarray, code: np.ndarray) -> bool:
    dts = np.diff(ts)
    if (dts < 0).any():
        return False
    same = dts == 0
    return not (same & (np.diff(code) <= 0)).any()


class LazyColumns(dict[str, list[float]]):
    """Column name -> Python list for one chunk, converted from numpy on first access.

    A hit is a plain ``dict`` lookup (C speed); a miss converts the slice once. An unknown
    name raises ``KeyError`` listing the names available.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], start: int, stop: int, kind: str):
        super().__init__()
        self._arrays = arrays
        self._start = start
        self._stop = stop
        self._kind = kind

    def __missing__(self, key: str) -> list[float]:
        arr = self._arrays.get(key)
        if arr is None:
            available = ", ".join(repr(k) for k in self._arrays) or "none"
            raise KeyError(f"no {self._kind} column {key!r}; available: {available}")
        values: list[float] = arr[self._start : self._stop].tolist()
        self[key] = values
        return values

    def keys(self) -> Any:  # the full set of names, not only the converted ones
        return self._arrays.keys()


class Chunk:
    """A slice of a block prepared for the per-bar loop.

    Attributes
    ----------
    ts : list[int]
        Timestamps of the slice (int ns).
    offsets : list[int]
        Row bounds per timestamp, relative to the chunk's first row.
    code : list[int]
        Asset code per row.
    px, sig, ind : LazyColumns
        Price/volume, signal and indicator columns.
    """

    __slots__ = (
        "block",
        "code",
        "context_at",
        "ind",
        "offsets",
        "px",
        "sig",
        "to_datetime",
        "ts",
        "ts_index0",
    )

    def __init__(
        self,
        block: Block,
        t0: int,
        t1: int,
        signal_names: Sequence[str],
        indicator_names: Sequence[str],
        to_datetime: Callable[[int], datetime],
        context_at: Callable[[int], Mapping[str, float]],
    ) -> None:
        r0 = int(block.offsets[t0])
        r1 = int(block.offsets[t1])
        self.block = block
        self.ts_index0 = t0
        self.ts = block.ts[t0:t1].tolist()
        self.offsets = (block.offsets[t0 : t1 + 1] - r0).tolist()
        self.code = block.code[r0:r1].tolist()
        cols = block.cols
        self.px = LazyColumns({c: cols[c] for c in PRICE_COLUMNS}, r0, r1, "price")
        self.sig = LazyColumns({c: cols[c] for c in signal_names}, r0, r1, "signal")
        self.ind = LazyColumns({c: cols[c] for c in indicator_names}, r0, r1, "indicator")
        self.to_datetime = to_datetime
        self.context_at = context_at


def make_ts_converter(timezone: str | None) -> Callable[[int], datetime]:
    """Return a function turning int ns UTC into a ``datetime`` in ``timezone``.

    Naive data (``timezone is None``) gives naive datetimes. Precision is microseconds.
    """
    if timezone is None:

        def naive(ns: int) -> datetime:
            return _EPOCH_NAIVE + timedelta(microseconds=ns // 1000)

        return naive
    tz = ZoneInfo(timezone)

    def aware(ns: int) -> datetime:
        return (_EPOCH + timedelta(microseconds=ns // 1000)).astimezone(tz)

    return aware


def row_of(chunk: Chunk, i: int, code: int) -> int:
    """Return the row of asset ``code`` at timestamp ``i`` of ``chunk``, or -1 if absent."""
    lo, hi = chunk.offsets[i], chunk.offsets[i + 1]
    j = bisect_left(chunk.code, code, lo, hi)
    return j if j < hi and chunk.code[j] == code else -1
