"""Discovery: one registration path, sorted entry points, blocking, switches, loud failures."""

from __future__ import annotations

import types
from typing import Any

import pytest

from ml4t.backtest import (
    BacktestEngine,
    ConfigError,
    PluginError,
    PolarsDataFeed,
    SimulationBroker,
    get_plugin_manager,
    hookimpl,
    list_plugins,
)
from ml4t.backtest.plugins import DEFAULT_PLUGINS
from ml4t.backtest.testing import ScriptedStrategy, make_bars


class Flat:
    """A commission model charging a fixed amount per fill."""

    def __init__(self, amount: float = 1.0) -> None:
        self.amount = amount

    def calculate(self, quantity: float, price: float) -> float:
        return self.amount


def commission_plugin(name: str, amount: float) -> types.SimpleNamespace:
    @hookimpl
    def ml4t_register_commission_models() -> list[tuple[str, Any]]:
        return [(name, lambda: Flat(amount))]

    return types.SimpleNamespace(ml4t_register_commission_models=ml4t_register_commission_models)


def test_manager_builtins_registered_first_with_provenance() -> None:
    pm = get_plugin_manager(autoload=False)
    names = [e["name"] for e in list_plugins(pm)]
    assert names[: len(DEFAULT_PLUGINS)] == list(DEFAULT_PLUGINS)
    info = pm.info("ml4t.backtest.builtin.commission")
    assert info.builtin and info.distribution == "ml4t-backtest"


def test_entry_points_loaded_with_distribution_and_version(fake_entry_points, ep) -> None:
    fake_entry_points(ep("flat", commission_plugin("flat", 2.0), "ml4t-backtest-flat", "0.4.1"))
    pm = get_plugin_manager()
    entry = next(e for e in list_plugins(pm) if e["name"] == "flat")
    assert (entry["distribution"], entry["version"]) == ("ml4t-backtest-flat", "0.4.1")
    assert entry["provides"] == {"commission": ["flat"]}
    assert pm.registry.create("commission", "flat").calculate(10, 5) == 2.0


@pytest.mark.parametrize("order", [("a_first", "z_last"), ("z_last", "a_first")])
def test_entry_points_sorted_by_name_install_order_irrelevant(fake_entry_points, ep, order) -> None:
    plugins = {
        "a_first": ep("a_first", commission_plugin("same", 1.0)),
        "z_last": ep("z_last", commission_plugin("same", 9.0)),
    }
    fake_entry_points(*(plugins[k] for k in order))
    reg = get_plugin_manager().registry
    # registered a_first then z_last whatever the environment order; pluggy calls the
    # last registered first, so z_last's factory wins the name
    assert reg.lookup("commission", "same").plugin.name == "z_last"
    assert reg.create("commission", "same").calculate(1, 1) == 9.0
    assert [(k, n, i.name) for k, n, i in reg.shadowed] == [("commission", "same", "a_first")]


def test_installed_plugin_overrides_builtin_name(fake_entry_points, ep) -> None:
    fake_entry_points(ep("cheap", commission_plugin("per_share", 0.25)))
    reg = get_plugin_manager().registry
    assert reg.create("commission", "per_share").calculate(100, 10) == 0.25
    assert ("commission", "per_share") in [(k, n) for k, n, _ in reg.shadowed]


def test_block_by_name_skips_entry_point(fake_entry_points, ep) -> None:
    fake_entry_points(ep("flat", commission_plugin("flat", 2.0)))
    pm = get_plugin_manager(block=["flat"])
    assert not pm.has_plugin("flat")
    with pytest.raises(ConfigError, match="unknown commission model 'flat'"):
        pm.registry.create("commission", "flat")


def test_block_env_variable(fake_entry_points, ep, monkeypatch) -> None:
    fake_entry_points(ep("flat", commission_plugin("flat", 2.0)))
    monkeypatch.setenv("ML4T_BACKTEST_BLOCK_PLUGINS", "flat, other")
    assert not get_plugin_manager().has_plugin("flat")


