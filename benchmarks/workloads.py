"""Benchmark workloads: W1 here, W2 and W3 in :mod:`benchmarks.w2` / :mod:`benchmarks.w3`.

Workload W1 (see ``benchmarks/README.md``): one asset, ``n`` one-minute bars, one signal
column in {-1, 0, +1}. Enter long ``QUANTITY`` units with a market order when the signal
is +1 and the position is flat; close the position with a market order when the signal is
-1 and the position is long. No costs. Orders placed on bar *t* fill at bar *t+1*'s open.
ml4t runs it as a per-bar ``Strategy`` (``ml4t-bar``) and as a declarative
``SignalStrategy`` (``ml4t-signal``, compiled with numba).

Every runner is split into an untimed ``prepare`` step (turning the generated numpy
arrays into the framework's natural input: a polars frame for ml4t, plain arrays for
VectorBT and Backtrader) and a timed ``execute`` step that starts from that input, builds
whatever the framework needs (feed, pandas objects, Cerebro), runs the backtest and reads
its final value. Framework imports happen before any timing.
"""

from __future__ import annotations

from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np

from . import w2, w3
from .common import (
    INITIAL_CASH,
    Outcome,
    Runner,
    Size,
    Target,
    Workload,
    bt_version,
    load_arrays,
    ml4t_metadata,
    ml4t_outcome,
    ml4t_version,
    regime_signal,
    save_arrays,
    vbt_outcome,
    vbt_version,
)

__all__ = [
    "INITIAL_CASH",
    "QUANTITY",
    "RUNNERS",
    "SEED",
    "W1",
    "WORKLOADS",
    "generate_bars",
    "slice_bars",
]

SEED = 42
QUANTITY = 100.0
START = np.datetime64("2024-01-01T00:00", "ns")

# Random-walk and signal parameters (chosen for ~3,000 round trips per million bars).
_SIGMA = 0.0005  # per-minute log-return volatility
_PHI = 0.99  # AR(1) coefficient of the smoothed noise behind the signal
_THRESHOLD = 0.5  # |smoothed noise| above this -> signal +1 / -1, else 0


# --- data -------------------------------------------------------------------------------
def generate_bars(n: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """Return ``n`` synthetic one-minute bars as numpy arrays.

    A geometric random walk for the close; open = previous close times a small gap;
    high/low extend max/min(open, close) by a half-normal amount, so OHLC is consistent
    (``low <= open, close <= high``). ``signal`` is an AR(1)-smoothed Gaussian noise
    thresholded at +-0.5 (unit variance), so it stays in one state for a while and changes
    a few thousand times per million bars. Timestamps are consecutive minutes (24/7, like
    crypto) starting 2024-01-01 00:00 UTC, as naive ``datetime64[ns]`` values in UTC.

    Arrays are drawn from one random stream in turn, so ``generate_bars(k)`` is not a
    prefix of ``generate_bars(n)``: slice a longer series (:func:`slice_bars`) when two
    runs must see the same bars.
    """
    if n < 2:
        raise ValueError(f"need at least 2 bars, got {n}")
    rng = np.random.default_rng(seed)
    log_ret = rng.normal(0.0, _SIGMA, n)
    close = 100.0 * np.exp(np.cumsum(log_ret))
    prev_close = np.concatenate(([100.0], close[:-1]))
    open_ = prev_close * np.exp(rng.normal(0.0, 0.2 * _SIGMA, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.5 * _SIGMA, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.5 * _SIGMA, n)))
    volume = rng.integers(100, 10_000, n).astype(np.float64)
    signal = regime_signal(rng.standard_normal(n), _PHI, _THRESHOLD)
    timestamp = START + np.arange(n, dtype=np.int64).astype("timedelta64[m]")
    return {
        "timestamp": timestamp.astype("datetime64[ns]"),
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
        "signal": signal,
    }


