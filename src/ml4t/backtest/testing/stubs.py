"""A scripted, recording strategy and a one-call backtest runner."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import polars as pl

from ..builtin.feeds import PolarsDataFeed
from ..builtin.sim_broker import SimulationBroker
from ..core.context import Context
from ..core.data import Feed
from ..core.events import FillEvent, MarketEvent
from ..core.orders import Order
from ..core.results import BacktestResult
from ..core.strategy import Strategy
from ..engine import BacktestEngine

__all__ = ["ScriptedStrategy", "run_backtest"]

OnBar = Callable[["ScriptedStrategy", MarketEvent, Context], None]


class ScriptedStrategy(Strategy):
    """A strategy driven by a callback or a script of orders; records broker reports.

    Parameters
    ----------
    on_bar : callable, optional
        ``on_bar(strategy, event, context)`` called for every bar.
    script : dict, optional
        ``{bar_number: [(side, quantity), ...]}`` with bar numbers counted per asset from
        0; ``side`` is ``"buy"`` or ``"sell"``. Market orders are placed for the bar's
        asset.

    Attributes
    ----------
    fills, rejected, cancelled : list
        Every ``FillEvent``, ``(order, reason)`` rejection and cancellation reported.
    """

    def __init__(
        self,
        on_bar: OnBar | None = None,
        script: dict[int, list[tuple[str, float]]] | None = None,
    ) -> None:
        self.fn = on_bar
        self.script = script or {}
        self.fills: list[FillEvent] = []
        self.rejected: list[tuple[Order, str]] = []
        self.cancelled: list[tuple[Order, str]] = []
        self._bar: dict[str, int] = {}

    def on_market_data(self, event: MarketEvent, context: Context) -> None:
        """Run the script for this bar, then the callback."""
        k = self._bar.get(event.asset_id, 0)
        self._bar[event.asset_id] = k + 1
        for side, qty in self.script.get(k, ()):
            (self.buy if side == "buy" else self.sell)(event.asset_id, qty)
        if self.fn is not None:
            self.fn(self, event, context)

    def on_fill(self, fill: FillEvent) -> None:
        """Record the fill."""
        self.fills.append(fill)

    def on_order_rejected(self, order: Order, reason: str) -> None:
        """Record the rejection."""
        self.rejected.append((order, reason))

    def on_order_cancelled(self, order: Order, reason: str) -> None:
        """Record the cancellation."""
        self.cancelled.append((order, reason))


def run_backtest(
    data: pl.DataFrame | Feed,
    strategy: Strategy | None = None,
    *,
    asset_id: str = "A",
    plugins: Iterable[object] = (),
    block_plugins: Iterable[str] = (),
    autoload_plugins: bool = True,
    **broker_kwargs: Any,
) -> tuple[BacktestResult, Strategy]:
    """Run ``data`` through a :class:`SimulationBroker` and return ``(result, strategy)``.

    ``data`` is a frame (single-asset frames get ``asset_id``) or a feed; ``broker_kwargs``
    go to ``SimulationBroker`` (``commission="per_share"``, ``impact={...}``, ...).
    """
    strat = strategy if strategy is not None else ScriptedStrategy()
    if isinstance(data, pl.DataFrame):
        single = "asset_id" not in data.columns and "symbol" not in data.columns
        feed: Feed = PolarsDataFeed(data, asset_id=asset_id if single else None)
    else:
        feed = data
    engine = BacktestEngine(
        feed,
        strat,
        SimulationBroker(**broker_kwargs),
        plugins=plugins,
        block_plugins=block_plugins,
        autoload_plugins=autoload_plugins,
    )
    return engine.run(), strat


def check_order_reports(result: BacktestResult, strategy: ScriptedStrategy) -> None:
    """Assert that rejections and cancellations reached the strategy and ``orders_df`` alike.

    Every ``on_order_rejected`` / ``on_order_cancelled`` call recorded by ``strategy`` has
    exactly one matching ``rejected`` / ``cancelled``-or-``expired`` row in
    ``result.orders_df`` with the same, non-empty reason (also set on the order), and
    ``orders_df`` has no such rows the strategy was not told about.
    """
    log = result.orders_df
    ended = pl.col("event").is_in(["cancelled", "expired"])
    rejected = pl.col("event") == "rejected"
    for calls, event in ((strategy.cancelled, ended), (strategy.rejected, rejected)):
        for order, reason in calls:
            rows = log.filter((pl.col("order_id") == order.order_id) & event)
            assert rows["reason"].to_list() == [reason], (order, reason, rows)
            assert reason and order.reason == reason, (order, reason)
    assert log.filter(ended).height == len(strategy.cancelled)
    assert log.filter(rejected).height == len(strategy.rejected)
