"""One run of a backtest: its set-up, its state and the services strategies use.

The assembler (:class:`ml4t.backtest.BacktestEngine`) builds a :class:`RunSetup`; a
:class:`Run` holds what the run needs while it runs (history, the chunk being handled,
the books the runner marks) and answers a strategy's questions about now (prices,
signals, context, session). It is the broker's listener. The lifecycle that drives it is
:func:`ml4t.backtest.core.loop.execute`. Core knows nothing of plugins: observers and
error attribution arrive as plain callables in the set-up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .batch import BatchStrategy
from .calendar import Session, SessionCalendar
from .clock import Clock
from .context import Context
from .culprit import PluginBlame
from .data import Chunk, Feed, row_of
from .events import TradeEvent
from .history import History
from .marking import TimestampBooks
from .records import check_record_name
from .strategy import Strategy
from .trades import TRADE_COLUMNS, OpenTrade

if TYPE_CHECKING:
    from .broker import Broker
    from .orders import Order
    from .results import BacktestResult
    from .runtime import Progress

__all__ = ["Observers", "Run", "RunSetup"]


@dataclass(frozen=True)
class Observers:
    """Callables the assembler passes to see a run (the plugin hooks, for the engine).

    ``session_end`` is given only when something observes it: the per-bar loop skips the
    call otherwise, and a kernel cannot run when it is set.
    """

    run_start: Callable[[], None] | None = None
    session_end: Callable[[int], None] | None = None
    run_end: Callable[[BacktestResult], None] | None = None


@dataclass
class RunSetup:
    """Everything a run needs, built once by the assembler.

    Attributes
    ----------
    feeds, clock, broker, strategy, context, calendar
        The run's parts (the broker already has its cost models resolved).
    history_bars : int
        Timestamps of past data kept for ``history()`` with a lazy feed.
    name : str
        Run name for the result's metadata.
    observers : Observers
        Run hooks as callables.
    provenance : callable
        Returns the plugins to record in the result's metadata (called once per result).
    blame : PluginBlame, optional
        Names the plugin behind a model that raises during the run.
    """

    feeds: Sequence[Feed]
    clock: Clock
    broker: Broker
    strategy: Strategy
    context: Context
    calendar: SessionCalendar | None
    history_bars: int
    name: str
    observers: Observers = field(default_factory=Observers)
    provenance: Callable[[], list[dict[str, Any]]] = list
    blame: PluginBlame | None = None


class Run:
    """A run in progress: its state and the services strategies and runners use.

    The lifecycle that drives it is :func:`ml4t.backtest.core.loop.execute`.
    """

    def __init__(self, setup: RunSetup) -> None:
        self.setup = setup
        self.clock = setup.clock
        self.broker = setup.broker
        self.strategy = setup.strategy
        self.context = setup.context
        self.calendar = setup.calendar
        self.history = History(self.clock, setup.history_bars)
        self.mode = "batch" if isinstance(setup.strategy, BatchStrategy) else "event"
        self.run_info: dict[str, Any] = {"mode": self.mode}
        #: what the runner has booked: timestamps per block and the marked books
        self.ts_parts: list[np.ndarray] = []
        self.books: TimestampBooks | None = None
        self.span = (0, 1)
        self.outside_session_bars = 0
        self.outside_first: str | None = None
        #: where the per-bar loop is (for prices now and for naming an error's bar)
        self.chunk: Chunk | None = None
        self.where: tuple[int, int] | None = None
        self.session_ts: int | None = None
        self.session_index = -1
        self.last_ts = -1
        #: ``(timestamp index, name, value)`` of :meth:`Strategy.record` calls
        self.records: list[tuple[int, str, Any]] = []
        self.pending_trade_events: list[TradeEvent] = []
        #: set once the result is built (``record`` is then an error)
        self.finished = False

    # --- services strategies use ---------------------------------------------------------
    @property
    def session(self) -> Session | None:
        """Return the current calendar session (``None`` without a calendar)."""
        if self.calendar is None or self.session_index < 0:
            return None
        return self.calendar.session(self.session_index, self.clock.to_datetime)

    def _current_row(self, code: int) -> int:
        chunk = self.chunk
        if chunk is None or self.clock.override_ns is not None:
            return -1
        return row_of(chunk, self.clock.i, code)

    def price_of(self, code: int) -> float:
        """Return the latest close of ``code`` at or before now (NaN before its first bar)."""
        row = self._current_row(code)
        if row >= 0:
            return self.chunk.px["close"][row]  # type: ignore[union-attr,no-any-return]
        past = self.history.get(code, "close", 1)
        return float(past[-1]) if past.shape[0] else float("nan")

    def signals_now(self, code: int) -> dict[str, float]:
        """Return the latest signal values of ``code`` at or before now."""
        names = self.clock.signal_names
        if not names:
            return {}
        row = self._current_row(code)
        if row >= 0:
            sig = self.chunk.sig  # type: ignore[union-attr]
            return {k: sig[k][row] for k in names}
        out = {}
        for k in names:
            past = self.history.get(code, k, 1)
            out[k] = float(past[-1]) if past.shape[0] else float("nan")
        return out

    def context_now(self) -> dict[str, float]:
        """Return the context values as of now (empty without context)."""
        now = self.clock.now_ns
        if not len(self.context) or now < 0:
            return {}
        return dict(self.context.as_of(now))

    def record(self, values: dict[str, Any]) -> None:
        """Record strategy values at the current timestamp (see ``Strategy.record``)."""
        if self.finished:
            raise RuntimeError("record() after the last bar: the result is already built")
        clock = self.clock
        index = max(clock.base_index + clock.i, 0)
        for name, value in values.items():
            check_record_name(name)
            self.records.append((index, name, value))

    def note_fallback(self, reason: str) -> None:
        """Record why a strategy that could run in a kernel runs on the per-bar loop."""
        self.run_info["fallback_reason"] = reason

    # --- broker listener -----------------------------------------------------------------
    def order_filled(self, order: Order, fill: Any) -> None:
        """Forward a fill to the strategy, then the trades it opened or closed."""
        self.strategy.on_fill(fill)
        if self.pending_trade_events:
            self.flush_trade_events()

    def flush_trade_events(self) -> None:
        """Deliver the trade events waiting since the last fill (``Strategy.on_trade``)."""
        events, self.pending_trade_events = self.pending_trade_events, []
        for event in events:
            self.strategy.on_trade(event)

    def _trade_changed(self, trade: OpenTrade, row: tuple[Any, ...] | None) -> None:
        """Turn a trade the portfolio opened or closed into a :class:`TradeEvent`."""
        to_dt = self.clock.to_datetime
        direction = "long" if trade.direction > 0 else "short"
        if row is None:
            event = TradeEvent(
                trade.trade_id,
                trade.asset_id,
                "open",
                direction,
                to_dt(trade.entry_ts),
                None,
                trade.entry_qty,
                trade.entry_price,
                math.nan,
                0.0,
                -trade.entry_commission,
                trade.entry_commission,
            )
        else:
            closed = dict(zip(TRADE_COLUMNS, row, strict=True))
            event = TradeEvent(
                trade.trade_id,
                trade.asset_id,
                "closed",
                direction,
                to_dt(trade.entry_ts),
                to_dt(closed["exit_timestamp"]),
                closed["quantity"],
                closed["entry_price"],
                closed["exit_price"],
                closed["pnl_gross"],
                closed["pnl_net"],
                closed["commission"],
            )
        self.pending_trade_events.append(event)

    def order_rejected(self, order: Order, reason: str) -> None:
        """Forward a rejection to the strategy."""
        self.strategy.on_order_rejected(order, reason)

    def order_cancelled(self, order: Order, reason: str) -> None:
        """Forward a cancellation or expiry to the strategy."""
        self.strategy.on_order_cancelled(order, reason)

    # --- set-up and bookkeeping ------------------------------------------------------------
    def prepare(self, progress: Progress | None) -> None:
        """Set up the run: context, windows, calendar, broker books, history, clock."""
        clock, broker = self.clock, self.broker
        extra: dict[str, tuple[np.ndarray, ...]] = {}
        for f in self.setup.feeds:
            extra.update(f.context_frames())
        self.context.bind(clock, clock.timezone, extra)
        windows = clock.windows()
        self.span = (windows[0][0], windows[-1][1]) if windows else (0, 1)
        if self.calendar is not None and windows:
            self.calendar.bind(windows[0][0], windows[-1][1] - 1, clock.timezone)
        broker.setup(clock.asset_ids, self, clock)
        broker.check_columns((*clock.signal_names, *clock.indicator_names))
        self.history = History(clock, self.setup.history_bars)
        pf = broker.portfolio
        pf.price_of = self.price_of
        pf.trades.scanner = self.history.extremes
        strategy = self.strategy
        if type(strategy).on_trade is not Strategy.on_trade:
            pf.trades.listener = self._trade_changed
        clock.override_ns, clock.base_index, clock.i = -1, 0, 0
        self.books = TimestampBooks(pf.initial_cash, pf.mult, pf.is_future)

    def close_open_trades(self, last_ts: int, last_row: int) -> None:
        """Mark positions still open as open trades at the prices of the books' last row."""
        self.broker.portfolio.trades.close_all_open(last_ts, last_row, self.price_of)

    def outside_message(self) -> str:
        """Describe the bars outside every calendar session (count and first bar)."""
        cal = self.calendar
        assert cal is not None
        return (
            f"{self.outside_session_bars} bar(s) fall outside the {cal.name} sessions (first: "
            f"{self.outside_first}); they are handled as part of the next session."
            " Check the data's time zone and bar stamps, or set "
            "outside_sessions='ignore'/'error'"
        )
