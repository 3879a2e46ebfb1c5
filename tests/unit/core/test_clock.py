"""Clock: several feeds merged chronologically with a stable asset order."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import polars as pl
import pytest

from ml4t.backtest import BacktestEngine, DataValidationError, PolarsDataFeed, Strategy
from ml4t.backtest.core.clock import Clock

D0, D1, D2 = (datetime(2024, 1, 2) + timedelta(days=i) for i in range(3))


class _Idle(Strategy):
    def on_market_data(self, event: Any, context: Any) -> None:
        pass


def test_clock_asset_codes_feed_by_feed_sorted_within_feed(make_long: Any) -> None:
    f1 = PolarsDataFeed(make_long(["Z", "M"], 2), name="f1")
    f2 = PolarsDataFeed(make_long(["B", "A"], 2), name="f2")
    assert Clock([f1, f2]).asset_ids == ["M", "Z", "A", "B"]
    assert Clock([f2, f1]).asset_ids == ["A", "B", "M", "Z"]


def test_clock_events_within_timestamp_follow_asset_order(
    make_long: Any, run_recorder: Any
) -> None:
    f1 = PolarsDataFeed(make_long(["Z", "M"], 2), name="f1")
    f2 = PolarsDataFeed(make_long(["B", "A"], 2), name="f2")
    strategy, _ = run_recorder([f1, f2])
    assert strategy.seen == [(d, a) for d in (D0, D1) for a in ("M", "Z", "A", "B")]


def test_clock_mapping_of_feeds_merged_like_list(make_bars: Any, run_recorder: Any) -> None:
    feeds = {
        "beta": PolarsDataFeed(make_bars(2), asset_id="BETA"),
        "alpha": PolarsDataFeed(make_bars(2), asset_id="ALPHA"),
    }
    strategy, _ = run_recorder(feeds)
    assert strategy.seen == [(D0, "BETA"), (D0, "ALPHA"), (D1, "BETA"), (D1, "ALPHA")]


def test_clock_row_order_in_frame_does_not_matter_within_timestamp(
    make_long: Any, run_recorder: Any
) -> None:
    df = make_long(["A", "B", "C"], 2).sort("timestamp", "asset_id", descending=[False, True])
    assert df["asset_id"].to_list()[:3] == ["C", "B", "A"]
    strategy, _ = run_recorder(PolarsDataFeed(df))
    assert [a for _, a in strategy.seen] == ["A", "B", "C", "A", "B", "C"]
    # the data follows its asset: A has base 100, B 200, C 300
    assert strategy.closes == [100.0, 200.0, 300.0, 101.0, 201.0, 301.0]


def test_clock_feeds_with_different_timestamps_interleave(
    make_bars: Any, run_recorder: Any
) -> None:
    daily = PolarsDataFeed(make_bars(3), asset_id="DAILY")  # 01-02, 01-03, 01-04 00:00
    half = make_bars(4, start="2024-01-02 12:00", base=500.0)  # 01-02 12:00 .. 01-05 12:00
    later = PolarsDataFeed(half, asset_id="NOON")
    strategy, _ = run_recorder([later, daily])
    noon = timedelta(hours=12)
    assert strategy.seen == [
        (D0, "DAILY"),
        (D0 + noon, "NOON"),
        (D1, "DAILY"),
        (D1 + noon, "NOON"),
        (D2, "DAILY"),
        (D2 + noon, "NOON"),
        (datetime(2024, 1, 5, 12), "NOON"),
    ]
    assert strategy.closes == [100.0, 500.0, 101.0, 501.0, 102.0, 502.0, 503.0]


def test_clock_partly_overlapping_timestamps(make_bars: Any, run_recorder: Any) -> None:
    a = PolarsDataFeed(make_bars(3), asset_id="A")  # D0, D1, D2
    b = PolarsDataFeed(make_bars(2, start="2024-01-03"), asset_id="B")  # D1, D2
    strategy, result = run_recorder([b, a])
    assert strategy.seen == [(D0, "A"), (D1, "B"), (D1, "A"), (D2, "B"), (D2, "A")]
    assert result.portfolio_df.height == 3  # one row per distinct timestamp


def test_clock_same_asset_in_two_feeds_rejected(make_bars: Any, make_long: Any) -> None:
    f1 = PolarsDataFeed(make_long(["A", "M"], 2), name="first")
    f2 = PolarsDataFeed(make_bars(2), asset_id="M", name="second")
    with pytest.raises(DataValidationError) as info:
        BacktestEngine(strategy=_Idle(), feeds=[f1, f2])
    msg = str(info.value)
    assert "'M'" in msg
    assert "first" in msg and "second" in msg


def test_clock_same_asset_in_mapping_feeds_names_keys(make_bars: Any) -> None:
    feeds = {
        "equities": PolarsDataFeed(make_bars(2), asset_id="X"),
        "futures": PolarsDataFeed(make_bars(2), asset_id="X"),
    }
    with pytest.raises(DataValidationError) as info:
        BacktestEngine(strategy=_Idle(), feeds=feeds)
    msg = str(info.value)
    assert "'X'" in msg
    assert "equities" in msg and "futures" in msg  # "Mapping keys name the feeds"


def test_clock_signals_of_other_feed_are_nan(make_bars: Any, run_recorder: Any) -> None:
    a = PolarsDataFeed(make_bars(1, pred=0.5), asset_id="A")
    b = PolarsDataFeed(make_bars(1, score=2.0), asset_id="B")
    strategy, _ = run_recorder([a, b])
    sig_a, sig_b = strategy.signals
    assert sig_a["pred"] == 0.5 and sig_b["score"] == 2.0
    assert sig_a["score"] != sig_a["score"]
    assert sig_b["pred"] != sig_b["pred"]


def test_clock_no_feed_rejected() -> None:
    with pytest.raises(DataValidationError):
        Clock([])


def test_clock_feed_with_no_rows(make_bars: Any, run_recorder: Any) -> None:
    empty = PolarsDataFeed(make_bars(3).filter(pl.lit(False)), asset_id="E")
    full = PolarsDataFeed(make_bars(2), asset_id="F")
    strategy, _ = run_recorder([empty, full])
    assert strategy.seen == [(D0, "F"), (D1, "F")]


class _Sized:
    """Wrap a feed and give it a chunk_size spelled by a third party."""

    def __init__(self, feed: Any, chunk_size: str) -> None:
        self._feed = feed
        self.chunk_size = chunk_size

    def __getattr__(self, name: str) -> Any:
        return getattr(self._feed, name)


def test_clock_third_party_chunk_size_years_and_bad_spelling(make_bars: Any) -> None:
    from ml4t.backtest import ConfigError

    feed = PolarsDataFeed(make_bars(800), asset_id="A")  # 800 daily bars from 2024-01-02
    windows = Clock([_Sized(feed, "1y")], None).windows()
    assert len(windows) == 3  # 2024, 2025, 2026 (the data ends in March 2026)
    with pytest.raises(ConfigError, match=r"chunk_size is '1month'.*<n>mo"):
        Clock([_Sized(feed, "1month")], None).windows()
