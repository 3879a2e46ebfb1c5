"""Context: as-of lookups of market-wide values, never from the future."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import polars as pl
import pytest

from ml4t.backtest import (
    BacktestEngine,
    Context,
    DataValidationError,
    MarketEvent,
    PolarsDataFeed,
    Strategy,
)

# make_bars(6): daily bars 2024-01-02 .. 2024-01-07 at midnight
VIX = pl.DataFrame(
    {"timestamp": [datetime(2024, 1, 3), datetime(2024, 1, 5, 12)], "VIX": [20.0, 25.0]}
)


class _Read(Strategy):
    """Record ``context.get(name)`` and ``context[name]`` for each name at every bar."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.got: list[dict[str, float]] = []
        self.errors: list[str] = []

    def on_market_data(self, event: MarketEvent, context: Any) -> None:
        row = {n: context.get(n) for n in self.names}
        assert all(_same(context[n], row[n]) for n in self.names)
        self.got.append(row)
        try:
            context.get("NOT_THERE")
        except KeyError as exc:
            self.errors.append(str(exc))


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _run(make_bars: Any, context: Context, names: list[str], n: int = 6) -> _Read:
    strategy = _Read(names)
    BacktestEngine(PolarsDataFeed(make_bars(n), asset_id="A"), strategy, context=context).run()
    return strategy


def _column(strategy: _Read, name: str) -> list[float]:
    return [row[name] for row in strategy.got]


