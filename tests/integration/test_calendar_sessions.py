"""Trading calendars end to end: session callbacks, Strategy.session, DAY expiry, bars
outside the sessions, time zones, "24/7" and the calendar-free default.

Expected sessions are written by hand from the NYSE calendar:

- November 2023: Tue 21, Wed 22 and Mon 27 open 09:30-16:00 ET; Thu 23 is Thanksgiving
  (closed); Fri 24 is a half day closing at 13:00. EST, so 09:30 ET = 14:30 UTC.
- July 2024: Mon 1, Tue 2, Fri 5 and Mon 8 are full days; Wed 3 closes at 13:00; Thu 4
  is Independence Day (closed).
- March 2024: Fri 8 is EST (09:30 ET = 14:30 UTC), Mon 11 is EDT (09:30 ET = 13:30 UTC).

Intraday bars are 30-minute bars stamped at their open (09:30 ... 15:30, or ... 12:30 on a
half day), so the session close is half an hour after a session's last bar.
"""

from __future__ import annotations

import re
import warnings
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from ml4t.backtest import (
    BacktestEngine,
    ConfigError,
    DataValidationError,
    OrderStatus,
    OutsideSessionWarning,
    PolarsDataFeed,
    Session,
    SimulationBroker,
)
from ml4t.backtest.testing import ScriptedStrategy, check_order_reports

ET = ZoneInfo("America/New_York")
HALF_HOUR = timedelta(minutes=30)
NOV = [(date(2023, 11, d), close) for d, close in ((21, 16), (22, 16), (24, 13), (27, 16))]
JULY = [(date(2024, 7, d), close) for d, close in ((1, 16), (2, 16), (3, 13), (5, 16), (8, 16))]


class Recorder(ScriptedStrategy):
    """Logs every callback as ``(kind, timestamp, asset, session)``."""

    def __init__(self, on_bar: Any = None) -> None:
        super().__init__(on_bar)
        self.state: dict[str, Any] = {}
        self.log: list[tuple[str, datetime, str | None, Session | None]] = []

    def before_trading_start(self, timestamp: datetime, context: Any) -> None:
        self.log.append(("before", timestamp, None, self.session))

    def on_market_data(self, event: Any, context: Any) -> None:
        self.log.append(("bar", event.timestamp, event.asset_id, self.session))
        super().on_market_data(event, context)

    def after_trading_end(self, timestamp: datetime, context: Any) -> None:
        self.log.append(("after", timestamp, None, self.session))

    def calls(self, kind: str) -> list[tuple[datetime, Session | None]]:
        return [(ts, s) for k, ts, _, s in self.log if k == kind]


def _run(df: pl.DataFrame, strat: Recorder | None = None, **engine_kw: Any) -> Any:
    """Run ``df`` (asset "A" unless it has an ``asset_id`` column); return (result, strat)."""
    strat = strat if strat is not None else Recorder()
    asset = None if "asset_id" in df.columns else "A"
    engine = BacktestEngine(
        PolarsDataFeed(df, asset_id=asset), strat, SimulationBroker(), **engine_kw
    )
    return engine.run(), strat


def _frame(
    stamps: list[datetime], make_bars: Any, lows: dict[datetime, float] | None = None
) -> Any:
    """Flat bars at 100 (high 101, low 99, or ``lows[ts]``)."""
    n = len(stamps)
    low = [(lows or {}).get(ts, 99.0) for ts in stamps]
    return make_bars([100.0] * n, opens=[100.0] * n, highs=[101.0] * n, lows=low, timestamps=stamps)


def _day_bars(day: date, first: time, last: time) -> list[datetime]:
    t, end, out = datetime.combine(day, first), datetime.combine(day, last), []
    while t <= end:
        out.append(t)
        t += HALF_HOUR
    return out


def _session(day: date, close_hour: int) -> Session:
    return Session(
        day,
        datetime.combine(day, time(9, 30)),
        datetime.combine(day, time(close_hour)),
        close_hour == 13,
    )


