"""Multi-asset ML rotation with a regime filter, on the data embedded in the package.

Run from anywhere::

    python examples/02_multi_asset_ml/run.py
    python examples/02_multi_asset_ml/run.py --start 2010-01-01 --output out/rotation
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import polars as pl

from ml4t.backtest import (
    BacktestEngine,
    BacktestResult,
    Context,
    PercentageCommission,
    PercentageSlippage,
    PolarsDataFeed,
    SimulationBroker,
    load_demo_data,
)

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from strategy import RegimeRotationStrategy, add_predictions, market_regime  # noqa: E402


def main(argv: Sequence[str] | None = None) -> BacktestResult:
    """Run the rotation backtest and return its result.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (see ``--help``); ``sys.argv[1:]`` when omitted.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=datetime.fromisoformat, help="first date (YYYY-MM-DD)")
    parser.add_argument("--end", type=datetime.fromisoformat, help="last date (YYYY-MM-DD)")
    parser.add_argument("--window", type=int, default=100, help="regime moving-average bars")
    parser.add_argument("--output", type=Path, default=None, help="write the result files here")
    args = parser.parse_args(argv)

    bars = load_demo_data()  # NVDA, ORCL, YHOO daily, 2005-2014
    # Signals and regime are computed on the full history (each value uses only data up
    # to its own timestamp), then the backtest window is cut.
    data = add_predictions(bars)
    regime = market_regime(bars, window=args.window)
    if args.start is not None:
        data = data.filter(pl.col("timestamp") >= args.start)
    if args.end is not None:
        data = data.filter(pl.col("timestamp") <= args.end)

    feed = PolarsDataFeed(data, signal_columns=["prediction"])
    broker = SimulationBroker(
        initial_cash=100_000,
        commission=PercentageCommission(0.0005),
        slippage=PercentageSlippage(0.0002),
        cash_policy="resize",
    )
    strategy = RegimeRotationStrategy()
    engine = BacktestEngine(feed, strategy, broker, context=Context(regime))
    result = engine.run()

    print(result.summary())
    print(f"rebalances: {strategy.rebalances}")
    trades = result.trades_df
    print(
        trades.group_by("asset_id")
        .agg(pl.len().alias("trades"), pl.col("pnl_net").sum().round(2))
        .sort("asset_id")
    )
    days = regime.join(data.select("timestamp").unique(), on="timestamp")
    print(f"risk-on days: {days['risk_on'].mean():.0%} of the window (cash otherwise)")
    # Context values at each trade's decision bar are recorded with the trade.
    print(trades.select("asset_id", "entry_timestamp", "entry_context_ew_index", "pnl_net").tail(3))
    if args.output is not None:
        print(f"results written to {result.to_parquet(args.output)}")
    return result


def test_args() -> list[str]:
    """Return arguments for a fast run (used by the test suite)."""
    out = Path(tempfile.gettempdir()) / "ml4t_examples" / "02_multi_asset_ml"
    return ["--start", "2012-01-01", "--output", str(out)]


if __name__ == "__main__":
    main()
