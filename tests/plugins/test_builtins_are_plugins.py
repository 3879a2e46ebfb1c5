"""Every builtin is a plugin: blockable and replaceable exactly like a third-party one."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest

from ml4t.backtest import (
    BacktestEngine,
    ConfigError,
    PolarsDataFeed,
    SimulationBroker,
    get_plugin_manager,
    hookimpl,
)
from ml4t.backtest.plugins import DEFAULT_PLUGINS, KINDS
from ml4t.backtest.testing import ScriptedStrategy, make_bars

BUILTIN_KINDS = {
    "ml4t.backtest.builtin.commission": ("commission", "none"),
    "ml4t.backtest.builtin.slippage": ("slippage", "none"),
    "ml4t.backtest.builtin.impact": ("impact", "none"),
    "ml4t.backtest.builtin.feeds": ("feed", "polars"),
    "ml4t.backtest.builtin.reporters": ("reporter", "parquet"),
    "ml4t.backtest.builtin.sim_broker": ("broker", "simulation"),
}


def _feed() -> PolarsDataFeed:
    return PolarsDataFeed(make_bars(6), asset_id="A")


def test_every_builtin_module_is_listed_and_provides_its_kind() -> None:
    assert set(BUILTIN_KINDS) == set(DEFAULT_PLUGINS)
    reg = get_plugin_manager(autoload=False).registry
    for module, (kind, name) in BUILTIN_KINDS.items():
        assert reg.lookup(kind, name).plugin.name == module


@pytest.mark.parametrize("module", sorted(BUILTIN_KINDS))
def test_blocking_a_builtin_removes_its_names(module: str) -> None:
    kind, name = BUILTIN_KINDS[module]
    reg = get_plugin_manager(autoload=False, block=[module]).registry
    assert reg.lookup(kind, name) is None
    with pytest.raises(ConfigError, match=f"unknown {kind} model '{name}'"):
        reg.create(kind, name)


@pytest.mark.parametrize(
    "module",
    [
        "ml4t.backtest.builtin.commission",
        "ml4t.backtest.builtin.slippage",
        "ml4t.backtest.builtin.impact",
    ],
)
def test_blocked_default_cost_model_is_an_error_in_the_engine(module: str) -> None:
    kind = BUILTIN_KINDS[module][0]
    with pytest.raises(ConfigError, match=f"unknown {kind} model 'none'"):
        BacktestEngine(_feed(), ScriptedStrategy(), block_plugins=[module])


def test_blocked_builtin_broker_means_no_default_broker() -> None:
    with pytest.raises(ConfigError, match="unknown broker model 'simulation'"):
        BacktestEngine(_feed(), ScriptedStrategy(), block_plugins=[DEFAULT_PLUGINS[-1]])


def test_replacing_the_default_commission_changes_every_fill() -> None:
    class TenDollars:
        def calculate(self, quantity: float, price: float) -> float:
            return 10.0

    @hookimpl
    def ml4t_register_commission_models() -> list[tuple[str, Any]]:
        return [("none", TenDollars)]

    plugin = types.SimpleNamespace(ml4t_register_commission_models=ml4t_register_commission_models)
    strat = ScriptedStrategy(script={0: [("buy", 5.0)], 2: [("sell", 5.0)]})
    result = BacktestEngine(_feed(), strat, SimulationBroker(), plugins=[plugin]).run()
    assert result.fills_df["commission"].to_list() == [10.0, 10.0]
    assert result.metrics["total_commission"] == 20.0


def test_replacing_the_simulation_broker_by_name() -> None:
    made: list[Any] = []

    class RecordingBroker(SimulationBroker):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            made.append(self)

    @hookimpl
    def ml4t_register_brokers() -> list[tuple[str, Any]]:
        return [("simulation", RecordingBroker)]

    plugin = types.SimpleNamespace(ml4t_register_brokers=ml4t_register_brokers)
    engine = BacktestEngine(_feed(), ScriptedStrategy(), plugins=[plugin])
    assert made == [engine.broker]


def test_make_broker_hook_takes_over_construction() -> None:
    custom = SimulationBroker(initial_cash=12_345.0)

    @hookimpl
    def ml4t_make_broker(spec: Any, registry: Any) -> Any:
        return custom

    plugin = types.SimpleNamespace(ml4t_make_broker=ml4t_make_broker)
    engine = BacktestEngine(_feed(), ScriptedStrategy(), plugins=[plugin])
    assert engine.broker is custom
    assert engine.run().portfolio_df["equity"][0] == 12_345.0


def test_make_broker_returning_non_broker_names_plugin() -> None:
    @hookimpl
    def ml4t_make_broker(spec: Any, registry: Any) -> Any:
        return "a broker"

    plugin = types.SimpleNamespace(ml4t_make_broker=ml4t_make_broker)
    with pytest.raises(Exception, match=r"returned a str from ml4t_make_broker, which is not a"):
        BacktestEngine(_feed(), ScriptedStrategy(), plugins=[plugin])


def test_replacing_the_parquet_reporter(tmp_path: Path) -> None:
    class Marker:
        def report(self, result: Any, destination: Path) -> list[Path]:
            path = destination / "marker.txt"
            path.write_text(f"{result.final_equity:.2f}")
            return [path]

    @hookimpl
    def ml4t_register_reporters() -> list[tuple[str, Any]]:
        return [("parquet", Marker)]

    plugin = types.SimpleNamespace(ml4t_register_reporters=ml4t_register_reporters)
    engine = BacktestEngine(_feed(), ScriptedStrategy(), plugins=[plugin])
    paths = engine.report(engine.run(), tmp_path)
    assert paths == [tmp_path / "marker.txt"]
    assert not (tmp_path / "trades.parquet").exists()


def test_builtin_reporters_write_files(tmp_path: Path) -> None:
    engine = BacktestEngine(_feed(), ScriptedStrategy())
    result = engine.run()
    paths = engine.report(result, tmp_path / "out", ["parquet", "summary"])
    names = sorted(p.name for p in paths)
    assert names == sorted(
        [
            "trades.parquet",
            "exit_trades.parquet",
            "fills.parquet",
            "orders.parquet",
            "portfolio.parquet",
            "account_events.parquet",
            "metrics.json",
            "metadata.json",
            "summary.txt",
        ]
    )
    assert all(p.is_file() for p in paths)
    assert "final_equity" in (tmp_path / "out" / "summary.txt").read_text()


def test_kinds_cover_every_registration_hook() -> None:
    from ml4t.backtest import hookspecs

    hooks = {n for n in dir(hookspecs) if n.startswith("ml4t_register_")}
    assert hooks == {hook for hook, _ in KINDS.values()}


def test_make_broker_wrapper_sees_and_may_replace_the_built_broker() -> None:
    seen: list[Any] = []

    class Wrap:
        @hookimpl(wrapper=True)
        def ml4t_make_broker(self, spec: Any, registry: Any) -> Any:
            broker = yield  # the builtin (or any other plugin) builds it
            seen.append((spec["model"], type(broker).__name__))
            return broker

    engine = BacktestEngine(_feed(), ScriptedStrategy(), plugins=[Wrap()])
    assert seen == [("simulation", "SimulationBroker")]
    assert isinstance(engine.broker, SimulationBroker)


def test_make_feed_wrapper_wraps_the_feed_the_config_path_builds(tmp_path: Path) -> None:
    from ml4t.backtest import get_plugin_manager

    make_bars(5).write_parquet(tmp_path / "bars.parquet")
    calls: list[str] = []

    class Wrap:
        @hookimpl(wrapper=True)
        def ml4t_make_feed(self, spec: Any, registry: Any) -> Any:
            feed = yield
            calls.append(f"{spec['model']} -> {type(feed).__name__}")
            return feed

    pm = get_plugin_manager(extra=[Wrap()])
    spec = {"model": "parquet", "params": {"path": str(tmp_path / "bars.parquet"), "asset_id": "A"}}
    feed = pm.construct("ml4t_make_feed", "load", "feed", spec=spec, registry=pm.registry)
    assert calls == ["parquet -> ParquetDataFeed"]
    assert BacktestEngine(feed, ScriptedStrategy()).run().portfolio_df.height == 5


def test_trace_plugins_shows_construction_hooks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ML4T_BACKTEST_TRACE_PLUGINS", "1")
    BacktestEngine(_feed(), ScriptedStrategy())
    assert "ml4t_make_broker" in capsys.readouterr().err
