"""Bad input of issue 15 fails with a clear error, never a raw polars error or an empty run.

Four cases: column names that differ only by case; signal, indicator or context columns
named like a price column; data (or a ``start``/``end`` period) with no bars; price columns
stored as text with non-numeric entries. ``make_bars`` gives clean daily bars from
2024-01-02 (row i is 2024-01-02 + i days) with close = 100 + i.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ml4t.backtest import (
    BacktestEngine,
    DataValidationError,
    ParquetDataFeed,
    PercentSizer,
    PolarsDataFeed,
    Rule,
    SignalStrategy,
    Strategy,
    align_asof,
    read_ohlcv_csv,
)
from ml4t.backtest.builtin.feeds import csv_feed


class _Idle(Strategy):
    """Never trades; records whether the run started."""

    def __init__(self) -> None:
        self.started = False

    def on_start(self) -> None:
        self.started = True

    def on_market_data(self, event: Any, context: Any) -> None:
        pass


def _signal_strategy() -> SignalStrategy:
    return SignalStrategy(
        entry_rules=[Rule.signal_above("pred", 0.5)],
        exit_rules=[Rule.signal_below("pred", 0.5)],
        position_sizer=PercentSizer(0.5),
    )


def _reject(make: Any) -> str:
    with pytest.raises(DataValidationError) as info:
        make()
    return str(info.value)


def _has_row(message: str, row: int) -> bool:
    return re.search(rf"\brow {row}\b", message) is not None


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


_HEADER = "Date,Open,High,Low,Close,Volume\n"


def _csv_rows(n: int, bad: dict[int, str] | None = None) -> str:
    """``n`` daily CSV rows from 2024-01-02; ``bad`` replaces the close of some rows."""
    lines = []
    for i in range(n):
        close = (bad or {}).get(i, f"{100 + i}.5")
        day = datetime(2024, 1, 2).toordinal() + i
        lines.append(f"{datetime.fromordinal(day):%Y-%m-%d},100,200,50,{close},1000\n")
    return "".join(lines)


# --- 1. column names that differ only by case ----------------------------------------------


@pytest.mark.parametrize("order", ["lower_first", "upper_first"])
def test_feed_columns_differing_only_by_case_rejected_naming_both(
    make_bars: Any, order: str
) -> None:
    bars = make_bars(4)
    upper = (pl.col("close") + 0.25).alias("Close")
    df = bars.with_columns(upper) if order == "lower_first" else bars.rename({"close": "Close"})
    if order == "upper_first":
        df = df.with_columns((pl.col("Close") + 0.25).alias("close"))
    msg = _reject(lambda: PolarsDataFeed(df, asset_id="A", name="bars.parquet"))
    assert "bars.parquet" in msg
    assert "'close'" in msg and "'Close'" in msg
    assert "case" in msg


def test_feed_signal_columns_differing_only_by_case_rejected(make_bars: Any) -> None:
    df = make_bars(3, pred=0.5, PRED=0.7)
    msg = _reject(lambda: PolarsDataFeed(df, asset_id="A"))
    assert "'pred'" in msg and "'PRED'" in msg


def test_parquet_feed_case_collision_names_file(make_bars: Any, tmp_path: Path) -> None:
    path = tmp_path / "bars.parquet"
    make_bars(3).with_columns(pl.col("volume").alias("Volume")).write_parquet(path)
    msg = _reject(lambda: ParquetDataFeed(path, asset_id="A"))
    assert str(path) in msg
    assert "'volume'" in msg and "'Volume'" in msg


def test_read_ohlcv_csv_header_differing_only_by_case_rejected_naming_both(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, "dup.csv", "Date,Open,High,Low,Close,close,Volume\n")
    path.write_text(path.read_text() + "2024-01-02,100,200,50,150,151,1000\n")
    msg = _reject(lambda: read_ohlcv_csv(path))
    assert str(path) in msg
    assert "'Close'" in msg and "'close'" in msg


def test_read_ohlcv_csv_adj_close_spellings_collide_named(tmp_path: Path) -> None:
    text = "Date,Open,High,Low,Close,Adj Close,adj_close,Volume\n"
    path = _write(tmp_path, "adj.csv", text + "2024-01-02,100,200,50,150,150,150,1000\n")
    msg = _reject(lambda: read_ohlcv_csv(path))
    assert "'Adj Close'" in msg and "'adj_close'" in msg


def test_signal_data_columns_differing_only_by_case_rejected(make_bars: Any) -> None:
    preds = pl.DataFrame(
        {"timestamp": [datetime(2024, 1, 2)], "score": [0.1], "Score": [0.2]}
    ).with_columns(pl.col("timestamp").cast(pl.Datetime("us")))
    msg = _reject(lambda: PolarsDataFeed(make_bars(3), asset_id="A", signal_data=preds))
    assert "signal_data" in msg
    assert "'score'" in msg and "'Score'" in msg


def test_context_data_columns_differing_only_by_case_rejected(make_bars: Any) -> None:
    ctx = make_bars(3).select("timestamp", pl.lit(20.0).alias("vix"), pl.lit(21.0).alias("VIX"))
    msg = _reject(lambda: PolarsDataFeed(make_bars(3), asset_id="A", context_data=ctx))
    assert "context_data" in msg
    assert "'vix'" in msg and "'VIX'" in msg


def test_align_asof_columns_differing_only_by_case_rejected(make_bars: Any) -> None:
    bars = make_bars(3).with_columns(pl.col("close").alias("CLOSE"))
    preds = make_bars(1).select("timestamp", pl.lit(0.5).alias("pred"))
    msg = _reject(lambda: align_asof(bars, preds))
    assert "'close'" in msg and "'CLOSE'" in msg


# --- 2. signal, indicator or context columns named like a price column ----------------------


@pytest.mark.parametrize(
    ("kwargs", "named", "option"),
    [
        ({"signal_columns": ["close"]}, "close", "signal_columns"),
        ({"indicator_columns": ["volume"]}, "volume", "indicator_columns"),
        ({"asset_columns": {"signals": ["open"]}}, "open", "asset_columns['signals']"),
        ({"asset_columns": {"indicators": ["High"]}}, "High", "asset_columns['indicators']"),
        ({"signal_columns": ["pred", "LOW"]}, "LOW", "signal_columns"),
    ],
)
def test_feed_signal_or_indicator_naming_price_column_rejected_naming_it(
    make_bars: Any, kwargs: dict[str, Any], named: str, option: str
) -> None:
    df = make_bars(3, pred=0.5)
    if named != named.lower():  # the frame spells the price column like the option does
        df = df.rename({named.lower(): named})
    msg = _reject(lambda: PolarsDataFeed(df, asset_id="A", **kwargs))
    assert f"'{named}'" in msg
    assert option in msg
    assert "price" in msg


def test_feed_column_listed_as_signal_and_indicator_named(make_bars: Any) -> None:
    df = make_bars(3, pred=0.5)
    both = {"signal_columns": ["pred"], "indicator_columns": ["pred"]}
    msg = _reject(lambda: PolarsDataFeed(df, asset_id="A", **both))
    assert "'pred'" in msg


def test_feed_context_data_column_named_like_price_rejected(make_bars: Any) -> None:
    ctx = make_bars(3).select("timestamp", "close", pl.lit(20.0).alias("vix"))
    msg = _reject(lambda: PolarsDataFeed(make_bars(3), asset_id="A", context_data=ctx))
    assert "context_data" in msg
    assert "'close'" in msg
    assert "price" in msg


def test_feed_signal_data_column_named_like_price_rejected(make_bars: Any) -> None:
    preds = make_bars(2).select("timestamp", pl.col("close").alias("Close"))
    msg = _reject(lambda: PolarsDataFeed(make_bars(3), asset_id="A", signal_data=preds))
    assert "'Close'" in msg
    assert "price" in msg


# --- 3. no bars: an empty frame, or a period that selects none -----------------------------


def _engine(feed: Any, kind: str, **kwargs: Any) -> tuple[BacktestEngine, Strategy]:
    strategy: Strategy = _Idle() if kind == "event" else _signal_strategy()
    return BacktestEngine(feed, strategy, **kwargs), strategy


_PATHS = ["event", "signal"]


@pytest.mark.parametrize("kind", _PATHS)
def test_engine_empty_frame_rejected_not_a_complete_run(make_bars: Any, kind: str) -> None:
    feed = PolarsDataFeed(make_bars(3, pred=0.6).clear(), asset_id="A", name="empty.parquet")
    engine, strategy = _engine(feed, kind)
    msg = _reject(engine.run)
    assert "empty.parquet" in msg
    assert "no bars" in msg
    assert not getattr(strategy, "started", False)  # fails at set-up, before on_start


@pytest.mark.parametrize("kind", _PATHS)
@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2025-01-01", None),  # after the data
        (None, "2023-12-31"),  # before the data
        ("2023-06-01", "2023-06-30"),  # before, closed
    ],
)
def test_engine_period_outside_data_names_both_ranges(
    make_bars: Any, kind: str, start: str | None, end: str | None
) -> None:
    feed = PolarsDataFeed(make_bars(5, pred=0.6), asset_id="A")  # 2024-01-02 .. 2024-01-06
    engine, strategy = _engine(feed, kind, start=start, end=end)
    msg = _reject(engine.run)
    assert "no bars" in msg
    for given in (start, end):
        if given is not None:
            assert given in msg
    assert "2024-01-02" in msg and "2024-01-06" in msg  # the data's range
    assert not getattr(strategy, "started", False)


@pytest.mark.parametrize("kind", _PATHS)
def test_engine_period_inside_a_gap_rejected(make_bars: Any, kind: str) -> None:
    # bars on 2024-01-02 and 2024-01-09 only: the period 01-03 .. 01-08 selects none
    bars = make_bars(8, pred=0.6).filter(pl.col("timestamp").dt.day().is_in([2, 9]))
    feed = PolarsDataFeed(bars, asset_id="A")
    engine, strategy = _engine(feed, kind, start="2024-01-03", end="2024-01-08")
    msg = _reject(engine.run)
    assert "2024-01-03" in msg and "2024-01-08" in msg
    assert "2024-01-02" in msg and "2024-01-09" in msg
    assert not getattr(strategy, "started", False)


class _NoRowQuery:
    """A feed without ``has_rows`` (as a third-party feed may be)."""

    def __init__(self, feed: PolarsDataFeed) -> None:
        self._feed = feed

    def __getattr__(self, name: str) -> Any:
        if name == "has_rows":
            raise AttributeError(name)
        return getattr(self._feed, name)


def test_engine_period_inside_a_gap_of_feed_without_has_rows_rejected(make_bars: Any) -> None:
    bars = make_bars(8).filter(pl.col("timestamp").dt.day().is_in([2, 9]))
    feed = _NoRowQuery(PolarsDataFeed(bars, asset_id="A", name="third-party"))
    engine = BacktestEngine(feed, _Idle(), start="2024-01-03", end="2024-01-08")  # type: ignore[arg-type]
    msg = _reject(engine.run)  # found once every window came back empty
    assert "third-party" in msg and "2024-01-03" in msg and "2024-01-09" in msg


def test_engine_lazy_period_inside_a_gap_rejected(make_bars: Any, tmp_path: Path) -> None:
    path = tmp_path / "gap.parquet"
    make_bars(8).filter(pl.col("timestamp").dt.day().is_in([2, 9])).write_parquet(path)
    engine, _ = _engine(ParquetDataFeed(path, asset_id="A"), "event", start="2024-01-04")
    engine.run()  # 01-09 is in the period
    for chunk_size in (None, 1):  # a row limit keeps the distinct timestamps
        feed = ParquetDataFeed(path, asset_id="A", chunk_size=chunk_size)
        engine, strategy = _engine(feed, "event", start="2024-01-04", end="2024-01-05")
        msg = _reject(engine.run)
        assert str(path) in msg
        assert "2024-01-04" in msg
        assert not getattr(strategy, "started", False)


def test_engine_one_empty_feed_beside_a_full_one_still_runs(make_bars: Any) -> None:
    empty = PolarsDataFeed(make_bars(3).clear(), asset_id="E")
    full = PolarsDataFeed(make_bars(3), asset_id="F")
    result = BacktestEngine(feeds=[empty, full], strategy=_Idle()).run()
    assert result.portfolio_df.height == 3


def test_engine_period_selecting_bars_runs(make_bars: Any) -> None:
    feed = PolarsDataFeed(make_bars(5), asset_id="A")
    result = BacktestEngine(feed, _Idle(), start="2024-01-03", end="2024-01-04").run()
    assert result.portfolio_df.height == 2


# --- 4. prices stored as text ----------------------------------------------------------------


def _text_prices(df: pl.DataFrame, column: str, row: int, value: str) -> pl.DataFrame:
    values = [str(v) for v in df[column].to_list()]
    values[row] = value
    return df.with_columns(pl.Series(column, values, dtype=pl.String))


@pytest.mark.parametrize("column", ["close", "open", "volume"])
def test_feed_text_price_with_non_numeric_entry_names_column_row_and_value(
    make_bars: Any, column: str
) -> None:
    df = _text_prices(make_bars(5), column, 3, "n/a")
    msg = _reject(lambda: PolarsDataFeed(df, asset_id="A", name="prices"))
    assert "prices" in msg
    assert f"'{column}'" in msg
    assert _has_row(msg, 3)
    assert "'n/a'" in msg
    assert "2024-01-05" in msg  # row 3's timestamp


def test_feed_text_price_in_long_frame_names_asset(make_long: Any) -> None:
    df = _text_prices(make_long(["A", "B"], 3), "close", 3, "n/a")  # row 3 is B's 2nd bar
    msg = _reject(lambda: PolarsDataFeed(df))
    assert _has_row(msg, 3)
    assert "asset 'B'" in msg


def test_feed_numeric_text_prices_are_read_as_numbers(make_bars: Any, run_recorder: Any) -> None:
    df = make_bars(3).with_columns(pl.col("close").cast(pl.String))
    df = df.with_columns(pl.Series("close", ["100", " 101.5", "1.02e2"]))
    strategy, _ = run_recorder(PolarsDataFeed(df, asset_id="A"))
    assert strategy.closes == [100.0, 101.5, 102.0]


def test_feed_price_column_of_a_non_numeric_type_rejected(make_bars: Any) -> None:
    df = make_bars(3).with_columns(pl.col("timestamp").dt.date().alias("close"))
    msg = _reject(lambda: PolarsDataFeed(df, asset_id="A"))
    assert "'close'" in msg and "Date" in msg


@pytest.mark.parametrize("kind", ["lazyframe", "parquet"])
def test_lazy_text_price_with_non_numeric_entry_names_source_and_row(
    make_bars: Any, run_recorder: Any, tmp_path: Path, kind: str
) -> None:
    df = _text_prices(make_bars(40), "close", 35, "n/a")  # row 35 is in February
    path = tmp_path / "text.parquet"
    df.write_parquet(path)
    feed = (
        ParquetDataFeed(path, asset_id="A")
        if kind == "parquet"
        else PolarsDataFeed(df.lazy(), asset_id="A")
    )
    msg = _reject(lambda: run_recorder(feed))
    if kind == "parquet":
        assert str(path) in msg
    assert "'close'" in msg and "'n/a'" in msg
    assert _has_row(msg, 35)


def test_read_ohlcv_csv_non_numeric_price_names_file_column_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.csv", _HEADER + _csv_rows(5, {2: "n/a"}))
    msg = _reject(lambda: read_ohlcv_csv(path))
    assert str(path) in msg
    assert "'close'" in msg and "'n/a'" in msg
    assert "line 4" in msg  # header is line 1, row 2 is line 4
    assert "2024-01-04" in msg


def test_read_ohlcv_csv_non_numeric_price_after_schema_inference_named(tmp_path: Path) -> None:
    # beyond the rows polars looks at to guess the types: the raw error was a parse failure
    path = _write(tmp_path, "late.csv", _HEADER + _csv_rows(10_050, {10_040: "n/a"}))
    msg = _reject(lambda: read_ohlcv_csv(path))
    assert str(path) in msg
    assert "'close'" in msg and "'n/a'" in msg
    assert "line 10042" in msg


@pytest.mark.parametrize("how", ["feed_path", "csv_feed"])
def test_csv_file_non_numeric_price_through_feed_names_file(tmp_path: Path, how: str) -> None:
    path = _write(tmp_path, "feed.csv", _HEADER + _csv_rows(4, {1: "#N/A"}))
    make = (
        (lambda: PolarsDataFeed(str(path), asset_id="A"))
        if how == "feed_path"
        else (lambda: csv_feed(path, asset_id="A"))
    )
    msg = _reject(make)
    assert str(path) in msg
    assert "'close'" in msg and "'#N/A'" in msg and "line 3" in msg


def test_read_ohlcv_csv_quoted_numbers_read_as_numbers(tmp_path: Path) -> None:
    path = _write(tmp_path, "quoted.csv", _HEADER + '2024-01-02,100,200,50,"150.5",1000\n')
    df = read_ohlcv_csv(path)
    assert df["close"].dtype == pl.Float64
    assert df["close"].to_list() == [150.5]
