"""SessionCalendar on its own: the NYSE session table, which session each timestamp joins.

Expected sessions are written by hand from the NYSE calendar of November 2023: Tue 21 and
Wed 22 open 09:30-16:00 ET, Thu 23 is Thanksgiving (closed), Fri 24 is a half day
(09:30-13:00), Sat 25 and Sun 26 are closed, Mon 27 is a full day. Late November is EST
(UTC-5), so 09:30 ET is 14:30 UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from ml4t.backtest import ConfigError
from ml4t.backtest.core.calendar import Session, SessionCalendar
from ml4t.backtest.core.data import make_ts_converter

_EPOCH = datetime(1970, 1, 1)


def _ns(dt: datetime) -> int:
    """Return int ns since the epoch (naive: wall clock; aware: UTC)."""
    epoch = _EPOCH.replace(tzinfo=UTC) if dt.tzinfo is not None else _EPOCH
    return (dt - epoch) // timedelta(microseconds=1) * 1000


def _nov(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2023, 11, day, hour, minute)


# (label, open, close, early_close), ET wall clock
NOV_SESSIONS = {
    21: Session(date(2023, 11, 21), _nov(21, 9, 30), _nov(21, 16), False),
    22: Session(date(2023, 11, 22), _nov(22, 9, 30), _nov(22, 16), False),
    24: Session(date(2023, 11, 24), _nov(24, 9, 30), _nov(24, 13), True),
    27: Session(date(2023, 11, 27), _nov(27, 9, 30), _nov(27, 16), False),
}


def _bound(tz: str | None = None, policy: str = "warn") -> SessionCalendar:
    cal = SessionCalendar("NYSE", policy)
    first, last = _nov(21), _nov(27, 23)
    if tz is not None:
        first, last = first.replace(tzinfo=UTC), last.replace(tzinfo=UTC)
    cal.bind(_ns(first), _ns(last), tz)
    return cal


# (timestamp ET, session day it joins, outside?): an outside bar joins the first session
# whose close is at or after it. The list mixes times of day, so midnight is an ordinary
# time here (a pre-market stamp), not a daily bar.
ASSIGN_CASES = [
    (_nov(21, 9, 30), 21, False),  # the open is inside
    (_nov(21, 16), 21, False),  # the close is inside too
    (_nov(21, 16, 1), 22, True),  # after hours: the next session (Wed 22)
    (_nov(22, 8), 22, True),  # pre-market: the same day's session
    (_nov(23, 12), 24, True),  # Thanksgiving: the next session
    (_nov(24, 13), 24, False),  # the early close is inside
    (_nov(24, 13, 1), 27, True),  # after the early close: Monday's session
    (_nov(24), 24, True),  # midnight among intraday stamps: pre-market of the 24th
    (_nov(25), 27, True),  # midnight on a Saturday: outside, Monday's session
    (_nov(26, 15), 27, True),  # Sunday afternoon: Monday's session
]


def test_assign_naive_timestamps_to_the_next_nyse_session() -> None:
    cal = _bound()
    stamps = np.array([_ns(ts) for ts, _, _ in ASSIGN_CASES], dtype=np.int64)
    index, outside = cal.assign(stamps)
    to_dt = make_ts_converter(None)
    got = [(cal.session(int(k), to_dt), bool(o)) for k, o in zip(index, outside, strict=True)]
    assert got == [(NOV_SESSIONS[day], out) for _, day, out in ASSIGN_CASES]
    assert cal.intraday


def test_assign_utc_timestamps_compares_in_utc_and_reports_in_utc() -> None:
    # the same instants as ASSIGN_CASES' first seven rows, written in UTC (ET + 5 h); Tue
    # 16:01 ET is 21:01 UTC the same day and still joins Wednesday, 13:01 ET on the half
    # day is 18:01 UTC and joins Monday
    cases = [(ts + timedelta(hours=5), day, out) for ts, day, out in ASSIGN_CASES[:7]]
    cal = _bound("UTC")
    stamps = np.array([_ns(ts.replace(tzinfo=UTC)) for ts, _, _ in cases], dtype=np.int64)
    index, outside = cal.assign(stamps)
    assert outside.tolist() == [False, False, True, True, True, False, True]
    to_dt = make_ts_converter("UTC")
    half_day = cal.session(int(index[5]), to_dt)
    assert half_day == Session(
        date(2023, 11, 24),
        datetime(2023, 11, 24, 14, 30, tzinfo=UTC),
        datetime(2023, 11, 24, 18, 0, tzinfo=UTC),
        True,
    )
    assert [cal.session(int(k), to_dt).date for k in index] == [
        date(2023, 11, d) for d in (21, 21, 22, 22, 24, 24, 27)
    ]


def test_midnight_is_a_daily_bar_until_an_intraday_stamp_is_seen() -> None:
    cal = _bound()
    to_dt = make_ts_converter(None)
    # all at midnight: daily bars labelled by their date (Sat 25 is outside, joins Mon 27)
    index, outside = cal.assign(np.array([_ns(_nov(24)), _ns(_nov(25))], dtype=np.int64))
    assert not cal.intraday
    assert [cal.session(int(k), to_dt).date for k in index] == [
        date(2023, 11, 24),
        date(2023, 11, 27),
    ]
    assert outside.tolist() == [False, True]
    # one intraday stamp makes the calendar intraday for good
    cal.assign(np.array([_ns(_nov(27, 10))], dtype=np.int64))
    assert cal.intraday
    # now midnight of the 24th is a pre-market time: outside, still the 24th's session
    (k,), (out,) = cal.assign(np.array([_ns(_nov(24))], dtype=np.int64))
    assert (cal.session(int(k), to_dt).date, bool(out)) == (date(2023, 11, 24), True)


def test_session_table_skips_holiday_and_weekend_and_flags_half_day() -> None:
    cal = _bound()
    to_dt = make_ts_converter(None)
    sessions = [cal.session(k, to_dt) for k in range(len(cal.day))]
    window = [s for s in sessions if date(2023, 11, 21) <= s.date <= date(2023, 11, 27)]
    assert window == list(NOV_SESSIONS.values())


def test_twenty_four_seven_has_a_session_every_day() -> None:
    cal = SessionCalendar("24/7")
    cal.bind(_ns(datetime(2024, 3, 1, tzinfo=UTC)), _ns(datetime(2024, 3, 4, tzinfo=UTC)), "UTC")
    stamps = [datetime(2024, 3, d, h, tzinfo=UTC) for d in (1, 2, 3) for h in (0, 13, 23)]
    index, outside = cal.assign(np.array([_ns(t) for t in stamps], dtype=np.int64))
    assert not outside.any()
    to_dt = make_ts_converter("UTC")
    got = [cal.session(int(k), to_dt) for k in index]
    assert [s.date for s in got] == [t.date() for t in stamps]
    sat = got[3]
    assert sat == Session(
        date(2024, 3, 2),
        datetime(2024, 3, 2, tzinfo=UTC),
        datetime(2024, 3, 3, tzinfo=UTC),
        False,
    )


def test_calendar_object_and_alias_name_are_accepted() -> None:
    import pandas_market_calendars as mcal

    by_object = SessionCalendar(mcal.get_calendar("XNYS"))
    assert by_object.tz == "America/New_York"
    alias = SessionCalendar("XNYS")
    assert alias.name == "XNYS"
    alias.bind(_ns(_nov(21)), _ns(_nov(27, 23)), None)
    to_dt = make_ts_converter(None)
    (k,), _ = alias.assign(np.array([_ns(_nov(24, 10))], dtype=np.int64))
    assert alias.session(int(k), to_dt) == NOV_SESSIONS[24]


@pytest.mark.parametrize(
    ("name", "hint"),
    [("nyse", "did you mean 'NYSE'?"), ("xNyS", "did you mean 'XNYS'?"), ("NOPE", None)],
)
def test_unknown_calendar_name_is_a_config_error(name: str, hint: str | None) -> None:
    with pytest.raises(ConfigError, match=f"unknown calendar '{name}'") as info:
        SessionCalendar(name)
    message = str(info.value)
    if hint is None:
        assert "did you mean" not in message
    else:
        assert hint in message


def test_bad_outside_sessions_policy_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"outside_sessions.*'warn', 'error', 'ignore'.*'loud'"):
        SessionCalendar("NYSE", "loud")