def slice_bars(data: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """Return the first ``n`` bars of ``data``."""
    return {k: v[:n] for k, v in data.items()}


# --- data files -------------------------------------------------------------------------
_NAMES = ("timestamp", "open", "high", "low", "close", "volume", "signal")


def materialise(data_dir: Path, full: Size, others: list[Size]) -> None:
    """Generate ``full[1]`` bars once and save them and their prefixes."""
    data = generate_bars(full[1])
    for size in [full, *others]:
        save_arrays(data_dir, "w1", size, slice_bars(data, size[1]))


def _load(data_dir: Path, size: Size) -> dict[str, np.ndarray]:
    return load_arrays(data_dir, "w1", size, _NAMES)


# --- ml4t -------------------------------------------------------------------------------
def _ml4t_prepare(data_dir: Path, size: Size) -> Any:
    import polars as pl

    return pl.DataFrame(_load(data_dir, size))  # naive datetime[ns] timestamps, in UTC


def _ml4t_run(frame: Any, strategy: Any) -> tuple[Any, dict[str, float]]:
    from ml4t.backtest import BacktestEngine, PolarsDataFeed, SimulationBroker

    t0 = perf_counter()
    feed = PolarsDataFeed(frame, asset_id="SYN", signal_columns=["signal"])
    t1 = perf_counter()
    broker = SimulationBroker(initial_cash=INITIAL_CASH)  # next_bar_open, no costs
    result = BacktestEngine(feed, strategy, broker).run()
    _ = result.final_equity
    t2 = perf_counter()
    return result, {"feed": t1 - t0, "engine_run": t2 - t1}


def _ml4t_bar(frame: Any) -> tuple[Any, dict[str, float]]:
    from ml4t.backtest import Strategy

    class SignalFollower(Strategy):
        """Per-bar strategy: read one signal and the position, trade on +-1."""

        def on_market_data(self, event: Any, context: Any) -> None:
            signal = event.signals["signal"]
            asset = event.asset_id
            if signal == 1.0:
                if self.get_position(asset) == 0:
                    self.buy(asset, QUANTITY)
            elif signal == -1.0 and self.get_position(asset) > 0:
                self.close_position(asset)

    return _ml4t_run(frame, SignalFollower())


def _ml4t_signal(frame: Any) -> tuple[Any, dict[str, float]]:
    from ml4t.backtest import FixedSizer, Rule, SignalStrategy

    strategy = SignalStrategy(
        entry_rules=[Rule.signal_above("signal", 0.5), Rule.not_in_position()],
        exit_rules=[Rule.signal_below("signal", -0.5)],
        position_sizer=FixedSizer(QUANTITY),
    )
    return _ml4t_run(frame, strategy)


# --- VectorBT ---------------------------------------------------------------------------
def _arrays(data_dir: Path, size: Size) -> Any:
    return _load(data_dir, size)


def _vbt_execute(data: dict[str, np.ndarray]) -> tuple[Any, dict[str, float]]:
    import pandas as pd
    import vectorbt as vbt  # type: ignore[import-untyped]

    # Naive (UTC) index, as for the other frameworks. A tz-aware index makes vectorbt 1.2
    # convert it to an object array of Timestamps (assert_shape_equal): ~4 s per 1M bars.
    t0 = perf_counter()
    index = pd.DatetimeIndex(data["timestamp"])
    sig = data["signal"]
    # Next-bar-open emulation: shift the decision by one bar and fill at that bar's open.
    entries = np.zeros(sig.shape[0], dtype=bool)
    exits = np.zeros(sig.shape[0], dtype=bool)
    entries[1:] = sig[:-1] == 1.0
    exits[1:] = sig[:-1] == -1.0
    close = pd.Series(data["close"], index=index, name="SYN")
    open_ = pd.Series(data["open"], index=index, name="SYN")
    t1 = perf_counter()
    pf = vbt.Portfolio.from_signals(
        close,
        entries=pd.Series(entries, index=index, name="SYN"),
        exits=pd.Series(exits, index=index, name="SYN"),
        price=open_,
        size=QUANTITY,
        size_type="amount",
        init_cash=INITIAL_CASH,
        fees=0.0,
        slippage=0.0,
        direction="longonly",
        accumulate=False,
        freq="1min",
    )
    t2 = perf_counter()
    _ = float(pf.final_value())
    t3 = perf_counter()
    return pf, {"pandas_inputs": t1 - t0, "from_signals": t2 - t1, "final_value": t3 - t2}


# --- Backtrader -------------------------------------------------------------------------
def _bt_execute(data: dict[str, np.ndarray]) -> tuple[Any, dict[str, float]]:
    import backtrader as bt  # type: ignore[import-untyped]
    import pandas as pd

    class SignalData(bt.feeds.PandasData):  # type: ignore[misc]
        lines = ("signal",)
        params = (("signal", -1),)  # -1: find the column by name

    class SignalFollower(bt.Strategy):  # type: ignore[misc]
        def __init__(self) -> None:
            self.fills: list[tuple[float, bool, float, float]] = []

        def notify_order(self, order: Any) -> None:
            if order.status == order.Completed:
                ex = order.executed
                self.fills.append((ex.dt, order.isbuy(), ex.size, ex.price))

        def next(self) -> None:
            signal = self.data.signal[0]
            if signal == 1.0:
                if not self.position:
                    self.buy(size=QUANTITY)
            elif signal == -1.0 and self.position.size > 0:
                self.close()

    t0 = perf_counter()
    frame = pd.DataFrame(
        {k: data[k] for k in ("open", "high", "low", "close", "volume", "signal")},
        index=pd.DatetimeIndex(data["timestamp"], name="datetime"),  # naive UTC
    )
    t1 = perf_counter()
    cerebro = bt.Cerebro(stdstats=False)  # no observers: the fastest honest configuration
    cerebro.adddata(SignalData(dataname=frame))
    cerebro.broker.setcash(INITIAL_CASH)  # default broker: market orders at next open
    cerebro.addstrategy(SignalFollower)
    strat = cerebro.run()[0]
    value = float(cerebro.broker.getvalue())
    t2 = perf_counter()
    return (strat, value), {"pandas_frame": t1 - t0, "cerebro_setup_and_run": t2 - t1}


def _bt_outcome(out: Any) -> Outcome:
    strat, value = out
    buys = [f for f in strat.fills if f[1]]
    sells = [f for f in strat.fills if not f[1]]
    return Outcome(
        entries=len(buys),
        exits=len(sells),
        final_value=value,
        traded_value=float(sum(abs(f[2]) * f[3] for f in strat.fills)),
        first_entry_price=buys[0][3] if buys else float("nan"),
        last_exit_price=sells[-1][3] if sells else float("nan"),
    )


# --- bare Python loop (a floor, not a framework) ----------------------------------------
def _loop_execute(data: dict[str, np.ndarray]) -> tuple[Any, dict[str, float]]:
    """The same logic as a plain Python loop over lists: what per-bar Python costs."""
    t0 = perf_counter()
    opens = data["open"].tolist()
    closes = data["close"].tolist()
    signals = data["signal"].tolist()
    cash, pos, pending = INITIAL_CASH, 0.0, 0.0
    buys: list[float] = []
    sells: list[float] = []
    for i in range(len(closes)):
        if pending:
            price = opens[i]
            cash -= pending * price
            pos += pending
            (buys if pending > 0 else sells).append(price)
            pending = 0.0
        s = signals[i]
        if s == 1.0:
            if pos == 0:
                pending = QUANTITY
        elif s == -1.0 and pos > 0:
            pending = -pos
    return (buys, sells, cash + pos * closes[-1]), {"loop": perf_counter() - t0}


def _loop_outcome(out: Any) -> Outcome:
    buys, sells, value = out
    return Outcome(
        entries=len(buys),
        exits=len(sells),
        final_value=value,
        traded_value=QUANTITY * (sum(buys) + sum(sells)),
        first_entry_price=buys[0] if buys else float("nan"),
        last_exit_price=sells[-1] if sells else float("nan"),
    )


def _python_version() -> str:
    import platform

    return platform.python_version()


_ML4T_NOTE = "timed: PolarsDataFeed(polars frame) + BacktestEngine(...).run() incl. results"
RUNNERS: dict[str, Runner] = {
    "ml4t-bar": Runner(
        "ml4t-bar",
        "ml4t",
        _ml4t_prepare,
        _ml4t_bar,
        ml4t_outcome,
        ml4t_version,
        _ML4T_NOTE + "; per-bar Strategy",
        ml4t_metadata,
    ),
    "ml4t-signal": Runner(
        "ml4t-signal",
        "ml4t",
        _ml4t_prepare,
        _ml4t_signal,
        ml4t_outcome,
        ml4t_version,
        _ML4T_NOTE + "; SignalStrategy + FixedSizer(100)",
        ml4t_metadata,
    ),
    "vectorbt": Runner(
        "vectorbt",
        "vectorbt",
        _arrays,
        _vbt_execute,
        vbt_outcome,
        vbt_version,
        "timed: pandas Series from arrays + Portfolio.from_signals(shifted, price=open) "
        "+ final_value()",
    ),
    "backtrader": Runner(
        "backtrader",
        "backtrader",
        _arrays,
        _bt_execute,
        _bt_outcome,
        bt_version,
        "timed: pandas DataFrame + Cerebro(stdstats=False) + PandasData feed + run()",
    ),
    "loop": Runner(
        "loop",
        "loop",
        _arrays,
        _loop_execute,
        _loop_outcome,
        _python_version,
        "timed: bare Python for-loop over lists (tolist() included); a floor, not a framework",
    ),
}

W1 = Workload(
    key="w1",
    title="W1: 1 asset x 1,000,000 one-minute bars, {-1, 0, +1} signal, 100 units per entry",
    unit="bars",
    full=(1, 1_000_000),
    quick=(1, 50_000),
    backtrader=(1, 200_000),
    backtrader_quick=(1, 20_000),
    warmup=(1, 2_000),
    materialise=materialise,
    runners=RUNNERS,
    targets={
        "ml4t-bar": Target(">= 1,000,000 bars/s", bars_per_s=1_000_000),
        "ml4t-signal": Target(">= 20,000,000 bars/s (VectorBT ~5.7M)", bars_per_s=20_000_000),
    },
    semantics="market orders at the next open, 100 units, no costs",
)

WORKLOADS: dict[str, Workload] = {"w1": W1, "w2": w2.WORKLOAD, "w3": w3.WORKLOAD}