def _bars_of(days: list[tuple[date, int]]) -> dict[date, list[datetime]]:
    return {d: _day_bars(d, time(9, 30), time(close - 1, 30)) for d, close in days}


def _no_outside_warning(df: pl.DataFrame, **kw: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutsideSessionWarning)
        return _run(df, **kw)


def _events(result: Any, order: Any) -> list[tuple[datetime, str]]:
    log = result.orders_df.filter(pl.col("order_id") == order.order_id)
    return log.select("timestamp", "event").rows()


# --- 1. callbacks once per session ----------------------------------------------------------
@pytest.mark.parametrize("days", [NOV, JULY], ids=["thanksgiving-2023", "july-4th-2024"])
def test_session_callbacks_once_per_nyse_session_with_half_day_and_holiday(
    days: list[tuple[date, int]], make_bars: Any
) -> None:
    bars = _bars_of(days)
    df = _frame([ts for d in bars for ts in bars[d]], make_bars)
    _, strat = _no_outside_warning(df, calendar="NYSE")
    want_log = []
    for d, close in days:
        s = _session(d, close)
        want_log.append(("before", s.open, None, s))
        want_log += [("bar", ts, "A", s) for ts in bars[d]]
        want_log.append(("after", s.close, None, s))
    assert strat.log == want_log
    # the holiday (day after the half day) has no callback at all
    holiday = days[2][0] + timedelta(days=1)
    assert all(s is not None and s.date != holiday for _, _, _, s in strat.log)
    assert [s.early_close for _, s in strat.calls("before")] == [c == 13 for _, c in days]
    for (ts, _), (d, _) in zip(strat.calls("after"), days, strict=True):
        assert ts > bars[d][-1]  # after fires with the close, later than the last bar


# --- 2. daily bars --------------------------------------------------------------------------
def test_daily_bars_at_midnight_are_one_session_each(make_bars: Any) -> None:
    df = _frame([datetime.combine(d, time()) for d, _ in JULY], make_bars)
    _, strat = _no_outside_warning(df, calendar="NYSE")
    sessions = [_session(d, c) for d, c in JULY]
    assert strat.calls("before") == [(s.open, s) for s in sessions]
    assert strat.calls("after") == [(s.close, s) for s in sessions]
    assert [s for k, _, _, s in strat.log if k == "bar"] == sessions


def test_daily_bars_on_holiday_and_saturday_are_outside(make_bars: Any) -> None:
    stamps = [datetime(2024, 7, d) for d in (3, 4, 5, 6, 8)]  # Thu 4 holiday, Sat 6
    with pytest.warns(OutsideSessionWarning) as record:
        _, strat = _run(_frame(stamps, make_bars), calendar="NYSE")
    assert len(record) == 1
    assert "2 bar(s) fall outside the NYSE sessions" in str(record[0].message)
    assert "first: 2024-07-04T00:00:00, asset 'A'" in str(record[0].message)
    bar_sessions = [s.date for k, _, _, s in strat.log if k == "bar"]
    assert bar_sessions == [date(2024, 7, d) for d in (3, 5, 5, 8, 8)]
    assert [s.date for _, s in strat.calls("before")] == [date(2024, 7, d) for d in (3, 5, 8)]


# --- 3. DAY orders --------------------------------------------------------------------------
def test_day_order_expires_at_its_session_end_gtc_stays(make_bars: Any) -> None:
    bars = _bars_of(NOV)
    placed = datetime(2023, 11, 21, 10)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if e.timestamp == placed:
            s.state["day"] = s.buy("A", 10, limit_price=50.0, time_in_force="day")
            s.state["gtc"] = s.buy("A", 10, limit_price=50.0, time_in_force="gtc")

    df = _frame([ts for d in bars for ts in bars[d]], make_bars)
    result, strat = _run(df, Recorder(on_bar), calendar="NYSE")
    day, gtc = strat.state["day"], strat.state["gtc"]
    assert day.status is OrderStatus.EXPIRED
    assert _events(result, day) == [
        (placed, "submitted"),
        (datetime(2023, 11, 21, 15, 30), "expired"),
    ]
    assert [(o.order_id, "expired" in r) for o, r in strat.cancelled] == [(day.order_id, True)]
    assert gtc.status.is_open
    assert _events(result, gtc) == [(placed, "submitted")]
    check_order_reports(result, strat)


