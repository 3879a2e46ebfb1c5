"""Generate the data of the top-25 example (deterministic: a fixed seed, no downloads).

Writes three Parquet files to ``data/`` beside this file::

    python examples/04_top25_vix_atr/make_data.py          # rewrite data/*.parquet
    python examples/04_top25_vix_atr/make_data.py --check  # compare with the files

- ``minute_bars.parquet``: 50 assets, NYSE minute bars 09:30-15:59 (bar-start labels,
  naive US/Eastern wall-clock times) of the sessions 2023-11-13 .. 2023-11-28. The
  window holds the Thanksgiving holiday (11-23, no bars) and the half day after it
  (11-24, bars 09:30-12:59 only).
- ``predictions.parquet``: one row per (asset, session date), stamped at the date's
  midnight, with ``available_at`` = 09:45 of that date (the model runs after the open):
  ``pred`` (a score, larger = better expected return) and ``atr`` (the 14-session
  average true range in price units, from daily bars of the sessions *before* the date).
- ``context.parquet``: daily VIX stamped at the date's midnight with ``available_at`` =
  16:15 of the same date, so a day's VIX is usable from the next session on.

How the data are made: a VIX path with a spike in the middle of the window scales the
volatility of a one-factor market model. Each asset has its own start price, volatility
and beta. A latent daily ``alpha`` per (asset, session) sets the drift of that asset from
09:46 to the close of the session; ``pred`` is ``alpha`` plus noise (correlation about
0.35), so the predictions carry some, but not perfect, information. Daily bars before
the window (from 2023-09-01) exist only to seed the ATR; inside the window the daily
bars are the aggregates of the minute bars.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pandas_market_calendars as mcal
import polars as pl

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "data"
FILES = {
    "minute_bars": "minute_bars.parquet",
    "predictions": "predictions.parquet",
    "context": "context.parquet",
}

SEED = 20231113
N_ASSETS = 50
HISTORY_START = date(2023, 9, 1)  # daily history before the window seeds the ATR
WINDOW_START = date(2023, 11, 13)
WINDOW_END = date(2023, 11, 28)
ATR_SESSIONS = 14
PREDICTION_TIME = time(9, 45)  # the model runs after the open
VIX_TIME = time(16, 15)  # VIX close is published after the equity close
ALPHA_PER_DAY = 0.004  # drift of a one-sigma alpha over the session after 09:45
PRED_CORRELATION = 0.35
VIX_SPIKE = {date(2023, 11, 15): 12.0, date(2023, 11, 16): 15.0, date(2023, 11, 17): 12.0}
MINUTE = timedelta(minutes=1)


def asset_ids() -> list[str]:
    """Return the asset identifiers ``S00`` .. ``S49``."""
    return [f"S{k:02d}" for k in range(N_ASSETS)]


def nyse_sessions(start: date, end: date) -> list[tuple[date, datetime, datetime]]:
    """Return ``(date, open, close)`` of the NYSE sessions, as naive US/Eastern times."""
    cal = mcal.get_calendar("NYSE")
    with warnings.catch_warnings():  # pandas deprecations inside the calendar package
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        sched = cal.schedule(start_date=start, end_date=end)
    out = []
    for label, row in sched.iterrows():
        opens = row["market_open"].tz_convert(cal.tz).tz_localize(None).to_pydatetime()
        close = row["market_close"].tz_convert(cal.tz).tz_localize(None).to_pydatetime()
        out.append((label.date(), opens, close))
    return out


def _cents(x: np.ndarray) -> np.ndarray:
    return np.round(x, 2)


def _bar_range(
    rng: np.random.Generator, o: np.ndarray, c: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return cent-rounded high and low around open and close (``scale`` in price units)."""
    up = _cents(np.abs(rng.normal(size=o.shape)) * scale)
    down = _cents(np.abs(rng.normal(size=o.shape)) * scale)
    high = np.maximum(o, c) + up
    low = np.maximum(np.minimum(o, c) - down, 0.01)
    return _cents(high), _cents(low)


def _stamps(days: list[date], at: time) -> np.ndarray:
    return np.array([datetime.combine(d, at) for d in days], dtype="datetime64[us]")


