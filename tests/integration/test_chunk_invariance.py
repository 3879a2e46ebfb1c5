"""Chunk-size invariance: a run's results do not depend on how its data is cut into windows.

The same multi-asset minute data (four assets on NYSE hours over three weeks spanning a month
end, with bars missing) runs in memory (one window) and from Parquet in daily windows, monthly
windows, row-count windows that split sessions and memory-size windows. Every result frame
must be identical. The strategy carries state across window edges: resting GTC limit entries,
GTC stop exits, broker exits (stop loss, trailing stop, max bars), positions held over the
month end, and entries decided on a 300-bar history that reaches back across edges (checked
against a naive numpy mean of the frame). Plain, with costs, and with the NYSE calendar.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ml4t.backtest import (
    BacktestEngine,
    BacktestResult,
    MarketEvent,
    ParquetDataFeed,
    PercentageCommission,
    PercentageSlippage,
    PolarsDataFeed,
    SimulationBroker,
    Strategy,
)

NY = ZoneInfo("America/New_York")
ASSETS = ("AAA", "BBB", "CCC")
SESSIONS = [date(2024, 1, 25) + timedelta(days=k) for k in range(12)]
SESSIONS = [d for d in SESSIONS if d.weekday() < 5]  # no NYSE holiday in this range
LOOKBACK = 300
ROW_LIMIT = 1000  # a session has ~1480 rows, so these windows split sessions
MEMORY = "48KB"  # 48_000 // (5 floats * 8 + 8 + 4 bytes) = 923 rows
CHUNKS: dict[str, Any] = {"1d": "1d", "1mo": "1mo", "rows": ROW_LIMIT, "size": MEMORY}
SEED, SIGMA, LIMIT = 6, 0.002, 0.99
FRAMES = ("trades_df", "fills_df", "portfolio_df", "orders_df")


def _minute_bars() -> pl.DataFrame:
    """Random-walk minute bars 9:30-15:59 New York; assets skip ~5% of bars, CCC an afternoon."""
    stamps = [
        datetime.combine(d, time(9, 30), NY) + timedelta(minutes=m)
        for d in SESSIONS
        for m in range(390)
    ]
    rng = np.random.default_rng(SEED)
    frames = []
    for k, asset in enumerate(ASSETS):
        n = len(stamps)
        close = 50.0 * (k + 1) * np.exp(np.cumsum(rng.normal(0.0, SIGMA, n)))
        open_ = np.concatenate(([close[0]], close[:-1])) * np.exp(rng.normal(0, 0.0002, n))
        wick = np.abs(rng.normal(0.0, 0.0004, (2, n)))
        keep = rng.random(n) > (0.0 if k == 0 else 0.05)
        if asset == "CCC":
            keep[6 * 390 + 200 : 7 * 390] = False
        frame = pl.DataFrame(
            {
                "timestamp": stamps,
                "asset_id": asset,
                "open": open_,
                "high": np.maximum(open_, close) * (1 + wick[0]),
                "low": np.minimum(open_, close) * (1 - wick[1]),
                "close": close,
                "volume": rng.integers(100, 10_000, n).astype(float),
            }
        )
        frames.append(frame.filter(pl.Series(keep)))
    return pl.concat(frames).sort("timestamp", "asset_id")


class _Stateful(Strategy):
    """Mean-reversion entries on 300-bar history; exits by GTC stops or the broker's rules.

    Flat and above the 300-bar mean: a GTC limit buy below the close, left resting.
    Holding AAA/BBB: a GTC stop 1.5% below the entry fill. Flat with a working sell: cancel it.
    """

    def __init__(self) -> None:
        self.means: dict[str, list[tuple[int, float]]] = {a: [] for a in ASSETS}
        self.entry: dict[str, float] = {}

    def on_fill(self, fill: Any) -> None:
        if fill.quantity > 0:
            self.entry[fill.asset_id] = fill.price

    def on_market_data(self, event: MarketEvent, context: Any) -> None:
        a = event.asset_id
        past = self.history(a, "close", LOOKBACK)
        if past.shape[0] < LOOKBACK:
            return
        mean = float(np.mean(past))
        self.means[a].append((_ns(event.timestamp), mean))
        held = self.get_position(a)
        working = self.get_open_orders(a)
        if held == 0:
            for order in working:
                if order.tag == "gtc_stop":
                    self.cancel_order(order)
            if not working and event.close > mean:
                depth = 0.98 if a == "CCC" else LIMIT  # CCC's entries rest for days
                self.buy(a, 10, limit_price=round(event.close * depth, 2), tag="rest")
        elif a in ("AAA", "BBB") and not any(o.tag == "gtc_stop" for o in working):
            self.sell(a, held, stop_price=round(self.entry[a] * 0.985, 2), tag="gtc_stop")


def _ns(ts: datetime) -> int:
    return int(ts.timestamp()) * 10**9 + ts.microsecond * 1000


def _broker(setup: str) -> SimulationBroker:
    costs: dict[str, Any] = {}
    if setup == "costs":
        costs = {"commission": PercentageCommission(0.001), "slippage": PercentageSlippage(5e-4)}
    exits = {"stop_loss": 0.02, "trailing_stop": 0.03, "max_bars": 500}
    return SimulationBroker(initial_cash=100_000.0, exits=exits, **costs)


def _run(feed: PolarsDataFeed, setup: str) -> tuple[BacktestEngine, BacktestResult, _Stateful]:
    strategy = _Stateful()
    calendar = "NYSE" if setup == "nyse" else None
    engine = BacktestEngine(feed, strategy, _broker(setup), calendar=calendar)
    return engine, engine.run(), strategy


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, Path]:
    frame = _minute_bars()
    path = tmp_path_factory.mktemp("chunks") / "bars.parquet"
    frame.write_parquet(path, row_group_size=2_000)
    return frame, path


Run = tuple[list[tuple[int, int]], BacktestResult, _Stateful]


@pytest.fixture(scope="module")
def runs(data: tuple[pl.DataFrame, Path]) -> Callable[[str, str | None], Run]:
    """``runs(setup, chunk)``: windows, result and strategy; chunk None is in memory."""
    done: dict[tuple[str, str | None], Run] = {}

    def get(setup: str, chunk: str | None) -> Run:
        if (setup, chunk) not in done:
            frame, path = data
            feed = (
                PolarsDataFeed(frame)
                if chunk is None
                else ParquetDataFeed(path, chunk_size=CHUNKS[chunk])
            )
            engine, result, strategy = _run(feed, setup)
            done[setup, chunk] = (engine.clock.windows(), result, strategy)
        return done[setup, chunk]

    return get


def _in_session(ns: int) -> bool:
    local = datetime.fromtimestamp(ns / 1e9, NY).time()
    return time(9, 30) < local < time(16, 0)


@pytest.mark.parametrize(
    ("setup", "chunk"),
    [
        *(("plain", c) for c in CHUNKS),
        ("costs", "1d"),
        ("costs", "rows"),
        ("nyse", "1mo"),
        ("nyse", "rows"),
    ],
)
def test_windowed_parquet_run_equals_in_memory_run(
    data: tuple[pl.DataFrame, Path], runs: Callable[[str, str | None], Run], setup: str, chunk: str
) -> None:
    frame = data[0]
    windows, result, strategy = runs(setup, chunk)
    ref_windows, expected, expected_strategy = runs(setup, None)
    assert len(ref_windows) == 1
    edges = [w[0] for w in windows[1:]]
    if chunk == "1d":
        assert len(windows) == len(SESSIONS) + 4  # every UTC day, weekends included
    elif chunk == "1mo":
        assert edges == [_ns(datetime(2024, 2, 1, tzinfo=ZoneInfo("UTC")))]
    else:
        limit = ROW_LIMIT if chunk == "rows" else 48_000 // 52
        assert len(windows) >= frame.height // limit
        assert sum(_in_session(e) for e in edges) >= len(SESSIONS)  # sessions cut mid-day
    assert expected.trades_df.height >= 10  # the comparison is about real trading
    for name in FRAMES:
        assert_frame_equal(getattr(result, name), getattr(expected, name), check_exact=True)
    assert strategy.means == expected_strategy.means


def test_the_strategy_carries_state_across_window_edges(
    runs: Callable[[str, str | None], Run],
) -> None:
    """The run does what the comparison is meant to cover, over the row windows' edges."""
    windows, result, _ = runs("plain", "rows")
    edges = np.array([w[0] for w in windows[1:]])
    trades = result.trades_df
    reasons = set(trades["exit_reason"].to_list())
    assert {"stop_loss", "trailing_stop", "time_exit", "gtc_stop"} <= reasons
    held = trades.filter(pl.col("exit_reason") != "end_of_data").select(
        pl.col("entry_timestamp", "exit_timestamp").dt.epoch("ns")
    )
    spans = list(held.iter_rows())
    assert sum(((edges > t0) & (edges <= t1)).any() for t0, t1 in spans) >= 5  # over an edge
    month_end = _ns(datetime(2024, 2, 1, tzinfo=NY))
    assert any(t0 < month_end < t1 for t0, t1 in spans)
    orders = result.orders_df.with_columns(pl.col("timestamp").dt.date().alias("day"))
    rest = (
        orders.filter(pl.col("tag") == "rest")
        .group_by("order_id")
        .agg(pl.col("day").min().alias("placed"), pl.col("day").max().alias("done"))
    )
    assert rest.filter(pl.col("done") > pl.col("placed")).height >= 2  # rest overnight
    gtc = orders.filter((pl.col("tag") == "gtc_stop") & (pl.col("event") == "filled"))
    assert gtc.height >= 1


def test_history_reaches_back_across_window_edges(
    data: tuple[pl.DataFrame, Path], runs: Callable[[str, str | None], Run]
) -> None:
    """The 300-bar means the strategy saw equal a naive numpy mean over the whole frame."""
    frame = data[0]
    windows, _, strategy = runs("plain", "rows")
    edges = [w[0] for w in windows[1:]]
    checked = 0
    for asset in ASSETS:
        rows = frame.filter(pl.col("asset_id") == asset)
        ts = np.array([_ns(t) for t in rows["timestamp"].to_list()])
        close = rows["close"].to_numpy()
        seen = dict(strategy.means[asset])
        assert len(seen) == ts.shape[0] - (LOOKBACK - 1)
        # the first bar of each window, and bars just after it, look back over the edge
        picks = {int(np.searchsorted(ts, e)) + k for e in edges for k in (0, 1, 7)}
        for i in sorted(p for p in picks if LOOKBACK - 1 <= p < ts.shape[0]):
            assert seen[int(ts[i])] == float(np.mean(close[i - LOOKBACK + 1 : i + 1]))
            checked += 1
    assert checked >= 3 * len(edges)