def test_day_order_on_last_bar_works_over_the_holiday_until_the_half_day_close(
    make_bars: Any,
) -> None:
    # placed on Wed 22's last bar (15:30): it has not had a bar to fill on, so it stays
    # working through the next session, Fri 24 (Thu 23 is closed), and expires at its end
    bars = _bars_of(NOV)
    placed = datetime(2023, 11, 22, 15, 30)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if e.timestamp == placed:
            s.state["o"] = s.buy("A", 10, limit_price=50.0, time_in_force="day")

    df = _frame([ts for d in bars for ts in bars[d]], make_bars)
    result, strat = _run(df, Recorder(on_bar), calendar="NYSE")
    expired_at = datetime(2023, 11, 24, 12, 30)  # last bar before the 13:00 close
    assert _events(result, strat.state["o"]) == [(placed, "submitted"), (expired_at, "expired")]
    check_order_reports(result, strat)


@pytest.mark.parametrize("dip", [None, datetime(2023, 11, 24, 14)], ids=["no-dip", "dip-14h"])
def test_half_day_after_hours_bars_join_monday_and_day_order_expires_at_the_close(
    dip: datetime | None, make_bars: Any
) -> None:
    # Fri 24 has bars to 15:30 although it closes at 13:00: the five bars from 13:30 are
    # after hours, outside, and belong to Monday's session (the 13:00 bar is at the close,
    # inside). Friday's session ends at its close: a DAY order placed Fri 10:00 expires on
    # the last bar <= 13:00 (the 13:00 bar) and cannot fill on a 14:00 dip; one placed on
    # the 13:30 after-hours bar is Monday's order and fills on that dip (without it, it
    # expires at Monday's last bar, 15:30).
    stamps = _day_bars(date(2023, 11, 24), time(9, 30), time(15, 30))
    stamps += _day_bars(date(2023, 11, 27), time(9, 30), time(15, 30))
    placed, late = datetime(2023, 11, 24, 10), datetime(2023, 11, 24, 13, 30)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if e.timestamp in (placed, late):
            s.state[e.timestamp] = s.buy("A", 10, limit_price=95.0, time_in_force="day")

    df = _frame(stamps, make_bars, lows={dip: 94.0} if dip else None)
    with pytest.warns(OutsideSessionWarning, match=r"5 bar\(s\).*first: 2023-11-24T13:30:00"):
        result, strat = _run(df, Recorder(on_bar), calendar="NYSE")
    half, monday = _session(date(2023, 11, 24), 13), _session(date(2023, 11, 27), 16)
    assert strat.calls("after") == [(datetime(2023, 11, 24, 13), half), (monday.close, monday)]
    assert strat.calls("before") == [(half.open, half), (monday.open, monday)]
    bar_sessions = [s for k, _, _, s in strat.log if k == "bar"]
    assert bar_sessions == [half] * 8 + [monday] * (5 + 13)  # 09:30-13:00; 13:30-15:30 + Mon
    friday, after_hours = strat.state[placed], strat.state[late]
    assert friday.status is OrderStatus.EXPIRED
    assert _events(result, friday) == [
        (placed, "submitted"),
        (datetime(2023, 11, 24, 13), "expired"),
    ]
    if dip is None:
        assert _events(result, after_hours) == [
            (late, "submitted"),
            (datetime(2023, 11, 27, 15, 30), "expired"),
        ]
        assert result.fills_df.height == 0
    else:
        assert _events(result, after_hours) == [(late, "submitted"), (dip, "filled")]
        assert result.fills_df["order_id"].to_list() == [after_hours.order_id]
    check_order_reports(result, strat)


