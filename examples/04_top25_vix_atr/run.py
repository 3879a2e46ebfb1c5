"""Top-25 by daily ML prediction with a VIX filter and ATR sizing, on minute bars.

The backtest is described by ``config.yaml`` beside this file; this script runs it the
way ``ml4t-backtest run`` does (resolved config and run manifest written with the
results) and prints what the strategy decided. Run from anywhere::

    python examples/04_top25_vix_atr/run.py
    python examples/04_top25_vix_atr/run.py --end 2023-11-17 --output out/top25
    python examples/04_top25_vix_atr/run.py --set strategy.params.top_k=10
    ml4t-backtest run examples/04_top25_vix_atr/config.yaml     # the same backtest
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import polars as pl

from ml4t.backtest import BacktestResult, run_config

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from strategy import Top25VixAtr  # noqa: E402

CONFIG = HERE / "config.yaml"


def main(argv: Sequence[str] | None = None) -> BacktestResult:
    """Run the config (with overrides) and return the result.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (see ``--help``); ``sys.argv[1:]`` when omitted.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=CONFIG, help=f"config ({CONFIG.name})")
    parser.add_argument("--start", type=date.fromisoformat, help="first session (YYYY-MM-DD)")
    parser.add_argument("--end", type=date.fromisoformat, help="last session (YYYY-MM-DD)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, as `ml4t-backtest run --set` (repeatable)",
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="output directory (default: results/)"
    )
    args = parser.parse_args(argv)

    overrides = list(args.overrides)
    if args.start is not None:
        overrides.append(f"backtest.start_date={args.start.isoformat()}")
    if args.end is not None:
        overrides.append(f"backtest.end_date={args.end.isoformat()}")
    # The strategy object is built here from the config's parameters, so its decision log
    # can be printed afterwards; `ml4t-backtest run` imports it from the config instead.
    from ml4t.backtest import load_config

    params = load_config(args.config, overrides=overrides).strategy
    strategy = Top25VixAtr(**(params.params if params is not None else {}))
    result, paths = run_config(args.config, strategy, args.output, overrides=overrides)

    print(result.summary())
    decisions = pl.DataFrame(
        {
            "decided_at": [d["timestamp"] for d in strategy.decisions],
            "vix_known": [d["vix"] for d in strategy.decisions],
            "gross": [d["gross"] for d in strategy.decisions],
            "assets": [len(d["weights"]) for d in strategy.decisions],
        }
    )
    print("rebalances (VIX as published by the previous evening):")
    with pl.Config(tbl_rows=-1):
        print(decisions)
    if paths:
        print(f"results, resolved_config.yaml and run_manifest.json written to {paths[0].parent}")
    return result


def test_args() -> list[str]:
    """Return arguments for a fast run (used by the test suite): three sessions."""
    out = Path(tempfile.gettempdir()) / "ml4t_examples" / "04_top25_vix_atr"
    return ["--end", "2023-11-15", "--output", str(out)]


if __name__ == "__main__":
    main()
