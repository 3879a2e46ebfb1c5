"""The public engine: it assembles a run and hands it to the core.

:class:`BacktestEngine` checks its arguments, owns the plugin manager, resolves broker,
feed and model names through it, builds an engine from a config, writes reports and
collects provenance. It builds one :class:`~ml4t.backtest.core.loop.RunSetup` and runs it
with :class:`~ml4t.backtest.core.loop.Run`, which knows nothing of plugins: the run hooks
reach it as observers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .assemble import engine_arguments
from .core.calendar import Session, SessionCalendar
from .core.clock import Clock
from .core.context import Context
from .core.culprit import PluginBlame
from .core.data import Feed
from .core.history import History
from .core.loop import execute
from .core.run import Observers, Run, RunSetup
from .core.strategy import Strategy
from .errors import ConfigError, PluginError
from .plugins import PluginManager, get_plugin_manager, list_plugins

if TYPE_CHECKING:
    from .config import BacktestConfig
    from .core.broker import Broker
    from .core.results import BacktestResult

__all__ = ["BacktestEngine"]


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
        made = self._make_broker(broker)
        if history_bars < 1:
            raise ConfigError(f"history_bars must be >= 1, got {history_bars}")
        self.feeds = feed_list
        self.strategy = strategy
        self.broker: Broker = made
        self.context = context if context is not None else Context()
        self.history_bars = int(history_bars)
        self.name = name or type(strategy).__name__
        self.clock = Clock(self.feeds, names)
        self.clock.period = _period(start, end, self.clock.timezone)
        self.calendar = None if calendar is None else SessionCalendar(calendar, outside_sessions)
        self._run: Run | None = None

    @classmethod
    def from_config(
        cls, config: BacktestConfig | str | Path, strategy: Strategy | None = None
    ) -> BacktestEngine:
        """Build an engine from a :class:`~ml4t.backtest.BacktestConfig` or a config file.

        Model, feed, broker and reporter names resolve through the plugin registry before
        any data is read. Without ``strategy``, the config's ``strategy`` section
        (``module``, ``class``, ``params``) is imported and instantiated.
        """
        engine: BacktestEngine = cls(**engine_arguments(config, strategy))
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
        made = pm.construct(
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
        self._run = Run(self._setup())
        return execute(self._run, progress)

    def _setup(self) -> RunSetup:
        """Build the run set-up: the parts, the hooks as observers, provenance, blame."""
        pm = self.plugin_manager
        observers = Observers(
            run_start=(
                (lambda: pm.call_hook("ml4t_run_start", engine=self))
                if pm.has_impls("ml4t_run_start")
                else None
            ),
            session_end=(
                (
                    lambda ts: pm.call_hook(
                        "ml4t_session_end", engine=self, timestamp=self.clock.to_datetime(ts)
                    )
                )
                if pm.has_impls("ml4t_session_end")
                else None
            ),
            run_end=(
                (lambda result: pm.call_hook("ml4t_run_end", engine=self, result=result))
                if pm.has_impls("ml4t_run_end")
                else None
            ),
        )
        return RunSetup(
            feeds=self.feeds,
            clock=self.clock,
            broker=self.broker,
            strategy=self.strategy,
            context=self.context,
            calendar=self.calendar,
            history_bars=self.history_bars,
            name=self.name,
            observers=observers,
            provenance=lambda: [
                {k: p[k] for k in ("name", "distribution", "version", "provides")}
                for p in list_plugins(pm)
            ],
            blame=PluginBlame(
                model_files=pm.registry.model_files,
                error=pm.error,
                describe=lambda name: pm.info(name).describe(),
            ),
        )

    # --- what hooks and callers read of the current run -------------------------------
    @property
    def history(self) -> History:
        """Past data of the current (or last) run, as strategies see it."""
        if self._run is None:
            return History(self.clock, self.history_bars)
        return self._run.history

    @property
    def session(self) -> Session | None:
        """Return the current calendar session (``None`` without a calendar or a run)."""
        return None if self._run is None else self._run.session

    @property
    def run_info(self) -> dict[str, Any]:
        """How the current (or last) run ran: ``mode``, kernel timings, fallback reason."""
        return {} if self._run is None else self._run.run_info

    @property
    def outside_session_bars(self) -> int:
        """Bars of the current (or last) run outside every calendar session."""
        return 0 if self._run is None else self._run.outside_session_bars


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
