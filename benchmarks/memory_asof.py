"""Memory of context and low-frequency signals: kept separate vs joined onto every bar.

Run from the repository root::

    python -m benchmarks.memory_asof                      # 250 assets x 20 sessions of minutes
    python -m benchmarks.memory_asof --assets 100 --sessions 5

The same data runs two ways, each in a fresh subprocess so peak RSS is its own:

- ``separate``: ``PolarsDataFeed(bars, signal_data=predictions)`` (daily predictions with
  ``available_at``) and ``Context(vix_frame)``: stored at their own frequency, aligned as
  of each bar by the engine;
- ``joined``: the predictions joined onto the bars up front with ``align_asof`` and the
  context columns repeated on every row, then ``PolarsDataFeed(joined)``.

The strategy reads every signal and the context at every bar, so both runs deliver the
same values (the script checks that they sum to the same totals). Printed per mode: the
bytes of the signal/context data the engine holds, peak RSS, wall time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

_ROOT = Path(__file__).resolve().parent.parent
_PREFIX = "MEMORY_RESULT "
SIGNALS = ("pred", "atr", "confidence")
CONTEXT = ("vix", "spy", "rate")


def make_data(assets: int, sessions: int, seed: int = 3) -> tuple[pl.DataFrame, ...]:
    """Return (minute bars, daily predictions with available_at, daily context)."""
    rng = np.random.default_rng(seed)
    days = [datetime(2024, 1, 2) + timedelta(days=d) for d in range(sessions * 7 // 5 + 7)]
    days = [d for d in days if d.weekday() < 5][:sessions]
    minutes = np.array(
        [d + timedelta(hours=9, minutes=30 + m) for d in days for m in range(390)],
        dtype="datetime64[us]",
    )
    names = [f"S{i:03d}" for i in range(assets)]
    n = minutes.shape[0]
    close = 50 * np.exp(np.cumsum(rng.normal(0, 5e-4, (n, assets)), axis=0))
    bars = pl.DataFrame(
        {
            "timestamp": np.repeat(minutes, assets),
            "asset_id": np.tile(names, n),
            "open": close.ravel(),
            "high": close.ravel() * 1.001,
            "low": close.ravel() * 0.999,
            "close": close.ravel(),
            "volume": np.full(n * assets, 1000.0),
        }
    )
    stamps = np.array(days, dtype="datetime64[us]")
    preds = pl.DataFrame(
        {
            "timestamp": np.repeat(stamps, assets),
            "asset_id": np.tile(names, len(days)),
            "available_at": np.repeat(stamps + np.timedelta64(9 * 60 + 45, "m"), assets),
            **{s: rng.normal(size=len(days) * assets) for s in SIGNALS},
        }
    )
    context = pl.DataFrame(
        {
            "timestamp": stamps,
            "available_at": stamps + np.timedelta64(16 * 60 + 15, "m"),
            **{c: rng.normal(20, 3, len(days)) for c in CONTEXT},
        }
    )
    return bars, preds, context


def _peak_rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _worker(mode: str, assets: int, sessions: int) -> dict[str, Any]:
    from ml4t.backtest import BacktestEngine, Context, PolarsDataFeed, Strategy, align_asof

    bars, preds, context = make_data(assets, sessions)
    base_rss = _peak_rss_mib()

    class ReadAll(Strategy):
        def __init__(self, context_from_rows: bool) -> None:
            self.total = 0.0
            self.rows = context_from_rows

        def on_market_data(self, event: Any, ctx: Any) -> None:
            s = event.signals
            c = event.indicators if self.rows else event.context
            for k in SIGNALS:
                v = s[k]
                if v == v:
                    self.total += v
            for k in CONTEXT:
                v = c[k]
                if v == v:
                    self.total += v

    t0 = time.perf_counter()
    if mode == "separate":
        feed = PolarsDataFeed(bars, signal_data=preds, signal_columns=list(SIGNALS))
        ctx = Context(context)
    else:  # everything joined onto the bars: one value per bar and asset
        joined = align_asof(bars, preds)
        wide = Context(context).as_frame(joined["timestamp"].unique(maintain_order=True))
        joined = joined.join(wide, on="timestamp", how="left", maintain_order="left")
        feed = PolarsDataFeed(joined, signal_columns=list(SIGNALS), indicator_columns=list(CONTEXT))
        ctx = Context()
        del joined, wide
    del bars, preds
    strategy = ReadAll(context_from_rows=mode == "joined")
    engine = BacktestEngine(feed, strategy, context=ctx)
    engine.run()
    held = _held_bytes(engine, mode)
    return {
        "mode": mode,
        "rows": int(sum(b.n_rows for b in engine.history._blocks)),
        "held_mib": held / 2**20,
        "peak_rss_mib": _peak_rss_mib(),
        "rss_before_mib": base_rss,
        "seconds": time.perf_counter() - t0,
        "checksum": strategy.total,
    }


def _held_bytes(engine: Any, mode: str) -> int:
    if mode == "separate":
        table = engine.clock.asof
        return int(table.nbytes + engine.context.nbytes)
    cols = engine.feeds[0]._cols
    return int(sum(cols[c].nbytes for c in (*SIGNALS, *CONTEXT)))


def main(argv: list[str] | None = None) -> None:
    """Run both modes in subprocesses and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=250)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--worker", choices=("separate", "joined"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(_PREFIX + json.dumps(_worker(args.worker, args.assets, args.sessions)))
        return
    results = []
    for mode in ("separate", "joined"):
        cmd = [sys.executable, "-m", "benchmarks.memory_asof", "--worker", mode]
        cmd += ["--assets", str(args.assets), "--sessions", str(args.sessions)]
        out = subprocess.run(cmd, cwd=_ROOT, capture_output=True, text=True, check=True).stdout
        line = next(ln for ln in out.splitlines() if ln.startswith(_PREFIX))
        results.append(json.loads(line[len(_PREFIX) :]))
    sep, joined = results
    print(f"{args.assets} assets x {args.sessions} sessions x 390 minutes = {sep['rows']:,} bars")
    print(f"{'mode':<10}{'held MiB':>10}{'peak RSS MiB':>14}{'seconds':>9}")
    for r in results:
        print(
            f"{r['mode']:<10}{r['held_mib']:>10.2f}{r['peak_rss_mib']:>14.1f}{r['seconds']:>9.2f}"
        )
    same = np.isclose(sep["checksum"], joined["checksum"], rtol=1e-9)
    print(f"same values delivered: {bool(same)}")
    print(
        f"kept separate: {joined['held_mib'] - sep['held_mib']:.1f} MiB less signal/context "
        f"data, {joined['peak_rss_mib'] - sep['peak_rss_mib']:.1f} MiB lower peak RSS"
    )


if __name__ == "__main__":
    main()
