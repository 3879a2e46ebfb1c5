"""Bad market data is rejected at the feed boundary with a message that names the problem.

Rows are numbered from 0 in frame/file order. ``make_bars`` gives clean daily bars from
2024-01-02 (row i is 2024-01-02 + i days) with close = 100 + i, open = close - 0.5,
high = close + 1, low = close - 1.5.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pytest

from ml4t.backtest import (
    BacktestEngine,
    Context,
    DataValidationError,
    ParquetDataFeed,
    PolarsDataFeed,
    Strategy,
)


class _Idle(Strategy):
    def on_market_data(self, event: Any, context: Any) -> None:
        pass


def _set(df: pl.DataFrame, col: str, row: int, value: Any) -> pl.DataFrame:
    """Return ``df`` with ``df[row, col] = value`` (``None`` makes a null)."""
    values = df[col].to_list()
    values[row] = value
    return df.with_columns(pl.Series(col, values, dtype=df.schema[col]))


def _has_row(message: str, row: int) -> bool:
    return re.search(rf"\brow {row}\b", message) is not None


def _reject(df: Any, **kwargs: Any) -> str:
    """Build a feed over ``df`` and return the DataValidationError message."""
    with pytest.raises(DataValidationError) as info:
        PolarsDataFeed(df, **kwargs)
    return str(info.value)


# --- columns and shape --------------------------------------------------------------


@pytest.mark.parametrize("column", ["open", "high", "low", "close", "volume", "timestamp"])
def test_feed_missing_required_column_names_it(make_bars: Any, column: str) -> None:
    msg = _reject(make_bars(5).drop(column), asset_id="A")
    assert f"'{column}'" in msg
    assert "missing" in msg


def test_feed_source_name_appears_in_message(make_bars: Any) -> None:
    msg = _reject(_set(make_bars(5), "close", 2, None), asset_id="A", name="my_bars")
    assert "my_bars" in msg


def test_feed_string_timestamp_column_suggests_parsing(make_bars: Any) -> None:
    df = make_bars(3).with_columns(pl.col("timestamp").dt.strftime("%Y-%m-%d"))
    msg = _reject(df, asset_id="A")
    assert "'timestamp'" in msg
    assert "to_datetime" in msg or "parse" in msg


def test_feed_single_asset_without_asset_id_asks_for_it(make_bars: Any) -> None:
    msg = _reject(make_bars(3))
    assert "asset_id=" in msg


def test_feed_asset_column_and_asset_id_both_given_rejected(make_bars: Any) -> None:
    msg = _reject(make_bars(3, asset="A"), asset_id="A")
    assert "'asset_id'" in msg
    assert "asset_id=" in msg


def test_feed_unknown_signal_column_named(make_bars: Any) -> None:
    msg = _reject(make_bars(3, pred=0.1), asset_id="A", signal_columns=["prediction"])
    assert "'prediction'" in msg


def test_feed_non_numeric_signal_column_named(make_bars: Any) -> None:
    msg = _reject(make_bars(3, note="x"), asset_id="A", signal_columns=["note"])
    assert "'note'" in msg
    assert "numeric" in msg


def test_feed_infinite_signal_names_column_and_row(make_bars: Any) -> None:
    msg = _reject(make_bars(4, pred=[0.1, 0.2, float("inf"), 0.3]), asset_id="A")
    assert "'pred'" in msg
    assert _has_row(msg, 2)
    assert "infinite" in msg


# --- order and duplicates -------------------------------------------------------------


def test_feed_duplicate_timestamp_asset_in_long_frame_names_row_and_asset(
    make_long: Any,
) -> None:
    long = make_long(["A", "B"], 4)  # rows: t0 A, t0 B, t1 A, t1 B, ...
    df = pl.concat([long[:4], long[3:4], long[4:]])  # row 4 repeats (t1, B)
    msg = _reject(df)
    assert "duplicate" in msg
    assert _has_row(msg, 3)
    assert "'B'" in msg


def test_feed_duplicate_timestamp_single_asset_names_row(make_bars: Any) -> None:
    bars = make_bars(5)
    msg = _reject(pl.concat([bars[:3], bars[2:]]), asset_id="A")
    assert "duplicate" in msg
    assert "timestamp" in msg
    assert _has_row(msg, 2)


def test_feed_unsorted_timestamps_names_first_out_of_order_row(make_bars: Any) -> None:
    bars = make_bars(6)
    msg = _reject(bars[[0, 1, 3, 2, 4, 5]], asset_id="A")
    assert "sorted" in msg
    assert "'timestamp'" in msg
    assert _has_row(msg, 3)


# --- timezones --------------------------------------------------------------------------


def test_engine_feeds_mixing_aware_and_naive_rejected_at_construction(make_bars: Any) -> None:
    aware = PolarsDataFeed(make_bars(3, tz="UTC"), asset_id="A", name="aware_feed")
    naive = PolarsDataFeed(make_bars(3), asset_id="B", name="naive_feed")
    with pytest.raises(DataValidationError) as info:
        BacktestEngine(strategy=_Idle(), feeds=[aware, naive])
    msg = str(info.value)
    assert "naive" in msg
    assert "aware_feed" in msg
    assert "naive_feed" in msg


def test_feed_pandas_column_mixing_aware_and_naive_rejected() -> None:
    frame = pd.DataFrame(
        {
            "timestamp": [datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 3)],
            "open": [1.0, 1.0],
            "high": [1.0, 1.0],
            "low": [1.0, 1.0],
            "close": [1.0, 1.0],
            "volume": [1.0, 1.0],
        }
    )
    assert frame["timestamp"].dtype == object
    msg = _reject(frame, asset_id="A")
    assert "'timestamp'" in msg
    assert "naive" in msg


def test_engine_context_naive_while_data_aware_rejected_at_run(make_bars: Any) -> None:
    vix = pl.DataFrame({"timestamp": [datetime(2024, 1, 1)], "VIX": [20.0]})
    feed = PolarsDataFeed(make_bars(3, tz="UTC"), asset_id="A")
    engine = BacktestEngine(feed, _Idle(), context=Context({"VIX": vix}))
    with pytest.raises(DataValidationError) as info:
        engine.run()
    msg = str(info.value)
    assert "'VIX'" in msg
    assert "naive" in msg or "timezone" in msg


# --- prices and volume --------------------------------------------------------------


@pytest.mark.parametrize("column", ["open", "high", "low", "close"])
@pytest.mark.parametrize("bad", [None, float("nan")], ids=["null", "nan"])
def test_feed_missing_ohlc_value_names_column_and_row(
    make_bars: Any, column: str, bad: float | None
) -> None:
    msg = _reject(_set(make_bars(5), column, 2, bad), asset_id="A")
    assert f"'{column}'" in msg
    assert _has_row(msg, 2)


@pytest.mark.parametrize(
    ("column", "value"),
    [("open", 0.0), ("low", 0.0), ("close", -1.0), ("high", -5.0), ("close", float("inf"))],
)
def test_feed_non_positive_or_infinite_price_names_column_and_row(
    make_bars: Any, column: str, value: float
) -> None:
    msg = _reject(_set(make_bars(5), column, 3, value), asset_id="A")
    assert f"'{column}'" in msg
    assert _has_row(msg, 3)
    assert "positive" in msg


def test_feed_negative_volume_names_column_and_row(make_bars: Any) -> None:
    msg = _reject(_set(make_bars(5), "volume", 1, -10.0), asset_id="A")
    assert "'volume'" in msg
    assert _has_row(msg, 1)


def test_feed_zero_volume_accepted(make_bars: Any) -> None:
    feed = PolarsDataFeed(make_bars(3, volume=0.0), asset_id="A")
    assert feed.asset_ids == ("A",)


def test_feed_high_below_low_names_both_columns_and_row(make_bars: Any) -> None:
    msg = _reject(_set(make_bars(5), "high", 2, 90.0), asset_id="A")
    assert "'high'" in msg
    assert "'low'" in msg
    assert _has_row(msg, 2)


@pytest.mark.parametrize(
    ("column", "value"),
    [("close", 150.0), ("close", 50.0), ("open", 150.0), ("open", 50.0)],
    ids=["close_above_high", "close_below_low", "open_above_high", "open_below_low"],
)
def test_feed_price_outside_bar_range_names_column_and_row(
    make_bars: Any, column: str, value: float
) -> None:
    msg = _reject(_set(make_bars(5), column, 1, value), asset_id="A")
    assert f"'{column}'" in msg
    assert _has_row(msg, 1)
    assert "[low, high]" in msg


def test_feed_first_offending_row_reported_in_long_frame(make_long: Any) -> None:
    df = _set(_set(make_long(["A", "B"], 5), "close", 7, 1e6), "close", 3, 1e6)
    msg = _reject(df)
    assert _has_row(msg, 3)
    assert not _has_row(msg, 7)
    assert "'B'" in msg


@pytest.mark.parametrize(
    ("column", "value"),
    [("close", None), ("high", 50.0), ("volume", -1.0), ("pred", float("inf"))],
)
def test_feed_error_shows_timestamp_readably(make_bars: Any, column: str, value: Any) -> None:
    msg = _reject(_set(make_bars(5, pred=0.5), column, 2, value), asset_id="A")
    assert "2024-01-04" in msg  # row 2 = 2024-01-04, not an integer nanosecond count


# --- signals that may be missing ------------------------------------------------------


def test_feed_nan_and_null_signals_arrive_as_float_nan(make_bars: Any, run_recorder: Any) -> None:
    df = make_bars(4, pred=[0.5, float("nan"), None, 0.7])
    strategy, _ = run_recorder(PolarsDataFeed(df, asset_id="A"))
    values = [s["pred"] for s in strategy.signals]
    assert values[0] == 0.5
    assert values[3] == 0.7
    for v in values[1:3]:
        assert isinstance(v, float)
        assert v != v  # NaN


# --- lazy sources ----------------------------------------------------------------------


def _lazy_source(df: pl.DataFrame, kind: str, tmp_path: Path) -> Any:
    if kind == "lazyframe":
        return PolarsDataFeed(df.lazy(), asset_id="A")
    path = tmp_path / "bars.parquet"
    df.write_parquet(path)
    if kind == "parquet_path":
        return PolarsDataFeed(str(path), asset_id="A")
    return ParquetDataFeed(path, asset_id="A")


_KINDS = ["lazyframe", "parquet_path", "parquet_feed"]


def _reject_lazy(df: pl.DataFrame, kind: str, tmp_path: Path, run_recorder: Any) -> str:
    with pytest.raises(DataValidationError) as info:
        run_recorder(_lazy_source(df, kind, tmp_path))
    return str(info.value)


@pytest.mark.parametrize("kind", _KINDS)
def test_lazy_unsorted_across_monthly_chunks_detected(
    make_bars: Any, run_recorder: Any, tmp_path: Path, kind: str
) -> None:
    bars = make_bars(59)  # 2024-01-02 .. 2024-02-29: 30 January rows, 29 February rows
    month = pl.col("timestamp").dt.month()
    feb_first = pl.concat([bars.filter(month == 2), bars.filter(month == 1)])
    msg = _reject_lazy(feb_first, kind, tmp_path, run_recorder)
    assert "sorted" in msg
    assert _has_row(msg, 29)  # first January row, after the 29 February rows


@pytest.mark.parametrize("kind", _KINDS)
def test_lazy_duplicate_timestamp_detected(
    make_bars: Any, run_recorder: Any, tmp_path: Path, kind: str
) -> None:
    bars = make_bars(60)
    msg = _reject_lazy(pl.concat([bars[:40], bars[39:]]), kind, tmp_path, run_recorder)
    assert "duplicate" in msg
    assert _has_row(msg, 39)


@pytest.mark.parametrize("kind", _KINDS)
def test_lazy_high_below_low_detected(
    make_bars: Any, run_recorder: Any, tmp_path: Path, kind: str
) -> None:
    msg = _reject_lazy(_set(make_bars(60), "high", 45, 50.0), kind, tmp_path, run_recorder)
    assert "'high'" in msg
    assert _has_row(msg, 45)


@pytest.mark.parametrize("kind", _KINDS)
def test_lazy_null_close_detected(
    make_bars: Any, run_recorder: Any, tmp_path: Path, kind: str
) -> None:
    msg = _reject_lazy(_set(make_bars(60), "close", 40, None), kind, tmp_path, run_recorder)
    assert "'close'" in msg
    assert _has_row(msg, 40)


@pytest.mark.parametrize("kind", _KINDS)
def test_lazy_null_signal_allowed(
    make_bars: Any, run_recorder: Any, tmp_path: Path, kind: str
) -> None:
    pred = [None if i % 7 == 3 else float(i) for i in range(40)]
    strategy, _ = run_recorder(_lazy_source(make_bars(40, pred=pred), kind, tmp_path))
    got = [s["pred"] for s in strategy.signals]
    assert len(got) == 40
    for i, v in enumerate(got):
        if i % 7 == 3:
            assert v != v
        else:
            assert v == float(i)


def test_lazy_daily_chunks_still_validate_whole_source(make_bars: Any, run_recorder: Any) -> None:
    bars = _set(make_bars(20, every=timedelta(hours=6)), "low", 17, 500.0)
    with pytest.raises(DataValidationError) as info:
        run_recorder(PolarsDataFeed(bars.lazy(), asset_id="A", chunk_size="1d"))
    assert _has_row(str(info.value), 17)
