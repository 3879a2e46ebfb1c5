"""End-to-end runs: the models are chosen by name and charged by the simulation broker."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ml4t.backtest import BacktestEngine, ConfigError

# Almgren–Chriss defaults, buying 1000 shares at 100 with sigma = 0.02, ADV = 1e6, T = 1:
#   Q/V = 1000 / 1e6 = 1e-3; (1e-3) ** 0.6 = 10 ** -1.8 = 0.0158489319246
#   permanent I = 0.314 * 0.02 * 1e-3 = 6.28e-6, half of it = 3.14e-6
#   temporary J = 0.142 * 0.02 * 0.0158489319246 = 4.50109666659e-5
#   per unit = 100 * (3.14e-6 + 4.50109666659e-5) = 0.00481509666659
AC_PER_UNIT = 0.00481509666659
AC_PARAMS = {"volatility": 0.02, "adv": 1_000_000}


def test_engine_almgren_chriss_by_name_fill_prices_and_impact_match_hand_computation(
    ml4t_make_bars: Callable[..., Any],
    ml4t_run_backtest: Callable[..., Any],
    ml4t_scripted_strategy: type[Any],
) -> None:
    bars = ml4t_make_bars([100.0] * 5, volume=1_000_000)  # every open is 100
    strategy = ml4t_scripted_strategy(script={0: [("buy", 1000)], 2: [("sell", 1000)]})
    result, _ = ml4t_run_backtest(
        bars,
        strategy,
        initial_cash=1_000_000,
        impact={"model": "AlmgrenChriss", "params": AC_PARAMS},
    )
    fills = result.fills_df
    assert fills["side"].to_list() == ["buy", "sell"]
    # buy pays 100 + 0.00481509666659, sell receives 100 - 0.00481509666659
    assert fills["price"].to_list() == pytest.approx(
        [100.00481509666659, 99.99518490333341], rel=1e-12
    )
    # impact cost = 1000 * 0.00481509666659 = 4.81509666659 per fill
    assert fills["impact"].to_list() == pytest.approx([4.81509666659, 4.81509666659], rel=1e-10)
    assert result.metrics["total_impact"] == pytest.approx(9.63019333318, rel=1e-10)
    # round trip at an unchanged open loses exactly the two impact costs
    assert result.portfolio_df["cash"][-1] == pytest.approx(1_000_000 - 9.63019333318, abs=1e-6)
    assert "AlmgrenChrissImpact(volatility=0.02" in result.metadata["broker"]["impact"]


def test_engine_square_root_columns_read_from_fill_bar(
    ml4t_make_bars: Callable[..., Any],
    ml4t_run_backtest: Callable[..., Any],
    ml4t_scripted_strategy: type[Any],
) -> None:
    # bar 1 (the fill bar) holds sigma 0.02 and ADV 4e6; the other bars hold values that
    # would give a very different price if the model read them
    bars = ml4t_make_bars(
        [100.0] * 4,
        volume=1_000_000,
        vol_20=[0.5, 0.02, 0.5, 0.5],
        adv_20=[1.0, 4_000_000.0, 1.0, 1.0],
    )
    result, _ = ml4t_run_backtest(
        bars,
        ml4t_scripted_strategy(script={0: [("buy", 40_000)]}),
        initial_cash=5_000_000,
        impact={"model": "square_root", "params": {"volatility": "vol_20", "adv": "adv_20"}},
    )
    fills = result.fills_df
    # per unit = 100 * 1.0 * 0.02 * sqrt(40_000 / 4e6) = 2 * 0.1 = 0.2 -> price 100.2
    assert fills["price"].to_list() == pytest.approx([100.2], rel=1e-12)
    # impact cost = 40_000 * 0.2 = 8000
    assert fills["impact"].to_list() == pytest.approx([8000.0], rel=1e-12)


def test_engine_nan_column_reject_policy_rejects_order_with_reason(
    ml4t_make_bars: Callable[..., Any],
    ml4t_run_backtest: Callable[..., Any],
    ml4t_scripted_strategy: type[Any],
) -> None:
    bars = ml4t_make_bars([100.0] * 3, adv_20=[1e6, math.nan, 1e6])
    strategy = ml4t_scripted_strategy(script={0: [("buy", 100)]})
    result, strategy = ml4t_run_backtest(
        bars,
        strategy,
        impact={"model": "AlmgrenChriss", "params": {"volatility": 0.02, "adv": "adv_20"}},
    )
    assert result.fills_df.height == 0
    rejected = result.orders_df.filter(result.orders_df["event"] == "rejected")
    (reason,) = rejected["reason"].to_list()
    assert reason.startswith("impact model")  # the broker's wording; the order is not filled
    assert result.metrics["num_rejected_orders"] == 1
    assert len(strategy.rejected) == 1


def test_engine_nan_column_zero_policy_fills_without_impact(
    ml4t_make_bars: Callable[..., Any],
    ml4t_run_backtest: Callable[..., Any],
    ml4t_scripted_strategy: type[Any],
) -> None:
    bars = ml4t_make_bars([100.0] * 3, adv_20=[1e6, math.nan, 1e6])
    result, _ = ml4t_run_backtest(
        bars,
        ml4t_scripted_strategy(script={0: [("buy", 100)]}),
        impact={
            "model": "SquareRoot",
            "params": {"volatility": 0.02, "adv": "adv_20", "on_missing": "zero"},
        },
    )
    assert result.fills_df["price"].to_list() == [100.0]
    assert result.fills_df["impact"].to_list() == [0.0]
    assert result.metrics["total_impact"] == 0.0


def test_engine_missing_column_raises_config_error_naming_it(
    ml4t_make_bars: Callable[..., Any],
    ml4t_run_backtest: Callable[..., Any],
    ml4t_scripted_strategy: type[Any],
) -> None:
    bars = ml4t_make_bars([100.0] * 3)
    with pytest.raises(
        ConfigError, match="SquareRootImpact: adv column 'adv_20' is not in"
    ) as info:
        ml4t_run_backtest(
            bars,
            ml4t_scripted_strategy(script={0: [("buy", 100)]}),
            impact={"model": "SquareRoot", "params": {"volatility": 0.02, "adv": "adv_20"}},
        )
    # the engine names the plugin and distribution the failing model came from
    notes = " ".join(getattr(info.value, "__notes__", []))
    assert "plugin 'impact' (ml4t-backtest-impact" in notes


def test_engine_from_yaml_config_almgren_chriss_fill_matches_hand_computation(
    tmp_path: Path,
    ml4t_make_bars: Callable[..., Any],
    ml4t_scripted_strategy: type[Any],
) -> None:
    ml4t_make_bars([100.0] * 3, volume=1_000_000).write_parquet(tmp_path / "bars.parquet")
    config = tmp_path / "backtest.yaml"
    config.write_text(
        "backtest: {initial_capital: 1000000}\n"
        "data: {asset_data: {path: bars.parquet, asset_id: A}}\n"
        "execution: {impact: {model: AlmgrenChriss, params: {volatility: 0.02, adv: 1000000}}}\n"
        "reporting: {reporters: []}\n"
    )
    engine = BacktestEngine.from_config(
        config, strategy=ml4t_scripted_strategy(script={0: [("buy", 1000)]})
    )
    result = engine.run()
    # same numbers as the first test: 100 + 0.00481509666659, impact 1000 * that
    assert result.fills_df["price"].to_list() == pytest.approx([100.00481509666659], rel=1e-12)
    assert result.fills_df["impact"].to_list() == pytest.approx([4.81509666659], rel=1e-10)
