"""Point-in-time correctness: nothing stamped after "now" is ever visible to the strategy.

Every value in the data encodes its own timestamp (closes and signals are unique per
row, context values unique per observation), so each value the strategy sees can be
traced back to when it happened and compared with the time it was seen.
"""

from __future__ import annotations

import math
from datetime import datetime, time, timedelta
from typing import Any

import numpy as np
import polars as pl
import pytest

from ml4t.backtest import BacktestEngine, Context, PolarsDataFeed, SimulationBroker, Strategy

DAYS = [datetime(2024, 1, 2) + timedelta(days=d) for d in range(6)]
N_HIST = 50


def _asset_frame(times: list[time], base: float) -> pl.DataFrame:
    ts = [datetime.combine(d.date(), t) for d in DAYS for t in times]
    close = [base + k for k in range(len(ts))]
    return pl.DataFrame(
        {
            "timestamp": ts,
            "open": [c - 0.5 for c in close],
            "high": [c + 1.0 for c in close],
            "low": [c - 1.0 for c in close],
            "close": close,
            "volume": [1_000.0] * len(ts),
            "pred": [c / 1_000.0 for c in close],
        }
    )


A = _asset_frame([time(9, 0), time(16, 0)], 100.0)
B = _asset_frame([time(10, 0), time(15, 30)], 500.0)
# X at noon (between A's bars), Y exactly at A's 16:00 bar (the boundary is inclusive)
X = pl.DataFrame(
    {
        "timestamp": [datetime.combine(d.date(), time(12)) for d in DAYS],
        "X": [1_000.0 + i for i in range(len(DAYS))],
    }
)
Y = pl.DataFrame(
    {
        "timestamp": [datetime.combine(d.date(), time(16)) for d in DAYS],
        "Y": [2_000.0 + i for i in range(len(DAYS))],
    }
)


def _visible(frame: pl.DataFrame, col: str, now: datetime, strict: bool = False) -> list[float]:
    keep = frame["timestamp"] < now if strict else frame["timestamp"] <= now
    return frame.filter(keep)[col].to_list()[-N_HIST:]


def _as_of(frame: pl.DataFrame, col: str, now: datetime, strict: bool = False) -> float:
    vals = _visible(frame, col, now, strict)
    return vals[-1] if vals else math.nan


def _stamp_of(frame: pl.DataFrame, col: str, value: float) -> datetime:
    hit = frame.filter(pl.col(col) == value)["timestamp"]
    assert hit.len() == 1, f"value {value} does not identify one row"
    return hit[0]  # type: ignore[no-any-return]


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


class Recorder(Strategy):
    """Records what is visible on every bar and before every session."""

    def __init__(self) -> None:
        self.bars: list[dict[str, Any]] = []
        self.sessions: list[dict[str, Any]] = []

    def _look(self, context: Context) -> dict[str, Any]:
        return {
            "a_close": self.history("A", "close", N_HIST).tolist(),
            "a_pred": self.history("A", "pred", N_HIST).tolist(),
            "b_close": self.history("B", "close", N_HIST).tolist(),
            "X": context.get("X"),
            "Y": context.get("Y"),
        }

    def before_trading_start(self, timestamp: datetime, context: Context) -> None:
        self.sessions.append({"ts": timestamp, "now": self.current_time, **self._look(context)})

    def on_market_data(self, event: Any, context: Context) -> None:
        self.bars.append(
            {
                "ts": event.timestamp,
                "now": self.current_time,
                "asset": event.asset_id,
                "close": event.close,
                "pred": event.signals["pred"],
                "event_context": dict(event.context),
                **self._look(context),
            }
        )


def _run(lazy: bool = False) -> Recorder:
    kw: dict[str, Any] = {"chunk_size": "1d"} if lazy else {}
    fa = PolarsDataFeed(A.lazy() if lazy else A, asset_id="A", context_data=Y, **kw)
    fb = PolarsDataFeed(B.lazy() if lazy else B, asset_id="B", **kw)
    strat = Recorder()
    BacktestEngine(
        feeds={"A": fa, "B": fb},
        strategy=strat,
        broker=SimulationBroker(),
        context=Context({"X": X}),
    ).run()
    return strat


@pytest.fixture(scope="module")
def recorded() -> Recorder:
    return _run()


def test_bars_arrive_in_time_order_with_assets_interleaved(recorded: Recorder) -> None:
    got = [(r["ts"], r["asset"]) for r in recorded.bars]
    want = sorted(
        [(t, "A") for t in A["timestamp"].to_list()] + [(t, "B") for t in B["timestamp"].to_list()]
    )
    assert got == want
    assert all(r["now"] == r["ts"] for r in recorded.bars)


def test_history_ends_at_current_bar_and_excludes_later_bars(recorded: Recorder) -> None:
    for r in recorded.bars:
        now = r["ts"]
        assert r["a_close"] == _visible(A, "close", now)
        assert r["a_pred"] == _visible(A, "pred", now)
        assert r["b_close"] == _visible(B, "close", now)
        own = r["a_close"] if r["asset"] == "A" else r["b_close"]
        assert own[-1] == r["close"]  # the last element is the bar being handled
        for v in r["a_close"]:
            assert _stamp_of(A, "close", v) <= now
        for v in r["b_close"]:
            assert _stamp_of(B, "close", v) <= now


