"""Point-in-time history of bars: ``Strategy.history`` and trade excursions.

Keeps the blocks the clock has loaded (all of them for in-memory data; for lazy sources
the current block plus enough earlier ones to cover ``history_bars`` timestamps) and
answers lookups that never return a bar later than the clock's current timestamp.
"""

from __future__ import annotations

from collections import deque

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
        """Return up to ``n`` values of ``field``, oldest first, at or before now."""
        now = self._clock.now_ns
        parts: list[np.ndarray] = []
        need = n
        for block in reversed(self._blocks):
            if field not in block.cols:
                raise KeyError(f"no column {field!r}; available: {sorted(block.cols)}")
            rows = self._rows(block, code, np.iinfo(np.int64).min, now)
            take = rows[max(0, rows.shape[0] - need) :]
            if take.shape[0]:
                parts.append(block.cols[field][take])
                need -= take.shape[0]
            if need <= 0:
                break
        if need > 0 and self._dropped:
            raise BacktestError(
                f"history of {n} bars reaches beyond the retained data; raise "
                f"BacktestEngine(history_bars=...) above {self._history_bars}"
            )
        if not parts:
            return np.empty(0)
        return np.concatenate(parts[::-1]) if len(parts) > 1 else parts[0].copy()

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
