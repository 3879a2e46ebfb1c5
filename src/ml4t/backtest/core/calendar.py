"""Trading sessions from pandas-market-calendars, and which session each bar belongs to.

Without a calendar a session is a calendar day in the data's time zone. With one
(``calendar="NYSE"``, any name pandas-market-calendars knows, ``"24/7"`` for crypto):

- an intraday bar belongs to the session whose ``[open, close]`` contains its timestamp
  (both ends included, with early closes and holidays as the calendar has them);
- data whose timestamps are all at midnight (in the data's zone) are daily bars, each
  labelled by its date and belonging to that date's session (once a non-midnight
  timestamp is seen, a midnight stamp is an ordinary time of day);
- naive timestamps are wall-clock times in the calendar's time zone; aware ones are
  compared in UTC and keep their own zone everywhere else;
- any other bar is *outside* the sessions. It is reported (``outside_sessions="warn"``,
  the default, or ``"error"``; ``"ignore"`` says nothing) and handled as part of the next
  session: the first whose close is at or after it. Pre-market bars join that day's
  session; after-hours, weekend and holiday bars join the next one (its
  ``before_trading_start`` comes before them), so a session always ends at its close
  (``after_trading_end``, DAY-order expiry);
- a timestamp that is one session's close and the next one's open (24/7 at midnight UTC)
  belongs to the next session.
"""

from __future__ import annotations

import warnings
from datetime import date, datetime
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from ..errors import ConfigError

__all__ = ["OUTSIDE_POLICIES", "Session", "SessionCalendar", "calendar_day_keys"]

OUTSIDE_POLICIES = ("warn", "error", "ignore")
OutsidePolicy = Literal["warn", "error", "ignore"]
_DAY_NS = 86_400_000_000_000
_PAD = pd.Timedelta(days=10)


class Session(NamedTuple):
    """One trading session of the calendar.

    Attributes
    ----------
    date : datetime.date
        The session's label.
    open, close : datetime
        Open and close (in the data's zone; naive local times for naive data).
    early_close : bool
        The calendar closes early that day (a half day).
    """

    date: date
    open: datetime
    close: datetime
    early_close: bool


class SessionCalendar:
    """Sessions of a pandas-market-calendars calendar over the data's time span.

    Parameters
    ----------
    calendar : str or pandas_market_calendars.MarketCalendar
        A calendar name (``"NYSE"``, ``"XNYS"``, ``"CME_Equity"``, ``"24/7"``, ...) or
        a calendar object.
    outside_sessions : {"warn", "error", "ignore"}, default "warn"
        What to do about bars outside every session.
    """

    def __init__(self, calendar: Any, outside_sessions: str = "warn") -> None:
        import pandas_market_calendars as mcal

        if outside_sessions not in OUTSIDE_POLICIES:
            raise ConfigError(
                f"outside_sessions: must be one of {list(OUTSIDE_POLICIES)}, got "
                f"{outside_sessions!r}"
            )
        self.outside_sessions: OutsidePolicy = outside_sessions  # type: ignore[assignment]
        if isinstance(calendar, str):
            names = mcal.get_calendar_names()
            if calendar not in names:
                close = [n for n in names if n.lower() == calendar.lower()]
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(
                    f"calendar: unknown calendar {calendar!r}{hint} (pandas-market-calendars "
                    "knows e.g. 'NYSE', 'XNYS', 'NASDAQ', 'CME_Equity', 'LSE', '24/7'; see "
                    "pandas_market_calendars.get_calendar_names())"
                )
            self._cal = mcal.get_calendar(calendar)
            self.name = calendar
        else:
            self._cal = calendar
            self.name = str(getattr(calendar, "name", type(calendar).__name__))
        self.tz = str(self._cal.tz)
        self.data_tz: str | None = None
        self.open_ns = np.empty(0, dtype=np.int64)
        self.close_ns = np.empty(0, dtype=np.int64)
        self.day = np.empty(0, dtype=np.int64)
        self.early = np.empty(0, dtype=bool)
        self.intraday = False

    def bind(self, first_ns: int, last_ns: int, data_tz: str | None) -> None:
        """Build the session table covering ``[first_ns, last_ns]`` (data's int-ns times)."""
        self.data_tz = data_tz
        self.intraday = False
        start = pd.Timestamp(first_ns).normalize() - _PAD
        end = pd.Timestamp(last_ns).normalize() + _PAD
        with warnings.catch_warnings():  # pandas deprecations inside the calendar package
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            sched = self._cal.schedule(start_date=start.date(), end_date=end.date())
            if sched.empty:
                raise ConfigError(
                    f"calendar {self.name!r} has no session between {start.date()} and {end.date()}"
                )
            early = self._cal.early_closes(sched).index
        opens = pd.DatetimeIndex(sched["market_open"])
        closes = pd.DatetimeIndex(sched["market_close"])
        if data_tz is None:  # naive data: wall-clock times in the calendar's zone
            opens = opens.tz_convert(self.tz).tz_localize(None)
            closes = closes.tz_convert(self.tz).tz_localize(None)
        self.open_ns = opens.as_unit("ns").asi8.astype(np.int64)
        self.close_ns = closes.as_unit("ns").asi8.astype(np.int64)
        labels = pd.DatetimeIndex(sched.index).as_unit("ns")
        self.day = (labels.asi8 // _DAY_NS).astype(np.int64)
        self.early = np.asarray(labels.isin(early), dtype=bool)

    def assign(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(session index, outside mask)`` of int-ns timestamps."""
        ts = np.asarray(ts, dtype=np.int64)
        last = self.day.shape[0] - 1
        j = np.searchsorted(self.close_ns, ts, side="left")
        # a close that is also the next session's open (24/7) belongs to the next session
        nxt = np.minimum(j + 1, last)
        j = np.where((j < last) & (self.open_ns[nxt] <= ts), nxt, j)
        inside = (j <= last) & (self.open_ns[np.minimum(j, last)] <= ts)
        if not self.intraday:
            local_day, midnight = _local_days(ts, self.data_tz)
            if midnight.all():  # daily bars, labelled by their date: that date's session
                k = np.searchsorted(self.day, local_day, side="left")
                inside = self.day[np.minimum(k, last)] == local_day
                j = np.where(inside, k, j)
            else:
                self.intraday = True
        return np.minimum(j, last), ~inside

    def session(self, index: int, to_datetime: Any) -> Session:
        """Return session ``index`` with times converted by ``to_datetime`` (int ns)."""
        label = date.fromordinal(date(1970, 1, 1).toordinal() + int(self.day[index]))
        return Session(
            label,
            to_datetime(int(self.open_ns[index])),
            to_datetime(int(self.close_ns[index])),
            bool(self.early[index]),
        )


def _local_days(ts: np.ndarray, timezone: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Return the day number and a midnight flag of each timestamp in ``timezone``."""
    if timezone is None:
        local = ts
    else:
        idx = pd.DatetimeIndex(ts.astype("datetime64[ns]")).tz_localize("UTC")
        local = idx.tz_convert(timezone).tz_localize(None).asi8
    return local // _DAY_NS, local % _DAY_NS == 0


def calendar_day_keys(ts: np.ndarray, timezone: str | None) -> np.ndarray:
    """Return the calendar day (days since 1970-01-01, local time) of int-ns timestamps."""
    return _local_days(np.asarray(ts, dtype=np.int64), timezone)[0]
