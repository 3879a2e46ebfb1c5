"""Shared helpers for the integration tests: deterministic bar frames and a scripted strategy.

Helpers are exposed as fixtures (``make_bars``, ``run_backtest``) so test modules do not
import this file by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import polars as pl
import pytest

from ml4t.backtest import (
    BacktestEngine,
    BacktestResult,
    Context,
    FillEvent,
    MarketEvent,
    Order,
    PolarsDataFeed,
    SimulationBroker,
    Strategy,
)

OnBar = Callable[["Scripted", MarketEvent, Context], None]


def bars(
    closes: Sequence[float],
    *,
    opens: Sequence[float] | None = None,
    highs: Sequence[float] | None = None,
    lows: Sequence[float] | None = None,
    volume: float = 1_000.0,
    start: datetime = datetime(2024, 1, 2),
    step: timedelta = timedelta(days=1),
    timestamps: Sequence[datetime] | None = None,
    asset_id: str | None = None,
    **extra: Sequence[float],
) -> pl.DataFrame:
    """Build an OHLCV frame.

    ``open`` defaults to the previous close (the first bar opens at its close), ``high``
    and ``low`` default to 1 above/below the larger/smaller of open and close. Extra
    keyword columns (signals) are added as given. With ``asset_id`` an ``asset_id``
    column is added (for long multi-asset frames).
    """
    n = len(closes)
    c = [float(x) for x in closes]
    o = [float(x) for x in opens] if opens is not None else [c[0], *c[:-1]]
    h = (
        [float(x) for x in highs]
        if highs is not None
        else [max(a, b) + 1 for a, b in zip(o, c, strict=False)]
    )
    lo = (
        [float(x) for x in lows]
        if lows is not None
        else [min(a, b) - 1 for a, b in zip(o, c, strict=False)]
    )
    ts = list(timestamps) if timestamps is not None else [start + step * i for i in range(n)]
    data: dict[str, Any] = {
        "timestamp": ts,
        "open": o,
        "high": h,
        "low": lo,
        "close": c,
        "volume": [float(volume)] * n,
    }
    for name, values in extra.items():
        data[name] = [float(v) for v in values]
    df = pl.DataFrame(data)
    if asset_id is not None:
        df = df.with_columns(pl.lit(asset_id).alias("asset_id"))
    return df


class Scripted(Strategy):
    """A strategy driven by a callback; records every event the broker reports."""

    def __init__(self, on_bar: OnBar | None = None) -> None:
        self.fn = on_bar
        self.fills: list[FillEvent] = []
        self.rejected: list[tuple[Order, str]] = []
        self.cancelled: list[tuple[Order, str]] = []
        self.state: dict[str, Any] = {}

    def on_market_data(self, event: MarketEvent, context: Context) -> None:
        if self.fn is not None:
            self.fn(self, event, context)

    def on_fill(self, fill: FillEvent) -> None:
        self.fills.append(fill)

    def on_order_rejected(self, order: Order, reason: str) -> None:
        self.rejected.append((order, reason))

    def on_order_cancelled(self, order: Order, reason: str) -> None:
        self.cancelled.append((order, reason))


def run(
    data: pl.DataFrame | PolarsDataFeed | dict[str, PolarsDataFeed],
    on_bar: OnBar | None = None,
    *,
    strategy: Strategy | None = None,
    asset_id: str | None = "A",
    context: Context | None = None,
    feed_kwargs: dict[str, Any] | None = None,
    **broker_kwargs: Any,
) -> tuple[BacktestResult, Any]:
    """Run ``data`` (a frame, a feed or ``{name: feed}``) and return (result, strategy)."""
    strat = strategy if strategy is not None else Scripted(on_bar)
    broker = SimulationBroker(**broker_kwargs)
    if isinstance(data, dict):
        engine = BacktestEngine(feeds=data, strategy=strat, broker=broker, context=context)
    else:
        if isinstance(data, pl.DataFrame):
            if "asset_id" in data.columns:
                asset_id = None
            feed = PolarsDataFeed(data, asset_id=asset_id, **(feed_kwargs or {}))
        else:
            feed = data
        engine = BacktestEngine(feed, strat, broker, context=context)
    return engine.run(), strat


def on_day(event: MarketEvent, k: int, start: datetime = datetime(2024, 1, 2)) -> bool:
    """Return True when ``event`` is the ``k``-th daily bar of :func:`bars` defaults."""
    return event.timestamp == start + timedelta(days=k)


@pytest.fixture
def make_bars() -> Callable[..., pl.DataFrame]:
    return bars


@pytest.fixture
def run_backtest() -> Callable[..., tuple[BacktestResult, Any]]:
    return run


@pytest.fixture
def scripted() -> type[Scripted]:
    return Scripted


@pytest.fixture
def at_day() -> Callable[..., bool]:
    return on_day
