"""DuckDBFeed over real DuckDB databases: contract, results parity with PolarsDataFeed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl
import pytest
from ml4t_backtest_duckdb import DuckDBFeed
from polars.testing import assert_frame_equal

from ml4t.backtest import ConfigError, Feed, PolarsDataFeed

# 2024-01-02 00:00 UTC: 19,724 days after 1970-01-01 (54 years * 365 + 13 leap days = 19,723
# days to 2024-01-01, plus one), times 86,400 s.
JAN2_NS = 19_724 * 86_400 * 10**9
DAY_NS = 86_400 * 10**9


def _entry_exit(n: int, entry_bar: int, exit_bar: int) -> dict[str, list[float]]:
    entry = [1.0 if k == entry_bar else 0.0 for k in range(n)]
    exit_ = [1.0 if k == exit_bar else 0.0 for k in range(n)]
    return {"entry": entry, "exit": exit_}


def _trade_on_signals(strategy: Any, event: Any, context: Any) -> None:
    if event.signals["entry"] == 1.0:
        strategy.buy(event.asset_id, 10)
    if event.signals["exit"] == 1.0:
        strategy.sell(event.asset_id, 10)


def _assert_same_run(got: Any, expected: Any) -> None:
    assert_frame_equal(got.fills_df, expected.fills_df)
    assert_frame_equal(got.trades_df, expected.trades_df)
    assert_frame_equal(got.portfolio_df, expected.portfolio_df)
    assert got.final_equity == expected.final_equity


def test_feed_single_asset_file_matches_polars_feed_and_hand_result(
    duckdb_file: Callable[..., Any],
    ml4t_make_bars: Callable[..., pl.DataFrame],
    ml4t_run_backtest: Callable[..., Any],
    ml4t_scripted_strategy: type,
) -> None:
    frame = ml4t_make_bars(20, **_entry_exit(20, entry_bar=2, exit_bar=7))
    path = duckdb_file(bars=frame)
    with DuckDBFeed("SELECT * FROM bars", path, asset_id="SPY", chunk_size="1w") as feed:
        got, _ = ml4t_run_backtest(feed, ml4t_scripted_strategy(on_bar=_trade_on_signals))
    expected, _ = ml4t_run_backtest(
        PolarsDataFeed(frame, asset_id="SPY"), ml4t_scripted_strategy(on_bar=_trade_on_signals)
    )
    _assert_same_run(got, expected)
    # Closes are 100 + k and each bar opens at the previous close. The entry signal on
    # bar 2 fills at bar 3's open (102), the exit on bar 7 at bar 8's open (107):
    # 10 * (107 - 102) = 50 profit, flat at the end, no costs.
    assert got.fills_df["price"].to_list() == [102.0, 107.0]
    assert got.final_equity == pytest.approx(100_050.0)


def test_feed_multi_asset_memory_connection_matches_polars_feed(
    duckdb_memory: Callable[..., Any],
    ml4t_make_long_bars: Callable[..., pl.DataFrame],
    ml4t_run_backtest: Callable[..., Any],
    ml4t_scripted_strategy: type,
) -> None:
    frame = ml4t_make_long_bars(["MSFT", "AAPL", "GOOG"], 60, seed=3)
    rng = np.random.default_rng(7)
    frame = frame.with_columns(score=pl.Series(rng.uniform(-1.0, 1.0, frame.height)))

    def on_bar(strategy: Any, event: Any, context: Any) -> None:
        if event.signals["score"] > 0.6:
            strategy.buy(event.asset_id, 3)
        elif event.signals["score"] < -0.6 and strategy.positions.get(event.asset_id, 0) > 0:
            strategy.sell(event.asset_id, 3)

    con = duckdb_memory(bars=frame)
    feed = DuckDBFeed("bars", connection=con, chunk_size="1w")
    got, _ = ml4t_run_backtest(feed, ml4t_scripted_strategy(on_bar=on_bar))
    expected, _ = ml4t_run_backtest(PolarsDataFeed(frame), ml4t_scripted_strategy(on_bar=on_bar))
    _assert_same_run(got, expected)
    assert got.fills_df.height > 10  # the comparison covers real trading in every asset
    assert set(got.fills_df["asset_id"].to_list()) == {"AAPL", "GOOG", "MSFT"}


def test_feed_properties_single_asset_describe_the_query(
    duckdb_file: Callable[..., Any], ml4t_make_bars: Callable[..., pl.DataFrame]
) -> None:
    frame = ml4t_make_bars(20, signal=0.5, rsi=50.0)
    path = duckdb_file(bars=frame)
    feed = DuckDBFeed(
        "bars", str(path), asset_id="SPY", indicator_columns=["rsi"], chunk_size="2 weeks"
    )
    assert isinstance(feed, Feed)
    assert feed.name == f"duckdb:{path}"
    assert feed.asset_ids == ("SPY",)
    assert feed.signal_names == ("signal",)
    assert feed.indicator_names == ("rsi",)
    assert feed.timezone is None
    assert feed.chunk_size == "2w"
    assert feed.query == 'SELECT * FROM "bars"'
    # 20 daily bars from 2024-01-02: the last is 19 days later.
    assert feed.time_bounds() == (JAN2_NS, JAN2_NS + 19 * DAY_NS)
    assert feed.context_frames() == {}
    feed.close()


def test_load_window_with_missing_asset_uses_global_sorted_codes(
    duckdb_memory: Callable[..., Any], ml4t_make_bars: Callable[..., pl.DataFrame]
) -> None:
    frame = pl.concat(
        [
            ml4t_make_bars(20, asset_id="CCC", sig=3.0),
            ml4t_make_bars(20, asset_id="BBB", sig=2.0),
            ml4t_make_bars(5, start=datetime(2024, 1, 15), asset_id="AAA", sig=1.0),
        ]
    )
    feed = DuckDBFeed("bars", connection=duckdb_memory(bars=frame))
    assert feed.asset_ids == ("AAA", "BBB", "CCC")
    raw = feed.load(JAN2_NS, JAN2_NS + 2 * DAY_NS)
    # Jan 2 and Jan 3 hold BBB and CCC only; AAA (code 0) starts on Jan 15. The window
    # alone has two assets, but its codes must index the feed's three: 1 and 2.
    assert raw.ts.tolist() == [JAN2_NS, JAN2_NS, JAN2_NS + DAY_NS, JAN2_NS + DAY_NS]
    assert raw.code.tolist() == [1, 2, 1, 2]
    assert raw.code.dtype == np.int32
    assert raw.cols["sig"].tolist() == [2.0, 3.0, 2.0, 3.0]
    # Jan 15 (13 days after Jan 2) has all three, sorted by asset.
    raw = feed.load(JAN2_NS + 13 * DAY_NS, JAN2_NS + 14 * DAY_NS)
    assert raw.code.tolist() == [0, 1, 2]
    assert raw.cols["sig"].tolist() == [1.0, 2.0, 3.0]


def test_load_empty_window_returns_empty_typed_arrays(
    duckdb_memory: Callable[..., Any], ml4t_make_long_bars: Callable[..., pl.DataFrame]
) -> None:
    frame = ml4t_make_long_bars(["A", "B"], 10).with_columns(sig=pl.lit(1.0))
    feed = DuckDBFeed("bars", connection=duckdb_memory(bars=frame))
    raw = feed.load(JAN2_NS - 30 * DAY_NS, JAN2_NS)  # the month before the first bar
    assert raw.ts.shape == (0,) and raw.ts.dtype == np.int64
    assert raw.code.shape == (0,) and raw.code.dtype == np.int32
    assert set(raw.cols) == {"open", "high", "low", "close", "volume", "sig"}
    assert all(v.shape == (0,) and v.dtype == np.float64 for v in raw.cols.values())


def test_feed_join_query_with_mixed_case_columns_delivers_signals_and_indicators(
    duckdb_file: Callable[..., Any], ml4t_make_long_bars: Callable[..., pl.DataFrame]
) -> None:
    bars = ml4t_make_long_bars(["X", "Y"], 5).rename(
        {"timestamp": "Date", "asset_id": "SYMBOL", "close": "Close", "volume": "Volume"}
    )
    preds = bars.select("Date", "SYMBOL").with_columns(
        score=pl.when(pl.col("SYMBOL") == "X").then(0.25).otherwise(-0.5),
        rsi=pl.lit(40.0),
        label=pl.lit("unused text column"),
    )
    path = duckdb_file(bars=bars, preds=preds)
    feed = DuckDBFeed(
        """
        SELECT b.*, p.score, p.rsi, p.label
        FROM bars AS b JOIN preds AS p USING ("Date", "SYMBOL")
        WHERE b."Date" >= TIMESTAMP '2024-01-03'  -- skip the first day
        """,
        path,
        indicator_columns=["rsi"],
        chunk_size=None,
    )
    assert feed.asset_ids == ("X", "Y")
    assert feed.signal_names == ("score",)  # numeric extras only; rsi is an indicator
    assert feed.indicator_names == ("rsi",)
    assert feed.chunk_size is None
    lo, hi = feed.time_bounds()
    assert (lo, hi) == (JAN2_NS + DAY_NS, JAN2_NS + 4 * DAY_NS)
    raw = feed.load(lo, hi + 1)
    # Four days (Jan 3-6) of two assets, X then Y within each timestamp.
    assert raw.code.tolist() == [0, 1] * 4
    assert raw.cols["score"].tolist() == [0.25, -0.5] * 4
    assert raw.cols["rsi"].tolist() == [40.0] * 8
    expected_close = bars.filter(pl.col("Date") >= datetime(2024, 1, 3)).sort("Date", "SYMBOL")
    assert raw.cols["close"].tolist() == expected_close["Close"].to_list()
    feed.close()


class _CountingFeed(DuckDBFeed):
    """Record every window the engine asks for and the rows returned."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[int, int, int]] = []

    def load(self, start_ns: int, end_ns: int) -> Any:
        raw = super().load(start_ns, end_ns)
        self.calls.append((start_ns, end_ns, int(raw.ts.shape[0])))
        return raw


