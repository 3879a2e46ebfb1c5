"""Shared helpers for the unit tests: synthetic bar frames and a recording strategy.

Helpers are served as fixtures (``make_bars``, ``make_long``, ``run_recorder``) so test
modules never import this file by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import polars as pl
import pytest

from ml4t.backtest import (
    BacktestEngine,
    BacktestResult,
    Context,
    MarketEvent,
    SimulationBroker,
    Strategy,
)


def build_bars(
    n: int,
    start: str | datetime = "2024-01-02",
    asset: str | None = None,
    *,
    every: timedelta = timedelta(days=1),
    tz: str | None = None,
    base: float = 100.0,
    **cols: Any,
) -> pl.DataFrame:
    """Return ``n`` clean bars: close = base + i, open = close - 0.5, high/low +-1 around.

    ``cols`` adds or overrides columns (a list of length ``n`` or a scalar). ``asset`` adds
    an ``asset_id`` column. Timestamps are ``start + i * every`` (naive, or in ``tz``).
    """
    t0 = datetime.fromisoformat(start) if isinstance(start, str) else start
    ts = [t0 + i * every for i in range(n)]
    close = [base + i for i in range(n)]
    data: dict[str, Any] = {
        "timestamp": ts,
        "open": [c - 0.5 for c in close],
        "high": [c + 1.0 for c in close],
        "low": [c - 1.5 for c in close],
        "close": close,
        "volume": [1000.0 + i for i in range(n)],
    }
    if asset is not None:
        data["asset_id"] = [asset] * n
    for name, values in cols.items():
        data[name] = values if isinstance(values, list) else [values] * n
    df = pl.DataFrame(data)
    df = df.with_columns(pl.col("timestamp").cast(pl.Datetime("us")))
    if tz is not None:
        df = df.with_columns(pl.col("timestamp").dt.replace_time_zone(tz))
    return df


def build_long(assets: Sequence[str], n: int, **kwargs: Any) -> pl.DataFrame:
    """Return a long multi-asset frame sorted by (timestamp, asset_id)."""
    frames = [build_bars(n, asset=a, base=100.0 * (k + 1), **kwargs) for k, a in enumerate(assets)]
    return pl.concat(frames).sort("timestamp", "asset_id")


class Recorder(Strategy):
    """Record every bar it sees; never trades unless ``buy_on`` says so.

    ``buy_on`` maps a bar index (count of events seen) to ``(asset, quantity)``.
    """

    def __init__(self, buy_on: dict[int, tuple[str, float]] | None = None) -> None:
        self.seen: list[tuple[datetime, str]] = []
        self.closes: list[float] = []
        self.signals: list[dict[str, float]] = []
        self.indicators: list[dict[str, float]] = []
        self.context_values: list[dict[str, float]] = []
        self.events: list[MarketEvent] = []
        self.buy_on = buy_on or {}

    def on_market_data(self, event: MarketEvent, context: Context) -> None:
        k = len(self.seen)
        self.seen.append((event.timestamp, event.asset_id))
        self.closes.append(event.close)
        self.signals.append(dict(event.signals))
        self.indicators.append(dict(event.indicators))
        self.context_values.append(dict(event.context))
        if k in self.buy_on:
            asset, qty = self.buy_on[k]
            self.buy(asset, qty)


def run_recorder_impl(
    feeds: Any,
    *,
    context: Context | None = None,
    buy_on: dict[int, tuple[str, float]] | None = None,
    broker: SimulationBroker | None = None,
) -> tuple[Recorder, BacktestResult]:
    """Run a :class:`Recorder` over one feed or a list of feeds."""
    strategy = Recorder(buy_on)
    if isinstance(feeds, list | dict):
        engine = BacktestEngine(strategy=strategy, broker=broker, feeds=feeds, context=context)
    else:
        engine = BacktestEngine(feeds, strategy, broker, context=context)
    return strategy, engine.run()


def is_nan(x: float) -> bool:
    """Return True for a float NaN."""
    return isinstance(x, float) and math.isnan(x)


@pytest.fixture
def make_bars() -> Callable[..., pl.DataFrame]:
    """``make_bars(n, start, asset=None, *, every, tz, base, **cols)`` (see build_bars)."""
    return build_bars


@pytest.fixture
def make_long() -> Callable[..., pl.DataFrame]:
    """``make_long(assets, n, **kwargs)``: long frame sorted by timestamp, asset."""
    return build_long


@pytest.fixture
def run_recorder() -> Callable[..., tuple[Recorder, BacktestResult]]:
    """``run_recorder(feed_or_feeds, context=None, buy_on=None, broker=None)``."""
    return run_recorder_impl
