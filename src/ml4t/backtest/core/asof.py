"""As-of lookups for data at its own frequency: context series and low-frequency signals.

A source row has a *key* (the asset code; 0 for a market-wide series), a nominal
timestamp, the time it becomes *visible* (its availability time, never earlier than the
timestamp) and values. The value of a key as of time ``t`` is taken from the row with the
latest nominal timestamp among the rows already visible at ``t`` (``visible <= t``); when
several such rows share that timestamp, the one that became visible last (a revision)
wins. A row whose nominal timestamp is more than ``max_staleness`` before ``t`` is not
served (``NaN``).

Rows are stored once, at their own frequency: a daily prediction for 500 assets costs
500 rows per day whatever the bar frequency, and the engine aligns it to the bars of one
chunk at a time (:class:`AsOfColumn`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np

from ..errors import DataValidationError

__all__ = ["AsOfColumn", "AsOfRows", "AsOfTable", "parse_duration_ns"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(w|d|h|m|min|s)\s*$")
_UNIT_NS = {"w": 604_800e9, "d": 86_400e9, "h": 3_600e9, "m": 60e9, "min": 60e9, "s": 1e9}


def parse_duration_ns(value: Any, where: str) -> int | None:
    """Return a duration in nanoseconds from a ``timedelta`` or text like ``"3d"``.

    Units: ``w``, ``d``, ``h``, ``m``/``min``, ``s``. ``None`` stays ``None``.
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        ns = int(value.total_seconds() * 1e9)
    else:
        match = _DURATION.match(str(value).lower())
        if match is None:
            raise DataValidationError(
                f"{where}: {value!r} is not a duration like '3d', '36h', '90m' or a timedelta"
            )
        ns = int(float(match.group(1)) * _UNIT_NS[match.group(2)])
    if ns <= 0:
        raise DataValidationError(f"{where}: must be a positive duration, got {value!r}")
    return ns


@dataclass
class AsOfRows:
    """Rows of a lower-frequency source before indexing (see the module docstring).

    ``code`` holds asset codes (a feed's local codes until the clock maps them), ``ts``
    the nominal timestamps and ``visible`` the availability times (int64 ns UTC).
    """

    code: np.ndarray
    ts: np.ndarray
    visible: np.ndarray
    values: dict[str, np.ndarray]
    max_stale_ns: int | None
    source: str


class AsOfTable:
    """Index of :class:`AsOfRows` answering "which row as of ``t`` for key ``k``".

    Parameters
    ----------
    rows : AsOfRows
        The source rows, in any order.
    n_keys : int
        Number of keys (asset codes are ``0 .. n_keys - 1``).
    """

    def __init__(self, rows: AsOfRows, n_keys: int) -> None:
        order = np.lexsort((rows.ts, rows.visible, rows.code))
        self.source = rows.source
        self.max_stale_ns = rows.max_stale_ns
        self._code = np.ascontiguousarray(rows.code[order], dtype=np.int64)
        self._visible = np.ascontiguousarray(rows.visible[order], dtype=np.int64)
        self._ts = np.ascontiguousarray(rows.ts[order], dtype=np.int64)
        self.values = {
            k: np.ascontiguousarray(v[order], dtype=np.float64) for k, v in rows.values.items()
        }
        self._starts = np.searchsorted(self._code, np.arange(n_keys + 1)).astype(np.int64)
        # best[j]: among rows of the same key up to j (in visibility order), the one with
        # the latest nominal timestamp (the last such row on ties)
        best = np.empty(self._ts.shape[0], dtype=np.int64)
        for k in range(n_keys):
            a, b = int(self._starts[k]), int(self._starts[k + 1])
            if a == b:
                continue
            seg = self._ts[a:b]
            running = np.maximum.accumulate(seg)
            new = np.where(seg >= running, np.arange(b - a), 0)
            best[a:b] = np.maximum.accumulate(new) + a
        self._best = best

    @property
    def n_rows(self) -> int:
        """Return the number of source rows."""
        return int(self._ts.shape[0])

    @property
    def nbytes(self) -> int:
        """Return the memory held by the index and values, in bytes."""
        arrays = [self._code, self._visible, self._ts, self._best, *self.values.values()]
        return int(sum(a.nbytes for a in arrays))

    def index(self, ts: np.ndarray, code: np.ndarray | int) -> np.ndarray:
        """Return the source row serving each ``(ts, code)`` query, ``-1`` where none.

        ``ts`` is int64 ns; ``code`` an array of the same length or one code for all.
        """
        ts = np.asarray(ts, dtype=np.int64)
        out = np.full(ts.shape[0], -1, dtype=np.int64)
        if not ts.shape[0] or not self._ts.shape[0]:
            return out
        if np.ndim(code) == 0:
            self._fill(out, slice(None), ts, int(code))  # type: ignore[arg-type]
        else:
            codes = np.asarray(code)
            if codes.shape[0] and (codes == codes[0]).all():
                self._fill(out, slice(None), ts, int(codes[0]))
            else:
                order = np.argsort(codes, kind="stable")
                sorted_codes = codes[order]
                uniq, first = np.unique(sorted_codes, return_index=True)
                bounds = [*first.tolist(), sorted_codes.shape[0]]
                for j, k in enumerate(uniq.tolist()):
                    sel = order[bounds[j] : bounds[j + 1]]
                    self._fill(out, sel, ts[sel], int(k))
        return out

    def _fill(self, out: np.ndarray, where: Any, ts: np.ndarray, key: int) -> None:
        if key < 0 or key + 1 >= self._starts.shape[0]:
            return
        a, b = int(self._starts[key]), int(self._starts[key + 1])
        if a == b:
            return
        pos = np.searchsorted(self._visible[a:b], ts, side="right") - 1
        idx = np.where(pos >= 0, self._best[a + np.maximum(pos, 0)], -1)
        if self.max_stale_ns is not None:
            stale = ts - self._ts[np.maximum(idx, 0)] > self.max_stale_ns
            idx = np.where(stale, -1, idx)
        out[where] = idx

    def scalar(self, name: str, ts: int, key: int = 0) -> float:
        """Return the as-of value of ``name`` for one ``(ts, key)`` query (``NaN`` if none)."""
        a, b = int(self._starts[key]), int(self._starts[key + 1])
        pos = int(np.searchsorted(self._visible[a:b], ts, side="right")) - 1
        if pos < 0:
            return float("nan")
        j = int(self._best[a + pos])
        if self.max_stale_ns is not None and ts - int(self._ts[j]) > self.max_stale_ns:
            return float("nan")
        return float(self.values[name][j])

    def take(self, name: str, idx: np.ndarray) -> np.ndarray:
        """Return the values of column ``name`` at source rows ``idx`` (``NaN`` for -1)."""
        values = self.values[name]
        if not values.shape[0]:
            return np.full(idx.shape[0], np.nan)
        out: np.ndarray = values[np.maximum(idx, 0)]
        out[idx < 0] = np.nan
        return out

    def lookup(self, name: str, ts: np.ndarray, code: np.ndarray | int) -> np.ndarray:
        """Return the as-of values of ``name`` for each ``(ts, code)`` query."""
        return self.take(name, self.index(ts, code))

    def nominal_ts(self, idx: np.ndarray) -> np.ndarray:
        """Return the nominal timestamps of source rows ``idx`` (-1 stays -1)."""
        if not self._ts.shape[0]:
            return np.full(np.shape(idx), -1, dtype=np.int64)
        return np.where(idx >= 0, self._ts[np.maximum(idx, 0)], -1)


