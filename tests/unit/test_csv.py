"""read_ohlcv_csv on the real sample files and on malformed files."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from ml4t.backtest import DataValidationError, PolarsDataFeed, read_ohlcv_csv

REAL = Path(__file__).resolve().parents[2] / "validation" / "real_data"  # in the repository
YAHOO = ["timestamp", "open", "high", "low", "close", "adj_close", "volume"]
STOXX = ["timestamp", "open", "high", "low", "close", "volume", "openinterest"]


@pytest.mark.parametrize(
    ("name", "rows", "columns", "first", "last"),
    [
        ("nvda_daily_yahoo.csv", 4012, YAHOO, datetime(1999, 1, 22), datetime(2014, 12, 31)),
        ("orcl_daily_yahoo.csv", 5036, YAHOO, datetime(1995, 1, 3), datetime(2014, 12, 31)),
        ("yhoo_daily_yahoo.csv", 4713, YAHOO, datetime(1996, 4, 12), datetime(2014, 12, 31)),
        ("eurostoxx50_daily_2006.csv", 255, STOXX, datetime(2006, 1, 2), datetime(2006, 12, 29)),
        (
            "eurostoxx50_fut_1min_2006.csv",
            30889,
            STOXX,
            datetime(2006, 1, 2, 9, 1),
            datetime(2006, 2, 27, 22, 0),
        ),
    ],
)
def test_read_csv_real_file_rows_columns_and_range(
    name: str, rows: int, columns: list[str], first: datetime, last: datetime
) -> None:
    df = read_ohlcv_csv(REAL / name)
    assert df.height == rows
    assert df.columns == columns
    assert df.schema["timestamp"] == pl.Datetime("us")
    assert df["timestamp"][0] == first
    assert df["timestamp"][-1] == last
    assert df["timestamp"].is_sorted()
    assert df["timestamp"].null_count() == 0


def test_read_csv_minute_file_combines_date_and_time() -> None:
    df = read_ohlcv_csv(REAL / "eurostoxx50_fut_1min_2006.csv")
    # 2006-01-02,09:01:00,3602.00,3603.00,3597.00,3599.00,5699,0
    assert df.row(0) == (datetime(2006, 1, 2, 9, 1), 3602.0, 3603.0, 3597.0, 3599.0, 5699, 0)
    assert df["timestamp"][1] == datetime(2006, 1, 2, 9, 2)
    assert df["timestamp"].n_unique() == df.height


def test_read_csv_yahoo_adj_close_renamed_and_values_kept() -> None:
    df = read_ohlcv_csv(REAL / "nvda_daily_yahoo.csv")
    # 1999-01-22,1.750000,1.953125,1.552083,1.640625,1.518424,67867200
    first = (datetime(1999, 1, 22), 1.75, 1.953125, 1.552083, 1.640625, 1.518424, 67867200)
    assert df.row(0) == first


def test_read_csv_asset_id_option_adds_column() -> None:
    df = read_ohlcv_csv(REAL / "eurostoxx50_daily_2006.csv", asset_id="SX5E")
    assert df["asset_id"].unique().to_list() == ["SX5E"]
    assert df.height == 255


def test_read_csv_timezone_option_localizes_wall_time() -> None:
    df = read_ohlcv_csv(REAL / "eurostoxx50_fut_1min_2006.csv", timezone="Europe/Berlin")
    assert df.schema["timestamp"] == pl.Datetime("us", "Europe/Berlin")
    first = df["timestamp"][0]
    assert first.replace(tzinfo=None) == datetime(2006, 1, 2, 9, 1)
    assert first.utcoffset().total_seconds() == 3600  # CET in January


def test_read_csv_result_feeds_a_backtest_feed() -> None:
    feed = PolarsDataFeed(read_ohlcv_csv(REAL / "orcl_daily_yahoo.csv"), asset_id="ORCL")
    assert feed.asset_ids == ("ORCL",)
    assert feed.signal_names == ("adj_close",)


# --- malformed files ----------------------------------------------------------------------

HEADER = "Date,Open,High,Low,Close,Volume\n"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _reject(path: Path) -> str:
    with pytest.raises(DataValidationError) as info:
        read_ohlcv_csv(path)
    return str(info.value)


def test_read_csv_two_extra_fields_rejected_naming_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "two_extra.csv", HEADER + "2020-01-02,09:00:00,1,2,1,2,3,4\n")
    msg = _reject(path)
    assert "two_extra.csv" in msg
    assert "line 2" in msg


def test_read_csv_extra_field_not_time_of_day_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, "not_time.csv", HEADER + "2020-01-02,abc,1,2,1,2,3\n")
    msg = _reject(path)
    assert "not_time.csv" in msg
    assert "line 2" in msg


def test_read_csv_too_few_fields_rejected(tmp_path: Path) -> None:
    msg = _reject(_write(tmp_path, "short.csv", HEADER + "2020-01-02,1,2,1\n"))
    assert "short.csv" in msg
    assert "line 2" in msg


def test_read_csv_later_row_with_extra_field_names_its_line(tmp_path: Path) -> None:
    text = HEADER + "2020-01-02,1,2,1,2,3\n2020-01-03,1,2,1,2,3,7\n"
    msg = _reject(_write(tmp_path, "late_extra.csv", text))
    assert "late_extra.csv" in msg
    assert "line 3" in msg


def test_read_csv_later_row_missing_a_field_rejected(tmp_path: Path) -> None:
    text = HEADER + "2020-01-02,1,2,1,2,3\n2020-01-03,1,2,1,2\n"
    msg = _reject(_write(tmp_path, "late_short.csv", text))
    assert "late_short.csv" in msg
    assert "line 3" in msg


def test_read_csv_unparseable_date_names_line(tmp_path: Path) -> None:
    text = HEADER + "2020-01-02,1,2,1,2,3\n2020-01-03,1,2,1,2,3\nnot-a-date,1,2,1,2,3\n"
    msg = _reject(_write(tmp_path, "bad_date.csv", text))
    assert "bad_date.csv" in msg
    assert "line 4" in msg
    assert "not-a-date" in msg


def test_read_csv_missing_file_rejected(tmp_path: Path) -> None:
    msg = _reject(tmp_path / "nope.csv")
    assert "nope.csv" in msg
    assert "no such file" in msg


def test_read_csv_header_only_rejected(tmp_path: Path) -> None:
    msg = _reject(_write(tmp_path, "empty.csv", HEADER))
    assert "empty.csv" in msg