def test_feed_weekly_chunks_stream_and_match_one_window_run(
    duckdb_file: Callable[..., Any],
    ml4t_make_long_bars: Callable[..., pl.DataFrame],
    ml4t_run_backtest: Callable[..., Any],
    ml4t_scripted_strategy: type,
) -> None:
    frame = ml4t_make_long_bars(["A", "B"], 60, seed=11)
    n = 60
    signals = _entry_exit(n, entry_bar=5, exit_bar=40)
    frame = frame.with_columns(
        entry=pl.Series([signals["entry"][k // 2] for k in range(2 * n)]),
        exit=pl.Series([signals["exit"][k // 2] for k in range(2 * n)]),
    )
    path = duckdb_file(bars=frame)
    streamed = _CountingFeed("bars", path, chunk_size="1w")
    whole = _CountingFeed("bars", path, chunk_size=None)
    got, _ = ml4t_run_backtest(streamed, ml4t_scripted_strategy(on_bar=_trade_on_signals))
    expected, _ = ml4t_run_backtest(whole, ml4t_scripted_strategy(on_bar=_trade_on_signals))
    _assert_same_run(got, expected)
    assert got.fills_df.height == 4  # both assets enter and exit
    # 60 daily bars run from Tue 2024-01-02 to Fri 2024-03-01. Weekly windows cut at the
    # eight Mondays Jan 8 ... Feb 26, giving 9 windows: 6 + 7 * 7 + 5 = 60 days.
    assert len(streamed.calls) == 9
    assert len(whole.calls) == 1 and whole.calls[0][2] == 2 * n
    assert sum(rows for _, _, rows in streamed.calls) == 2 * n
    assert max(rows for _, _, rows in streamed.calls) <= 2 * 7  # never more than a week
    for (_, end, _), (start, _, _) in zip(streamed.calls, streamed.calls[1:], strict=False):
        assert end == start  # contiguous, in order, no overlap
    streamed.close()
    whole.close()


@pytest.mark.parametrize(
    ("given", "normalised"),
    [("1mo", "1mo"), ("1 month", "1mo"), ("2weeks", "2w"), ("7d", "7d"), ("1y", "12mo")],
)
def test_feed_chunk_size_spellings_normalise_for_the_clock(
    given: str,
    normalised: str,
    duckdb_memory: Callable[..., Any],
    ml4t_make_bars: Callable[..., pl.DataFrame],
) -> None:
    con = duckdb_memory(bars=ml4t_make_bars(3))
    assert DuckDBFeed("bars", connection=con, asset_id="A", chunk_size=given).chunk_size == (
        normalised
    )


def test_feed_bad_chunk_size_raises_config_error_naming_it(
    duckdb_memory: Callable[..., Any], ml4t_make_bars: Callable[..., pl.DataFrame]
) -> None:
    con = duckdb_memory(bars=ml4t_make_bars(3))
    with pytest.raises(ConfigError, match=r"chunk_size: 'fortnight'"):
        DuckDBFeed("bars", connection=con, asset_id="A", chunk_size="fortnight")


def test_feed_schema_qualified_table_and_view_names_are_quoted(
    duckdb_memory: Callable[..., Any], ml4t_make_bars: Callable[..., pl.DataFrame]
) -> None:
    con = duckdb_memory(bars=ml4t_make_bars(5))
    con.execute("CREATE VIEW \"Recent\" AS SELECT * FROM bars WHERE timestamp >= DATE '2024-01-04'")
    table = DuckDBFeed("main.bars", connection=con, asset_id="A")
    assert table.query == 'SELECT * FROM "main"."bars"'
    assert table.time_bounds() == (JAN2_NS, JAN2_NS + 4 * DAY_NS)
    view = DuckDBFeed("Recent;", connection=con, asset_id="A")  # a trailing ";" is dropped
    assert view.time_bounds() == (JAN2_NS + 2 * DAY_NS, JAN2_NS + 4 * DAY_NS)


def test_feed_in_memory_database_reads_parquet_files(
    tmp_path: Any,
    ml4t_make_long_bars: Callable[..., pl.DataFrame],
    ml4t_run_backtest: Callable[..., Any],
) -> None:
    frame = ml4t_make_long_bars(["A", "B"], 15)
    frame.write_parquet(tmp_path / "bars.parquet")
    query = f"SELECT * FROM read_parquet('{(tmp_path / 'bars.parquet').as_posix()}')"
    with DuckDBFeed(query) as feed:  # database=":memory:" by default
        assert feed.asset_ids == ("A", "B")
        got, _ = ml4t_run_backtest(feed)
    expected, _ = ml4t_run_backtest(frame)
    _assert_same_run(got, expected)