class BlockAsOf:
    """The as-of index of one block's rows, computed per slice and shared by its columns."""

    __slots__ = ("_block", "_cache", "table")

    def __init__(self, table: AsOfTable, block: Any) -> None:
        self.table = table
        self._block = block
        self._cache: tuple[Any, np.ndarray] | None = None

    def index(self, key: Any) -> np.ndarray:
        """Return the source rows for block rows ``key`` (a slice, an index array or an int)."""
        cacheable = isinstance(key, slice)
        if cacheable and self._cache is not None and self._cache[0] == (key.start, key.stop):
            return self._cache[1]
        block = self._block
        ts = np.atleast_1d(block.row_ts()[key])
        code = np.atleast_1d(block.code[key])
        idx = self.table.index(ts, code)
        if cacheable:
            self._cache = ((key.start, key.stop), idx)
        return idx


class AsOfColumn:
    """A block column whose values come from an :class:`AsOfTable`, aligned on access.

    It stands in for a numpy column in ``Block.cols``: indexing it with a slice, an
    index array or an int returns the aligned values of those rows. Nothing the size of
    the block is stored.
    """

    __slots__ = ("_index", "_name")

    def __init__(self, index: BlockAsOf, name: str) -> None:
        self._index = index
        self._name = name

    def __getitem__(self, key: Any) -> Any:
        values = self._index.table.take(self._name, self._index.index(key))
        return float(values[0]) if isinstance(key, int | np.integer) else values

    def __len__(self) -> int:
        return int(self._index._block.code.shape[0])

    @property
    def shape(self) -> tuple[int]:
        """Return ``(rows of the block,)`` like a numpy column."""
        return (len(self),)


def check_rows(rows: AsOfRows, names: Mapping[int, str]) -> None:
    """Reject duplicate ``(asset, timestamp, available_at)`` rows, naming the first one."""
    if rows.ts.shape[0] < 2:
        return
    order = np.lexsort((rows.visible, rows.ts, rows.code))
    c, t, v = rows.code[order], rows.ts[order], rows.visible[order]
    dup = np.flatnonzero((c[1:] == c[:-1]) & (t[1:] == t[:-1]) & (v[1:] == v[:-1]))
    if dup.size:
        j = int(order[dup[0] + 1])
        asset = names.get(int(rows.code[j]), str(int(rows.code[j])))
        raise DataValidationError(
            f"{rows.source}: duplicate row for asset {asset!r} at timestamp "
            f"{np.datetime64(int(rows.ts[j]), 'ns')}; give each (asset, timestamp) "
            "once, or distinct available_at times for revisions"
        )
