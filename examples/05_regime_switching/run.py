"""Regime switching with context: equity, bonds and gold on generated daily data.

Run from anywhere::

    python examples/05_regime_switching/run.py
    python examples/05_regime_switching/run.py --days 2500 --seed 2 --output out/regimes
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from ml4t.backtest import (
    BacktestEngine,
    BacktestResult,
    Context,
    PercentageCommission,
    PercentageSlippage,
    PolarsDataFeed,
    SimulationBroker,
)

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from strategy import RegimeSwitching  # noqa: E402

RATE_WINDOW = 60  # sessions in rate_change


def _weekdays(start: date, n: int) -> list[date]:
    out: list[date] = []
    day = start
    while len(out) < n:
        if day.weekday() < 5:
            out.append(day)
        day += timedelta(days=1)
    return out


def generate_data(
    days: int = 1260, seed: int = 1, start: date = date(2019, 1, 2)
) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """Return ``(bars, context frames)`` generated from a hidden calm/stress regime.

    A hidden Markov chain switches between calm and stress (and, independently, between
    steady and rising rates). Under stress the equity index falls and is volatile, the
    VIX-like series climbs towards 30, yields fall (bonds gain) and gold drifts up. The
    strategy never sees the hidden state, only the context:

    - ``vix``: the VIX-like level, known at each day's close (stamped with the day);
    - ``risk_off``: a published regime flag: 1.0 once the 5-day mean of ``vix`` is above
      24, back to 0.0 when it is below 18 (null for the first 4 days), known at the close;
    - ``rate`` and ``rate_change`` (over 60 sessions, percentage points) of the 10-year
      yield, published after the close: ``available_at`` is the next calendar day, so a
      day's value is first usable in the next session.

    Parameters
    ----------
    days : int
        Number of weekdays (about 252 a year).
    seed : int
        Seed of the numpy generator.
    start : date
        First day.

    Returns
    -------
    (polars.DataFrame, dict of polars.DataFrame)
        Long bars (``timestamp, asset_id, open, high, low, close, volume``) and
        ``{"vix": ..., "risk_off": ..., "rate": ..., "rate_change": ...}``, each with a
        ``timestamp`` and one value column (and ``available_at`` for the rates).
    """
    rng = np.random.default_rng(seed)
    stamps = _weekdays(start, days)
    stress = np.zeros(days, dtype=bool)
    rising = np.zeros(days, dtype=bool)
    for t in range(1, days):
        stay = 0.96 if stress[t - 1] else 0.99
        stress[t] = stress[t - 1] if rng.random() < stay else not stress[t - 1]
        rising[t] = rising[t - 1] if rng.random() < 0.992 else not rising[t - 1]
    vix = np.empty(days)
    vix[0] = 14.0
    for t in range(1, days):
        target = 30.0 if stress[t] else 14.0
        vix[t] = max(9.0, vix[t - 1] + 0.3 * (target - vix[t - 1]) + rng.normal(0.0, 1.2))
    rate_step = rng.normal(0.0, 0.04, days) + np.where(rising, 0.012, 0.0)
    rate_step -= np.where(stress, 0.02, 0.0)  # flight to quality
    rate = 2.0 + np.cumsum(rate_step)
    returns = {
        "EQUITY": np.where(stress, -0.0015, 0.0006)
        + np.where(stress, 0.022, 0.009) * rng.normal(size=days),
        "BONDS": 0.0001 - 0.07 * rate_step + rng.normal(0.0, 0.002, days),
        "GOLD": np.where(stress, 0.0012, 0.0001) + 0.009 * rng.normal(size=days),
    }
    frames = []
    for k, (asset, ret) in enumerate(returns.items()):
        close = np.round(100.0 * (k + 1) * np.exp(np.cumsum(ret)), 2)
        prev = np.concatenate(([close[0]], close[:-1]))
        open_ = np.round(prev * np.exp(rng.normal(0.0, 0.002, days)), 2)
        wiggle = np.abs(ret).mean() * prev
        frames.append(
            pl.DataFrame(
                {
                    "timestamp": stamps,
                    "asset_id": asset,
                    "open": open_,
                    "high": np.round(np.maximum(open_, close) + wiggle * rng.random(days), 2),
                    "low": np.round(np.minimum(open_, close) - wiggle * rng.random(days), 2),
                    "close": close,
                    "volume": rng.integers(100_000, 1_000_000, days),
                }
            )
        )
    bars = (
        pl.concat(frames)
        .with_columns(pl.col("timestamp").cast(pl.Datetime("us")))
        .sort("timestamp", "asset_id")
    )
    ts = pl.Series("timestamp", stamps).cast(pl.Datetime("us"))
    mean5 = pl.Series(vix).rolling_mean(5).to_numpy()
    flag = np.full(days, np.nan)
    for t in range(4, days):
        previous = 0.0 if t == 4 else flag[t - 1]
        flag[t] = 1.0 if mean5[t] > 24 else 0.0 if mean5[t] < 18 else previous
    published = ts.dt.offset_by("1d").alias("available_at")
    change = np.full(days, np.nan)
    change[RATE_WINDOW:] = rate[RATE_WINDOW:] - rate[:-RATE_WINDOW]
    context = {
        "vix": pl.DataFrame([ts, pl.Series("vix", np.round(vix, 2))]),
        "risk_off": pl.DataFrame([ts, pl.Series("risk_off", flag)]),
        "rate": pl.DataFrame([ts, pl.Series("rate", np.round(rate, 3)), published]),
        "rate_change": pl.DataFrame([ts, pl.Series("rate_change", change), published]),
    }
    return bars, context


def main(argv: Sequence[str] | None = None) -> BacktestResult:
    """Run the example and return its result.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (see ``--help``); ``sys.argv[1:]`` when omitted.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=1260, help="weekdays of data (1260)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (1)")
    parser.add_argument("--output", type=Path, default=None, help="write the result files here")
    args = parser.parse_args(argv)

    bars, context = generate_data(args.days, args.seed)
    feed = PolarsDataFeed(bars)
    broker = SimulationBroker(
        initial_cash=100_000,
        commission=PercentageCommission(0.0002),
        slippage=PercentageSlippage(0.0001),
        cash_policy="resize",
    )
    strategy = RegimeSwitching()
    # One frame per value: the rates carry their own availability times.
    engine = BacktestEngine(feed, strategy, broker, context=Context(context, max_staleness="5d"))
    result = engine.run()

    print(result.summary())
    switches = pl.DataFrame(strategy.switches, schema=["decided_at", "regime", "vix"], orient="row")
    print(f"regime switches: {switches.height}")
    print(switches.group_by("regime").agg(pl.len().alias("times")).sort("regime"))
    closes = bars.group_by("asset_id").agg(
        (pl.col("close").last() / pl.col("close").first() - 1).alias("buy_and_hold")
    )
    print(closes.sort("asset_id"))
    if args.output is not None:
        print(f"results written to {result.to_parquet(args.output)}")
    return result


def test_args() -> list[str]:
    """Return arguments for a fast run (used by the test suite)."""
    out = Path(tempfile.gettempdir()) / "ml4t_examples" / "05_regime_switching"
    return ["--days", "500", "--output", str(out)]


if __name__ == "__main__":
    main()