def test_autoload_switches_disable_entry_points(fake_entry_points, ep, monkeypatch) -> None:
    fake_entry_points(ep("flat", commission_plugin("flat", 2.0)))
    assert get_plugin_manager().has_plugin("flat")
    assert not get_plugin_manager(autoload=False).has_plugin("flat")
    monkeypatch.setenv("ML4T_BACKTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert not get_plugin_manager().has_plugin("flat")
    pm = get_plugin_manager()
    assert pm.has_plugin("ml4t.backtest.builtin.commission")  # builtins still load


def test_allow_list_env_variable(fake_entry_points, ep, monkeypatch) -> None:
    fake_entry_points(
        ep("one", commission_plugin("one", 1.0)), ep("two", commission_plugin("two", 2.0))
    )
    monkeypatch.setenv("ML4T_BACKTEST_PLUGINS", "two")
    pm = get_plugin_manager()
    assert pm.has_plugin("two") and not pm.has_plugin("one")


def test_plugin_import_failure_names_plugin_and_distribution(fake_entry_points, ep) -> None:
    fake_entry_points(ep("broken", ModuleNotFoundError("No module named 'scipyy'"), "bad-dist"))
    with pytest.raises(PluginError) as info:
        get_plugin_manager()
    msg = str(info.value)
    assert "'broken'" in msg and "bad-dist 1.2.3" in msg and "scipyy" in msg
    assert "ML4T_BACKTEST_BLOCK_PLUGINS=broken" in msg
    assert info.value.plugin == "broken" and info.value.distribution == "bad-dist 1.2.3"
    # and the advertised fix works
    assert not get_plugin_manager(block=["broken"]).has_plugin("broken")


def test_misspelled_hook_fails_check_pending(fake_entry_points, ep) -> None:
    @hookimpl
    def ml4t_register_comission_models() -> list[Any]:  # typo on purpose
        return []

    plugin = types.SimpleNamespace(ml4t_register_comission_models=ml4t_register_comission_models)
    fake_entry_points(ep("typo", plugin, "typo-dist"))
    with pytest.raises(PluginError, match=r"'typo' \(typo-dist 1.2.3\).*unknown hook"):
        get_plugin_manager()


def test_registration_hook_raising_names_plugin(fake_entry_points, ep) -> None:
    @hookimpl
    def ml4t_register_slippage_models() -> list[Any]:
        raise RuntimeError("boom")

    plugin = types.SimpleNamespace(ml4t_register_slippage_models=ml4t_register_slippage_models)
    fake_entry_points(ep("explodes", plugin, "explodes-dist"))
    pm = get_plugin_manager()
    with pytest.raises(
        PluginError, match=r"'explodes' \(explodes-dist 1.2.3\) raised RuntimeError"
    ):
        pm.registry  # noqa: B018


def test_registration_hook_wrong_return_type_names_plugin(fake_entry_points, ep) -> None:
    @hookimpl
    def ml4t_register_slippage_models() -> Any:
        return ["fixed"]

    plugin = types.SimpleNamespace(ml4t_register_slippage_models=ml4t_register_slippage_models)
    fake_entry_points(ep("wrongtype", plugin, "wt-dist"))
    with pytest.raises(PluginError, match=r"'wrongtype'.*expected \(name, factory\) pairs"):
        get_plugin_manager().registry  # noqa: B018


def test_factory_returning_wrong_object_names_plugin(fake_entry_points, ep) -> None:
    @hookimpl
    def ml4t_register_commission_models() -> list[Any]:
        return [("liar", lambda: 0.005)]

    plugin = types.SimpleNamespace(ml4t_register_commission_models=ml4t_register_commission_models)
    fake_entry_points(ep("liar", plugin, "liar-dist"))
    broker = SimulationBroker(commission="liar")  # a plugin's name: the engine resolves it
    feed = PolarsDataFeed(make_bars(5), asset_id="A")
    with pytest.raises(PluginError, match=r"'liar' \(liar-dist 1.2.3\).*no calculate\(\)"):
        BacktestEngine(feed, ScriptedStrategy(), broker)


def test_broken_plugin_stops_engine_construction(fake_entry_points, ep) -> None:
    fake_entry_points(ep("broken", ImportError("cannot import name 'x'"), "broken-dist"))
    feed = PolarsDataFeed(make_bars(5), asset_id="A")
    with pytest.raises(PluginError, match="broken-dist"):
        BacktestEngine(feed, ScriptedStrategy())
    engine = BacktestEngine(feed, ScriptedStrategy(), block_plugins=["broken"])
    assert engine.run().complete


def test_plugins_in_code_registered_last_and_win(fake_entry_points, ep) -> None:
    fake_entry_points(ep("flat", commission_plugin("flat", 2.0)))
    pm = get_plugin_manager(extra=[commission_plugin("flat", 7.0)])
    assert pm.registry.create("commission", "flat").calculate(1, 1) == 7.0
    entry = list_plugins(pm)[-1]
    assert entry["distribution"] == "(in code)"


def test_each_engine_owns_its_manager() -> None:
    feed = PolarsDataFeed(make_bars(5), asset_id="A")
    a = BacktestEngine(feed, ScriptedStrategy(), plugins=[commission_plugin("flat", 3.0)])
    b = BacktestEngine(feed, ScriptedStrategy())
    assert a.plugin_manager is not b.plugin_manager
    assert a.plugin_manager.registry.lookup("commission", "flat") is not None
    assert b.plugin_manager.registry.lookup("commission", "flat") is None


def test_engine_resolves_broker_model_names_through_its_plugins() -> None:
    script = {0: [("buy", 10.0)], 2: [("sell", 10.0)]}
    feed = PolarsDataFeed(make_bars(5), asset_id="A")
    engine = BacktestEngine(
        feed,
        ScriptedStrategy(script=script),
        {"model": "simulation", "params": {"commission": "flat"}},
        plugins=[commission_plugin("flat", 4.0)],
    )
    result = engine.run()
    assert result.fills_df["commission"].to_list() == [4.0, 4.0]


def test_addhooks_lets_a_plugin_add_its_own_specs(fake_entry_points, ep) -> None:
    import pluggy

    spec_marker = pluggy.HookspecMarker("ml4t.backtest")

    class MySpecs:
        @spec_marker
        def ml4t_my_extension(self, value: int) -> int:  # type: ignore[empty-body]
            """A hook of the plugin's own."""

    @hookimpl
    def ml4t_addhooks(pluginmanager: Any) -> None:
        pluginmanager.add_hookspecs(MySpecs)

    provider = types.SimpleNamespace(ml4t_addhooks=ml4t_addhooks)

    class User:
        @hookimpl
        def ml4t_my_extension(self, value: int) -> int:
            return value * 2

    fake_entry_points(ep("provider", provider))
    pm = get_plugin_manager(extra=[User()])  # check_pending passes: the spec exists
    assert pm.hook.ml4t_my_extension(value=21) == [42]


def test_addhooks_raising_names_plugin(fake_entry_points, ep) -> None:
    @hookimpl
    def ml4t_addhooks(pluginmanager: Any) -> None:
        raise KeyError("nope")

    fake_entry_points(ep("addbad", types.SimpleNamespace(ml4t_addhooks=ml4t_addhooks), "ab"))
    with pytest.raises(
        PluginError, match=r"'addbad' \(ab 1.2.3\) raised KeyError in ml4t_addhooks"
    ):
        get_plugin_manager()
