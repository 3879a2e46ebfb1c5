"""Every hook specification of ml4t.backtest, and nothing else.

A plugin is a module or object with functions marked ``@hookimpl`` whose names match the
specs below (``from ml4t.backtest import hookimpl``). Plugins are registered once per
engine (see :mod:`ml4t.backtest.plugins`): the builtin plugins first, then entry points of
group ``ml4t.backtest`` sorted by name, then objects passed as
``BacktestEngine(plugins=[...])``. pluggy calls implementations last-registered first, and
the builtin implementations that may be overridden are ``trylast``, so an installed plugin
always runs before the builtin.

Hooks are resolved at set-up. None is called per bar: the loop calls the model objects the
registration hooks produced. Call hooks with keyword arguments only. Each spec is
documented in ``docs/plugin_hooks.md`` under its exact signature (a test checks that).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from .markers import PROJECT, hookimpl, hookspec

if TYPE_CHECKING:
    from .core.broker import Broker
    from .core.data import Feed
    from .core.engine_view import EngineView
    from .core.results import BacktestResult
    from .registry import PluginRegistry

__all__ = ["PROJECT", "hookimpl", "hookspec"]

#: What a registration hook returns: ``(name, factory)`` pairs.
Factories = Iterable[tuple[str, Callable[..., Any]]]


# ---------------------------------------------------------------------------------------
# Registration: named factories (every implementation is called, results are collected)
# ---------------------------------------------------------------------------------------


@hookspec
def ml4t_register_commission_models() -> Factories:  # type: ignore[empty-body]
    """Provide commission models by name.

    Called once per engine, when its plugin registry is built at set-up.

    Returns
    -------
    iterable of (str, callable)
        ``(name, factory)`` pairs. ``factory(**params)`` returns an object with
        ``calculate(quantity, price) -> float`` (see ``CommissionModel``). When the factory
        is a class, its class name is registered as an alias of ``name``, so a config can
        say ``PerShareCommission`` or ``per_share``.

    Notes
    -----
    All implementations are called. When two plugins register the same name, the one
    pluggy calls first wins: an installed plugin beats the builtin one, and between
    installed plugins the one whose entry-point name sorts last wins. The builtin plugin
    ``ml4t.backtest.builtin.commission`` registers ``none``, ``percentage`` and
    ``per_share``.
    """


@hookspec
def ml4t_register_slippage_models() -> Factories:  # type: ignore[empty-body]
    """Provide slippage models by name.

    Called once per engine at set-up, like ``ml4t_register_commission_models``.

    Returns
    -------
    iterable of (str, callable)
        ``(name, factory)`` pairs; ``factory(**params)`` returns an object with
        ``fill_price(price, side, quantity, volume) -> float`` (see ``SlippageModel``).

    Notes
    -----
    The builtin plugin ``ml4t.backtest.builtin.slippage`` registers ``none``, ``fixed``
    and ``percentage``.
    """


@hookspec
def ml4t_register_impact_models() -> Factories:  # type: ignore[empty-body]
    """Provide market-impact models by name.

    Called once per engine at set-up, like ``ml4t_register_commission_models``.

    Returns
    -------
    iterable of (str, callable)
        ``(name, factory)`` pairs; ``factory(**params)`` returns an object with
        ``price_impact(price, side, quantity, bar) -> float`` (see ``ImpactModel``).

    Notes
    -----
    The builtin plugin ``ml4t.backtest.builtin.impact`` registers ``none`` only; the
    first-party distribution ``ml4t-backtest-impact`` adds Almgren–Chriss and the
    square-root law.
    """


@hookspec
def ml4t_register_feeds() -> Factories:  # type: ignore[empty-body]
    """Provide data feeds by name.

    Called once per engine at set-up.

    Returns
    -------
    iterable of (str, callable)
        ``(name, factory)`` pairs; ``factory(**params)`` returns a ``Feed``.

    Notes
    -----
    The builtin plugin ``ml4t.backtest.builtin.feeds`` registers ``polars``
    (``PolarsDataFeed``), ``parquet`` (``ParquetDataFeed``) and ``csv`` (a
    ``PolarsDataFeed`` over ``read_ohlcv_csv``).
    """


@hookspec
def ml4t_register_reporters() -> Factories:  # type: ignore[empty-body]
    """Provide reporters by name.

    Called once per engine at set-up.

    Returns
    -------
    iterable of (str, callable)
        ``(name, factory)`` pairs; ``factory(**params)`` returns an object with
        ``report(result, destination) -> list[Path]`` that writes the result under the
        destination directory and returns the paths it wrote.

    Notes
    -----
    The builtin plugin ``ml4t.backtest.builtin.reporters`` registers ``parquet`` (the
    frames as Parquet plus ``metrics.json`` and ``metadata.json``) and ``summary``
    (``summary.txt`` with the metrics table).
    """


@hookspec
def ml4t_register_brokers() -> Factories:  # type: ignore[empty-body]
    """Provide brokers by name.

    Called once per engine at set-up.

    Returns
    -------
    iterable of (str, callable)
        ``(name, factory)`` pairs; ``factory(**params)`` returns a ``Broker``.

    Notes
    -----
    The builtin plugin ``ml4t.backtest.builtin.sim_broker`` registers ``simulation``
    (``SimulationBroker``).
    """


# ---------------------------------------------------------------------------------------
# Construction: take over building an object (the first non-None result wins)
# ---------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def ml4t_make_broker(spec: Mapping[str, Any], registry: PluginRegistry) -> Broker | None:
    """Build the broker of a run.

    Called once per engine, at construction, when no broker object was given
    (``BacktestEngine(broker=None)``, a broker name, or the ``execution`` section of a
    config).

    Parameters
    ----------
    spec : mapping
        ``{"model": name, "params": {...}}``. ``model`` is ``"simulation"`` unless the
        user named another broker; ``params`` are the keyword arguments for it (for the
        simulation broker: ``initial_cash``, ``commission``, ``slippage``, ``impact``,
        ``fill_timing``, ...).
    registry : PluginRegistry
        Every named factory of this engine's plugins; ``registry.create("broker", spec)``
        builds a registered broker.

    Returns
    -------
    Broker or None
        A broker, or None to let the next implementation decide. This is a
        ``firstresult`` hook: the first non-None result wins.

    Notes
    -----
    The builtin implementation (``trylast``) returns ``registry.create("broker", spec)``.
    """


@hookspec(firstresult=True)
def ml4t_make_feed(spec: Mapping[str, Any], registry: PluginRegistry) -> Feed | None:
    """Build a data feed from a config's ``data`` section.

    Called once per config-driven run (``BacktestEngine.from_config``), before any data
    is read.

    Parameters
    ----------
    spec : mapping
        ``{"model": name, "params": {...}}``; a config's ``asset_data: {path: ...}``
        arrives as ``{"model": "parquet", "params": {"path": ..., ...}}``.
    registry : PluginRegistry
        The engine's named factories; ``registry.create("feed", spec)`` builds one.

    Returns
    -------
    Feed or None
        A feed, or None to let the next implementation decide. This is a
        ``firstresult`` hook: the first non-None result wins.

    Notes
    -----
    The builtin implementation (``trylast``) returns ``registry.create("feed", spec)``.
    """


# ---------------------------------------------------------------------------------------
# Run lifecycle (every implementation is called; return values are ignored)
# ---------------------------------------------------------------------------------------


@hookspec
def ml4t_run_start(engine: EngineView) -> None:
    """Observe the start of a run.

    Called once per ``engine.run()``, after the broker and context are set up and before
    the strategy's ``on_start``. The engine, its feeds, broker and strategy may be read
    but should not be changed.

    Notes
    -----
    No builtin implementation.
    """


@hookspec
def ml4t_session_end(engine: EngineView, timestamp: Any) -> None:
    """Observe the end of a trading session.

    Called after the last bar of every session (a calendar day in the data's time zone),
    after the broker has expired DAY orders and after the strategy's
    ``after_trading_end``. Only called when at least one plugin implements it, so it
    costs nothing otherwise.

    Parameters
    ----------
    engine : BacktestEngine
        The running engine; ``engine.broker.portfolio`` holds cash and positions.
    timestamp : datetime
        Timestamp of the session's last bar.

    Notes
    -----
    No builtin implementation.
    """


@hookspec
def ml4t_run_end(engine: EngineView, result: BacktestResult) -> None:
    """Observe the end of a run.

    Called once per ``engine.run()`` after the result is built and before the strategy's
    ``on_end``; not called when the run fails. A plugin may add entries to
    ``result.metadata`` (for example timings). Use ``@hookimpl(wrapper=True)`` with one
    ``yield`` to act around the other implementations.

    Notes
    -----
    No builtin implementation.
    """


# ---------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------


@hookspec
def ml4t_report(result: BacktestResult, destination: Path) -> list[Path] | None:
    """Report a finished run.

    Called once by ``engine.report(result, destination)`` (and so by
    ``ml4t-backtest run``), after the reporters named in the configuration have written
    their files.

    Parameters
    ----------
    result : BacktestResult
        The finished run.
    destination : pathlib.Path
        The output directory (it exists).

    Returns
    -------
    list of Path or None
        Paths the implementation wrote, if any.

    Notes
    -----
    No builtin implementation: the builtin reporters are named factories
    (``ml4t_register_reporters``) chosen by configuration. Implement this hook for
    reporting that should happen on every reported run (uploading, notifying).
    """


# ---------------------------------------------------------------------------------------
# Extending the specs
# ---------------------------------------------------------------------------------------


@hookspec(historic=True)
def ml4t_addhooks(pluginmanager: pluggy.PluginManager) -> None:
    """Add hook specifications of a plugin's own.

    Called when the plugin is registered (historic: plugins registered later see it
    too). Call ``pluginmanager.add_hookspecs(module)``.

    Notes
    -----
    No builtin implementation.
    """
