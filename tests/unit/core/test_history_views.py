"""Strategy.history: past data only, read-only views, and the cross-section of several assets.

Expected values come from the input frames with plain polars filtering: "the rows of this
asset at or before the bar being handled".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl
import pytest

from ml4t.backtest import BacktestEngine, MarketEvent, PolarsDataFeed, Strategy


class _Peek(Strategy):
    """Call ``probe(self, event)`` at every bar and keep what it returns."""

    def __init__(self, probe: Callable[[Strategy, MarketEvent], Any]) -> None:
        self.probe = probe
        self.got: list[tuple[Any, str, Any]] = []

    def on_market_data(self, event: MarketEvent, context: Any) -> None:
        self.got.append((event.timestamp, event.asset_id, self.probe(self, event)))


def _run(feed: PolarsDataFeed, probe: Callable[[Strategy, MarketEvent], Any]) -> _Peek:
    strategy = _Peek(probe)
    BacktestEngine(feed, strategy).run()
    return strategy


def _past(df: pl.DataFrame, asset: str | None, ts: Any, field: str, n: int) -> list[float]:
    rows = df.filter(pl.col("timestamp") <= ts)
    if asset is not None:
        rows = rows.filter(pl.col("asset_id") == asset)
    return rows[field].tail(n).to_list()


def test_single_asset_history_is_a_read_only_view_of_past_bars(make_bars: Any) -> None:
    df = make_bars(12)

    def probe(s: Strategy, e: MarketEvent) -> np.ndarray:
        return s.history(e.asset_id, "close", 5)

    feed = PolarsDataFeed(df, asset_id="A")
    got = _run(feed, probe).got
    for ts, _, values in got:
        assert values.tolist() == _past(df, None, ts, "close", 5)
        assert not values.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            values[0] = 0.0
    # contiguous single-asset rows: the result is a view of the feed's column, no copy
    assert all(np.shares_memory(v, feed._cols["close"]) for _, _, v in got)


def test_multi_asset_history_gathers_only_that_asset(make_long: Any) -> None:
    df = make_long(["A", "B", "C"], 8)
    got = _run(PolarsDataFeed(df), lambda s, e: s.history(e.asset_id, "open", 3)).got
    for ts, asset, values in got:
        assert values.tolist() == _past(df, asset, ts, "open", 3)
        assert not values.flags.writeable


def test_cross_section_dense_grid_timestamps_by_assets(make_long: Any) -> None:
    df = make_long(["A", "B", "C"], 8)

    def probe(s: Strategy, e: MarketEvent) -> np.ndarray:
        return s.history(["C", "A"], "close", 4)

    for ts, _, matrix in _run(PolarsDataFeed(df), probe).got:
        expected = np.column_stack([_past(df, "C", ts, "close", 4), _past(df, "A", ts, "close", 4)])
        assert matrix.shape == expected.shape
        assert np.array_equal(matrix, expected)
        assert not matrix.flags.writeable


def test_cross_section_ragged_assets_nan_where_no_bar(make_bars: Any) -> None:
    a = make_bars(6, asset="A")
    b = make_bars(6, asset="B", base=50.0).filter(pl.int_range(pl.len()) % 2 == 0)
    df = pl.concat([a, b]).sort("timestamp", "asset_id")
    times = a["timestamp"].to_list()

    def probe(s: Strategy, e: MarketEvent) -> np.ndarray:
        return s.history(["A", "B"], "close", 3)

    for ts, _, matrix in _run(PolarsDataFeed(df), probe).got:
        window = [t for t in times if t <= ts][-3:]
        for i, t in enumerate(window):
            for j, asset in enumerate(("A", "B")):
                row = df.filter((pl.col("timestamp") == t) & (pl.col("asset_id") == asset))
                want = row["close"].item() if row.height else math.nan
                got = matrix[i, j]
                assert got == want or (math.isnan(got) and math.isnan(want))
        assert matrix.shape == (len(window), 2)


def test_history_unknown_field_and_bad_n(make_bars: Any) -> None:
    feed = PolarsDataFeed(make_bars(3), asset_id="A")

    def probe(s: Strategy, e: MarketEvent) -> str:
        with pytest.raises(KeyError, match="no column 'nope'"):
            s.history("A", "nope", 2)
        with pytest.raises(KeyError, match="no column 'nope'"):
            s.history(["A"], "nope", 2)
        with pytest.raises(ValueError, match="n > 0"):
            s.history("A", "close", 0)
        return "ok"

    assert [g[2] for g in _run(feed, probe).got] == ["ok"] * 3
