"""Shared helpers for the integration tests: deterministic bar frames and a scripted strategy.

Helpers are exposed as fixtures (``make_bars``, ``run_backtest``) so test modules do not
import this file by name.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import polars as pl
import pytest

from ml4t.backtest import (
    BacktestEngine,
    BacktestResult,
    Context,
    MarketEvent,
    PolarsDataFeed,
    SimulationBroker,
    Strategy,
)
from ml4t.backtest import testing as kit
from ml4t.backtest.testing import ScriptedStrategy

OnBar = Callable[[Any, MarketEvent, Context], None]


class Scripted(ScriptedStrategy):
    """The test kit's scripted strategy, with a scratch ``state`` dict for callbacks."""

    def __init__(self, on_bar: OnBar | None = None) -> None:
        super().__init__(on_bar)
        self.state: dict[str, Any] = {}


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
    """Return True when ``event`` is the ``k``-th daily bar of ``make_bars`` defaults."""
    return event.timestamp == start + timedelta(days=k)


@pytest.fixture
def make_bars() -> Callable[..., pl.DataFrame]:
    return kit.make_bars


@pytest.fixture
def run_backtest() -> Callable[..., tuple[BacktestResult, Any]]:
    return run


@pytest.fixture
def scripted() -> type[Scripted]:
    return Scripted


@pytest.fixture
def at_day() -> Callable[..., bool]:
    return on_day
