"""Feed windows by rows, memory size and duration, and what a window load reads from Parquet.

- ``chunk_size`` spellings: durations, row counts and memory sizes (converted with hand-computed
  bytes per row); bad values name the feed and the value.
- Row windows match a naive greedy reference, never exceed the limit unless a single
  timestamp, and cover the data exactly once (in memory and from Parquet).
- The clock merges every feed's row edges with the smallest duration's calendar edges; a
  duration longer than the data gives one window.
- A window load pushes its time filter and column selection into the Parquet scan: the plan
  shows both, a corrupted unused column is never read, nor a row group outside the window.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from ml4t.backtest import DataValidationError, ParquetDataFeed, PolarsDataFeed
from ml4t.backtest.core.clock import Clock

DAY = 86_400 * 10**9
ROW_BYTES = 5 * 8 + 8 + 4  # OHLCV floats, timestamp, asset code


def _ragged(seed: int = 3, n_ts: int = 200) -> pl.DataFrame:
    """Bars at irregular 1-7 h steps; each timestamp has 1-6 of six assets, some 6 at once."""
    rng = np.random.default_rng(seed)
    steps = np.cumsum(rng.integers(1, 8, n_ts))
    rows: list[dict[str, Any]] = []
    for k, h in enumerate(steps.tolist()):
        ts = datetime(2024, 1, 1) + timedelta(hours=h)
        count = 6 if k % 25 == 0 else int(rng.integers(1, 7))
        for asset in sorted(rng.choice(list("ABCDEF"), count, replace=False).tolist()):
            c = float(rng.uniform(10, 20))
            rows.append(
                {"timestamp": ts, "asset_id": asset, "open": c, "high": c + 1, "low": c - 1}
                | {"close": c, "volume": 100.0}
            )
    return pl.DataFrame(rows)


def _naive_edges(ts: list[int], limit: int) -> list[int]:
    """Greedy reference: start a new window when the next timestamp would not fit."""
    counts: dict[int, int] = {}
    for t in ts:
        counts[t] = counts.get(t, 0) + 1
    edges, used = [], 0
    for t, c in counts.items():
        if used and used + c > limit:
            edges.append(t)
            used = 0
        used += c
    return edges


def _ns(frame: pl.DataFrame) -> list[int]:
    return frame["timestamp"].cast(pl.Datetime("ns")).dt.epoch("ns").to_list()


# --- chunk_size spellings ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "duration", "rows"),
    [
        ("1d", "1d", None),
        ("2 weeks", "2w", None),
        ("1month", "1mo", None),
        ("3MO", "3mo", None),
        ("100y", "100y", None),
        ("2 years", "2y", None),
        (500_000, None, 500_000),
        (np.int64(7), None, 7),
        ("500k rows", None, 500_000),
        ("1.5m rows", None, 1_500_000),
        ("500_000 rows", None, 500_000),
        ("1,000 Rows", None, 1000),
        ("1 row", None, 1),
        ("256MB", None, 256_000_000 // ROW_BYTES),
        ("1 GiB", None, 2**30 // ROW_BYTES),
        ("1kb", None, 1000 // ROW_BYTES),
    ],
)
def test_chunk_size_spellings(given: Any, duration: str | None, rows: int | None) -> None:
    feed = PolarsDataFeed(_ragged(n_ts=5).lazy(), chunk_size=given)
    assert (feed.chunk_size, feed.chunk_rows) == (duration, rows)


def test_memory_size_counts_every_float_column_read(make_bars: Any) -> None:
    bars = make_bars(5, pred=0.1, score=0.2, atr=1.0)
    feed = PolarsDataFeed(bars, asset_id="A", signal_columns=["pred"], chunk_size="1MB")
    assert feed.chunk_rows == 1_000_000 // (6 * 8 + 8 + 4)  # OHLCV + pred
    feed = PolarsDataFeed(bars, asset_id="A", chunk_size="1MB")  # every extra is a signal
    assert feed.chunk_rows == 1_000_000 // (8 * 8 + 8 + 4)


def test_default_chunks() -> None:
    frame = _ragged(n_ts=5)
    assert (PolarsDataFeed(frame).chunk_size, PolarsDataFeed(frame).chunk_rows) == (None, None)
    assert PolarsDataFeed(frame.lazy()).chunk_size == "1mo"


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (0, ">= 1"),
        (-5, ">= 1"),
        (True, "bool"),
        (1.5, "float"),
        ([1000], "list"),
        ("0 rows", "whole number"),
        ("1.5 rows", "whole number"),
        ("10B", "less than one row"),
        ("0mo", "at least 1"),
        ("1h", "not a duration"),
        ("1m", "not a duration"),
        ("", "not a duration"),
        ("lots", "not a duration"),
    ],
)
def test_bad_chunk_size_names_the_feed_and_the_value(bad: Any, why: str) -> None:
    with pytest.raises(DataValidationError) as info:
        PolarsDataFeed(_ragged(n_ts=5).lazy(), chunk_size=bad, name="bars.parquet")
    msg = str(info.value)
    assert msg.startswith("bars.parquet: chunk_size ")
    assert repr(bad) in msg and why in msg


# --- row windows ---------------------------------------------------------------------------


def _check_windows(feed: PolarsDataFeed, frame: pl.DataFrame, limit: int) -> None:
    windows = Clock([feed]).windows()
    ts = _ns(frame)
    assert windows[0][0] == ts[0] and windows[-1][1] == ts[-1] + 1
    assert all(a[1] == b[0] for a, b in itertools.pairwise(windows))
    assert [w[0] for w in windows[1:]] == _naive_edges(ts, limit)
    loaded = []
    for start, end in windows:
        block = feed.load(start, end)
        assert block.ts.shape[0] >= 1
        assert block.ts.shape[0] <= limit or np.unique(block.ts).shape[0] == 1
        loaded.append(block)
    # every row exactly once, in order
    assert np.concatenate([b.ts for b in loaded]).tolist() == ts
    assert np.concatenate([b.cols["close"] for b in loaded]).tolist() == frame["close"].to_list()
    codes = np.concatenate([b.code for b in loaded])
    assert [feed.asset_ids[c] for c in codes.tolist()] == frame["asset_id"].to_list()


@pytest.mark.parametrize("limit", [1, 5, 6, 7, 40, 10_000])
def test_row_windows_in_memory(limit: int) -> None:
    frame = _ragged()
    _check_windows(PolarsDataFeed(frame, chunk_size=limit), frame, limit)


@pytest.mark.parametrize("limit", [1, 6, 13])
def test_row_windows_from_parquet(tmp_path: Path, limit: int) -> None:
    frame = _ragged(seed=11)
    frame.write_parquet(tmp_path / "bars.parquet", row_group_size=50)
    feed = ParquetDataFeed(tmp_path / "bars.parquet", chunk_size=f"{limit} rows")
    _check_windows(feed, frame, limit)


def test_a_timestamp_above_the_limit_is_a_window_of_its_own() -> None:
    frame = _ragged(n_ts=30)  # timestamps 0 and 25 have all six assets
    ts = sorted(set(_ns(frame)))
    windows = Clock([PolarsDataFeed(frame, chunk_size=4)]).windows()
    assert (ts[0], ts[1]) in windows
    assert (ts[25], ts[26]) in windows


def test_row_edges_are_counted_from_the_start_of_the_period() -> None:
    frame = _ragged(n_ts=60)
    clock = Clock([PolarsDataFeed(frame, chunk_size=10)])
    start = sorted(set(_ns(frame)))[17]
    clock.period = (start, None)
    later = frame.filter(pl.col("timestamp").cast(pl.Datetime("ns")).dt.epoch("ns") >= start)
    assert [w[0] for w in clock.windows()[1:]] == _naive_edges(_ns(later), 10)


def test_clock_merges_row_edges_of_every_feed_with_the_shortest_duration() -> None:
    frame = _ragged(n_ts=120)
    a = frame.filter(pl.col("asset_id").is_in(["A", "B", "C"]))
    d = frame.filter(pl.col("asset_id").is_in(["D", "E"]))
    f = frame.filter(pl.col("asset_id") == "F")
    feeds = [
        PolarsDataFeed(a, chunk_size=25),
        PolarsDataFeed(d.lazy(), chunk_size="1w"),
        PolarsDataFeed(f.lazy(), chunk_size="3d"),
    ]
    windows = Clock(feeds).windows()
    ts = _ns(frame)
    lo, hi = ts[0], ts[-1] + 1
    first_midnight = (lo // DAY) * DAY
    days = list(range(first_midnight + 3 * DAY, hi, 3 * DAY))  # 3d from the first UTC midnight
    expected = sorted(set(_naive_edges(_ns(a), 25)) | set(days))
    assert [w[0] for w in windows[1:]] == expected
    for start, end in windows:  # feed a's limit holds in every merged window
        rows = feeds[0].load(start, end)
        assert rows.ts.shape[0] <= 25 or np.unique(rows.ts).shape[0] == 1


# --- duration windows ----------------------------------------------------------------------


def _daily_over_new_year() -> pl.DataFrame:
    days = [datetime(2023, 11, 15) + timedelta(days=k) for k in range(120)]
    return pl.DataFrame(
        {"timestamp": days, "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.0, "volume": 1.0}
    )


def _edges(feed: PolarsDataFeed) -> list[datetime]:
    windows = Clock([feed]).windows()
    return [datetime(1970, 1, 1) + timedelta(microseconds=w[0] // 1000) for w in windows[1:]]


@pytest.mark.parametrize(
    ("chunk", "edges"),
    [
        ("100y", []),  # longer than the data: one window
        ("1y", [(2024, 1, 1)]),
        ("2mo", [(2024, 1, 1), (2024, 3, 1)]),  # every other month from November
        ("1mo", [(2023, 12, 1), (2024, 1, 1), (2024, 2, 1), (2024, 3, 1)]),
    ],
)
def test_duration_windows_start_at_calendar_boundaries(
    chunk: str, edges: list[tuple[int, int, int]]
) -> None:
    feed = PolarsDataFeed(_daily_over_new_year().lazy(), asset_id="X", chunk_size=chunk)
    assert _edges(feed) == [datetime(*e) for e in edges]


def test_week_windows_start_on_mondays_two_weeks_apart() -> None:
    feed = PolarsDataFeed(_daily_over_new_year().lazy(), asset_id="X", chunk_size="2w")
    edges = _edges(feed)
    # the data starts on Wednesday 2023-11-15; its week began on Monday 2023-11-13
    assert edges[0] == datetime(2023, 11, 27)
    assert all(e.weekday() == 0 for e in edges)
    assert all(b - a == timedelta(days=14) for a, b in itertools.pairwise(edges))


def test_in_memory_frame_without_chunk_size_is_one_window() -> None:
    assert len(Clock([PolarsDataFeed(_daily_over_new_year(), asset_id="X")]).windows()) == 1


# --- what a window load reads from Parquet ---------------------------------------------------


def _junk_file(path: Path) -> pl.DataFrame:
    """40 half-daily bars in row groups of 4, with a large unused string column."""
    rng = np.random.default_rng(0)
    frame = pl.DataFrame(
        {
            "timestamp": [datetime(2024, 1, 1) + timedelta(hours=12 * i) for i in range(40)],
            "open": 10.0,
            "high": 11.0,
            "low": 9.0,
            "close": [10.0 + i / 100 for i in range(40)],
            "volume": 5.0,
            "junk": [rng.bytes(20_000).hex() for _ in range(40)],
        }
    )
    frame.write_parquet(path, row_group_size=4, compression="uncompressed")
    return frame


def _corrupt(path: Path, column: str, row_groups: list[int]) -> None:
    """Overwrite ``column``'s data in ``row_groups`` with bytes no reader can decode."""
    meta = pq.ParquetFile(path).metadata
    index = meta.schema.names.index(column)
    with path.open("r+b") as f:
        for rg in row_groups:
            chunk = meta.row_group(rg).column(index)
            start = chunk.dictionary_page_offset or chunk.data_page_offset
            f.seek(start)
            f.write(b"\xff" * chunk.total_compressed_size)


