"""The per-bar runner: the event loop and its phases.

Per timestamp: session bookkeeping (only on a new calendar day), advance the clock and
context, update last prices, broker ``process_open`` (only if orders are working),
strategy callbacks for every asset row (or one batch callback), broker
``process_close``, then record cash and positions value. Everything else (results,
metrics, excursions) is vectorised after the loop or done once per block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataValidationError
from .batch import BatchStrategy, BatchView, chunk_frame
from .calendar import calendar_day_keys
from .clock import describe_ts
from .data import Block, Chunk
from .events import MarketEvent
from .strategy import Strategy

if TYPE_CHECKING:
    from .run import Run
    from .runtime import Progress

__all__ = ["EventRunner"]

_CHUNK_TIMESTAMPS = 1 << 16
#: a chunk's columns become Python lists for the loop: bound their rows (memory)
_CHUNK_ROWS = 1 << 18


class EventRunner:
    """Run a strategy bar by bar (``Strategy``) or timestamp by timestamp (``BatchStrategy``)."""

    def __init__(self, run: Run) -> None:
        self._run = run
        self.batch = isinstance(run.strategy, BatchStrategy)
        # a strategy that could run in a kernel but does not is on "the event path"
        fallback = "fallback_reason" in run.run_info
        self.mode = "batch" if self.batch and not fallback else "event"
        self.state = _SessionState()
        self.block: Block | None = None
        self.block_marked = False
        self._batch_names: tuple[str, ...] = ()
        self._progress: Progress | None = None
        strategy = run.strategy
        self._before = type(strategy).before_trading_start is not Strategy.before_trading_start
        self._after = type(strategy).after_trading_end is not Strategy.after_trading_end

    def run(self, run: Run, progress: Progress | None) -> None:
        """Run every block of the clock through the loop, marking the books per block."""
        clock, strategy = run.clock, run.strategy
        pf = run.broker.portfolio
        books = run.books
        assert books is not None
        self._progress = progress
        if self.batch:
            strategy._batch_view = BatchView(  # type: ignore[attr-defined]
                np.frombuffer(pf.qty, dtype=np.float64)
            )
            self._batch_names = (*clock.signal_names, *clock.indicator_names)
        state = self.state
        blocks = clock.blocks()
        upcoming = next(blocks, None)
        while upcoming is not None:
            block = self.block = upcoming
            self.block_marked = False
            run.history.add_block(block)
            n = block.ts.shape[0]
            for c0, c1 in _chunk_bounds(block.offsets):
                chunk = Chunk(
                    block,
                    c0,
                    c1,
                    clock.signal_names,
                    clock.indicator_names,
                    clock.to_datetime,
                    run.context.as_of,
                )
                self._run_chunk(chunk)
            upcoming = next(blocks, None)
            if (
                state.day is not None
                and not state.closed
                and (upcoming is None or self._keys(upcoming.ts[:1])[0] != state.day)
            ):
                # the session does not continue in the next block: end it now, so fills
                # at its close (market-on-close) are booked before this block is marked
                self._end_session(state.last_ts)
                state.closed = True
            run.ts_parts.append(block.ts)
            books.mark_block(block, pf.fills, n)
            self.block_marked = True
            pf.trades.checkpoint(int(block.ts[-1]))
        if state.day is not None:
            clock.override_ns = None
            run.close_open_trades(state.last_ts, state.index - 1)

    def salvage(self, run: Run) -> bool:
        """Mark the books up to the failing timestamp and close open trades there."""
        clock, block = run.clock, self.block
        books = run.books
        assert books is not None
        if block is not None and not self.block_marked:
            # the failing timestamp is included: its fills happened and are in the ledger
            done = run.chunk.ts_index0 + clock.i + 1 if run.chunk is not None else 0
            run.ts_parts.append(block.ts[:done])
            books.mark_block(block, run.broker.portfolio.fills, done)
        rows = sum(part.shape[0] for part in run.ts_parts)
        if rows:
            # open positions become open trades marked at the prices of the last row of
            # the books, as at the end of a complete run
            clock.override_ns = None
            last_ts = int(next(p for p in reversed(run.ts_parts) if p.shape[0])[-1])
            run.close_open_trades(last_ts, rows - 1)
        return True

    def _run_chunk(self, chunk: Chunk) -> None:
        """Run the per-bar loop over one chunk (the hot path)."""
        run, state = self._run, self.state
        clock, broker, context = run.clock, run.broker, run.context
        run.chunk = chunk
        clock.chunk_ts = ts_list = chunk.ts
        clock.base_index = state.index
        offsets, codes = chunk.offsets, chunk.code
        closes = chunk.px["close"]
        asset_ids = clock.asset_ids
        on_bar = run.strategy.on_market_data
        new, event_type = tuple.__new__, MarketEvent
        days = self._chunk_keys(chunk)
        single_row = len(codes) == len(ts_list)
        batch = self.batch
        if batch:
            frame, arrays, ids = chunk_frame(chunk, self._batch_names, asset_ids)
            view = run.strategy._batch_view  # type: ignore[attr-defined]
            on_ts = run.strategy.on_timestamp  # type: ignore[attr-defined]
            to_dt = clock.to_datetime
        i = r = 0
        try:
            for s, e in _sessions(days):
                if days[s] != state.day:
                    clock.i = s
                    self._new_session(ts_list[s], days[s])
                clock.override_ns = None
                if batch:
                    for i in range(s, e):
                        clock.i = i
                        if broker.has_pending:
                            broker.process_open(chunk, i)
                        r0, r1 = offsets[i], offsets[i + 1]
                        view._set(arrays, ids, r0, r1)
                        on_ts(to_dt(ts_list[i]), frame.slice(r0, r1 - r0), context)
                        if broker.has_pending:
                            broker.process_close(chunk, i)
                elif single_row:
                    for i in range(s, e):
                        clock.i = i
                        if broker.has_pending:
                            broker.process_open(chunk, i)
                        on_bar(
                            new(event_type, (ts_list[i], asset_ids[codes[i]], closes[i], chunk, i)),
                            context,
                        )
                        if broker.has_pending:
                            broker.process_close(chunk, i)
                else:
                    for i in range(s, e):
                        clock.i = i
                        if broker.has_pending:
                            broker.process_open(chunk, i)
                        ts = ts_list[i]
                        for r in range(offsets[i], offsets[i + 1]):
                            on_bar(
                                new(event_type, (ts, asset_ids[codes[r]], closes[r], chunk, r)),
                                context,
                            )
                        if broker.has_pending:
                            broker.process_close(chunk, i)
                state.last_ts = run.last_ts = ts_list[e - 1]
        except BaseException:
            run.where = (i, -1 if batch else i if single_row else r)
            raise
        state.index += len(ts_list)

    # --- sessions ------------------------------------------------------------------------
    def _keys(self, ts: np.ndarray) -> list[int]:
        """Return the session key of each timestamp (calendar day, or session index)."""
        run = self._run
        if run.calendar is None:
            return calendar_day_keys(ts, run.clock.timezone).tolist()  # type: ignore[no-any-return]
        return run.calendar.assign(ts)[0].tolist()  # type: ignore[no-any-return]

    def _chunk_keys(self, chunk: Chunk) -> list[int]:
        """Return the session keys of a chunk's timestamps, reporting bars outside them."""
        run = self._run
        ts = chunk.block.ts[chunk.ts_index0 : chunk.ts_index0 + len(chunk.ts)]
        if run.calendar is None:
            return calendar_day_keys(ts, run.clock.timezone).tolist()  # type: ignore[no-any-return]
        keys, outside = run.calendar.assign(ts)
        if outside.any():
            offsets = np.asarray(chunk.offsets)
            run.outside_session_bars += int(np.diff(offsets)[outside].sum())
            if run.outside_first is None:
                i = int(np.flatnonzero(outside)[0])
                asset = run.clock.asset_ids[chunk.code[chunk.offsets[i]]]
                when = describe_ts(run.clock.to_datetime, chunk.ts[i])
                run.outside_first = f"{when}, asset {asset!r}"
            if run.calendar.outside_sessions == "error":
                raise DataValidationError(run.outside_message())
        return keys.tolist()  # type: ignore[no-any-return]

    def _new_session(self, ts: int, key: int) -> None:
        run, state = self._run, self.state
        if state.day is not None and not state.closed:
            self._end_session(state.last_ts)
        state.day = key
        state.closed = False
        if self._progress is not None:
            lo, hi = run.span
            self._progress(min(max((ts - lo) / max(hi - lo, 1), 0.0), 1.0))
        cal = run.calendar
        day, when = key, ts
        if cal is not None:
            run.session_index = key
            day, when = int(cal.day[key]), int(cal.open_ns[key])
        clock = run.clock
        clock.override_ns = ts - 1  # account events happen before the first bar
        run.broker.start_session(ts, day)
        if run.pending_trade_events:  # a split settled in cash closed a trade
            run.flush_trade_events()
        if self._before:
            clock.override_ns = ts - 1  # nothing of the new session is visible yet
            run.session_ts = ts
            run.strategy.before_trading_start(clock.to_datetime(when), run.context)
            run.session_ts = None

    def _end_session(self, last_ts: int) -> None:
        run = self._run
        run.session_ts = last_ts
        run.clock.override_ns = last_ts
        run.broker.end_session(last_ts)
        when = last_ts
        if run.calendar is not None and run.session_index >= 0:
            when = max(last_ts, int(run.calendar.close_ns[run.session_index]))
        if self._after:
            run.strategy.after_trading_end(run.clock.to_datetime(when), run.context)
        session_end = run.setup.observers.session_end
        if session_end is not None:
            session_end(last_ts)
        run.session_ts = None


