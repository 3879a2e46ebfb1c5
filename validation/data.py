"""Bars for the scenarios: seeded synthetic OHLCV on NYSE sessions and the real files.

Synthetic prices are rounded to cents (Zipline stores daily prices as integers of 1/1000,
so cents survive its bundle unchanged). The real files are part of the repository, in
``validation/real_data/`` (see its README for their source and columns), so the harness runs
from a fresh clone with nothing beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from .scenario import BarSet

__all__ = ["from_rows", "real_daily", "real_data_dir", "real_minute", "sessions", "synthetic"]

_REAL_DATA = Path(__file__).resolve().parent / "real_data"


def real_data_dir() -> Path:
    """Return the folder holding the real data files: ``validation/real_data``."""
    return _REAL_DATA


@lru_cache(maxsize=8)
def sessions(start: str, count: int) -> tuple[np.datetime64, ...]:
    """Return ``count`` NYSE sessions from ``start`` on, as naive midnight timestamps."""
    import pandas_market_calendars as mcal

    end = pd.Timestamp(start) + pd.Timedelta(days=2 * count + 14)
    days = mcal.get_calendar("NYSE").valid_days(start_date=start, end_date=end)
    if len(days) < count:
        raise ValueError(f"only {len(days)} NYSE sessions from {start}, need {count}")
    return tuple(days[:count].tz_localize(None).to_numpy())


def from_rows(
    rows: Sequence[tuple[float, float, float, float]],
    volume: float = 1_000_000.0,
    asset: str = "A",
    start: str = "2024-01-02",
) -> BarSet:
    """One asset's bars from ``(open, high, low, close)`` rows on NYSE sessions."""
    arr = np.asarray(rows, dtype=float)
    n = len(arr)
    return BarSet(
        dates=np.array(sessions(start, n), dtype="datetime64[ns]"),
        assets=(asset,),
        open=arr[:, [0]],
        high=arr[:, [1]],
        low=arr[:, [2]],
        close=arr[:, [3]],
        volume=np.full((n, 1), float(volume)),
    )


def synthetic(
    n_bars: int,
    n_assets: int = 1,
    seed: int = 7,
    start: str = "2024-01-02",
    vol: float = 0.02,
    gap: float = 0.01,
    start_price: float = 100.0,
) -> BarSet:
    """Random-walk daily OHLCV on NYSE sessions, rounded to cents.

    Opens gap from the previous close by a normal move of ``gap`` (so stops and limits
    can be gapped through); highs and lows extend beyond open and close.
    """
    rng = np.random.default_rng(seed)
    close = np.empty((n_bars, n_assets))
    opn = np.empty_like(close)
    price = start_price * np.exp(rng.normal(0, 0.3, n_assets))
    for t in range(n_bars):
        opn[t] = price * np.exp(rng.normal(0, gap, n_assets))
        close[t] = opn[t] * np.exp(rng.normal(0.0003, vol, n_assets))
        price = close[t]
    spread_hi = np.abs(rng.normal(0, vol / 2, (n_bars, n_assets)))
    spread_lo = np.abs(rng.normal(0, vol / 2, (n_bars, n_assets)))
    high = np.maximum(opn, close) * (1 + spread_hi)
    low = np.minimum(opn, close) * (1 - spread_lo)
    opn, high, low, close = (np.round(x, 2) for x in (opn, high, low, close))
    high = np.maximum.reduce([high, opn, close])
    low = np.minimum.reduce([low, opn, close])
    volume = np.round(rng.uniform(2e5, 2e6, (n_bars, n_assets)))
    return BarSet(
        dates=np.array(sessions(start, n_bars), dtype="datetime64[ns]"),
        assets=tuple(f"S{k:02d}" for k in range(n_assets)) if n_assets > 1 else ("A",),
        open=opn,
        high=high,
        low=low,
        close=close,
        volume=volume,
    )


def real_daily(names: Sequence[str], first: str, last: str) -> BarSet:
    """Real Yahoo daily bars (unadjusted OHLC) of one or more of nvda/orcl/yhoo.

    Only dates present in every file are kept.
    """
    frames = []
    for name in names:
        path = real_data_dir() / f"{name}_daily_yahoo.csv"
        df = pd.read_csv(path, parse_dates=["Date"]).set_index("Date")
        frames.append(df.loc[first:last])  # type: ignore[misc]
    common = frames[0].index
    for df in frames[1:]:
        common = common.intersection(df.index)
    frames = [df.loc[common] for df in frames]

    def stack(col: str) -> np.ndarray:
        return np.column_stack([df[col].to_numpy(dtype=float) for df in frames])

    return BarSet(
        dates=common.to_numpy(dtype="datetime64[ns]"),
        assets=tuple(n.upper() for n in names),
        open=stack("Open"),
        high=stack("High"),
        low=stack("Low"),
        close=stack("Close"),
        volume=stack("Volume"),
    )


def real_minute(first_day: str, last_day: str) -> BarSet:
    """The real EURO STOXX 50 futures one-minute file between two days (inclusive)."""
    path = real_data_dir() / "eurostoxx50_fut_1min_2006.csv"
    df = pd.read_csv(path, header=0, names=["d", "t", "o", "h", "l", "c", "v", "oi"])
    df = df[(df["d"] >= first_day) & (df["d"] <= last_day)]
    stamps = pd.to_datetime(df["d"] + " " + df["t"])
    return BarSet(
        dates=stamps.to_numpy(dtype="datetime64[ns]"),
        assets=("FESX",),
        open=df[["o"]].to_numpy(dtype=float),
        high=df[["h"]].to_numpy(dtype=float),
        low=df[["l"]].to_numpy(dtype=float),
        close=df[["c"]].to_numpy(dtype=float),
        volume=df[["v"]].to_numpy(dtype=float),
        frequency="minute",
    )
