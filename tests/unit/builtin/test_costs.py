"""Commission and slippage models: hand-computed amounts, bad parameters, name lookup."""

from __future__ import annotations

import math
from typing import Any

import pytest

from ml4t.backtest import (
    BacktestEngine,
    CommissionModel,
    ConfigError,
    FixedSlippage,
    MarketEvent,
    NoCommission,
    NoSlippage,
    PercentageCommission,
    PercentageSlippage,
    PerShareCommission,
    PolarsDataFeed,
    SimulationBroker,
    SlippageModel,
    Strategy,
)
from ml4t.backtest.testing import ScriptedStrategy, make_bars

BUY, SELL = 1, -1

# --- commission --------------------------------------------------------------------------


def test_no_commission_is_zero() -> None:
    assert NoCommission().calculate(1_000, 123.45) == 0.0


@pytest.mark.parametrize(
    ("rate", "qty", "price", "expected"),
    [(0.001, 200, 50.0, 10.0), (0.0025, 3, 1_000.0, 7.5), (0.0, 10, 10.0, 0.0)],
)
def test_percentage_commission_rate_times_notional(
    rate: float, qty: float, price: float, expected: float
) -> None:
    assert PercentageCommission(rate).calculate(qty, price) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("qty", "expected"), [(100, 1.0), (199, 1.0), (400, 2.0), (1_000, 5.0), (0.5, 1.0)]
)
def test_per_share_commission_with_minimum(qty: float, expected: float) -> None:
    model = PerShareCommission(cost_per_share=0.005, minimum=1.0)
    assert model.calculate(qty, 50.0) == pytest.approx(expected, abs=1e-12)


def test_per_share_commission_ignores_price_and_defaults_minimum_zero() -> None:
    model = PerShareCommission(0.01)
    assert model.minimum == 0.0
    assert model.calculate(30, 5.0) == model.calculate(30, 500.0) == pytest.approx(0.3)


@pytest.mark.parametrize("rate", [-0.001, math.nan, math.inf])
def test_percentage_commission_bad_rate_config_error(rate: float) -> None:
    with pytest.raises(ConfigError, match="rate"):
        PercentageCommission(rate)


@pytest.mark.parametrize(
    ("model", "kwargs", "name"),
    [
        (PercentageCommission, {"rate": "abc"}, "rate"),
        (PercentageCommission, {"rate": None}, "rate"),
        (PerShareCommission, {"cost_per_share": "5c"}, "cost_per_share"),
        (FixedSlippage, {"amount": "one cent"}, "amount"),
        (PercentageSlippage, {"rate": None}, "rate"),
    ],
)
def test_cost_model_non_number_parameter_config_error(
    model: type, kwargs: dict[str, Any], name: str
) -> None:
    with pytest.raises(ConfigError, match=name):
        model(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"cost_per_share": -0.01}, "cost_per_share"),
        ({"cost_per_share": math.inf}, "cost_per_share"),
        ({"cost_per_share": 0.01, "minimum": -1.0}, "minimum"),
        ({"cost_per_share": 0.01, "minimum": math.nan}, "minimum"),
    ],
)
def test_per_share_commission_bad_parameters_config_error(
    kwargs: dict[str, float], name: str
) -> None:
    with pytest.raises(ConfigError, match=name):
        PerShareCommission(**kwargs)


# --- slippage ------------------------------------------------------------------------------


def test_no_slippage_returns_base_price() -> None:
    assert NoSlippage().fill_price(100.0, BUY, 10, 1e6) == 100.0
    assert NoSlippage().fill_price(100.0, SELL, 10, 1e6) == 100.0


def test_fixed_slippage_moves_price_against_trader() -> None:
    model = FixedSlippage(0.05)
    assert model.fill_price(100.0, BUY, 10, 1e6) == pytest.approx(100.05)
    assert model.fill_price(100.0, SELL, 10, 1e6) == pytest.approx(99.95)


def test_percentage_slippage_moves_price_against_trader() -> None:
    model = PercentageSlippage(0.001)
    assert model.fill_price(100.0, BUY, 10, 1e6) == pytest.approx(100.1)
    assert model.fill_price(250.0, SELL, 10, 1e6) == pytest.approx(249.75)


def test_fixed_slippage_sell_never_below_zero() -> None:
    assert FixedSlippage(1.0).fill_price(0.5, SELL, 1, 1.0) > 0


@pytest.mark.parametrize("amount", [-0.01, math.nan, math.inf])
def test_fixed_slippage_bad_amount_config_error(amount: float) -> None:
    with pytest.raises(ConfigError, match="amount"):
        FixedSlippage(amount)


@pytest.mark.parametrize("rate", [-0.001, 1.0, 1.5, math.nan])
def test_percentage_slippage_bad_rate_config_error(rate: float) -> None:
    with pytest.raises(ConfigError, match="rate"):
        PercentageSlippage(rate)


def test_builtin_models_satisfy_protocols() -> None:
    for c in (NoCommission(), PercentageCommission(0.001), PerShareCommission(0.01)):
        assert isinstance(c, CommissionModel)
    for s in (NoSlippage(), FixedSlippage(0.01), PercentageSlippage(0.001)):
        assert isinstance(s, SlippageModel)