class _SessionState:
    __slots__ = ("closed", "day", "index", "last_ts")

    def __init__(self) -> None:
        self.day: int | None = None
        self.closed = False
        self.last_ts = -1
        self.index = 0


def _chunk_bounds(offsets: np.ndarray) -> list[tuple[int, int]]:
    """Split a block's timestamps into ``[t0, t1)`` chunks of bounded timestamps and rows.

    A chunk holds at most ``_CHUNK_TIMESTAMPS`` timestamps and, unless one timestamp alone
    has more, at most ``_CHUNK_ROWS`` rows; chunks only change how much of the block is
    turned into Python lists at once, never a result.
    """
    n = offsets.shape[0] - 1
    out = []
    t0 = 0
    while t0 < n:
        limit = int(offsets[t0]) + _CHUNK_ROWS
        t1 = int(np.searchsorted(offsets, limit, side="right")) - 1
        t1 = min(max(t1, t0 + 1), t0 + _CHUNK_TIMESTAMPS, n)
        out.append((t0, t1))
        t0 = t1
    return out


def _sessions(days: list[int]) -> list[tuple[int, int]]:
    """Split a chunk's timestamps into ``[start, end)`` runs of one session each."""
    if not days:
        return []
    arr = np.asarray(days)
    cuts = (np.flatnonzero(arr[1:] != arr[:-1]) + 1).tolist()
    starts = [0, *cuts]
    ends = [*cuts, len(days)]
    return list(zip(starts, ends, strict=True))
