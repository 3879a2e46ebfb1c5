"""Quick start: backtest a polars-computed signal on NVIDIA daily bars.

Run from anywhere::

    python examples/01_quickstart/run.py
    python examples/01_quickstart/run.py --start 2010-01-01 --output out/quickstart
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
    PercentageCommission,
    PolarsDataFeed,
    SimulationBroker,
    read_ohlcv_csv,
)

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from strategy import MLStrategy, add_signal  # noqa: E402

# The real daily files are part of the repository: <repo>/validation/real_data/.
DEFAULT_DATA = HERE.parents[1] / "validation" / "real_data" / "nvda_daily_yahoo.csv"


def load_bars(path: Path | None) -> pl.DataFrame:
    """Return NVDA daily bars from ``path`` (default: the repository's real-data CSV).

    Without ``path``, falls back to the NVDA bars embedded in the package (2005-2014)
    when the example runs outside a repository checkout (copied elsewhere).
    """
    if path is not None or DEFAULT_DATA.is_file():
        return read_ohlcv_csv(path or DEFAULT_DATA)
    from ml4t.backtest import load_demo_data

    print("note: validation/real_data/ not found; using the embedded NVDA bars (2005-2014)")
    return load_demo_data().filter(pl.col("asset_id") == "NVDA").drop("asset_id")


def main(argv: Sequence[str] | None = None) -> BacktestResult:
    """Run the quick start and return its result.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (see ``--help``); ``sys.argv[1:]`` when omitted.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        help="Yahoo daily CSV (default: validation/real_data/nvda_daily_yahoo.csv)",
    )
    parser.add_argument("--start", type=datetime.fromisoformat, help="first date (YYYY-MM-DD)")
    parser.add_argument("--end", type=datetime.fromisoformat, help="last date (YYYY-MM-DD)")
    parser.add_argument("--output", type=Path, default=None, help="write the result files here")
    args = parser.parse_args(argv)

    bars = add_signal(load_bars(args.data))  # compute on all history, then cut the window
    if args.start is not None:
        bars = bars.filter(pl.col("timestamp") >= args.start)
    if args.end is not None:
        bars = bars.filter(pl.col("timestamp") <= args.end)
    feed = PolarsDataFeed(bars, asset_id="NVDA", signal_columns=["ml_pred"])
    broker = SimulationBroker(initial_cash=100_000, commission=PercentageCommission(0.001))
    result = BacktestEngine(feed, MLStrategy(), broker).run()

    print(result.summary())
    print(
        result.trades_df.select(
            "entry_timestamp", "exit_timestamp", "entry_price", "exit_price", "pnl_net"
        ).tail(5)
    )
    if args.output is not None:
        print(f"results written to {result.to_parquet(args.output)}")
    return result


def test_args() -> list[str]:
    """Return arguments for a fast run (used by the test suite)."""
    out = Path(tempfile.gettempdir()) / "ml4t_examples" / "01_quickstart"
    return ["--start", "2012-01-01", "--output", str(out)]


if __name__ == "__main__":
    main()
