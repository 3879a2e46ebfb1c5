"""One run of a backtest: set-up, the lifecycle every mode shares, and the result.

:class:`Run` is what the assembler (:class:`ml4t.backtest.BacktestEngine`) hands a
:class:`RunSetup` to. :meth:`Run.execute` is the only lifecycle: prepare the clock,
context, calendar, broker books and history; pick the runner (the per-bar loop of
:mod:`.bar_loop`, or a kernel the strategy declares through
:meth:`~ml4t.backtest.Strategy.compiled_runner`); bind the strategy, ``run_start``,
``on_start``, the runner, the result, ``run_end``, ``on_end``. An error anywhere in it is
wrapped once, here, with the partial result. Core knows nothing of plugins: observers
and error attribution arrive as plain callables in the set-up.
"""

from __future__ import annotations

import os
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BacktestError, OutsideSessionWarning, PluginError, StrategyError
from .bar_loop import EventRunner
from .batch import BatchStrategy
from .calendar import Session, SessionCalendar
from .clock import Clock, describe_ts
from .context import Context
from .culprit import ModelFiles, PluginBlame, find_culprit
from .data import Chunk, Feed, row_of
from .history import History
from .marking import TimestampBooks
from .results import RunRecord, build_result

if TYPE_CHECKING:
    from .broker import Broker
    from .orders import Order
    from .results import BacktestResult
    from .runtime import Progress, Runner
    from .strategy import Strategy

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
    """A run in progress: the services strategies and runners use, and its lifecycle."""

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

    def note_fallback(self, reason: str) -> None:
        """Record why a strategy that could run in a kernel runs on the per-bar loop."""
        self.run_info["fallback_reason"] = reason

    # --- broker listener -----------------------------------------------------------------
    def order_filled(self, order: Order, fill: Any) -> None:
        """Forward a fill to the strategy."""
        self.strategy.on_fill(fill)

    def order_rejected(self, order: Order, reason: str) -> None:
        """Forward a rejection to the strategy."""
        self.strategy.on_order_rejected(order, reason)

    def order_cancelled(self, order: Order, reason: str) -> None:
        """Forward a cancellation or expiry to the strategy."""
        self.strategy.on_order_cancelled(order, reason)

    # --- the lifecycle -------------------------------------------------------------------
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
        clock.override_ns, clock.base_index, clock.i = -1, 0, 0
        self.books = TimestampBooks(pf.initial_cash, pf.mult, pf.is_future)

    def execute(self, progress: Progress | None = None) -> BacktestResult:
        """Run the backtest once, in whichever runner, and return its result.

        Raises
        ------
        StrategyError
            Strategy code raised (in a callback, ``on_start`` or ``on_end``); the error
            names the timestamp and asset and carries ``partial_result``.
        PluginError
            A plugin's model raised during the run, named with its plugin.
        """
        t0 = time.perf_counter()
        strategy, obs = self.strategy, self.setup.observers
        self.prepare(progress)
        runner: Runner | None = strategy.compiled_runner(self)
        if runner is None:
            runner = EventRunner(self)
        self.mode = runner.mode
        self.run_info["mode"] = runner.mode
        try:
            strategy._bind(self)
            if obs.run_start is not None:
                obs.run_start()
            strategy.on_start()
            runner.run(self, progress)
        except Exception as exc:
            partial = None
            try:
                if runner.salvage(self):
                    partial = self.result(time.perf_counter() - t0, complete=False)
            except Exception as inner:  # never hide the run's error behind this one
                exc.add_note(f"(no partial result: building it raised {inner!r})")
            wrapped = self.wrap_error(exc, partial)
            if wrapped is exc:
                raise
            raise wrapped from exc
        if progress is not None:
            progress(1.0)
        cal = self.calendar
        if self.outside_session_bars and cal is not None and cal.outside_sessions == "warn":
            warnings.warn(self.outside_message(), OutsideSessionWarning, stacklevel=3)
        result = self.result(time.perf_counter() - t0, complete=True)
        if obs.run_end is not None:
            obs.run_end(result)
        try:
            strategy.on_end(result)
        except Exception as exc:
            raise StrategyError(
                f"strategy {type(strategy).__name__} raised {type(exc).__name__} in on_end: "
                f"{exc}. The run itself completed; its result is exc.partial_result.",
                partial_result=result,
            ) from exc
        return result

    def close_open_trades(self, last_ts: int, last_row: int) -> None:
        """Mark positions still open as open trades at the prices of the books' last row."""
        self.broker.portfolio.trades.close_all_open(last_ts, last_row, self.price_of)

    def result(
        self, elapsed: float, complete: bool, unlogged: Sequence[tuple[str, str, int]] = ()
    ) -> BacktestResult:
        """Build the result from what the runner booked."""
        broker = self.broker
        record = RunRecord(
            name=self.setup.name,
            strategy=type(self.strategy).__qualname__,
            clock=self.clock,
            portfolio=broker.portfolio,
            context_names=tuple(self.context.names),
            price_of=self.price_of,
            orders=broker.order_records(),
            broker_settings=broker.settings(),
            broker_metrics=broker.run_metrics(),
            feeds=[repr(f) for f in self.setup.feeds],
            calendar=None if self.calendar is None else self.calendar.name,
            outside_session_bars=self.outside_session_bars,
            run_info=self.run_info,
            provenance=self.setup.provenance(),
        )
        assert self.books is not None
        # user code -> BacktestEngine.run -> Run.execute -> Run.result -> build_result
        return build_result(
            record, self.ts_parts, self.books.arrays(), elapsed, complete, stacklevel=4
        )

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

    # --- errors --------------------------------------------------------------------------
    def wrap_error(self, exc: Exception, partial: Any) -> Exception:
        """Return the error to raise for ``exc``, raised during the run.

        Strategy code raising becomes a :class:`StrategyError`, a model of a (non-builtin)
        plugin raising a :class:`PluginError`; whichever of the two is innermost in the
        traceback is the culprit. Both name the timestamp and asset and carry the partial
        result. Anything else is returned as it is, with notes saying where it happened.
        """
        frames = traceback.extract_tb(exc.__traceback__)
        when, asset = "start-up", None
        to_dt = self.clock.to_datetime
        if self.last_ts >= 0:
            when = f"after {describe_ts(to_dt, self.last_ts)} (between bars)"
        chunk = self.chunk
        in_broker = any(f.name in ("process_open", "process_close") for f in frames)
        several = False
        if self.session_ts is not None:  # a session callback: no asset is being handled
            when = describe_ts(to_dt, self.session_ts)
        elif self.where is not None and chunk is not None:
            i, r = self.where
            when = describe_ts(to_dt, chunk.ts[i])
            if in_broker:  # orders of every asset of the timestamp: one row names it
                r0, r1 = chunk.offsets[i], chunk.offsets[i + 1]
                r, several = (r0 if r1 - r0 == 1 else -1), r1 - r0 > 1
            if 0 <= r < len(chunk.code):
                asset = self.clock.asset_ids[chunk.code[r]]
        blame = self.setup.blame
        files = blame.model_files() if blame is not None else {}
        culprit = find_culprit(self.strategy, files, exc)
        at = f"timestamp {when}" + (f", asset {asset!r}" if asset else "")
        if culprit == "strategy":
            message = (
                f"strategy {type(self.strategy).__name__} raised {type(exc).__name__} at {at}: "
                f"{exc}. The partial result (exc.partial_result) covers the bars up to that "
                "timestamp and is marked incomplete."
            )
            return StrategyError(message, timestamp=when, asset_id=asset, partial_result=partial)
        if isinstance(culprit, tuple) and blame is not None and not isinstance(exc, BacktestError):
            plugin, model = culprit
            if several and asset is None:
                at += ", asset not known (the broker was filling orders of several assets)"
            err = blame.error(
                plugin,
                f"raised {type(exc).__name__} in {model} at {at}: {exc}. The partial result "
                "(exc.partial_result) covers the bars up to that timestamp and is marked "
                "incomplete",
            )
            err.model, err.timestamp, err.asset_id = model, when, asset
            err.partial_result = partial
            return err
        # not ours to name (or already one of our errors): keep it, say where it happened
        exc.add_note(f"while handling timestamp {when}" + (f", asset {asset}" if asset else ""))
        if blame is not None and not isinstance(exc, PluginError):
            plugin_name = _innermost_plugin(files, exc)
            if plugin_name is not None:
                exc.add_note(f"raised by a model of plugin {blame.describe(plugin_name)}")
        if isinstance(exc, PluginError) and exc.partial_result is None:
            exc.timestamp, exc.asset_id, exc.partial_result = when, asset, partial
        return exc


def _innermost_plugin(files: ModelFiles, exc: BaseException) -> str | None:
    found = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        hit = files.get(os.path.realpath(frame.f_code.co_filename))
        if hit is not None:
            found = hit[0]
    return found