def test_window_plan_pushes_the_filter_and_the_columns_into_the_scan(tmp_path: Path) -> None:
    _junk_file(tmp_path / "bars.parquet")
    feed = ParquetDataFeed(tmp_path / "bars.parquet", asset_id="X", chunk_size="1d")
    lo, _ = feed.time_bounds()
    plan = feed._window_query(lo, lo + DAY).explain()
    scan = plan[plan.index("Parquet SCAN") :]
    assert "FILTER" not in plan  # nothing is filtered after reading
    assert "PROJECT 6/7 COLUMNS" in scan  # timestamp and OHLCV, not junk
    assert 'SELECTION: (col("timestamp") >= 2024-01-01 00:00:00)' in scan
    assert '(col("timestamp") < 2024-01-02 00:00:00)' in scan


def test_an_unused_column_is_never_read(tmp_path: Path) -> None:
    path = tmp_path / "bars.parquet"
    frame = _junk_file(path)
    _corrupt(path, "junk", list(range(10)))
    with pytest.raises(pl.exceptions.ComputeError):  # the corruption is detectable
        pl.read_parquet(path, columns=["junk"])
    feed = ParquetDataFeed(path, asset_id="X", chunk_size="1d")
    blocks = [feed.load(a, b) for a, b in Clock([feed]).windows()]
    assert len(blocks) == 20
    assert np.concatenate([b.cols["close"] for b in blocks]).tolist() == frame["close"].to_list()