# --- 4. outside_sessions --------------------------------------------------------------------
def _outside_frame(make_bars: Any) -> pl.DataFrame:
    # two assets; 08:00, 17:00 and Saturday 10:00 are outside: 3 stamps x 2 assets = 6 bars
    stamps = [datetime(2023, 11, 21, h, m) for h, m in ((8, 0), (9, 30), (15, 30), (17, 0))]
    stamps += [datetime(2023, 11, 25, 10), datetime(2023, 11, 27, 9, 30)]
    frames = [_frame(stamps, make_bars).with_columns(pl.lit(a).alias("asset_id")) for a in "AB"]
    return pl.concat(frames).sort("timestamp", "asset_id")


@pytest.mark.parametrize("policy", ["warn", "ignore"])
def test_outside_bars_join_the_next_session(policy: str, make_bars: Any) -> None:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _, strat = _run(_outside_frame(make_bars), calendar="NYSE", outside_sessions=policy)
    caught = [w for w in record if issubclass(w.category, OutsideSessionWarning)]
    if policy == "warn":
        assert len(caught) == 1
        assert str(caught[0].message).startswith(
            "6 bar(s) fall outside the NYSE sessions (first: 2023-11-21T08:00:00, asset 'A')"
        )
    else:
        assert caught == []
    tue, wed, mon = (_session(date(2023, 11, d), 16) for d in (21, 22, 27))
    bars = [(ts, a, s) for k, ts, a, s in strat.log if k == "bar"]
    # Tue 08:00 (pre-market) joins Tuesday, Tue 17:00 (after hours) Wednesday, Sat Monday
    assert [s for _, a, s in bars if a == "A"] == [tue, tue, tue, wed, mon, mon]
    kinds = [k for k, ts, a, _ in strat.log if a in (None, "A")]
    sessions = [["before", *["bar"] * n, "after"] for n in (3, 1, 2)]
    assert kinds == [k for part in sessions for k in part]
    # before: the session open (even ahead of a pre-market bar); after: the session close
    assert strat.calls("before") == [(s.open, s) for s in (tue, wed, mon)]
    assert strat.calls("after") == [(s.close, s) for s in (tue, wed, mon)]


def test_result_metadata_reports_calendar_and_outside_bar_count(make_bars: Any) -> None:
    result, _ = _run(_outside_frame(make_bars), calendar="NYSE", outside_sessions="ignore")
    # 08:00, 17:00 and Saturday 10:00 are outside, for each of the two assets
    assert (result.metadata["calendar"], result.metadata["outside_session_bars"]) == ("NYSE", 6)
    inside, _ = _no_outside_warning(
        _frame(_bars_of(NOV)[date(2023, 11, 21)], make_bars), calendar="XNYS"
    )
    assert (inside.metadata["calendar"], inside.metadata["outside_session_bars"]) == ("XNYS", 0)
    plain, _ = _run(_outside_frame(make_bars))
    assert (plain.metadata["calendar"], plain.metadata["outside_session_bars"]) == (None, 0)


def test_outside_bars_are_an_error_when_asked(make_bars: Any) -> None:
    with pytest.raises(DataValidationError, match="outside the NYSE sessions") as info:
        _run(_outside_frame(make_bars), calendar="NYSE", outside_sessions="error")
    assert "first: 2023-11-21T08:00:00, asset 'A'" in str(info.value)


# --- 5. time zones --------------------------------------------------------------------------
def _to_utc(ts: datetime) -> datetime:
    return (ts + timedelta(hours=5)).replace(tzinfo=UTC)  # late November: EST = UTC-5


