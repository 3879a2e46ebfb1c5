"""PolarsDataFeed / ParquetDataFeed: every accepted source shape reaches the strategy intact."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest

from ml4t.backtest import (
    BacktestEngine,
    BacktestResult,
    DataValidationError,
    MarketEvent,
    ParquetDataFeed,
    PolarsDataFeed,
    SimulationBroker,
    Strategy,
)

_DAYS = [datetime(2024, 1, 2) + timedelta(days=i) for i in range(4)]


def _closes(n: int) -> list[float]:
    return [100.0 + i for i in range(n)]


# --- source types -------------------------------------------------------------------------


def test_feed_polars_dataframe_delivers_every_bar(make_bars: Any, run_recorder: Any) -> None:
    strategy, _ = run_recorder(PolarsDataFeed(make_bars(4), asset_id="A"))
    assert strategy.seen == [(d, "A") for d in _DAYS]
    assert strategy.closes == _closes(4)


def test_feed_lazyframe_delivers_every_bar(make_bars: Any, run_recorder: Any) -> None:
    strategy, _ = run_recorder(PolarsDataFeed(make_bars(4).lazy(), asset_id="A"))
    assert strategy.seen == [(d, "A") for d in _DAYS]
    assert strategy.closes == _closes(4)


def test_feed_parquet_path_delivers_every_bar(
    make_bars: Any, run_recorder: Any, tmp_path: Path
) -> None:
    path = tmp_path / "a.parquet"
    make_bars(4).write_parquet(path)
    for feed in (PolarsDataFeed(str(path), asset_id="A"), ParquetDataFeed(path, asset_id="A")):
        strategy, _ = run_recorder(feed)
        assert strategy.seen == [(d, "A") for d in _DAYS]
        assert strategy.closes == _closes(4)


def test_feed_parquet_glob_reads_both_files(
    make_bars: Any, run_recorder: Any, tmp_path: Path
) -> None:
    bars = make_bars(6)
    bars[:3].write_parquet(tmp_path / "part1.parquet")
    bars[3:].write_parquet(tmp_path / "part2.parquet")
    strategy, _ = run_recorder(PolarsDataFeed(str(tmp_path / "*.parquet"), asset_id="A"))
    assert strategy.closes == _closes(6)
    assert strategy.seen[-1] == (datetime(2024, 1, 7), "A")


def test_feed_parquet_glob_matching_nothing_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="no such file"):
        PolarsDataFeed(str(tmp_path / "*.parquet"), asset_id="A")


def test_parquet_feed_refuses_csv_path() -> None:
    with pytest.raises(DataValidationError, match="read_ohlcv_csv"):
        ParquetDataFeed("bars.csv", asset_id="A")


def test_feed_pandas_with_datetime_index(make_bars: Any, run_recorder: Any) -> None:
    frame = make_bars(4, pred=[0.1, 0.2, 0.3, 0.4]).to_pandas().set_index("timestamp")
    strategy, _ = run_recorder(PolarsDataFeed(frame, asset_id="A"))
    assert strategy.seen == [(d, "A") for d in _DAYS]
    assert [s["pred"] for s in strategy.signals] == [0.1, 0.2, 0.3, 0.4]


def test_feed_pandas_with_timestamp_column(make_bars: Any, run_recorder: Any) -> None:
    frame = make_bars(4).to_pandas()
    strategy, _ = run_recorder(PolarsDataFeed(frame, asset_id="A"))
    assert strategy.seen == [(d, "A") for d in _DAYS]
    assert strategy.closes == _closes(4)


def test_feed_unsupported_source_type_rejected() -> None:
    with pytest.raises(DataValidationError, match="list"):
        PolarsDataFeed([1, 2, 3], asset_id="A")


# --- column detection ----------------------------------------------------------------------


def test_feed_column_names_case_insensitive(make_bars: Any, run_recorder: Any) -> None:
    upper = {"timestamp": "Date", "open": "Open", "high": "HIGH", "low": "Low"}
    df = make_bars(4).rename({**upper, "close": "Close", "volume": "Volume"})
    strategy, _ = run_recorder(PolarsDataFeed(df, asset_id="A"))
    assert strategy.seen == [(d, "A") for d in _DAYS]
    assert strategy.closes == _closes(4)


def test_feed_symbol_column_is_the_asset_column(make_long: Any, run_recorder: Any) -> None:
    df = make_long(["Y", "X"], 2).rename({"asset_id": "symbol"})
    feed = PolarsDataFeed(df)
    assert feed.asset_ids == ("X", "Y")
    strategy, _ = run_recorder(feed)
    d0, d1 = _DAYS[:2]
    assert strategy.seen == [(d0, "X"), (d0, "Y"), (d1, "X"), (d1, "Y")]
    # make_long gives the first listed asset ("Y") base 100, the second ("X") base 200
    assert strategy.closes == [200.0, 100.0, 201.0, 101.0]


def test_feed_asset_columns_split_signals_and_indicators(make_bars: Any, run_recorder: Any) -> None:
    df = make_bars(3, pred=[0.1, 0.2, 0.3], rsi=[30.0, 40.0, 50.0], other=7.0)
    feed = PolarsDataFeed(
        df, asset_id="A", asset_columns={"signals": ["pred"], "indicators": ["rsi"]}
    )
    assert feed.signal_names == ("pred",)
    assert feed.indicator_names == ("rsi",)
    strategy, _ = run_recorder(feed)
    assert strategy.signals == [{"pred": 0.1}, {"pred": 0.2}, {"pred": 0.3}]
    assert strategy.indicators == [{"rsi": 30.0}, {"rsi": 40.0}, {"rsi": 50.0}]


def test_feed_asset_columns_unknown_key_rejected(make_bars: Any) -> None:
    with pytest.raises(DataValidationError, match="features"):
        PolarsDataFeed(make_bars(3, x=1.0), asset_id="A", asset_columns={"features": ["x"]})


def test_feed_default_signals_are_extra_numeric_columns(make_bars: Any) -> None:
    df = make_bars(3, score=[1, 2, 3], prob=0.5, note="text")
    feed = PolarsDataFeed(df, asset_id="A")
    assert feed.signal_names == ("score", "prob")
    assert feed.indicator_names == ()


def test_feed_default_signals_exclude_indicator_columns(make_bars: Any) -> None:
    feed = PolarsDataFeed(make_bars(3, prob=0.5, rsi=40.0), asset_id="A", indicator_columns=["rsi"])
    assert feed.signal_names == ("prob",)
    assert feed.indicator_names == ("rsi",)


def test_feed_column_listed_as_signal_and_indicator_rejected(make_bars: Any) -> None:
    with pytest.raises(DataValidationError, match="twice"):
        PolarsDataFeed(
            make_bars(3, x=1.0), asset_id="A", signal_columns=["x"], indicator_columns=["x"]
        )


def test_feed_date_typed_timestamp_column(make_bars: Any, run_recorder: Any) -> None:
    df = make_bars(3).with_columns(pl.col("timestamp").cast(pl.Date))
    assert df.schema["timestamp"] == pl.Date
    strategy, _ = run_recorder(PolarsDataFeed(df, asset_id="A"))
    assert strategy.seen == [(d, "A") for d in _DAYS[:3]]
    assert date(2024, 1, 2) == strategy.seen[0][0].date()


def test_feed_timezone_preserved_in_event_timestamp(make_bars: Any, run_recorder: Any) -> None:
    ny = ZoneInfo("America/New_York")
    df = make_bars(3, start="2024-07-01 09:30", every=timedelta(hours=1), tz="America/New_York")
    feed = PolarsDataFeed(df, asset_id="A")
    assert feed.timezone == "America/New_York"
    strategy, result = run_recorder(feed)
    stamps = [t for t, _ in strategy.seen]
    assert stamps == [datetime(2024, 7, 1, 9 + h, 30, tzinfo=ny) for h in range(3)]
    assert all(t.utcoffset() == timedelta(hours=-4) for t in stamps)
    assert [str(t.tzinfo) for t in stamps] == ["America/New_York"] * 3
    assert result.portfolio_df.schema["timestamp"] == pl.Datetime("ns", "America/New_York")


def test_feed_pandas_timezone_preserved(make_bars: Any, run_recorder: Any) -> None:
    df = make_bars(2, start="2024-01-02 09:30", tz="America/New_York")
    strategy, _ = run_recorder(PolarsDataFeed(df.to_pandas(), asset_id="A"))
    first = strategy.seen[0][0]
    assert first == datetime(2024, 1, 2, 9, 30, tzinfo=ZoneInfo("America/New_York"))
    assert first.utcoffset() == timedelta(hours=-5)


# --- chunked reading -----------------------------------------------------------------------


def _random_long(seed: int = 7, days: int = 150) -> pl.DataFrame:
    """Hourly-ish bars for two assets over ~5 months; asset B skips every 5th bar."""
    rng = np.random.default_rng(seed)
    frames = []
    for k, asset in enumerate(["A", "B"]):
        n = days * 2
        ts = [datetime(2024, 1, 1, 10) + timedelta(hours=12 * i) for i in range(n)]
        close = 50.0 * (k + 1) * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
        open_ = close * np.exp(rng.normal(0, 0.005, n))
        high = np.maximum(open_, close) * 1.01
        low = np.minimum(open_, close) * 0.99
        df = pl.DataFrame(
            {
                "timestamp": ts,
                "asset_id": asset,
                "open": open_,
                "high": high,
                "low": low,
                "close": close,
                "volume": 1000.0,
                "pred": rng.normal(0, 1, n),
            }
        )
        if asset == "B":
            df = df.filter(pl.int_range(pl.len()) % 5 != 0)
        frames.append(df)
    return pl.concat(frames).sort("timestamp", "asset_id")


class _Trader(Strategy):
    """Buys on a positive prediction above its 3-bar mean close, sells on a negative one."""

    def on_market_data(self, event: MarketEvent, context: Any) -> None:
        a = event.asset_id
        past = self.history(a, "close", 3)
        held = self.get_position(a)
        if event.signals["pred"] > 0.5 and held == 0 and event.close > past.mean():
            self.buy(a, 10)
        elif event.signals["pred"] < -0.5 and held > 0:
            self.close_position(a)


def _run(feed: PolarsDataFeed, min_windows: int = 1) -> BacktestResult:
    broker = SimulationBroker(initial_cash=50_000.0, commission="none")
    engine = BacktestEngine(feed, _Trader(), broker)
    assert len(engine.clock.windows()) >= min_windows
    return engine.run()


class _DayOrders(Strategy):
    """Limit entries and stop exits that expire at the end of the day."""

    def on_market_data(self, event: MarketEvent, context: Any) -> None:
        a, held = event.asset_id, self.get_position(event.asset_id)
        if event.signals["pred"] > 1.0 and held == 0:
            self.buy(a, 5, limit_price=event.close * 0.99, time_in_force="day")
        elif event.signals["pred"] < -1.0 and held > 0:
            self.sell(a, held, stop_price=event.close * 0.995, time_in_force="day")


def _assert_same(lazy: BacktestResult, eager: BacktestResult) -> None:
    assert lazy.fills_df.equals(eager.fills_df)
    assert lazy.orders_df.equals(eager.orders_df)
    assert lazy.trades_df.equals(eager.trades_df)
    assert lazy.portfolio_df.equals(eager.portfolio_df)
    assert lazy.final_equity == eager.final_equity


@pytest.mark.parametrize(("chunk", "windows"), [("1mo", 5), ("2w", 10), ("1d", 140)])
def test_feed_lazy_chunks_match_eager_result(chunk: str, windows: int) -> None:
    df = _random_long()
    eager = _run(PolarsDataFeed(df))
    lazy = _run(PolarsDataFeed(df.lazy(), chunk_size=chunk), min_windows=windows)
    assert eager.fills_df.height > 10  # the comparison is about real trades
    _assert_same(lazy, eager)


@pytest.mark.parametrize("chunk", ["1mo", "1w", "1d"])
def test_feed_lazy_chunks_match_eager_with_timezone_and_day_orders(chunk: str) -> None:
    ny = pl.col("timestamp").dt.replace_time_zone("America/New_York")
    df = _random_long().with_columns(ny)
    eager = BacktestEngine(PolarsDataFeed(df), _DayOrders()).run()
    lazy = BacktestEngine(PolarsDataFeed(df.lazy(), chunk_size=chunk), _DayOrders()).run()
    assert eager.fills_df.height > 10
    assert "expired" in eager.orders_df["event"].to_list()
    _assert_same(lazy, eager)


def test_feed_parquet_chunks_match_eager_result(tmp_path: Path) -> None:
    df = _random_long()
    df.write_parquet(tmp_path / "bars.parquet")
    eager = _run(PolarsDataFeed(df))
    lazy = _run(ParquetDataFeed(tmp_path / "bars.parquet", chunk_size="1month"), min_windows=5)
    _assert_same(lazy, eager)


@pytest.mark.parametrize("chunk", ["abc", "1h", "month", "-1mo", "0mo"])
def test_feed_bad_chunk_size_rejected(make_bars: Any, chunk: str) -> None:
    with pytest.raises(DataValidationError, match="chunk_size"):
        PolarsDataFeed(make_bars(3).lazy(), asset_id="A", chunk_size=chunk)


# --- context data carried by the feed ------------------------------------------------------


class _ContextReader(Strategy):
    def __init__(self) -> None:
        self.vix: list[float] = []
        self.from_event: list[float] = []

    def on_market_data(self, event: MarketEvent, context: Any) -> None:
        self.vix.append(context.get("VIX"))
        self.from_event.append(event.context["VIX"])


def test_feed_context_data_served_through_context(make_bars: Any) -> None:
    vix = pl.DataFrame(
        {"timestamp": [datetime(2024, 1, 3), datetime(2024, 1, 4, 12)], "VIX": [20.0, 25.0]}
    )
    strategy = _ContextReader()
    feed = PolarsDataFeed(make_bars(4), asset_id="A", context_data=vix)
    BacktestEngine(feed, strategy).run()
    # bars: 01-02 (before any VIX), 01-03 (20), 01-04 00:00 (still 20), 01-05 (25)
    assert strategy.vix[0] != strategy.vix[0]
    assert strategy.vix[1:] == [20.0, 20.0, 25.0]
    assert strategy.from_event[1:] == [20.0, 20.0, 25.0]


def test_feed_context_data_timezone_mismatch_rejected(make_bars: Any) -> None:
    vix = pl.DataFrame({"timestamp": [datetime(2024, 1, 3)], "VIX": [20.0]})
    with pytest.raises(DataValidationError, match="context_data"):
        PolarsDataFeed(make_bars(3, tz="UTC"), asset_id="A", context_data=vix)