def test_a_row_group_outside_the_window_is_never_read(tmp_path: Path) -> None:
    path = tmp_path / "bars.parquet"
    _junk_file(path)
    _corrupt(path, "close", [9])  # the last two days
    feed = ParquetDataFeed(path, asset_id="X", chunk_size="1d")
    windows = Clock([feed]).windows()
    for start, end in windows[:-2]:
        assert feed.load(start, end).ts.shape[0] == 2
    with pytest.raises(DataValidationError, match=r"bars.parquet: cannot read the data"):
        feed.load(*windows[-1])  # the control: that row group cannot be read


def test_lazy_window_errors_give_source_row_numbers(tmp_path: Path) -> None:
    frame = _daily_over_new_year().with_columns(
        pl.when(pl.int_range(pl.len()) == 47).then(-1.0).otherwise(pl.col("low")).alias("low")
    )
    frame.write_parquet(tmp_path / "bars.parquet", row_group_size=10)
    feed = ParquetDataFeed(tmp_path / "bars.parquet", asset_id="X", chunk_size="1w")
    windows = Clock([feed]).windows()
    with pytest.raises(DataValidationError, match=r"'low' must be positive.* at row 47,"):
        for window in windows:
            feed.load(*window)
    fresh = ParquetDataFeed(tmp_path / "bars.parquet", asset_id="X", chunk_size="1w")
    later = next(w for w in windows if w[0] <= _ns(frame)[47] < w[1])
    with pytest.raises(DataValidationError, match=r"at row 47,"):  # loaded out of order
        fresh.load(*later)