def test_utc_data_has_the_same_sessions_and_stays_in_utc(make_bars: Any) -> None:
    bars = _bars_of(NOV)
    naive = [ts for d in bars for ts in bars[d]]
    df = _frame([_to_utc(ts).replace(tzinfo=None) for ts in naive], make_bars)
    df = df.with_columns(pl.col("timestamp").dt.replace_time_zone("UTC"))
    result, strat = _no_outside_warning(df, calendar="NYSE")
    want = []
    for d, close in NOV:
        s = _session(d, close)
        s = Session(s.date, _to_utc(s.open), _to_utc(s.close), s.early_close)
        want += [("before", s.open, None, s), *[("bar", _to_utc(t), "A", s) for t in bars[d]]]
        want.append(("after", s.close, None, s))
    assert strat.log == want
    assert all(
        ts.tzinfo is not None and ts.utcoffset() == timedelta(0) for _, ts, _, _ in strat.log
    )
    assert result.portfolio_df["timestamp"].dtype == pl.Datetime("ns", "UTC")
    assert result.portfolio_df["timestamp"].to_list() == [_to_utc(t) for t in naive]


def test_utc_data_across_dst_compares_instants(make_bars: Any) -> None:
    # 13:30 UTC is 08:30 ET (pre-market) on Fri 8 March, but the open on Mon 11 March (EDT)
    stamps = [datetime(2024, 3, 8, 13, 30, tzinfo=UTC), datetime(2024, 3, 8, 14, 30, tzinfo=UTC)]
    stamps += [datetime(2024, 3, 11, 13, 30, tzinfo=UTC), datetime(2024, 3, 11, 19, 30, tzinfo=UTC)]
    df = _frame([t.replace(tzinfo=None) for t in stamps], make_bars)
    df = df.with_columns(pl.col("timestamp").dt.replace_time_zone("UTC"))
    with pytest.warns(
        OutsideSessionWarning, match=r"^1 bar\(s\).*first: 2024-03-08T13:30:00\+00:00"
    ):
        _, strat = _run(df, calendar="NYSE")
    fri = Session(
        date(2024, 3, 8),
        datetime(2024, 3, 8, 14, 30, tzinfo=UTC),
        datetime(2024, 3, 8, 21, tzinfo=UTC),
        False,
    )
    mon = Session(
        date(2024, 3, 11),
        datetime(2024, 3, 11, 13, 30, tzinfo=UTC),
        datetime(2024, 3, 11, 20, tzinfo=UTC),
        False,
    )
    assert strat.calls("before") == [(fri.open, fri), (mon.open, mon)]
    assert [s for k, _, _, s in strat.log if k == "bar"] == [fri, fri, mon, mon]


def test_new_york_data_stays_in_new_york(make_bars: Any) -> None:
    stamps = _day_bars(date(2023, 11, 24), time(9, 30), time(12, 30))
    df = _frame(stamps, make_bars).with_columns(
        pl.col("timestamp").dt.replace_time_zone("America/New_York")
    )
    result, strat = _no_outside_warning(df, calendar="NYSE")
    half = Session(
        date(2023, 11, 24),
        datetime(2023, 11, 24, 9, 30, tzinfo=ET),
        datetime(2023, 11, 24, 13, tzinfo=ET),
        True,
    )
    assert strat.calls("before") == [(half.open, half)]
    assert strat.calls("after") == [(half.close, half)]
    assert [ts for k, ts, _, _ in strat.log if k == "bar"] == [t.replace(tzinfo=ET) for t in stamps]
    assert all(ts.tzinfo == ET for _, ts, _, _ in strat.log)
    assert result.portfolio_df["timestamp"].dtype == pl.Datetime("ns", "America/New_York")