def make_frames(seed: int = SEED) -> dict[str, pl.DataFrame]:
    """Return the three frames (``minute_bars``, ``predictions``, ``context``)."""
    rng = np.random.default_rng(seed)
    assets = asset_ids()
    n = len(assets)
    sessions = nyse_sessions(HISTORY_START, WINDOW_END)
    days = [s[0] for s in sessions]
    window = [s for s in sessions if s[0] >= WINDOW_START]
    n_hist = len(sessions) - len(window)

    # VIX: a log-AR(1) around 15.5 plus a spike in the middle of the window.
    x = np.zeros(len(days))
    shocks = rng.normal(0.0, 0.06, len(days))
    for t in range(1, len(days)):
        x[t] = 0.85 * x[t - 1] + shocks[t]
    vix = np.round(15.5 * np.exp(x) + np.array([VIX_SPIKE.get(d, 0.0) for d in days]), 2)
    vol_scale = np.concatenate(([1.0], vix[:-1] / 16.0))  # yesterday's VIX sets today's risk

    # Assets: start price, daily idiosyncratic volatility, market beta, minute volume.
    price = _cents(np.exp(rng.uniform(np.log(15.0), np.log(400.0), n)))
    sigma = rng.uniform(0.010, 0.030, n)
    beta = rng.uniform(0.6, 1.4, n)
    base_volume = rng.uniform(5.0, 50.0, n)  # hundreds of shares per minute

    # Daily bars before the window (only for the ATR seed).
    d_open, d_high, d_low, d_close = (np.empty((len(days), n)) for _ in range(4))
    prev = price
    for t in range(n_hist):
        market = rng.normal(0.0003, 0.009 * vol_scale[t])
        ret = beta * market + rng.normal(0.0, sigma * vol_scale[t])
        o = _cents(prev * np.exp(rng.normal(0.0, 0.25 * sigma)))
        c = _cents(o * np.exp(ret))
        h, lo = _bar_range(rng, o, c, 0.4 * sigma * o)
        d_open[t], d_high[t], d_low[t], d_close[t] = o, h, lo, c
        prev = c

    # Minute bars of the window; the daily alpha drives the drift after 09:45.
    alpha = rng.normal(size=(len(window), n))
    noise = rng.normal(size=(len(window), n))
    pred = PRED_CORRELATION * alpha + np.sqrt(1.0 - PRED_CORRELATION**2) * noise
    stamps: list[np.ndarray] = []
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("open", "high", "low", "close", "vol")}
    for k, (day, opens, close) in enumerate(window):
        t = n_hist + k
        minutes = int((close - opens) / MINUTE)
        ts = np.array([opens + j * MINUTE for j in range(minutes)], dtype="datetime64[us]")
        after = ts >= np.datetime64(datetime.combine(day, PREDICTION_TIME) + MINUTE, "us")
        drift = np.outer(after / after.sum(), ALPHA_PER_DAY * alpha[k])
        scale = vol_scale[t] / np.sqrt(390.0)
        market = rng.normal(0.0, 0.009 * scale, (minutes, 1))
        ret = drift + beta * market + rng.normal(0.0, 1.0, (minutes, n)) * sigma * scale
        first = _cents(prev * np.exp(rng.normal(0.0, 0.25 * sigma)))
        c = _cents(first * np.exp(np.cumsum(ret, axis=0)))
        o = np.vstack([first, c[:-1]])
        h, lo = _bar_range(rng, o, c, 0.3 * sigma * scale * o)
        u_shape = 1.0 + 1.5 * ((np.arange(minutes) - minutes / 2) / (minutes / 2)) ** 2
        lots = base_volume * u_shape[:, None] * rng.lognormal(0.0, 0.5, (minutes, n))
        stamps.append(ts)
        volume = np.maximum(np.round(lots), 1.0) * 100
        for key, arr in zip(cols, (o, h, lo, c, volume), strict=True):
            cols[key].append(arr)
        d_open[t], d_high[t], d_low[t], d_close[t] = o[0], h.max(0), lo.min(0), c[-1]
        prev = c[-1]

    ts_all = np.concatenate(stamps)
    minute_bars = pl.DataFrame(
        {
            "timestamp": np.repeat(ts_all, n),
            "asset_id": np.tile(np.array(assets), ts_all.shape[0]),
            "open": np.concatenate(cols["open"]).ravel(),
            "high": np.concatenate(cols["high"]).ravel(),
            "low": np.concatenate(cols["low"]).ravel(),
            "close": np.concatenate(cols["close"]).ravel(),
            "volume": np.concatenate(cols["vol"]).ravel().astype(np.int64),
        }
    )

    # ATR of session t: mean true range of the ATR_SESSIONS sessions before t.
    prev_close = np.vstack([d_open[:1], d_close[:-1]])
    true_range = np.maximum.reduce(
        [d_high - d_low, np.abs(d_high - prev_close), np.abs(d_low - prev_close)]
    )
    atr = np.full((len(days), n), np.nan)
    for t in range(ATR_SESSIONS + 1, len(days)):
        atr[t] = true_range[t - ATR_SESSIONS : t].mean(axis=0)

    window_days = [d for d, _, _ in window]
    predictions = pl.DataFrame(
        {
            "timestamp": np.repeat(_stamps(window_days, time()), n),
            "asset_id": np.tile(np.array(assets), len(window)),
            "pred": np.round(pred.ravel(), 4),
            "atr": np.round(atr[n_hist:].ravel(), 4),
            "available_at": np.repeat(_stamps(window_days, PREDICTION_TIME), n),
        }
    )
    context = pl.DataFrame(
        {
            "timestamp": _stamps(days, time()),
            "vix": vix,
            "available_at": _stamps(days, VIX_TIME),
        }
    )
    return {"minute_bars": minute_bars, "predictions": predictions, "context": context}


def write(frames: dict[str, pl.DataFrame], directory: Path = DATA_DIR) -> list[Path]:
    """Write the frames as zstd-compressed Parquet files and return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, frame in frames.items():
        path = directory / FILES[key]
        frame.write_parquet(path, compression="zstd", compression_level=19, statistics=False)
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with ``--check`` compare) the data files; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DATA_DIR, help=f"directory ({DATA_DIR})")
    parser.add_argument("--check", action="store_true", help="compare with the files instead")
    args = parser.parse_args(argv)
    frames = make_frames()
    if args.check:
        same = {k: pl.read_parquet(args.out / FILES[k]).equals(f) for k, f in frames.items()}
        print(", ".join(f"{k}: {'same' if ok else 'DIFFERENT'}" for k, ok in same.items()))
        return 0 if all(same.values()) else 1
    for path in write(frames, args.out):
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
