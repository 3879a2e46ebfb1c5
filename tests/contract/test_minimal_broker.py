"""A broker written from the protocol alone passes the contract and runs full backtests.

``MinimalBroker`` (``minimal_broker.py``) imports only ``ml4t.backtest``. Its results must
be the ones ``SimulationBroker(fill_timing="next_bar_open")`` gives without costs: the same
``fills_df`` for a buy-and-hold and a moving-average crossover over several assets.
"""

from __future__ import annotations

import ast
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from ml4t.backtest import (
    BacktestEngine,
    BacktestResult,
    Broker,
    Context,
    MarketEvent,
    ParquetDataFeed,
    PolarsDataFeed,
    SimulationBroker,
    Strategy,
)
from ml4t.backtest.testing import BrokerContract, make_long_bars

from .minimal_broker import MinimalBroker


class TestMinimalBrokerContract(BrokerContract):
    supports = frozenset({"short"})
    initial_cash = 25_000.0

    def make_broker(self) -> Broker:
        return MinimalBroker(initial_cash=25_000.0)


def test_minimal_broker_imports_only_public_names() -> None:
    tree = ast.parse((Path(__file__).parent / "minimal_broker.py").read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert {m for m in modules if m and m.startswith("ml4t")} == {"ml4t.backtest"}


class BuyAndHold(Strategy):
    """Buy a fixed number of units of every asset on its second bar and hold."""

    def __init__(self, quantity: float) -> None:
        self.quantity = quantity
        self.seen: dict[str, int] = {}

    def on_market_data(self, event: MarketEvent, context: Context) -> None:
        k = self.seen[event.asset_id] = self.seen.get(event.asset_id, 0) + 1
        if k == 2:
            self.buy(event.asset_id, self.quantity)


class Crossover(Strategy):
    """Hold 30 % of equity in an asset while its 5-bar mean is above its 15-bar mean."""

    def on_market_data(self, event: MarketEvent, context: Context) -> None:
        closes = self.history(event.asset_id, "close", 15)
        if closes.shape[0] < 15:
            return
        held = self.get_position(event.asset_id)
        if np.mean(closes[-5:]) > np.mean(closes) and held == 0:
            self.order_target_percent(event.asset_id, 0.3)
        elif np.mean(closes[-5:]) < np.mean(closes) and held > 0:
            self.close_position(event.asset_id)


def _run(frame: pl.DataFrame, strategy: Strategy, broker: Any) -> BacktestResult:
    return BacktestEngine(PolarsDataFeed(frame), strategy, broker, autoload_plugins=False).run()


def _frame() -> pl.DataFrame:
    return make_long_bars(["AAA", "BBB", "CCC"], 120, seed=11)


def _check_books(result: BacktestResult) -> None:
    book = result.portfolio_df
    parts = book["cash"] + book["accrued_dividends"] + book["positions_value"]
    assert np.allclose(book["equity"].to_numpy(), parts.to_numpy())


@pytest.mark.parametrize(
    ("strategy", "sim"),
    [
        (lambda: BuyAndHold(40), {}),
        (Crossover, {"fractional": False}),
        (Crossover, {"fractional": False, "order_sizing": "at_order"}),
    ],
    ids=["buy_and_hold", "crossover", "crossover_at_order"],
)
def test_same_fills_as_simulation_broker(strategy: Any, sim: dict[str, Any]) -> None:
    frame = _frame()
    mine = _run(frame, strategy(), MinimalBroker(initial_cash=100_000.0))
    ref = _run(frame, strategy(), SimulationBroker(100_000.0, fill_timing="next_bar_open", **sim))
    assert mine.fills_df.height >= 3
    assert mine.fills_df.equals(ref.fills_df), (mine.fills_df, ref.fills_df)
    assert mine.portfolio_df.equals(ref.portfolio_df)
    for result in (mine, ref):
        _check_books(result)
    assert mine.trades_df.drop("trade_id").equals(ref.trades_df.drop("trade_id"))
    cols = ["order_id", "asset_id", "side", "quantity", "event"]
    assert mine.orders_df.select(cols).equals(ref.orders_df.select(cols))


def test_same_fills_when_the_feed_is_read_in_windows(tmp_path: Path) -> None:
    """Fills in later windows are booked at the run's timestamp index (``clock.now_index``)."""
    path = tmp_path / "bars.parquet"
    _frame().write_parquet(path)
    results = [
        BacktestEngine(
            ParquetDataFeed(path, chunk_size="1mo"), Crossover(), broker, autoload_plugins=False
        ).run()
        for broker in (
            MinimalBroker(),
            SimulationBroker(fill_timing="next_bar_open", fractional=False),
        )
    ]
    mine, ref = results
    assert mine.fills_df.filter(pl.col("timestamp") > datetime(2024, 3, 1)).height > 0
    assert mine.fills_df.equals(ref.fills_df)
    assert mine.portfolio_df.equals(ref.portfolio_df)
    _check_books(mine)