# --- resolution by SimulationBroker ----------------------------------------------------------


def test_broker_per_share_by_name_without_params_clear_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        SimulationBroker(commission="per_share")
    msg = str(info.value)
    assert "per_share" in msg
    assert "cost_per_share" in msg


def test_broker_model_dict_with_params() -> None:
    broker = SimulationBroker(
        commission={"model": "PercentageCommission", "params": {"rate": 0.001}},
        slippage={"model": "fixed", "params": {"amount": 0.02}},
    )
    assert isinstance(broker.commission_model, PercentageCommission)
    assert broker.commission_model.rate == 0.001
    assert isinstance(broker.slippage_model, FixedSlippage)
    assert broker.slippage_model.amount == 0.02


def test_broker_model_names_and_objects() -> None:
    assert isinstance(SimulationBroker().commission_model, NoCommission)
    assert isinstance(SimulationBroker().slippage_model, NoSlippage)
    assert isinstance(SimulationBroker(commission="none").commission_model, NoCommission)
    model = PerShareCommission(0.01)
    assert SimulationBroker(commission=model).commission_model is model


@pytest.mark.parametrize("kind", ["commission", "slippage"])
def test_broker_unknown_model_name_lists_available(kind: str) -> None:
    # a name that is not builtin may be a plugin's: the engine resolves it through its
    # plugins and fails, at construction, listing the names available
    kwargs: dict[str, Any] = {kind: "zero_cost"}
    broker = SimulationBroker(**kwargs)
    feed = PolarsDataFeed(make_bars(3), asset_id="A")
    with pytest.raises(ConfigError) as info:
        BacktestEngine(feed, ScriptedStrategy(), broker)
    msg = str(info.value)
    assert "'zero_cost'" in msg
    assert "percentage" in msg
    assert "none" in msg


def test_broker_builtin_model_names_build_without_a_plugin_manager(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.metadata

    import ml4t.backtest.plugins

    def no_scan(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a builtin model name must not build a plugin manager")

    monkeypatch.setattr(ml4t.backtest.plugins, "get_plugin_manager", no_scan)
    monkeypatch.setattr(importlib.metadata, "entry_points", no_scan)
    broker = SimulationBroker(
        commission={"model": "per_share", "params": {"cost_per_share": 0.01}},
        slippage="ml4t.backtest.builtin.slippage:NoSlippage",
        impact="none",
    )
    assert isinstance(broker.commission_model, PerShareCommission)
    assert broker.commission_model.cost_per_share == 0.01
    assert isinstance(broker.slippage_model, NoSlippage)


def test_broker_plugin_model_name_unresolved_outside_an_engine_is_an_error() -> None:
    broker = SimulationBroker(commission="zero_cost")
    assert isinstance(broker.commission_model, NoCommission)  # until the engine resolves it
    with pytest.raises(ConfigError, match=r"^commission: 'zero_cost' is not a builtin"):
        broker.setup(["A"], None, None)  # type: ignore[arg-type]


def test_broker_model_dict_bad_param_value_config_error() -> None:
    with pytest.raises(ConfigError, match="rate"):
        SimulationBroker(commission={"model": "percentage", "params": {"rate": -1}})


def test_broker_model_dict_unknown_param_config_error() -> None:
    with pytest.raises(ConfigError, match="fee"):
        SimulationBroker(commission={"model": "percentage", "params": {"fee": 1}})


def test_broker_model_dict_without_model_key_config_error() -> None:
    with pytest.raises(ConfigError, match="model"):
        SimulationBroker(commission={"name": "percentage"})


def test_broker_model_wrong_type_config_error() -> None:
    with pytest.raises(ConfigError, match="int"):
        SimulationBroker(slippage=5)


# --- costs in a run ---------------------------------------------------------------------------


class _RoundTrip(Strategy):
    def on_market_data(self, event: MarketEvent, context: Any) -> None:
        if event.timestamp.day == 2:
            self.buy("A", 10)
        elif event.timestamp.day == 4:
            self.sell("A", 10)


def test_costs_applied_to_fills_by_hand(make_bars: Any) -> None:
    broker = SimulationBroker(
        initial_cash=100_000.0, commission=PercentageCommission(0.001), slippage=FixedSlippage(0.5)
    )
    result = BacktestEngine(PolarsDataFeed(make_bars(5), asset_id="A"), _RoundTrip(), broker).run()
    fills = result.fills_df
    # buy fills at 01-03 open 100.5 + 0.5 = 101.0; commission on the slipped price
    # sell fills at 01-05 open 102.5 - 0.5 = 102.0
    assert fills["side"].to_list() == ["buy", "sell"]
    assert fills["price"].to_list() == pytest.approx([101.0, 102.0])
    assert fills["commission"].to_list() == pytest.approx([1.01, 1.02])
    assert fills["slippage"].to_list() == pytest.approx([5.0, 5.0])
    expected_cash = 100_000.0 - 10 * 101.0 - 1.01 + 10 * 102.0 - 1.02
    assert result.portfolio_df["cash"][-1] == pytest.approx(expected_cash, abs=1e-9)
    assert result.final_equity == pytest.approx(expected_cash, abs=1e-9)
