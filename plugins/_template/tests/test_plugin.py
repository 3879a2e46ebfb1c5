"""Tests of the example plugin: installed, discoverable, correct."""

from __future__ import annotations

from ml4t.backtest import get_plugin_manager, list_plugins


def test_plugin_is_installed() -> None:
    entry = next(e for e in list_plugins(get_plugin_manager()) if e["name"] == "example")
    assert entry["distribution"] == "ml4t-backtest-example"
    assert entry["provides"] == {"commission": ["flat_fee"]}


def test_flat_fee_charged_per_fill(ml4t_make_bars, ml4t_run_backtest, ml4t_scripted_strategy):
    strategy = ml4t_scripted_strategy(script={0: [("buy", 10.0)], 2: [("sell", 10.0)]})
    result, _ = ml4t_run_backtest(
        ml4t_make_bars(5), strategy, commission={"model": "flat_fee", "params": {"fee": 1.5}}
    )
    assert result.fills_df["commission"].to_list() == [1.5, 1.5]
