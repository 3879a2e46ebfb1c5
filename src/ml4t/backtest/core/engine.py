"""The backtest engine: the per-bar loop and its phases.

Per timestamp: session bookkeeping (only on a new calendar day), advance the clock and
context, update last prices, broker ``process_open`` (only if orders are working),
strategy callbacks for every asset row, broker ``process_close``, then record cash and
positions value. Everything else (results, metrics, excursions) is vectorised after the
loop or done once per block.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, StrategyError
from .clock import Clock, describe_ts
from .context import Context
from .data import Chunk, Feed, row_of
from .events import MarketEvent
from .history import History
from .orders import Order
from .strategy import Strategy

if TYPE_CHECKING:
    from .broker import Broker
    from .results import BacktestResult

__all__ = ["DEFAULTS", "BacktestEngine"]

#: Factories the public facade installs (the core never imports the builtins).
DEFAULTS: dict[str, Callable[[], Any]] = {}

_CHUNK_TIMESTAMPS = 1 << 16
_PKG_DIR = str(Path(__file__).resolve().parent.parent)
_DAY_NS = 86_400_000_000_000


class BacktestEngine:
    """Run a strategy over one or more feeds against a broker.

    Parameters
    ----------
    feed : Feed, optional
        A single feed (``PolarsDataFeed``); or use ``feeds``.
    strategy : Strategy
        The strategy to run.
    broker : Broker, optional
        Defaults to ``SimulationBroker()`` (100,000 cash, no costs).
    feeds : mapping or sequence of Feed, optional
        Several feeds, merged chronologically. Mapping keys name the feeds.
    context : Context, optional
        Market-wide values; feeds' ``context_data`` is added to it.
    history_bars : int, default 10_000
        Timestamps of past data kept for ``history()`` when a lazy feed is read in
        windows (in-memory data is always fully available).
    name : str, optional
        Run name recorded in the result's metadata.
    """

    def __init__(
        self,
        feed: Feed | None = None,
        strategy: Strategy | None = None,
        broker: Broker | None = None,
        *,
        feeds: Mapping[str, Feed] | Sequence[Feed] | None = None,
        context: Context | None = None,
        history_bars: int = 10_000,
        name: str | None = None,
    ) -> None:
        if feed is not None and feeds is not None:
            raise ConfigError("give either feed or feeds, not both")
        if feeds is None:
            feed_list: list[Feed] = [] if feed is None else [feed]
        elif isinstance(feeds, Mapping):
            feed_list = []
            for key, f in feeds.items():
                if not isinstance(f, Feed):
                    raise ConfigError(
                        f"feeds[{key!r}] is a {type(f).__name__}, not a feed; wrap it in "
                        f"PolarsDataFeed(frame, asset_id={key!r})"
                    )
                feed_list.append(f)
        else:
            feed_list = list(feeds)
        if not feed_list:
            raise ConfigError("BacktestEngine needs a feed (feed=...) or feeds (feeds=...)")
        for f in feed_list:
            if not isinstance(f, Feed):
                raise ConfigError(f"{type(f).__name__} is not a feed (see ml4t.backtest.Feed)")
        if strategy is None or not isinstance(strategy, Strategy):
            raise ConfigError(
                f"strategy must be a Strategy instance, got {type(strategy).__name__}"
            )
        if broker is None:
            broker = DEFAULTS["broker"]()
        if history_bars < 1:
            raise ConfigError(f"history_bars must be >= 1, got {history_bars}")
        self.feeds = feed_list
        self.strategy = strategy
        self.broker: Any = broker
        self.context = context if context is not None else Context()
        self.history_bars = int(history_bars)
        self.name = name or type(strategy).__name__
        self.clock = Clock(self.feeds)
        self.history = History(self.clock, self.history_bars)
        self._chunk: Chunk | None = None
        self._i = 0

    # --- helpers the strategy calls ------------------------------------------------------
    def signals_now(self, code: int) -> dict[str, float]:
        """Return the signal values of ``code`` at the current timestamp (empty if no bar)."""
        chunk = self._chunk
        if chunk is None or not chunk.sig.keys():
            return {}
        i = self._i
        if i >= len(chunk.ts) or chunk.ts[i] != self.clock.now_ns:
            return {}
        row = row_of(chunk, i, code)
        if row < 0:
            return {}
        return {k: chunk.sig[k][row] for k in chunk.sig.keys()}

    def context_now(self) -> dict[str, float]:
        """Return the context values as of now (empty without context)."""
        if not len(self.context) or self.clock.now_ns < 0:
            return {}
        return dict(self.context.as_of(self.clock.now_ns))

    # --- broker listener -----------------------------------------------------------------
    def order_filled(self, order: Order, fill: Any) -> None:
        """Forward a fill to the strategy."""
        self.strategy.on_fill(fill)

    def order_rejected(self, order: Order, reason: str) -> None:
        """Forward a rejection to the strategy."""
        self._rejections += 1
        self.strategy.on_order_rejected(order, reason)

    def order_cancelled(self, order: Order, reason: str) -> None:
        """Forward a cancellation or expiry to the strategy."""
        self.strategy.on_order_cancelled(order, reason)

    # --- run -----------------------------------------------------------------------------
    def run(self) -> BacktestResult:
        """Run the backtest and return its result.

        Raises
        ------
        StrategyError
            When strategy code raises; it names the timestamp and asset, chains the
            original exception and carries ``partial_result`` (marked incomplete).
        """
        from .results import build_result

        t0 = time.perf_counter()
        clock, broker, strategy = self.clock, self.broker, self.strategy
        extra: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for f in self.feeds:
            extra.update(f.context_frames())
        self.context.bind(clock.timezone, extra)
        broker.setup(clock.asset_ids, self, clock)
        self.history = History(clock, self.history_bars)
        pf = broker.portfolio
        pf.trades.scanner = self.history.extremes
        clock.now_ns, clock.now_index = -1, 0
        self._rejections = 0
        strategy._bind(self)
        rec: dict[str, list[float]] = {"cash": [], "net": [], "gross": [], "npos": []}
        ts_parts: list[np.ndarray] = []
        where: list[Any] = [None, None]
        try:
            strategy.on_start()
            state = _SessionState()
            for block in clock.blocks():
                self.history.add_block(block)
                ts_parts.append(block.ts)
                for t0_ in range(0, block.ts.shape[0], _CHUNK_TIMESTAMPS):
                    t1_ = min(t0_ + _CHUNK_TIMESTAMPS, block.ts.shape[0])
                    chunk = Chunk(block, t0_, t1_, clock.signal_names, clock.indicator_names,
                                  clock.to_datetime, self.context.as_of)
                    self._run_chunk(chunk, rec, state, where)
                pf.trades.checkpoint(int(block.ts[-1]))
            if state.day is not None:
                self._end_session(state.last_ts)
        except Exception as exc:
            elapsed = time.perf_counter() - t0
            partial = build_result(self, ts_parts, rec, elapsed, complete=False)
            raise self._wrap_error(exc, where, partial) from exc
        if clock.now_ns >= 0:
            pf.trades.close_all_open(clock.now_ns, clock.now_index - 1, pf.last_price)
        result = build_result(self, ts_parts, rec, time.perf_counter() - t0, complete=True)
        strategy.on_end(result)
        return result

    def _run_chunk(self, chunk: Chunk, rec: dict[str, list[float]], state: _SessionState,
                   where: list[Any]) -> None:
        clock, broker, strategy, context = self.clock, self.broker, self.strategy, self.context
        pf = broker.portfolio
        self._chunk = chunk
        ts_list, offsets, codes = chunk.ts, chunk.offsets, chunk.code
        closes = chunk.px["close"]
        asset_ids = clock.asset_ids
        last = pf.last_price
        held = pf.held
        on_bar = strategy.on_market_data
        advance = context.advance if len(context) else None
        days = _day_keys(chunk, clock.timezone)
        rec_cash, rec_net = rec["cash"].append, rec["net"].append
        rec_gross, rec_npos = rec["gross"].append, rec["npos"].append
        mark = pf.mark
        new = tuple.__new__
        ME = MarketEvent
        index = clock.now_index
        cur_day = state.day
        single_row = len(codes) == len(ts_list)
        for i in range(len(ts_list)):
            ts = ts_list[i]
            if days[i] != cur_day:
                self._i = i
                self._new_session(state, ts, days[i])
                cur_day = days[i]
            clock.now_ns = ts
            clock.now_index = index
            self._i = i
            if advance is not None:
                advance(ts)
            if single_row:
                r = i
                code = codes[i]
                last[code] = closes[i]
                if broker.has_pending:
                    broker.process_open(chunk, i)
                where[0], where[1] = ts, code
                on_bar(new(ME, (ts, asset_ids[code], closes[i], chunk, i)), context)
            else:
                r0, r1 = offsets[i], offsets[i + 1]
                for r in range(r0, r1):
                    last[codes[r]] = closes[r]
                if broker.has_pending:
                    broker.process_open(chunk, i)
                for r in range(r0, r1):
                    code = codes[r]
                    where[0], where[1] = ts, code
                    on_bar(new(ME, (ts, asset_ids[code], closes[r], chunk, r)), context)
            where[1] = None
            if broker.has_pending:
                broker.process_close(chunk, i)
            rec_cash(pf.cash)
            if held:
                net, gross = mark()
                rec_net(net)
                rec_gross(gross)
            else:
                rec_net(0.0)
                rec_gross(0.0)
            rec_npos(len(held))
            index += 1
            state.last_ts = ts
        clock.now_index = index
        state.day = cur_day

    # --- sessions ------------------------------------------------------------------------
    def _new_session(self, state: _SessionState, ts: int, day: int) -> None:
        if state.day is not None:
            self._end_session(state.last_ts)
        state.day = day
        strategy = self.strategy
        if type(strategy).before_trading_start is not Strategy.before_trading_start:
            clock = self.clock
            clock.now_ns = ts - 1  # nothing of the new session is visible yet
            if len(self.context):
                self.context.advance(ts - 1)
            strategy.before_trading_start(clock.to_datetime(ts), self.context)

    def _end_session(self, last_ts: int) -> None:
        self.clock.now_ns = last_ts
        if len(self.context):
            self.context.advance(last_ts)
        end = getattr(self.broker, "end_session", None)
        if end is not None:
            end(last_ts)
        strategy = self.strategy
        if type(strategy).after_trading_end is not Strategy.after_trading_end:
            strategy.after_trading_end(self.clock.to_datetime(last_ts), self.context)

    # --- errors --------------------------------------------------------------------------
    def _wrap_error(self, exc: Exception, where: list[Any], partial: Any) -> Exception:
        ts, code = where
        when = describe_ts(self.clock.to_datetime, ts) if ts is not None else "start-up"
        asset = self.clock.asset_ids[code] if code is not None else None
        frames = traceback.extract_tb(exc.__traceback__)
        in_user_code = bool(frames) and not frames[-1].filename.startswith(_PKG_DIR)
        if not in_user_code:
            exc.add_note(f"while handling timestamp {when}" + (f", asset {asset}" if asset else ""))
            return exc
        at = f"timestamp {when}" + (f", asset {asset!r}" if asset else "")
        message = (
            f"strategy {type(self.strategy).__name__} raised {type(exc).__name__} at {at}: "
            f"{exc}. The partial result (exc.partial_result) covers the bars before it and "
            "is marked incomplete."
        )
        return StrategyError(message, timestamp=when, asset_id=asset, partial_result=partial)


class _SessionState:
    __slots__ = ("day", "last_ts")

    def __init__(self) -> None:
        self.day: int | None = None
        self.last_ts = -1


def _day_keys(chunk: Chunk, timezone: str | None) -> list[int]:
    ts = chunk.block.ts[chunk.ts_index0 : chunk.ts_index0 + len(chunk.ts)]
    if timezone is None:
        return (ts // _DAY_NS).tolist()  # type: ignore[no-any-return]
    import pandas as pd

    local = pd.DatetimeIndex(ts.astype("datetime64[ns]")).tz_localize("UTC").tz_convert(timezone)
    return (local.tz_localize(None).asi8 // _DAY_NS).tolist()  # type: ignore[no-any-return]

