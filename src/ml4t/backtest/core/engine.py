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
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import (
    BacktestError,
    ConfigError,
    DataValidationError,
    OutsideSessionWarning,
    PluginError,
    StrategyError,
)
from ..plugins import PluginManager, get_plugin_manager
from .batch import BatchStrategy, BatchView, chunk_frame
from .calendar import Session, SessionCalendar, calendar_day_keys
from .clock import Clock, describe_ts
from .context import Context
from .culprit import find_culprit
from .data import Block, Chunk, Feed, row_of
from .events import MarketEvent
from .history import History
from .marking import Marker
from .orders import Order
from .strategy import Strategy

if TYPE_CHECKING:
    from ..config import BacktestConfig
    from .broker import Broker
    from .results import BacktestResult

__all__ = ["BacktestEngine"]

_CHUNK_TIMESTAMPS = 1 << 16
#: a chunk's columns become Python lists for the loop: bound their rows (memory)
_CHUNK_ROWS = 1 << 18


class BacktestEngine:
    """Run a strategy over one or more feeds against a broker.

    Parameters
    ----------
    feed : Feed, optional
        A single feed (``PolarsDataFeed``); or use ``feeds``.
    strategy : Strategy
        The strategy to run.
    broker : Broker, str or dict, optional
        A broker object, a registered broker name (``"simulation"``) or
        ``{"model": name, "params": {...}}``. Defaults to the ``simulation`` broker
        (100,000 cash, no costs), built through the ``ml4t_make_broker`` hook.
    feeds : mapping or sequence of Feed, optional
        Several feeds, merged chronologically. Mapping keys name the feeds.
    context : Context, optional
        Market-wide values; feeds' ``context_data`` is added to it.
    history_bars : int, default 10_000
        Timestamps of past data kept for ``history()`` when a lazy feed is read in
        windows (in-memory data is always fully available).
    name : str, optional
        Run name recorded in the result's metadata.
    start, end : date, datetime or str, optional
        Only bars from ``start`` up to ``end`` are run (both inclusive; a date ``end``
        includes its whole day). Dates and naive datetimes are in the data's time zone.
        Context and ``signal_data`` rows before ``start`` still count for as-of values.
    calendar : str or pandas_market_calendars.MarketCalendar, optional
        Trading calendar defining the sessions (``"NYSE"``, any pandas-market-calendars
        name, ``"24/7"``): session callbacks, DAY-order expiry and the session close come
        from it. Without one, a session is a calendar day in the data's time zone. See
        :mod:`ml4t.backtest.core.calendar` for how bars map to sessions.
    outside_sessions : {"warn", "error", "ignore"}, default "warn"
        With a calendar, what to do about bars outside every session: one warning with
        the count and the first such bar (also in ``result.metadata``), an error naming
        it, or nothing. Such bars join the next session (pre-market bars their own
        day's).
    plugins : iterable of object, optional
        Plugin objects or modules (with ``@hookimpl`` functions) for this engine only,
        registered after the builtins and installed plugins, so they run first.
    block_plugins : iterable of str, optional
        Names of plugins not to load (entry-point names, or builtin module names such as
        ``"ml4t.backtest.builtin.commission"``).
    autoload_plugins : bool, default True
        Load installed plugins (entry points of group ``ml4t.backtest``).
    plugin_manager : PluginManager, optional
        A manager made by :func:`ml4t.backtest.plugins.get_plugin_manager`, instead of
        the three options above.

    Notes
    -----
    Each engine owns a plugin manager (``engine.plugin_manager``). Hooks are resolved here,
    once: named cost models, feeds and brokers are built now and the loop calls those
    objects directly.
    """

    def __init__(
        self,
        feed: Feed | None = None,
        strategy: Strategy | None = None,
        broker: Broker | str | Mapping[str, Any] | None = None,
        *,
        feeds: Mapping[str, Feed] | Sequence[Feed] | None = None,
        context: Context | None = None,
        history_bars: int = 10_000,
        name: str | None = None,
        start: Any = None,
        end: Any = None,
        calendar: Any = None,
        outside_sessions: str = "warn",
        plugins: Iterable[object] = (),
        block_plugins: Iterable[str] = (),
        autoload_plugins: bool = True,
        plugin_manager: PluginManager | None = None,
    ) -> None:
        plugins, block_plugins = list(plugins), list(block_plugins)
        if plugin_manager is None:
            plugin_manager = get_plugin_manager(
                autoload=autoload_plugins, block=block_plugins, extra=plugins
            )
        elif plugins or block_plugins or not autoload_plugins:
            raise ConfigError("give plugin_manager or plugins/block_plugins/autoload_plugins")
        self.plugin_manager: PluginManager = plugin_manager
        if feed is not None and feeds is not None:
            raise ConfigError("give either feed or feeds, not both")
        names: list[str] | None = None
        if feeds is None:
            feed_list: list[Feed] = [] if feed is None else [feed]
        elif isinstance(feeds, Mapping):
            feed_list = []
            names = [str(k) for k in feeds]
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
        broker = self._make_broker(broker)
        if history_bars < 1:
            raise ConfigError(f"history_bars must be >= 1, got {history_bars}")
        self.feeds = feed_list
        self.strategy = strategy
        self.broker: Any = broker
        self.context = context if context is not None else Context()
        self.history_bars = int(history_bars)
        self.name = name or type(strategy).__name__
        self.clock = Clock(self.feeds, names)
        self.clock.period = _period(start, end, self.clock.timezone)
        self.calendar = None if calendar is None else SessionCalendar(calendar, outside_sessions)
        self.outside_session_bars = 0
        self._outside_first: str | None = None
        self._session_index = -1
        self._progress: Callable[[float], None] | None = None
        self._span = (0, 1)
        self.history = History(self.clock, self.history_bars)
        self._chunk: Chunk | None = None
        self._where: tuple[int, int] | None = None
        self._session_ts: int | None = None
        self._session_hook = False
        self._start_session: Any = None
        self._batch = isinstance(strategy, BatchStrategy)
        self.run_info: dict[str, Any] = {}
        self._batch_names: tuple[str, ...] = ()

    @classmethod
    def from_config(
        cls, config: BacktestConfig | str | Path, strategy: Strategy | None = None
    ) -> BacktestEngine:
        """Build an engine from a :class:`~ml4t.backtest.BacktestConfig` or a config file.

        Model, feed, broker and reporter names resolve through the plugin registry before
        any data is read. Without ``strategy``, the config's ``strategy`` section
        (``module``, ``class``, ``params``) is imported and instantiated.
        """
        from ..config import engine_from_config

        engine: BacktestEngine = engine_from_config(config, strategy)
        return engine

    def _make_broker(self, broker: Any) -> Any:
        pm = self.plugin_manager
        if broker is not None and not isinstance(broker, str | Mapping):
            resolve = getattr(broker, "resolve_models", None)
            if resolve is not None:
                resolve(pm.registry)
            return broker
        spec: Mapping[str, Any] = (
            {"model": broker or "simulation", "params": {}}
            if broker is None or isinstance(broker, str)
            else broker
        )
        made = pm.first_result(
            "ml4t_make_broker", "submit_order", "broker", spec=spec, registry=pm.registry
        )
        if made is None:
            name = spec.get("model")
            unknown = isinstance(name, str) and pm.registry.lookup("broker", name) is None
            raise ConfigError(
                (f"unknown broker model {name!r}" if unknown else "no plugin built a broker")
                + f" for {dict(spec)!r}; brokers available: {pm.registry.available('broker')}"
            )
        return made

    def report(
        self,
        result: BacktestResult,
        destination: str | Path,
        reporters: Sequence[Any] = ("parquet",),
    ) -> list[Path]:
        """Write ``result`` with the named reporters, then call the ``ml4t_report`` hook.

        Parameters
        ----------
        result : BacktestResult
            A finished run.
        destination : str or Path
            Output directory (created if missing).
        reporters : sequence
            Reporter names (``"parquet"``, ``"summary"``), ``{model, params}`` mappings or
            reporter objects.

        Returns
        -------
        list of Path
            Every path written.
        """
        pm = self.plugin_manager
        dest = Path(destination)
        dest.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        for k, spec in enumerate(reporters):
            reporter = pm.registry.create("reporter", spec, where=f"reporting.reporters[{k}]")
            try:
                paths = reporter.report(result, dest)
            except (OSError, PluginError):
                raise
            except Exception as exc:
                raise pm.registry.error_for(
                    "reporter", reporter, f"raised {type(exc).__name__} in report(): {exc}"
                ) from exc
            written.extend(Path(p) for p in paths or ())
        if pm.has_impls("ml4t_report"):
            for paths in pm.call_hook("ml4t_report", result=result, destination=dest):
                written.extend(Path(p) for p in paths or ())
        return written

    # --- helpers the strategy and portfolio call ----------------------------------------
    def _current_row(self, code: int) -> int:
        chunk = self._chunk
        if chunk is None or self.clock.override_ns is not None:
            return -1
        return row_of(chunk, self.clock.i, code)

    def price_of(self, code: int) -> float:
        """Return the latest close of ``code`` at or before now (NaN before its first bar)."""
        row = self._current_row(code)
        if row >= 0:
            return self._chunk.px["close"][row]  # type: ignore[union-attr,no-any-return]
        past = self.history.get(code, "close", 1)
        return float(past[-1]) if past.shape[0] else float("nan")

    def signals_now(self, code: int) -> dict[str, float]:
        """Return the latest signal values of ``code`` at or before now."""
        names = self.clock.signal_names
        if not names:
            return {}
        row = self._current_row(code)
        if row >= 0:
            sig = self._chunk.sig  # type: ignore[union-attr]
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

    # --- run -----------------------------------------------------------------------------
    def run(self, progress: Callable[[float], None] | None = None) -> BacktestResult:
        """Run the backtest and return its result.

        Parameters
        ----------
        progress : callable, optional
            Called with the fraction of the period done (0..1), once per session and at
            the end; the command line draws its progress bar with it.

        Raises
        ------
        StrategyError
            When strategy code raises; it names the timestamp and asset, chains the
            original exception and carries ``partial_result`` (marked incomplete).
        """
        from .results import build_result

        self.run_info = {"mode": "batch" if self._batch else "event"}
        compiled = getattr(self.strategy, "_run_compiled", None)
        if compiled is not None:  # a declarative strategy that can run in a kernel
            compiled_result: BacktestResult | None = compiled(self, progress)
            if compiled_result is not None:
                return compiled_result
        t0 = time.perf_counter()
        clock, broker, strategy = self.clock, self.broker, self.strategy
        self._prepare_run(progress)
        pf = broker.portfolio
        marker = Marker(pf.initial_cash, pf.mult, pf.is_future)
        ts_parts: list[np.ndarray] = []
        state = _SessionState()
        block: Block | None = None
        block_marked = False
        pm = self.plugin_manager
        self._session_hook = pm.has_impls("ml4t_session_end")
        if pm.has_impls("ml4t_run_start"):
            pm.call_hook("ml4t_run_start", engine=self)
        if self._batch:
            strategy._batch_view = BatchView(  # type: ignore[attr-defined]
                np.frombuffer(broker.portfolio.qty, dtype=np.float64)
            )
            self._batch_names = (*clock.signal_names, *clock.indicator_names)
        try:
            strategy._bind(self)
            strategy.on_start()
            blocks = clock.blocks()
            upcoming = next(blocks, None)
            while upcoming is not None:
                block = upcoming
                block_marked = False
                self.history.add_block(block)
                n = block.ts.shape[0]
                for c0, c1 in _chunk_bounds(block.offsets):
                    chunk = Chunk(
                        block,
                        c0,
                        c1,
                        clock.signal_names,
                        clock.indicator_names,
                        clock.to_datetime,
                        self.context.as_of,
                    )
                    self._run_chunk(chunk, state)
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
                ts_parts.append(block.ts)
                marker.mark_block(block, pf.fills, n)
                block_marked = True
                pf.trades.checkpoint(int(block.ts[-1]))
        except Exception as exc:
            partial = None
            try:
                if block is not None and not block_marked:
                    # the failing timestamp is included: its fills happened and are in the
                    # ledger
                    done = self._chunk.ts_index0 + clock.i + 1 if self._chunk is not None else 0
                    ts_parts.append(block.ts[:done])
                    marker.mark_block(block, pf.fills, done)
                rows = sum(part.shape[0] for part in ts_parts)
                if rows:
                    # open positions become open trades marked at the prices of the last
                    # row of the books, as at the end of a complete run
                    clock.override_ns = None
                    last_ts = int(next(p for p in reversed(ts_parts) if p.shape[0])[-1])
                    pf.trades.close_all_open(last_ts, rows - 1, self.price_of)
                partial = build_result(
                    self, ts_parts, marker.arrays(), time.perf_counter() - t0, complete=False
                )
            except Exception as inner:  # never hide the run's error behind this one
                exc.add_note(f"(no partial result: building it raised {inner!r})")
            wrapped = self._wrap_error(exc, partial, state.last_ts)
            if wrapped is exc:
                raise
            raise wrapped from exc
        if state.day is not None:
            clock.override_ns = None
            pf.trades.close_all_open(state.last_ts, state.index - 1, self.price_of)
        if progress is not None:
            progress(1.0)
        cal = self.calendar
        if self.outside_session_bars and cal is not None and cal.outside_sessions == "warn":
            warnings.warn(self._outside_message(), OutsideSessionWarning, stacklevel=2)
        result = build_result(
            self, ts_parts, marker.arrays(), time.perf_counter() - t0, complete=True
        )
        if pm.has_impls("ml4t_run_end"):
            pm.call_hook("ml4t_run_end", engine=self, result=result)
        try:
            strategy.on_end(result)
        except Exception as exc:
            raise StrategyError(
                f"strategy {type(strategy).__name__} raised {type(exc).__name__} in on_end: "
                f"{exc}. The run itself completed; its result is exc.partial_result.",
                partial_result=result,
            ) from exc
        return result

    def _prepare_run(self, progress: Callable[[float], None] | None) -> None:
        """Set up a run: context, windows, calendar, broker books, history, clock.

        Shared by the event loop and the compiled path of a declarative strategy.
        """
        clock, broker = self.clock, self.broker
        extra: dict[str, tuple[np.ndarray, ...]] = {}
        for f in self.feeds:
            extra.update(f.context_frames())
        self.context.bind(clock, clock.timezone, extra)
        self.outside_session_bars, self._outside_first, self._session_index = 0, None, -1
        windows = clock.windows()
        self._progress = progress
        self._span = (windows[0][0], windows[-1][1]) if windows else (0, 1)
        if self.calendar is not None and windows:
            self.calendar.bind(windows[0][0], windows[-1][1] - 1, clock.timezone)
        broker.setup(clock.asset_ids, self, clock)
        check_columns = getattr(broker, "check_columns", None)
        if check_columns is not None:
            check_columns((*clock.signal_names, *clock.indicator_names))
        self._start_session = getattr(broker, "start_session", None)
        self.history = History(clock, self.history_bars)
        pf = broker.portfolio
        pf.price_of = self.price_of
        pf.trades.scanner = self.history.extremes
        clock.override_ns, clock.base_index, clock.i = -1, 0, 0
        self._chunk = None
        self._where = None
        self._session_ts = None

    def _run_chunk(self, chunk: Chunk, state: _SessionState) -> None:
        """Run the per-bar loop over one chunk (the hot path)."""
        clock, broker, context = self.clock, self.broker, self.context
        self._chunk = chunk
        clock.chunk_ts = ts_list = chunk.ts
        clock.base_index = state.index
        offsets, codes = chunk.offsets, chunk.code
        closes = chunk.px["close"]
        asset_ids = clock.asset_ids
        on_bar = self.strategy.on_market_data
        new, event_type = tuple.__new__, MarketEvent
        days = self._chunk_keys(chunk)
        single_row = len(codes) == len(ts_list)
        batch = self._batch
        if batch:
            frame, arrays, ids = chunk_frame(chunk, self._batch_names, asset_ids)
            view = self.strategy._batch_view  # type: ignore[attr-defined]
            on_ts = self.strategy.on_timestamp  # type: ignore[attr-defined]
            to_dt = clock.to_datetime
        i = r = 0
        try:
            for s, e in _sessions(days):
                if days[s] != state.day:
                    clock.i = s
                    self._new_session(state, ts_list[s], days[s])
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
                state.last_ts = ts_list[e - 1]
        except BaseException:
            self._where = (i, -1 if batch else i if single_row else r)
            raise
        state.index += len(ts_list)

    # --- sessions ------------------------------------------------------------------------
    @property
    def session(self) -> Session | None:
        """Return the current calendar session (``None`` without a calendar or a run)."""
        if self.calendar is None or self._session_index < 0:
            return None
        return self.calendar.session(self._session_index, self.clock.to_datetime)

    def _keys(self, ts: np.ndarray) -> list[int]:
        """Return the session key of each timestamp (calendar day, or session index)."""
        if self.calendar is None:
            return calendar_day_keys(ts, self.clock.timezone).tolist()  # type: ignore[no-any-return]
        return self.calendar.assign(ts)[0].tolist()  # type: ignore[no-any-return]

    def _chunk_keys(self, chunk: Chunk) -> list[int]:
        """Return the session keys of a chunk's timestamps, reporting bars outside them."""
        ts = chunk.block.ts[chunk.ts_index0 : chunk.ts_index0 + len(chunk.ts)]
        if self.calendar is None:
            return calendar_day_keys(ts, self.clock.timezone).tolist()  # type: ignore[no-any-return]
        keys, outside = self.calendar.assign(ts)
        if outside.any():
            offsets = np.asarray(chunk.offsets)
            self.outside_session_bars += int(np.diff(offsets)[outside].sum())
            if self._outside_first is None:
                i = int(np.flatnonzero(outside)[0])
                asset = self.clock.asset_ids[chunk.code[chunk.offsets[i]]]
                when = describe_ts(self.clock.to_datetime, chunk.ts[i])
                self._outside_first = f"{when}, asset {asset!r}"
            if self.calendar.outside_sessions == "error":
                raise DataValidationError(self._outside_message())
        return keys.tolist()  # type: ignore[no-any-return]

    def _outside_message(self) -> str:
        cal = self.calendar
        assert cal is not None
        return (
            f"{self.outside_session_bars} bar(s) fall outside the {cal.name} sessions (first: "
            f"{self._outside_first}); they are handled as part of the next session."
            " Check the data's time zone and bar stamps, or set "
            "outside_sessions='ignore'/'error'"
        )

    def _new_session(self, state: _SessionState, ts: int, key: int) -> None:
        if state.day is not None and not state.closed:
            self._end_session(state.last_ts)
        state.day = key
        state.closed = False
        if self._progress is not None:
            lo, hi = self._span
            self._progress(min(max((ts - lo) / max(hi - lo, 1), 0.0), 1.0))
        cal = self.calendar
        day, when = key, ts
        if cal is not None:
            self._session_index = key
            day, when = int(cal.day[key]), int(cal.open_ns[key])
        if self._start_session is not None:
            self.clock.override_ns = ts - 1  # account events happen before the first bar
            self._start_session(ts, day)
        strategy = self.strategy
        if type(strategy).before_trading_start is not Strategy.before_trading_start:
            self.clock.override_ns = ts - 1  # nothing of the new session is visible yet
            self._session_ts = ts
            strategy.before_trading_start(self.clock.to_datetime(when), self.context)
            self._session_ts = None

    def _end_session(self, last_ts: int) -> None:
        self._session_ts = last_ts
        self.clock.override_ns = last_ts
        end = getattr(self.broker, "end_session", None)
        if end is not None:
            end(last_ts)
        strategy = self.strategy
        when = last_ts
        if self.calendar is not None and self._session_index >= 0:
            when = max(last_ts, int(self.calendar.close_ns[self._session_index]))
        if type(strategy).after_trading_end is not Strategy.after_trading_end:
            strategy.after_trading_end(self.clock.to_datetime(when), self.context)
        if self._session_hook:
            self.plugin_manager.call_hook(
                "ml4t_session_end", engine=self, timestamp=self.clock.to_datetime(last_ts)
            )
        self._session_ts = None

    # --- errors --------------------------------------------------------------------------
    def _wrap_error(self, exc: Exception, partial: Any, last_ts: int = -1) -> Exception:
        """Return the error to raise for ``exc``, raised during the run.

        Strategy code raising becomes a :class:`StrategyError`, a model of a (non-builtin)
        plugin raising a :class:`PluginError`; whichever of the two is innermost in the
        traceback is the culprit. Both name the timestamp and asset and carry the partial
        result. Anything else is returned as it is, with notes saying where it happened.
        ``last_ts`` is the last timestamp run, for an error between bars (loading a block).
        """
        frames = traceback.extract_tb(exc.__traceback__)
        when, asset = "start-up", None
        if last_ts >= 0:
            when = f"after {describe_ts(self.clock.to_datetime, last_ts)} (between bars)"
        chunk = self._chunk
        in_broker = any(f.name in ("process_open", "process_close") for f in frames)
        several = False
        if self._session_ts is not None:  # a session callback: no asset is being handled
            when = describe_ts(self.clock.to_datetime, self._session_ts)
        elif self._where is not None and chunk is not None:
            i, r = self._where
            when = describe_ts(self.clock.to_datetime, chunk.ts[i])
            if in_broker:  # orders of every asset of the timestamp: one row names it
                r0, r1 = chunk.offsets[i], chunk.offsets[i + 1]
                r, several = (r0 if r1 - r0 == 1 else -1), r1 - r0 > 1
            if 0 <= r < len(chunk.code):
                asset = self.clock.asset_ids[chunk.code[r]]
        culprit = find_culprit(self.strategy, self.plugin_manager.registry, exc)
        at = f"timestamp {when}" + (f", asset {asset!r}" if asset else "")
        if culprit == "strategy":
            message = (
                f"strategy {type(self.strategy).__name__} raised {type(exc).__name__} at {at}: "
                f"{exc}. The partial result (exc.partial_result) covers the bars up to that "
                "timestamp and is marked incomplete."
            )
            return StrategyError(message, timestamp=when, asset_id=asset, partial_result=partial)
        if isinstance(culprit, tuple) and not isinstance(exc, BacktestError):
            info, model = culprit
            if several and asset is None:
                at += ", asset not known (the broker was filling orders of several assets)"
            err = self.plugin_manager.error(
                info.name,
                f"raised {type(exc).__name__} in {model} at {at}: {exc}. The partial result "
                "(exc.partial_result) covers the bars up to that timestamp and is marked "
                "incomplete",
            )
            err.model, err.timestamp, err.asset_id = model, when, asset
            err.partial_result = partial
            return err
        # not ours to name (or already one of our errors): keep it, say where it happened
        exc.add_note(f"while handling timestamp {when}" + (f", asset {asset}" if asset else ""))
        plugin = self.plugin_manager.registry.plugin_in_traceback(exc)
        if plugin is not None and not isinstance(exc, PluginError):
            exc.add_note(f"raised by a model of plugin {plugin.describe()}")
        if isinstance(exc, PluginError) and exc.partial_result is None:
            exc.timestamp, exc.asset_id, exc.partial_result = when, asset, partial
        return exc


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


def _period(start: Any, end: Any, timezone: str | None) -> tuple[int | None, int | None]:
    """Return ``[start_ns, end_ns)`` of the run period (``None`` = open)."""
    import pandas as pd

    def ns(value: Any, is_end: bool) -> int | None:
        if value is None:
            return None
        whole_day = isinstance(value, date) and not isinstance(value, datetime)
        if isinstance(value, str):
            whole_day = len(value.strip()) <= 10
        try:
            ts = pd.Timestamp(value)
        except (TypeError, ValueError) as exc:
            which = "end" if is_end else "start"
            raise ConfigError(f"{which}: cannot read {value!r} as a date or datetime") from exc
        if ts.tzinfo is None and timezone is not None:
            ts = ts.tz_localize(timezone)
        elif ts.tzinfo is not None and timezone is None:
            raise ConfigError(f"{value!r} has a time zone but the data's timestamps are naive")
        if is_end:
            ts = ts + pd.Timedelta(days=1) if whole_day else ts + pd.Timedelta(1, "ns")
        return int(ts.as_unit("ns").value)

    lo, hi = ns(start, False), ns(end, True)
    if lo is not None and hi is not None and hi <= lo:
        raise ConfigError(f"end {end!r} is before start {start!r}")
    return lo, hi