def _assert_series(got: list[float], expected: list[float]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert _same(g, e), (got, expected)


def test_context_as_of_latest_value_at_or_before_bar(make_bars: Any) -> None:
    strategy = _run(make_bars, Context({"VIX": VIX}), ["VIX"])
    # 01-02: before first obs; 01-03 00:00: obs at exactly this time; 01-05 00:00: the
    # 12:00 value is still in the future; 01-06: 25
    _assert_series(_column(strategy, "VIX"), [math.nan, 20.0, 20.0, 20.0, 25.0, 25.0])


def test_context_max_staleness_turns_old_values_nan(make_bars: Any) -> None:
    ctx = Context({"VIX": VIX}, max_staleness=timedelta(days=1))
    strategy = _run(make_bars, ctx, ["VIX"])
    # ages: -, 0, 1d (allowed), 2d (stale), 12h, 36h (stale)
    _assert_series(_column(strategy, "VIX"), [math.nan, 20.0, 20.0, math.nan, 25.0, math.nan])


def test_context_mapping_frame_with_other_value_column_name(make_bars: Any) -> None:
    rates = pl.DataFrame({"date": [datetime(2024, 1, 4)], "value": [5.25]})
    strategy = _run(make_bars, Context({"RATE": rates}), ["RATE"], n=4)
    _assert_series(_column(strategy, "RATE"), [math.nan, math.nan, 5.25, 5.25])


def test_context_mapping_frame_with_column_named_like_key(make_bars: Any) -> None:
    frame = VIX.with_columns(pl.lit(1.0).alias("other"))
    strategy = _run(make_bars, Context({"VIX": frame}), ["VIX"], n=4)
    _assert_series(_column(strategy, "VIX"), [math.nan, 20.0, 20.0, 20.0])


def test_context_mapping_frame_with_ambiguous_columns_rejected(make_bars: Any) -> None:
    frame = pl.DataFrame({"timestamp": [datetime(2024, 1, 3)], "a": [1.0], "b": [2.0]})
    with pytest.raises(DataValidationError) as info:
        _run(make_bars, Context({"VIX": frame}), ["VIX"])
    msg = str(info.value)
    assert "'VIX'" in msg and "'a'" in msg and "'b'" in msg


def test_context_wide_frame_serves_every_column(make_bars: Any) -> None:
    wide = pl.DataFrame(
        {
            "timestamp": [datetime(2024, 1, 3), datetime(2024, 1, 5)],
            "VIX": [20.0, 30.0],
            "SPY": [400.0, None],
        }
    )
    strategy = _run(make_bars, Context(wide), ["VIX", "SPY"], n=5)
    _assert_series(_column(strategy, "VIX"), [math.nan, 20.0, 20.0, 30.0, 30.0])
    # a null is a missing observation: the as-of value stays the previous one (a gap)
    _assert_series(_column(strategy, "SPY"), [math.nan, 400.0, 400.0, 400.0, 400.0])


def test_context_pandas_frame_accepted(make_bars: Any) -> None:
    strategy = _run(make_bars, Context({"VIX": VIX.to_pandas()}), ["VIX"], n=3)
    _assert_series(_column(strategy, "VIX"), [math.nan, 20.0, 20.0])


def test_context_event_context_matches_context_get(make_bars: Any, run_recorder: Any) -> None:
    feed = PolarsDataFeed(make_bars(6), asset_id="A")
    strategy, _ = run_recorder(feed, context=Context({"VIX": VIX}))
    got = [row["VIX"] for row in strategy.context_values]
    _assert_series(got, [math.nan, 20.0, 20.0, 20.0, 25.0, 25.0])


def test_context_unknown_name_keyerror_lists_available(make_bars: Any) -> None:
    strategy = _run(make_bars, Context({"VIX": VIX}), ["VIX"], n=2)
    assert len(strategy.errors) == 2
    assert "NOT_THERE" in strategy.errors[0]
    assert "VIX" in strategy.errors[0]


def test_context_get_default_for_unknown_name(make_bars: Any) -> None:
    class _Default(Strategy):
        def __init__(self) -> None:
            self.got: list[Any] = []

        def on_market_data(self, event: MarketEvent, context: Any) -> None:
            self.got.append(context.get("NOPE", -1.0))

    strategy = _Default()
    BacktestEngine(PolarsDataFeed(make_bars(2), asset_id="A"), strategy).run()
    assert strategy.got == [-1.0, -1.0]


def test_context_names_len_iter_after_run(make_bars: Any) -> None:
    ctx = Context(
        {"VIX": VIX, "RATE": pl.DataFrame({"timestamp": [datetime(2024, 1, 2)], "r": [1.0]})}
    )
    _run(make_bars, ctx, ["VIX", "RATE"], n=2)
    assert len(ctx) == 2
    assert sorted(ctx) == ["RATE", "VIX"]
    assert sorted(ctx.names) == ["RATE", "VIX"]


@pytest.mark.parametrize(
    ("stamps", "bad_row"),
    [
        ([datetime(2024, 1, 3), datetime(2024, 1, 3), datetime(2024, 1, 4)], 1),
        ([datetime(2024, 1, 3), datetime(2024, 1, 5), datetime(2024, 1, 4)], 2),
    ],
    ids=["duplicate", "decreasing"],
)
def test_context_timestamps_must_strictly_increase(
    make_bars: Any, stamps: list[datetime], bad_row: int
) -> None:
    frame = pl.DataFrame({"timestamp": stamps, "VIX": [1.0, 2.0, 3.0]})
    with pytest.raises(DataValidationError) as info:
        _run(make_bars, Context({"VIX": frame}), ["VIX"])
    msg = str(info.value)
    assert "strictly increasing" in msg
    assert f"row {bad_row}" in msg
    assert "'VIX'" in msg


def test_context_non_numeric_column_rejected(make_bars: Any) -> None:
    frame = pl.DataFrame({"timestamp": [datetime(2024, 1, 3)], "regime": ["bull"]})
    with pytest.raises(DataValidationError, match="'regime'"):
        _run(make_bars, Context(frame), ["regime"])


def test_context_missing_timestamp_column_rejected(make_bars: Any) -> None:
    frame = pl.DataFrame({"when": [datetime(2024, 1, 3)], "VIX": [1.0]})
    with pytest.raises(DataValidationError, match="timestamp"):
        _run(make_bars, Context({"VIX": frame}), ["VIX"])


def test_context_value_given_by_feed_and_context_rejected(make_bars: Any) -> None:
    feed = PolarsDataFeed(make_bars(3), asset_id="A", context_data=VIX)
    engine = BacktestEngine(feed, _Read(["VIX"]), context=Context({"VIX": VIX}))
    with pytest.raises(DataValidationError, match="'VIX'"):
        engine.run()
