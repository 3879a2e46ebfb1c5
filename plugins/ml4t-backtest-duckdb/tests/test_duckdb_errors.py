"""Bad input: every error names the database, the query and the column or parameter."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from ml4t_backtest_duckdb import DuckDBFeed

from ml4t.backtest import ConfigError, DataValidationError


@pytest.fixture
def bars_path(
    duckdb_file: Callable[..., Path], ml4t_make_bars: Callable[..., pl.DataFrame]
) -> Path:
    return duckdb_file(bars=ml4t_make_bars(10, signal=0.5))


def test_feed_sql_syntax_error_raises_config_error_naming_database_and_query(
    bars_path: Path,
) -> None:
    with pytest.raises(ConfigError) as info:
        DuckDBFeed("SELEKT * FROM bars", bars_path, asset_id="A")
    message = str(info.value)
    assert str(bars_path) in message
    assert "SELEKT * FROM bars" in message
    assert "DuckDB could not run the query" in message


def test_feed_unknown_table_raises_config_error_naming_it(bars_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"query 'no_such_table'.*no_such_table"):
        DuckDBFeed("no_such_table", bars_path, asset_id="A")


def test_feed_missing_price_column_raises_data_validation_error_naming_it(
    bars_path: Path,
) -> None:
    query = "SELECT timestamp, open, high, low, volume FROM bars"
    with pytest.raises(DataValidationError) as info:
        DuckDBFeed(query, bars_path, asset_id="A")
    message = str(info.value)
    assert "missing required column(s) ['close']" in message
    assert str(bars_path) in message and query in message


def test_feed_missing_timestamp_column_raises_data_validation_error(bars_path: Path) -> None:
    with pytest.raises(DataValidationError, match=r"missing required column 'timestamp'"):
        DuckDBFeed("SELECT open, high, low, close, volume FROM bars", bars_path, asset_id="A")


def test_feed_unknown_signal_column_raises_data_validation_error_naming_it(
    bars_path: Path,
) -> None:
    with pytest.raises(DataValidationError, match=r"column 'prediction' not found"):
        DuckDBFeed("bars", bars_path, asset_id="A", signal_columns=["prediction"])


def test_feed_text_signal_column_raises_data_validation_error_naming_it(
    bars_path: Path,
) -> None:
    query = "SELECT *, 'buy' AS advice FROM bars"
    with pytest.raises(DataValidationError, match=r"column 'advice' must be numeric"):
        DuckDBFeed(query, bars_path, asset_id="A", signal_columns=["advice"])


def test_feed_text_timestamp_column_raises_data_validation_error(bars_path: Path) -> None:
    query = (
        "SELECT CAST(timestamp AS VARCHAR) AS timestamp, open, high, low, close, volume FROM bars"
    )
    with pytest.raises(DataValidationError, match=r"column 'timestamp' must be a Datetime or Date"):
        DuckDBFeed(query, bars_path, asset_id="A")


def test_feed_query_without_rows_raises_data_validation_error(bars_path: Path) -> None:
    with pytest.raises(
        DataValidationError, match=r"query 'SELECT \* FROM bars WHERE false'.*no rows"
    ):
        DuckDBFeed("SELECT * FROM bars WHERE false", bars_path, asset_id="A")


def test_feed_null_timestamp_raises_data_validation_error_naming_column(
    duckdb_memory: Callable[..., Any], ml4t_make_bars: Callable[..., pl.DataFrame]
) -> None:
    frame = ml4t_make_bars(4).with_columns(
        pl.when(pl.int_range(pl.len()) == 2)
        .then(None)
        .otherwise(pl.col("timestamp"))
        .alias("timestamp")
    )
    con = duckdb_memory(bars=frame)
    with pytest.raises(DataValidationError, match=r"column 'timestamp' has 1 null value"):
        DuckDBFeed("bars", connection=con, asset_id="A")


def test_feed_null_asset_raises_data_validation_error_naming_column(
    duckdb_memory: Callable[..., Any], ml4t_make_long_bars: Callable[..., pl.DataFrame]
) -> None:
    frame = ml4t_make_long_bars(["A", "B"], 3).with_columns(
        pl.when(pl.col("asset_id") == "B")
        .then(None)
        .otherwise(pl.col("asset_id"))
        .alias("asset_id")
    )
    con = duckdb_memory(bars=frame)
    with pytest.raises(DataValidationError, match=r"column 'asset_id' has null values"):
        DuckDBFeed("bars", connection=con)


def test_feed_asset_column_and_asset_id_raise_data_validation_error(
    duckdb_memory: Callable[..., Any], ml4t_make_long_bars: Callable[..., pl.DataFrame]
) -> None:
    con = duckdb_memory(bars=ml4t_make_long_bars(["A", "B"], 3))
    with pytest.raises(DataValidationError, match=r"asset column 'asset_id'; asset_id= is only"):
        DuckDBFeed("bars", connection=con, asset_id="A")


def test_feed_single_asset_without_asset_id_raises_data_validation_error(
    bars_path: Path,
) -> None:
    with pytest.raises(DataValidationError, match=r"pass asset_id= for a single-asset"):
        DuckDBFeed("bars", bars_path)


def test_load_bad_bar_raises_data_validation_error_naming_column_and_asset(
    duckdb_memory: Callable[..., Any], ml4t_make_long_bars: Callable[..., pl.DataFrame]
) -> None:
    frame = ml4t_make_long_bars(["A", "B"], 40)
    # Break one bar, on 2024-01-25 for asset B: high below low.
    broken = (pl.col("asset_id") == "B") & (pl.col("timestamp").dt.day() == 25)
    frame = frame.with_columns(
        pl.when(broken).then(pl.col("low") - 5).otherwise(pl.col("high")).alias("high")
    )
    feed = DuckDBFeed("bars", connection=duckdb_memory(bars=frame), chunk_size="1w")
    lo, hi = feed.time_bounds()
    day = 86_400 * 10**9
    assert feed.load(lo, lo + 7 * day).ts.shape == (14,)  # the first week is fine
    with pytest.raises(DataValidationError) as info:
        feed.load(lo, hi + 1)
    message = str(info.value)
    assert "column 'high'" in message and "is below 'low'" in message
    assert "timestamp 2024-01-25T00:00:00" in message and "asset 'B'" in message
    assert "query 'bars'" in message


def test_feed_missing_database_file_raises_config_error_naming_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.duckdb"
    with pytest.raises(ConfigError, match=re.escape(f"database {str(missing)!r}: no such")):
        DuckDBFeed("SELECT * FROM bars", missing)
    assert not missing.exists()  # a read-only feed never creates a database


def test_feed_database_and_connection_together_raise_config_error(bars_path: Path) -> None:
    with duckdb.connect() as con, pytest.raises(ConfigError, match=r"connection= both given"):
        DuckDBFeed("bars", bars_path, connection=con, asset_id="A")


def test_feed_non_string_query_raises_config_error() -> None:
    with pytest.raises(ConfigError, match=r"query: expected a SQL string, got int"):
        DuckDBFeed(42)  # type: ignore[arg-type]


def test_feed_empty_query_raises_config_error() -> None:
    with pytest.raises(ConfigError, match=r"query: expected a SELECT statement"):
        DuckDBFeed("  ;  ")


def test_feed_never_runs_a_statement_that_is_not_a_select(
    duckdb_memory: Callable[..., Any], ml4t_make_bars: Callable[..., pl.DataFrame]
) -> None:
    con = duckdb_memory(bars=ml4t_make_bars(3))
    with pytest.raises(ConfigError, match=r"DuckDB could not run the query"):
        DuckDBFeed("DROP TABLE bars", connection=con, asset_id="A")
    with pytest.raises(ConfigError):
        DuckDBFeed("SELECT 1; DROP TABLE bars", connection=con, asset_id="A")
    assert con.sql("SELECT count(*) FROM bars").fetchall() == [(3,)]


def test_feed_opens_database_read_only_and_close_releases_it(bars_path: Path) -> None:
    feed = DuckDBFeed("bars", bars_path, asset_id="A")
    with pytest.raises(duckdb.Error, match=r"read-only"):
        feed._con.execute("DELETE FROM bars")
    feed.close()
    writer = duckdb.connect(str(bars_path))  # possible again once the feed let go
    assert writer.sql("SELECT count(*) FROM bars").fetchall() == [(10,)]
    writer.close()


def test_feed_given_connection_stays_open_after_close(
    duckdb_memory: Callable[..., Any], ml4t_make_bars: Callable[..., pl.DataFrame]
) -> None:
    con = duckdb_memory(bars=ml4t_make_bars(3))
    DuckDBFeed("bars", connection=con, asset_id="A").close()
    assert con.sql("SELECT count(*) FROM bars").fetchall() == [(3,)]
