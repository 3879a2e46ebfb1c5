"""Single-asset ML strategy on generated daily bars with a prediction and a confidence.

Run from anywhere::

    python examples/03_single_asset_ml/run.py
    python examples/03_single_asset_ml/run.py --days 750 --seed 11 --output out/single
"""

from __future__ import annotations

import argparse
import math
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
    PercentageCommission,
    PercentageSlippage,
    PolarsDataFeed,
    SimulationBroker,
)

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from strategy import SingleAssetML  # noqa: E402

ASSET = "SYN"
SIGNAL_BETA = 0.0015  # next-day return per unit of the (unit-variance) feature


def generate_data(days: int = 504, seed: int = 5, start: date = date(2022, 1, 3)) -> pl.DataFrame:
    """Return generated daily bars of one asset with ``pred`` and ``confidence`` columns.

    The data-generating process: a persistent feature ``x`` (AR(1), unit variance) is
    observed at each close and predicts the next day's return,
    ``r[t+1] = 0.0002 + SIGNAL_BETA * x[t] * k[t] + sigma[t+1] * noise``, where a hidden
    calm/stress regime sets ``sigma`` (1 % or 3.5 % a day) and ``k`` (1 when calm, 0.2
    under stress: the feature predicts less in turbulent markets).

    The "model" sees ``x`` with measurement noise: ``pred[t] = SIGNAL_BETA * (x[t] +
    0.8 * e[t])``, and reports ``confidence[t] = tanh(|pred[t]| / (2 * SIGNAL_BETA))``.
    Both use only what is known at the close of ``t``; ``pred[t]`` is a forecast of the
    return from close ``t`` to close ``t + 1``.

    Parameters
    ----------
    days : int
        Number of weekdays (about 252 a year).
    seed : int
        Seed of the numpy generator; the same seed gives the same frame.
    start : date
        First day (weekends are skipped).
    """
    rng = np.random.default_rng(seed)
    stamps: list[date] = []
    day = start
    while len(stamps) < days:
        if day.weekday() < 5:
            stamps.append(day)
        day += timedelta(days=1)
    stress = np.zeros(days, dtype=bool)
    for t in range(1, days):
        stay = 0.95 if stress[t - 1] else 0.985
        stress[t] = stress[t - 1] if rng.random() < stay else not stress[t - 1]
    sigma = np.where(stress, 0.035, 0.010)
    x = np.zeros(days)
    for t in range(1, days):
        x[t] = 0.9 * x[t - 1] + math.sqrt(1 - 0.81) * rng.normal()
    edge = np.concatenate(([0.0], SIGNAL_BETA * x[:-1] * np.where(stress[:-1], 0.2, 1.0)))
    ret = 0.0002 + edge + sigma * rng.normal(size=days)
    close = np.round(50.0 * np.exp(np.cumsum(ret)), 2)
    prev = np.concatenate(([50.0], close[:-1]))
    open_ = np.round(prev * np.exp(0.2 * sigma * rng.normal(size=days)), 2)
    wiggle = 0.5 * sigma * prev
    high = np.round(np.maximum(open_, close) + np.abs(rng.normal(size=days)) * wiggle, 2)
    low = np.round(np.minimum(open_, close) - np.abs(rng.normal(size=days)) * wiggle, 2)
    pred = SIGNAL_BETA * (x + 0.8 * rng.normal(size=days))
    return pl.DataFrame(
        {
            "timestamp": stamps,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.integers(200_000, 2_000_000, days),
            "pred": pred,
            "confidence": np.tanh(np.abs(pred) / (2 * SIGNAL_BETA)),
        }
    ).with_columns(pl.col("timestamp").cast(pl.Datetime("us")))


def main(argv: Sequence[str] | None = None) -> BacktestResult:
    """Run the example and return its result.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (see ``--help``); ``sys.argv[1:]`` when omitted.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=504, help="weekdays of data (504)")
    parser.add_argument("--seed", type=int, default=5, help="generator seed (5)")
    parser.add_argument("--output", type=Path, default=None, help="write the result files here")
    args = parser.parse_args(argv)

    bars = generate_data(args.days, args.seed)
    feed = PolarsDataFeed(bars, asset_id=ASSET, signal_columns=["pred", "confidence"])
    broker = SimulationBroker(
        initial_cash=100_000,
        commission=PercentageCommission(0.0005),
        slippage=PercentageSlippage(0.0005),
        cash_policy="resize",
    )
    strategy = SingleAssetML()
    result = BacktestEngine(feed, strategy, broker).run()

    print(result.summary())
    trades = result.trades_df
    print(trades.group_by("exit_reason").agg(pl.len().alias("trades"), pl.col("pnl_net").sum()))
    print(f"entries blocked by the volatility filter: {strategy.blocked_by_volatility}")
    if args.output is not None:
        print(f"results written to {result.to_parquet(args.output)}")
    return result


def test_args() -> list[str]:
    """Return arguments for a fast run (used by the test suite)."""
    out = Path(tempfile.gettempdir()) / "ml4t_examples" / "03_single_asset_ml"
    return ["--days", "300", "--output", str(out)]


if __name__ == "__main__":
    main()
