"""Cost-model outputs are checked at the boundary: a number that cannot be booked stops the run.

A commission, slippage or impact model that returns NaN or infinity, a negative commission
(unless the model declares ``rebates``) or a fill price better than the market (unless it
declares ``price_improvement``) raises a ``PluginError`` naming the model, its plugin and
distribution, the order, the timestamp and the asset; the result is never "complete" with
NaN equity. A model that cannot price a fill raises ``RejectOrder`` instead: the order is
rejected with the model's reason and the run goes on.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ml4t.backtest import (
    BacktestEngine,
    PluginError,
    PolarsDataFeed,
    RejectOrder,
    SimulationBroker,
    Strategy,
)
from ml4t.backtest.testing import make_bars

START = datetime(2024, 1, 2)
N = 6
FILL = START + timedelta(days=1)  # the buy placed on bar 0 fills at bar 1's open

MODELS = '''
import math

from ml4t.backtest import RejectOrder, hookimpl


class NanCommission:
    def calculate(self, quantity, price):
        return math.nan


class InfCommission:
    def calculate(self, quantity, price):
        return math.inf


class NegativeCommission:
    def calculate(self, quantity, price):
        return -1.0


class NanSlippage:
    def fill_price(self, price, side, quantity, volume):
        return math.nan


class BetterSlippage:
    def fill_price(self, price, side, quantity, volume):
        return price - side * 0.5


class NanImpact:
    def price_impact(self, price, side, quantity, bar):
        return math.nan


class NoQuoteSlippage:
    def fill_price(self, price, side, quantity, volume):
        raise RejectOrder("no quote on this bar")


@hookimpl
def ml4t_register_commission_models():
    return [("nan_fee", NanCommission), ("inf_fee", InfCommission), ("neg_fee", NegativeCommission)]


@hookimpl
def ml4t_register_slippage_models():
    return [
        ("nan_slip", NanSlippage),
        ("better_slip", BetterSlippage),
        ("no_quote", NoQuoteSlippage),
    ]


@hookimpl
def ml4t_register_impact_models():
    return [("nan_impact", NanImpact)]
'''


class BuyOnce(Strategy):
    def on_market_data(self, event: Any, context: Any) -> None:
        if event.timestamp == START:
            self.buy(event.asset_id, 10)

    def on_order_rejected(self, order: Any, reason: str) -> None:
        self.rejected = reason


@pytest.fixture
def models(tmp_path: Path) -> Iterator[types.ModuleType]:
    (tmp_path / "mo_models.py").write_text(MODELS)
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("mo_models")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("mo_models", None)


def _bars() -> pl.DataFrame:
    return make_bars([100.0] * N, opens=[100.0] * N, asset_id="A", start=START)


def _run(broker: Any, plugin: types.ModuleType | None = None) -> Any:
    feed = PolarsDataFeed(_bars())
    plugins = [plugin] if plugin is not None else []
    return BacktestEngine(feed, BuyOnce(), broker, plugins=plugins).run()


@pytest.mark.parametrize(
    ("kind", "name", "cls", "words"),
    [
        ("commission", "nan_fee", "NanCommission", "returned nan for 10 units at 100"),
        ("commission", "inf_fee", "InfCommission", "returned inf for 10 units at 100"),
        ("commission", "neg_fee", "NegativeCommission", "returned -1.0 for 10 units at 100"),
        ("slippage", "nan_slip", "NanSlippage", "returned the fill price nan (base price 100)"),
        ("slippage", "better_slip", "BetterSlippage", "returned 99.5 for a buy at the market"),
        ("impact", "nan_impact", "NanImpact", "returned nan; an impact must be a finite"),
    ],
)
def test_plugin_model_output_that_cannot_be_booked_stops_the_run_naming_it(
    models: types.ModuleType, kind: str, name: str, cls: str, words: str
) -> None:
    spec = {"model": "simulation", "params": {kind: name}}
    with pytest.raises(PluginError) as info:
        _run(spec, models)
    err = info.value
    text = str(err)
    assert err.plugin == "mo_models" and err.distribution == "(in code)"
    assert err.model == f"{kind} model {name!r} ({cls})"
    assert err.asset_id == "A"
    assert FILL.isoformat() in str(err.timestamp)
    for part in ("plugin 'mo_models'", words, f"order 0 (buy A) at {FILL.isoformat()}"):
        assert part in text, (part, text)
    partial = err.partial_result
    assert partial is not None and partial.complete is False
    assert partial.portfolio_df["equity"].is_finite().all()  # nothing reached the books
    assert partial.fills_df.height == 0


def test_model_object_given_in_code_is_named_as_such(models: types.ModuleType) -> None:
    broker = SimulationBroker(commission=models.NanCommission())
    with pytest.raises(PluginError) as info:
        _run(broker)
    assert "(a model object given in code, not from a plugin)" in str(info.value)
    assert "commission model NanCommission returned nan" in str(info.value)


def test_commission_rebate_allowed_when_the_model_declares_it(models: types.ModuleType) -> None:
    class Rebate:
        rebates = True

        def calculate(self, quantity: float, price: float) -> float:
            return -0.001 * quantity * price  # a maker rebate of 10 bp

    result = _run(SimulationBroker(commission=Rebate()))
    assert result.fills_df["commission"].to_list() == [pytest.approx(-1.0)]
    assert result.portfolio_df["cash"][-1] == pytest.approx(100_000 - 1_000 + 1.0)


def test_price_improvement_allowed_when_the_model_declares_it(models: types.ModuleType) -> None:
    class Improving(models.BetterSlippage):  # type: ignore[misc,name-defined]
        price_improvement = True

    result = _run(SimulationBroker(slippage=Improving()))
    assert result.fills_df["price"].to_list() == [99.5]


def test_model_raising_reject_order_rejects_with_its_reason(models: types.ModuleType) -> None:
    spec = {"model": "simulation", "params": {"slippage": "no_quote"}}
    with pytest.warns(UserWarning, match="1 order was rejected"):
        feed = PolarsDataFeed(_bars())
        strategy = BuyOnce()
        result = BacktestEngine(feed, strategy, spec, plugins=[models]).run()
    assert result.complete and result.fills_df.height == 0
    reason = result.orders_df.filter(pl.col("event") == "rejected")["reason"].item()
    assert reason.startswith("slippage model NoQuoteSlippage rejected")
    assert reason.endswith("rejected the order: no quote on this bar")
    assert strategy.rejected == reason


def test_reject_order_from_a_commission_model_is_named(models: types.ModuleType) -> None:
    class Closed:
        def calculate(self, quantity: float, price: float) -> float:
            raise RejectOrder("venue closed")

    result = _run(SimulationBroker(commission=Closed()))
    reason = result.orders_df.filter(pl.col("event") == "rejected")["reason"].item()
    assert reason.startswith("commission model ") and reason.endswith("venue closed")


CONFIG = """
data: {asset_data: {path: bars.parquet}}
strategy: {module: mo_cli_strategy, class: BuyOnce}
plugins: {modules: [mo_models]}
execution: {commission: nan_fee}
reporting: {output_dir: out}
"""


def test_cli_run_with_a_nan_commission_exits_2_and_writes_no_manifest(
    models: types.ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ml4t.backtest.cli import main

    _bars().write_parquet(tmp_path / "bars.parquet")
    (tmp_path / "mo_cli_strategy.py").write_text(
        "from ml4t.backtest import Strategy\n\n\nclass BuyOnce(Strategy):\n"
        "    def on_market_data(self, event, context):\n"
        "        if self.get_position(event.asset_id) == 0:\n"
        "            self.buy(event.asset_id, 10)\n"
    )
    (tmp_path / "bt.yaml").write_text(CONFIG)
    try:
        assert main(["run", str(tmp_path / "bt.yaml"), "-q"]) == 2
    finally:
        sys.modules.pop("mo_cli_strategy", None)
    err = capsys.readouterr().err
    assert err.startswith("ml4t-backtest: error: PluginError: ") and "returned nan" in err
    assert not (tmp_path / "out" / "run_manifest.json").exists()