@pytest.mark.parametrize(
    ("after_hours", "first"),
    [
        (datetime(2023, 11, 21, 20), "2023-11-21T20:00:00"),  # naive ET
        (datetime(2023, 11, 22, 1, tzinfo=UTC), "2023-11-22T01:00:00+00:00"),  # 20:00 ET
        (datetime(2023, 11, 22, 0, tzinfo=UTC), "2023-11-22T00:00:00+00:00"),  # 19:00 ET
    ],
    ids=["naive-20h", "utc-01h", "utc-midnight"],
)
def test_after_hours_bar_joins_the_next_session_in_utc_and_naive_data(
    after_hours: datetime, first: str, make_bars: Any
) -> None:
    # Tue 21 Nov 20:00 ET is after hours, naive or as Wed 22 01:00 UTC; so is 19:00 ET as
    # Wed 22 00:00 UTC: among intraday stamps midnight is an ordinary time of day. All
    # three are outside and join Wednesday's session.
    stamps = [datetime(2023, 11, 21, 15, 30), after_hours, datetime(2023, 11, 22, 9, 30)]
    if after_hours.tzinfo is None:
        df = _frame(stamps, make_bars)
    else:  # as UTC data: the open-hours bars in UTC too (EST = UTC-5)
        stamps = [
            stamps[0] + timedelta(hours=5),
            after_hours.replace(tzinfo=None),
            stamps[2] + timedelta(hours=5),
        ]
        df = _frame(stamps, make_bars).with_columns(pl.col("timestamp").dt.replace_time_zone("UTC"))
    with pytest.warns(OutsideSessionWarning, match=rf"^1 bar\(s\).*first: {re.escape(first)},"):
        result, strat = _run(df, calendar="NYSE")
    tue, wed = date(2023, 11, 21), date(2023, 11, 22)
    assert [s.date for k, _, _, s in strat.log if k == "bar"] == [tue, wed, wed]
    assert result.metadata["outside_session_bars"] == 1


# --- 6. 24/7 --------------------------------------------------------------------------------
def test_twenty_four_seven_one_session_per_utc_day_over_a_weekend(make_bars: Any) -> None:
    start = datetime(2024, 3, 1, 20)  # Fri 20:00 UTC, hourly to Mon 03:00 UTC
    naive = [start + timedelta(hours=k) for k in range(56)]
    df = _frame(naive, make_bars).with_columns(pl.col("timestamp").dt.replace_time_zone("UTC"))
    _, strat = _no_outside_warning(df, calendar="24/7")
    days = [date(2024, 3, d) for d in (1, 2, 3, 4)]
    midnight = [datetime(2024, 3, d, tzinfo=UTC) for d in (1, 2, 3, 4, 5)]
    sessions = [Session(d, midnight[k], midnight[k + 1], False) for k, d in enumerate(days)]
    assert strat.calls("before") == [(s.open, s) for s in sessions]
    assert strat.calls("after") == [(s.close, s) for s in sessions]
    assert [s.date for k, _, _, s in strat.log if k == "bar"] == [t.date() for t in naive]


# --- 7. no calendar -------------------------------------------------------------------------
def test_without_calendar_every_calendar_day_is_a_session(make_bars: Any) -> None:
    stamps = [datetime(2023, 11, d, h) for d, h in ((23, 10), (23, 11), (25, 10), (27, 10))]
    _, strat = _no_outside_warning(_frame(stamps, make_bars))
    assert strat.calls("before") == [(stamps[0], None), (stamps[2], None), (stamps[3], None)]
    assert strat.calls("after") == [(stamps[1], None), (stamps[2], None), (stamps[3], None)]
    assert all(s is None for _, _, _, s in strat.log)


# --- 8. configuration errors ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("kw", "pattern"),
    [
        ({"calendar": "nyse"}, r"unknown calendar 'nyse'; did you mean 'NYSE'\?"),
        ({"calendar": "Moon"}, r"unknown calendar 'Moon' \(pandas-market-calendars"),
        ({"calendar": "NYSE", "outside_sessions": "loud"}, r"outside_sessions: .*got 'loud'"),
    ],
)
def test_engine_rejects_bad_calendar_settings(
    kw: dict[str, Any], pattern: str, make_bars: Any
) -> None:
    with pytest.raises(ConfigError, match=pattern):
        BacktestEngine(PolarsDataFeed(make_bars(3), asset_id="A"), Recorder(), **kw)
