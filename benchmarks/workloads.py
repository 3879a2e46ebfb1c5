"""Benchmark workloads: synthetic data and the same strategy in each framework.

Workload W1 (see ``benchmarks/README.md``): one asset, ``n`` one-minute bars, one signal
column in {-1, 0, +1}. Enter long ``QUANTITY`` units with a market order when the signal
is +1 and the position is flat; close the position with a market order when the signal is
-1 and the position is long. No costs. Orders placed on bar *t* fill at bar *t+1*'s open.

Every framework is split into an untimed ``prepare`` step (turning the generated numpy
arrays into the framework's natural input: a polars frame for ml4t, plain arrays for
VectorBT and Backtrader) and a timed ``execute`` step that starts from that input, builds
whatever the framework needs (feed, pandas objects, Cerebro), runs the backtest and reads
its final value. Framework imports happen before any timing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from time import perf_counter
from typing import Any

import numpy as np

__all__ = [
    "FRAMEWORKS",
    "INITIAL_CASH",
    "QUANTITY",
    "SEED",
    "Framework",
    "Outcome",
    "generate_bars",
    "slice_bars",
]

SEED = 42
QUANTITY = 100.0
INITIAL_CASH = 1_000_000.0
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
    noise = rng.standard_normal(n)
    smooth = _ar1(noise, _PHI) * math.sqrt(1.0 - _PHI * _PHI)  # unit stationary variance
    signal = np.where(smooth > _THRESHOLD, 1.0, np.where(smooth < -_THRESHOLD, -1.0, 0.0))
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


def _ar1(x: np.ndarray, phi: float) -> np.ndarray:
    """Return y with y[t] = phi * y[t-1] + x[t] (y[-1] = 0)."""
    try:
        from scipy.signal import lfilter  # type: ignore[import-untyped]
    except ImportError:  # scipy comes with vectorbt; without it, a plain loop (not timed)
        out = np.empty_like(x)
        acc = 0.0
        for i, v in enumerate(x.tolist()):
            acc = phi * acc + v
            out[i] = acc
        return out
    return np.asarray(lfilter([1.0], [1.0, -phi], x))


def slice_bars(data: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """Return the first ``n`` bars of ``data``."""
    return {k: v[:n] for k, v in data.items()}


# --- outcome ----------------------------------------------------------------------------
@dataclass
class Outcome:
    """What a run produced, for the cross-framework sanity check."""

    entries: int  # buy fills
    exits: int  # sell fills
    final_value: float  # cash + position marked at the last close
    first_entry_price: float = float("nan")
    last_exit_price: float = float("nan")

    @property
    def trades(self) -> int:
        """Round trips entered (the last one may still be open at the end of the data)."""
        return self.entries

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["trades"] = self.trades
        return d


@dataclass(frozen=True)
class Framework:
    """How to prepare (untimed) and execute (timed) W1, and read what the run produced.

    ``execute(prepared)`` returns ``(raw, phases)``: the framework's own result and a dict
    of named sub-timings (seconds) inside the timed region.
    """

    name: str
    prepare: Callable[[dict[str, np.ndarray]], Any]
    execute: Callable[[Any], Any]
    outcome: Callable[[Any], Outcome]
    version: Callable[[], str]
    notes: str


# --- ml4t -------------------------------------------------------------------------------
def _ml4t_prepare(data: dict[str, np.ndarray]) -> Any:
    import polars as pl

    return pl.DataFrame(data)  # naive datetime[ns] timestamps, in UTC


def _ml4t_execute(frame: Any) -> Any:
    from ml4t.backtest import BacktestEngine, PolarsDataFeed, SimulationBroker, Strategy

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

    t0 = perf_counter()
    feed = PolarsDataFeed(frame, asset_id="SYN", signal_columns=["signal"])
    t1 = perf_counter()
    broker = SimulationBroker(initial_cash=INITIAL_CASH)  # next_bar_open, no costs
    result = BacktestEngine(feed, SignalFollower(), broker).run()
    _ = result.final_equity
    t2 = perf_counter()
    return result, {"feed": t1 - t0, "engine_run": t2 - t1}


def _ml4t_outcome(result: Any) -> Outcome:
    fills = result.fills_df
    side = fills["side"].to_list()
    price = fills["price"].to_list()
    buys = [p for s, p in zip(side, price, strict=True) if s == "buy"]
    sells = [p for s, p in zip(side, price, strict=True) if s == "sell"]
    return Outcome(
        entries=len(buys),
        exits=len(sells),
        final_value=float(result.final_equity),
        first_entry_price=buys[0] if buys else float("nan"),
        last_exit_price=sells[-1] if sells else float("nan"),
    )


def _ml4t_version() -> str:
    from importlib.metadata import version

    return version("ml4t-backtest")


# --- VectorBT ---------------------------------------------------------------------------
def _identity(data: dict[str, np.ndarray]) -> Any:
    return data


def _vbt_execute(data: dict[str, np.ndarray]) -> Any:
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


def _vbt_outcome(pf: Any) -> Outcome:
    rec = pf.orders.values
    side = rec["side"]
    price = rec["price"]
    buys = price[side == 0]
    sells = price[side == 1]
    return Outcome(
        entries=int(buys.shape[0]),
        exits=int(sells.shape[0]),
        final_value=float(pf.final_value()),
        first_entry_price=float(buys[0]) if buys.shape[0] else float("nan"),
        last_exit_price=float(sells[-1]) if sells.shape[0] else float("nan"),
    )


def _vbt_version() -> str:
    import vectorbt as vbt

    return str(vbt.__version__)


# --- Backtrader -------------------------------------------------------------------------
def _bt_execute(data: dict[str, np.ndarray]) -> Any:
    import backtrader as bt  # type: ignore[import-untyped]
    import pandas as pd

    class SignalData(bt.feeds.PandasData):  # type: ignore[misc]
        lines = ("signal",)
        params = (("signal", -1),)  # -1: find the column by name

    class SignalFollower(bt.Strategy):  # type: ignore[misc]
        def __init__(self) -> None:
            self.buys: list[float] = []
            self.sells: list[float] = []

        def notify_order(self, order: Any) -> None:
            if order.status == order.Completed:
                (self.buys if order.isbuy() else self.sells).append(order.executed.price)

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
    return Outcome(
        entries=len(strat.buys),
        exits=len(strat.sells),
        final_value=value,
        first_entry_price=strat.buys[0] if strat.buys else float("nan"),
        last_exit_price=strat.sells[-1] if strat.sells else float("nan"),
    )


def _bt_version() -> str:
    import backtrader as bt

    return str(bt.__version__)


# --- bare Python loop (a floor, not a framework) ----------------------------------------
def _loop_execute(data: dict[str, np.ndarray]) -> Any:
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
        first_entry_price=buys[0] if buys else float("nan"),
        last_exit_price=sells[-1] if sells else float("nan"),
    )


def _python_version() -> str:
    import platform

    return platform.python_version()


FRAMEWORKS: dict[str, Framework] = {
    "ml4t": Framework(
        "ml4t",
        _ml4t_prepare,
        _ml4t_execute,
        _ml4t_outcome,
        _ml4t_version,
        "timed: PolarsDataFeed(polars frame) + BacktestEngine(...).run() incl. results",
    ),
    "vectorbt": Framework(
        "vectorbt",
        _identity,
        _vbt_execute,
        _vbt_outcome,
        _vbt_version,
        "timed: pandas Series from arrays + Portfolio.from_signals(shifted, price=open) "
        "+ final_value(); numba JIT warmed up on a tiny input first",
    ),
    "backtrader": Framework(
        "backtrader",
        _identity,
        _bt_execute,
        _bt_outcome,
        _bt_version,
        "timed: pandas DataFrame + Cerebro(stdstats=False) + PandasData feed + run()",
    ),
    "loop": Framework(
        "loop",
        _identity,
        _loop_execute,
        _loop_outcome,
        _python_version,
        "timed: bare Python for-loop over lists (tolist() included); a floor, not a framework",
    ),
}
