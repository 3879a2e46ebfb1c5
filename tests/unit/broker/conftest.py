"""A small harness that drives a ``SimulationBroker`` through its public methods.

``drive(rows, actions, **broker_kwargs)`` runs a short backtest of daily bars (one per
calendar day from Tue 2 Jan 2024, so bar ``k`` is ``START + k days``) through a
``BacktestEngine`` and, while the strategy handles bar ``k``, calls ``actions[k](b, s)``
once: ``b`` is the broker (``submit_order``, ``cancel_order``, ``replace_order``,
``open_orders``, ``submit_bracket``, ``submit_oco``, ``submit_oto``, ``set_exits``,
``round_quantity``, ``portfolio``) and ``s`` the recording strategy (``s.state`` is a
scratch dict; ``s.fills``, ``s.rejected``, ``s.cancelled`` hold what the broker reported).
An order submitted on bar ``k`` is first matched against bar ``k + 1``.

``rows`` are ``(open, high, low, close)`` tuples, or ``{asset_id: rows}`` for several
assets. The tests only read public behaviour: orders' public attributes, the strategy
callbacks and the result frames (``fills_df``, ``orders_df``, ``portfolio_df``,
``account_events_df``, ``trades_df``, ``metrics``). Warnings of the run (a run with
rejections warns) are kept in ``Drive.warnings``. Helpers are fixtures, so the test
modules never import this file by name.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl
import pytest

from ml4t.backtest import (
    BacktestEngine,
    BacktestResult,
    Context,
    MarketEvent,
    Order,
    PolarsDataFeed,
    SimulationBroker,
)
from ml4t.backtest.testing import ScriptedStrategy, make_bars

Bar = tuple[float, float, float, float]
Action = Callable[[SimulationBroker, "Driver"], None]

START = datetime(2024, 1, 2)  # a Tuesday; bars are one calendar day apart


class Driver(ScriptedStrategy):
    """Call ``actions[k](broker, self)`` once, on the first event of bar ``k``."""

    def __init__(self, broker: SimulationBroker, actions: Mapping[int, Action]) -> None:
        super().__init__(self.on_bar)
        self.broker = broker
        self.actions = dict(actions)
        self.state: dict[str, Any] = {}
        self.bar = -1
        self.last: datetime | None = None

    @staticmethod
    def on_bar(s: ScriptedStrategy, event: MarketEvent, context: Context) -> None:
        assert isinstance(s, Driver)
        if event.timestamp == s.last:
            return
        s.last = event.timestamp
        s.bar += 1
        action = s.actions.get(s.bar)
        if action is not None:
            action(s.broker, s)


@dataclass
class Drive:
    """What a driven run left: the result, the strategy and the broker."""

    result: BacktestResult
    strategy: Driver
    broker: SimulationBroker
    state: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def fills(self, *cols: str) -> list[tuple[Any, ...]]:
        """Fills as ``(bar, side, quantity, price, tag)`` (or the given columns after bar)."""
        cols = cols or ("side", "quantity", "price", "tag")
        df = self.result.fills_df
        return [(bar_of(row[0]), *row[1:]) for row in df.select("timestamp", *cols).rows()]

    def events(self, order: Order) -> list[tuple[int, str, str | None]]:
        """The order's ``orders_df`` rows as ``(bar, event, reason)``."""
        log = self.result.orders_df.filter(pl.col("order_id") == order.order_id)
        return [(bar_of(t), e, r) for t, e, r in log.select("timestamp", "event", "reason").rows()]

    def notes(self) -> list[tuple[int, str]]:
        """The broker's ``account`` rows of ``orders_df`` (margin calls) as ``(bar, reason)``."""
        log = self.result.orders_df.filter(pl.col("event") == "account")
        return [(bar_of(t), r) for t, r in log.select("timestamp", "reason").rows()]

    @staticmethod
    def bar(ts: datetime) -> int:
        """Return the bar index of a timestamp."""
        return bar_of(ts)

    def cash(self) -> float:
        """Cash at the end of the run."""
        return float(self.result.portfolio_df["cash"][-1])


def bar_of(ts: datetime) -> int:
    """Return the bar index of a timestamp of the harness's bars."""
    return (ts.replace(tzinfo=None) - START).days


def frame(rows: Sequence[Bar], volume: float | Sequence[float], asset_id: str | None) -> Any:
    o, h, lo, c = (list(x) for x in zip(*rows, strict=True))
    return make_bars(c, opens=o, highs=h, lows=lo, volume=volume, asset_id=asset_id, start=START)


def run_drive(
    rows: Sequence[Bar] | Mapping[str, Sequence[Bar]],
    actions: Mapping[int, Action],
    *,
    volume: float | Sequence[float] = 1_000.0,
    **broker_kwargs: Any,
) -> Drive:
    """Run ``rows`` with a broker built from ``broker_kwargs``; see the module doc."""
    broker = SimulationBroker(**broker_kwargs)
    strategy = Driver(broker, actions)
    if isinstance(rows, Mapping):
        df = pl.concat([frame(r, volume, a) for a, r in rows.items()]).sort("timestamp", "asset_id")
        feed = PolarsDataFeed(df)
    else:
        feed = PolarsDataFeed(frame(rows, volume, None), asset_id="A")
    with warnings.catch_warnings(record=True) as caught:  # e.g. RejectedOrdersWarning
        warnings.simplefilter("always")
        result = BacktestEngine(feed, strategy, broker).run()
    return Drive(result, strategy, broker, strategy.state, [str(w.message) for w in caught])


@pytest.fixture
def drive() -> Callable[..., Drive]:
    """``drive(rows, actions, *, volume=1000, **broker_kwargs)`` (see the module doc)."""
    return run_drive