def test_event_signals_are_those_of_the_current_row(recorded: Recorder) -> None:
    for r in recorded.bars:
        frame = A if r["asset"] == "A" else B
        assert _stamp_of(frame, "pred", r["pred"]) == r["ts"]


def test_context_is_as_of_with_offset_timestamps(recorded: Recorder) -> None:
    for r in recorded.bars:
        now = r["ts"]
        want = {"X": _as_of(X, "X", now), "Y": _as_of(Y, "Y", now)}
        assert _same(r["X"], want["X"]), now
        assert _same(r["Y"], want["Y"]), now
        assert set(r["event_context"]) == {"X", "Y"}
        for k in ("X", "Y"):
            assert _same(r["event_context"][k], want[k])
            if not math.isnan(r[k]):
                assert _stamp_of(X if k == "X" else Y, k, r[k]) <= now


def test_context_noon_value_hidden_at_morning_bar_visible_in_afternoon(
    recorded: Recorder,
) -> None:
    by_key = {(r["ts"], r["asset"]): r for r in recorded.bars}
    day2 = DAYS[1].date()
    morning = by_key[(datetime.combine(day2, time(9)), "A")]
    afternoon = by_key[(datetime.combine(day2, time(16)), "A")]
    assert morning["X"] == 1_000.0  # yesterday's noon value
    assert afternoon["X"] == 1_001.0
    assert afternoon["Y"] == 2_001.0  # stamped exactly at 16:00: visible at that bar
    assert morning["Y"] == 2_000.0
    first = recorded.bars[0]
    assert math.isnan(first["X"]) and math.isnan(first["Y"])


def test_before_trading_start_excludes_the_sessions_first_bar(recorded: Recorder) -> None:
    assert [s["ts"] for s in recorded.sessions] == [
        datetime.combine(d.date(), time(9)) for d in DAYS
    ]
    for s in recorded.sessions:
        ts = s["ts"]
        assert s["now"] < ts
        assert s["a_close"] == _visible(A, "close", ts, strict=True)
        assert s["b_close"] == _visible(B, "close", ts, strict=True)
        assert _same(s["X"], _as_of(X, "X", ts, strict=True))
        assert _same(s["Y"], _as_of(Y, "Y", ts, strict=True))
        assert A.filter(pl.col("timestamp") == ts)["close"][0] not in s["a_close"]
    assert recorded.sessions[0]["a_close"] == []


def test_lazy_feed_in_daily_windows_sees_exactly_the_same(recorded: Recorder) -> None:
    lazy = _run(lazy=True)

    def key(rows: list[dict[str, Any]]) -> str:
        return repr(rows)  # NaN-safe deep comparison

    assert key(lazy.bars) == key(recorded.bars)
    assert key(lazy.sessions) == key(recorded.sessions)


def test_sessions_follow_local_calendar_days_for_tz_aware_data() -> None:
    # 18:00 and 20:00 New York are 23:00 and 01:00 (next day) in UTC: one local session
    tz = "America/New_York"
    local = [datetime.combine(d.date(), t) for d in DAYS[:3] for t in (time(18), time(20))]
    ts = pl.Series("timestamp", local).dt.replace_time_zone(tz)
    frame = pl.DataFrame(
        {
            "timestamp": ts,
            "open": np.arange(6) + 10.0,
            "high": np.arange(6) + 11.0,
            "low": np.arange(6) + 9.0,
            "close": np.arange(6) + 10.5,
            "volume": np.full(6, 100.0),
        }
    )

    class Sessions(Strategy):
        def __init__(self) -> None:
            self.starts: list[tuple[datetime, list[float]]] = []

        def before_trading_start(self, timestamp: datetime, context: Context) -> None:
            self.starts.append((timestamp, self.history("A", "close", 10).tolist()))

        def on_market_data(self, event: Any, context: Context) -> None:
            pass

    strat = Sessions()
    BacktestEngine(PolarsDataFeed(frame, asset_id="A"), strat, SimulationBroker()).run()
    assert [t.replace(tzinfo=None) for t, _ in strat.starts] == local[::2]
    assert [h for _, h in strat.starts] == [[], [10.5, 11.5], [10.5, 11.5, 12.5, 13.5]]


def test_orders_sized_before_trading_start_use_previous_close_and_fill_at_open() -> None:
    stamps = [datetime.combine(DAYS[0].date(), time(16)), datetime.combine(DAYS[1].date(), time(9))]
    frame = pl.DataFrame(
        {
            "timestamp": stamps,
            "open": [19.0, 25.0],
            "high": [21.0, 41.0],
            "low": [18.0, 24.0],
            "close": [20.0, 40.0],
            "volume": [100.0, 100.0],
        }
    )

    class Early(Strategy):
        def before_trading_start(self, timestamp: datetime, context: Context) -> None:
            if timestamp == stamps[1]:
                self.order = self.buy_percent("A", 0.5)

        def on_market_data(self, event: Any, context: Any) -> None:
            pass

    strat = Early()
    result = BacktestEngine(PolarsDataFeed(frame, asset_id="A"), strat, SimulationBroker()).run()
    assert strat.order.quantity == pytest.approx(0.5 * 100_000.0 / 20.0, rel=1e-12)  # not 40
    assert result.fills_df.select("timestamp", "price").rows() == [(stamps[1], 25.0)]
