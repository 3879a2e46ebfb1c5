"""Point-in-time history of bars: ``Strategy.history`` and trade excursions.

Keeps the blocks the clock has loaded (all of them for in-memory data; for lazy sources
the current block plus enough earlier ones to cover ``history_bars`` timestamps) and
answers lookups that never return a bar later than the clock's current timestamp.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from ..errors import BacktestError
from .clock import Clock
from .data import Block

__all__ = ["History"]


class History:
    """Look up past values of one asset up to the clock's current timestamp."""

    def __init__(self, clock: Clock, history_bars: int) -> None:
        self._clock = clock
        self._blocks: deque[Block] = deque()
        self._history_bars = history_bars
        self._dropped = False

    def add_block(self, block: Block) -> None:
        """Retain a newly loaded block, dropping old ones beyond the retention window."""
        self._blocks.append(block)
        while len(self._blocks) > 1:
            older = sum(b.ts.shape[0] for b in list(self._blocks)[1:-1])
            if older < self._history_bars:
                break
            self._blocks.popleft()
            self._dropped = True

    def _rows(self, block: Block, code: int, lo_ts: int, hi_ts: int) -> np.ndarray:
        rows = block.rows_of(code)
        if not rows.shape[0]:
            return rows
        ts = block.ts_of(code)
        a = int(np.searchsorted(ts, lo_ts, side="left"))
        b = int(np.searchsorted(ts, hi_ts, side="right"))
        return rows[a:b]

    def get(self, code: int, field: str, n: int) -> np.ndarray:
        """Return up to ``n`` values of ``field``, oldest first, at or before now.

        The result is read-only. When the values are contiguous in one block (single-asset
        data) it is a view of the column, otherwise a gather of at most ``n`` values:
        nothing the size of the column is copied.
        """
        now = self._clock.now_ns
        parts: list[np.ndarray] = []
        need = n
        for block in reversed(self._blocks):
            col = self._column(block, field)
            rows = self._rows(block, code, np.iinfo(np.int64).min, now)
            take = rows[max(0, rows.shape[0] - need) :]
            if take.shape[0]:
                first, last = int(take[0]), int(take[-1])
                if last - first + 1 == take.shape[0]:
                    parts.append(col[first : last + 1])
                else:
                    parts.append(col[take])
                need -= take.shape[0]
            if need <= 0:
                break
        self._check_retained(need, n)
        if not parts:
            return _readonly(np.empty(0))
        return _readonly(np.concatenate(parts[::-1]) if len(parts) > 1 else parts[0])

    def cross_section(self, codes: list[int], field: str, n: int) -> np.ndarray:
        """Return ``field`` for several assets over the last ``n`` timestamps at or before now.

        Shape ``(m, len(codes))`` with ``m <= n`` timestamps, oldest first; ``NaN`` where
        an asset has no bar at a timestamp. Read-only.
        """
        now = self._clock.now_ns
        pieces: list[np.ndarray] = []
        need = n
        for block in reversed(self._blocks):
            col = self._column(block, field)
            t1 = int(np.searchsorted(block.ts, now, side="right"))
            t0 = max(0, t1 - need)
            if t1 > t0:
                pieces.append(self._matrix(block, col, codes, t0, t1))
                need -= t1 - t0
            if need <= 0:
                break
        self._check_retained(need, n)
        if not pieces:
            return _readonly(np.empty((0, len(codes))))
        return _readonly(np.concatenate(pieces[::-1]) if len(pieces) > 1 else pieces[0])

    def _matrix(self, block: Block, col: Any, codes: list[int], t0: int, t1: int) -> np.ndarray:
        r0, r1 = int(block.offsets[t0]), int(block.offsets[t1])
        dense = block.dense_codes()
        if dense is not None:  # every asset at every timestamp: a reshape of the rows
            where = np.searchsorted(dense, codes)
            ok = (where < dense.shape[0]) & (dense[np.minimum(where, dense.shape[0] - 1)] == codes)
            if ok.all():
                out: np.ndarray = np.asarray(col[r0:r1]).reshape(t1 - t0, dense.shape[0])
                return out[:, where]
        out = np.full((t1 - t0, len(codes)), np.nan)
        lo_ts, hi_ts = int(block.ts[t0]), int(block.ts[t1 - 1])
        for j, code in enumerate(codes):
            rows = self._rows(block, code, lo_ts, hi_ts)
            if rows.shape[0]:
                pos = np.searchsorted(block.ts, block.row_ts()[rows]) - t0
                out[pos, j] = col[rows]
        return out

    @staticmethod
    def _column(block: Block, field: str) -> Any:
        if field == "timestamp":
            return block.row_ts()
        col = block.cols.get(field)
        if col is None:
            raise KeyError(f"no column {field!r}; available: {sorted(block.cols)}")
        return col

    def _check_retained(self, need: int, n: int) -> None:
        if need > 0 and self._dropped:
            raise BacktestError(
                f"history of {n} bars reaches beyond the retained data; raise "
                f"BacktestEngine(history_bars=...) above {self._history_bars}"
            )

    def extremes(self, code: int, lo_ts: int, hi_ts: int) -> tuple[float, float]:
        """Return ``(max high, min low)`` of an asset over ``[lo_ts, hi_ts]``."""
        hi, lo = -np.inf, np.inf
        for block in self._blocks:
            if block.ts[-1] < lo_ts or block.ts[0] > hi_ts:
                continue
            rows = self._rows(block, code, lo_ts, hi_ts)
            if rows.shape[0]:
                hi = max(hi, float(block.cols["high"][rows].max()))
                lo = min(lo, float(block.cols["low"][rows].min()))
        return hi, lo


def _readonly(values: np.ndarray) -> np.ndarray:
    out = values.view()
    out.flags.writeable = False
    return out
