"""Timestamp types: window bounds compared exactly, time zones kept."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import polars as pl
import pytest
from ml4t_backtest_duckdb import DuckDBFeed
from polars.testing import assert_frame_equal

from ml4t.backtest import ConfigError, PolarsDataFeed

JAN2_NS = 19_724 * 86_400 * 10**9  # 2024-01-02 00:00 UTC (see test_duckdb_feed.py)
DAY_NS = 86_400 * 10**9
HOUR_NS = 3_600 * 10**9

_BAR = "100.0 AS open, 101.0 AS high, 99.0 AS low, 100.0 AS close, 1000.0 AS volume"


def _three_days(con: Any, sql_type: str, suffix: str = "") -> None:
    """Create ``bars`` with one bar a day on 2024-01-02, -03 and -04 at midnight."""
    con.execute(
        f"CREATE TABLE bars AS SELECT CAST(CAST(d AS VARCHAR) || '{suffix}' AS {sql_type}) "
        f"AS timestamp, {_BAR} FROM (VALUES (DATE '2024-01-02'), (DATE '2024-01-03'), "
        "(DATE '2024-01-04')) AS v(d)"
    )


@pytest.mark.parametrize(
    ("sql_type", "suffix"),
    [
        ("TIMESTAMP_S", ""),
        ("TIMESTAMP_MS", ""),
        ("TIMESTAMP", ""),
        ("TIMESTAMP_NS", ""),
        ("DATE", ""),
        ("TIMESTAMPTZ", " 00:00:00+00"),
    ],
)
def test_load_bounds_for_each_timestamp_type_are_exact(
    sql_type: str, suffix: str, duckdb_memory: Callable[..., Any]
) -> None:
    con = duckdb_memory()
    _three_days(con, sql_type, suffix)
    feed = DuckDBFeed("bars", connection=con, asset_id="A")
    first, last = feed.time_bounds()
    assert (first, last) == (JAN2_NS, JAN2_NS + 2 * DAY_NS)
    # The engine's last window ends 1 ns after the last bar; a bound rounded down to
    # the column's unit (seconds, days, ...) would drop that bar, and a start bound
    # rounded down would let in a bar 1 ns before the window.
    assert feed.load(first, last + 1).ts.tolist() == [first, first + DAY_NS, last]
    assert feed.load(first + 1, last + 1).ts.tolist() == [first + DAY_NS, last]
    assert feed.load(first, last).ts.tolist() == [first, first + DAY_NS]
    assert feed.load(first + 1, first + DAY_NS).ts.tolist() == []


def test_load_timestamptz_windows_by_utc_instant_in_any_session_zone(
    duckdb_memory: Callable[..., Any],
) -> None:
    con = duckdb_memory()
    con.execute("SET TimeZone = 'America/New_York'")
    # Nine hourly bars, 2024-01-02 20:00 UTC (15:00 in New York) to 2024-01-03 04:00 UTC.
    con.execute(
        "CREATE TABLE bars AS SELECT TIMESTAMPTZ '2024-01-02 20:00:00+00' + "
        "to_hours(i::BIGINT) AS timestamp, 'Q' AS symbol, 100.0 + i AS open, "
        "101.0 + i AS high, 99.0 + i AS low, 100.0 + i AS close, 1000.0 AS volume "
        "FROM range(9) AS r(i)"
    )
    feed = DuckDBFeed("bars", connection=con)
    assert feed.timezone == "America/New_York"  # the zone DuckDB delivers is kept
    # 20:00 UTC is 72,000 s after 2024-01-02 00:00 UTC; 04:00 on Jan 3 is 86,400 + 14,400 s.
    assert feed.time_bounds() == (JAN2_NS + 20 * HOUR_NS, JAN2_NS + DAY_NS + 4 * HOUR_NS)
    # The UTC day 2024-01-03 holds the bars of 00:00-04:00 UTC, i = 4..8 (closes 104-108).
    # Comparing in New York wall time would shift the window by five hours.
    raw = feed.load(JAN2_NS + DAY_NS, JAN2_NS + 2 * DAY_NS)
    assert raw.ts.tolist() == [JAN2_NS + DAY_NS + h * HOUR_NS for h in range(5)]
    assert raw.cols["close"].tolist() == [104.0, 105.0, 106.0, 107.0, 108.0]


def test_feed_timestamptz_with_timezone_matches_polars_feed_on_aware_frame(
    duckdb_file: Callable[..., Any],
    ml4t_make_bars: Callable[..., pl.DataFrame],
    ml4t_run_backtest: Callable[..., Any],
    ml4t_scripted_strategy: type,
) -> None:
    frame = ml4t_make_bars(30, start=datetime(2024, 1, 2, 16, 0), seed=5).with_columns(
        pl.col("timestamp").dt.replace_time_zone("America/New_York")
    )
    path = duckdb_file(bars=frame)
    script = {3: [("buy", 20.0)], 12: [("sell", 20.0)]}
    feed = DuckDBFeed("bars", path, asset_id="SPY", chunk_size="1w", timezone="America/New_York")
    assert feed.timezone == "America/New_York"
    got, _ = ml4t_run_backtest(feed, ml4t_scripted_strategy(script=script), asset_id="SPY")
    expected, _ = ml4t_run_backtest(
        PolarsDataFeed(frame, asset_id="SPY"), ml4t_scripted_strategy(script=script)
    )
    assert_frame_equal(got.fills_df, expected.fills_df)
    assert_frame_equal(got.trades_df, expected.trades_df)
    assert_frame_equal(got.portfolio_df, expected.portfolio_df)
    assert got.final_equity == expected.final_equity
    assert got.fills_df.height == 2
    dtype = got.fills_df.schema["timestamp"]
    assert isinstance(dtype, pl.Datetime) and dtype.time_zone == "America/New_York"
    feed.close()


def test_feed_timestamptz_without_timezone_keeps_session_zone(
    duckdb_memory: Callable[..., Any],
) -> None:
    con = duckdb_memory()
    con.execute("SET TimeZone = 'Asia/Tokyo'")
    _three_days(con, "TIMESTAMPTZ", " 00:00:00+00")
    feed = DuckDBFeed("bars", connection=con, asset_id="A")
    assert feed.timezone == "Asia/Tokyo"
    assert feed.time_bounds()[0] == JAN2_NS  # the instant does not move with the zone


def test_feed_timezone_on_naive_column_raises_config_error(
    duckdb_memory: Callable[..., Any],
) -> None:
    con = duckdb_memory()
    _three_days(con, "TIMESTAMP")
    with pytest.raises(ConfigError, match=r"timezone='UTC' applies to TIMESTAMPTZ.*'timestamp'"):
        DuckDBFeed("bars", connection=con, asset_id="A", timezone="UTC")


def test_feed_unknown_timezone_raises_config_error(duckdb_memory: Callable[..., Any]) -> None:
    con = duckdb_memory()
    _three_days(con, "TIMESTAMPTZ", " 00:00:00+00")
    with pytest.raises(ConfigError, match=r"timezone: unknown time zone 'Mars/Olympus'"):
        DuckDBFeed("bars", connection=con, asset_id="A", timezone="Mars/Olympus")


@pytest.mark.parametrize(("unit", "step_ns"), [("ns", 1), ("us", 1_000), ("ms", 1_000_000)])
def test_load_bounds_below_one_second_are_exact(
    unit: str, step_ns: int, duckdb_memory: Callable[..., Any]
) -> None:
    # Three bars one unit apart from 2024-01-02 00:00:00.123 s, stored as TIMESTAMP_NS,
    # TIMESTAMP (us) or TIMESTAMP_MS: the DuckDB type follows the frame's time unit.
    first = JAN2_NS + 123_000_000
    ns = [first, first + step_ns, first + 2 * step_ns]
    frame = pl.DataFrame(
        {"timestamp": pl.Series(ns).cast(pl.Datetime("ns")).cast(pl.Datetime(unit))}
    ).with_columns(open=100.0, high=101.0, low=99.0, close=100.0, volume=1000.0)
    con = duckdb_memory(bars=frame)
    sql_type = {"ns": "TIMESTAMP_NS", "us": "TIMESTAMP", "ms": "TIMESTAMP_MS"}[unit]
    assert con.sql("SELECT typeof(timestamp) FROM bars LIMIT 1").fetchall() == [(sql_type,)]
    feed = DuckDBFeed("bars", connection=con, asset_id="A")
    assert feed.time_bounds() == (ns[0], ns[2])
    assert feed.load(ns[1], ns[1] + 1).ts.tolist() == [ns[1]]
    assert feed.load(ns[0] + 1, ns[2]).ts.tolist() == [ns[1]]
    assert feed.load(ns[0], ns[2] + 1).ts.tolist() == ns
