"""Workload W3: 250 assets x 98,280 one-minute bars (252 days x 390 minutes), signals.

Each asset has a regime signal in {-1, 0, +1} (AR(1)-smoothed noise thresholded at
+-0.5, as in W1: about 1.3 round trips per asset per day). Enter long when the signal is
+1 and the position is flat, buying with 2 % of the cash (shared by all assets, measured
when the order is placed); close the position when the signal is -1. Market orders fill
at the next bar's open; no costs, fractional shares.

The bars are written (untimed) to a Parquet file in a temporary directory; ml4t reads it
with ``ParquetDataFeed`` (lazily, one month at a time: that is what bounds memory).

- ml4t ``bar``: a per-bar :class:`Strategy` (``buy_percent(asset, 0.02)`` /
  ``close_position``);
- ml4t ``batch``: a :class:`BatchStrategy` finding entries (signal +1 and flat) and exits
  (signal -1 and long) with numpy masks over the timestamp's rows;
- ml4t ``signal``: ``SignalStrategy`` with ``[signal_above(0.5), not_in_position()]`` /
  ``[signal_below(-0.5)]`` and ``PercentSizer(0.02)``;
- VectorBT: ``Portfolio.from_signals`` over the full ``98,280 x 250`` matrices, signals
  shifted one bar and ``price=open``, ``size=0.02, size_type="percent"``,
  ``cash_sharing=True, group_by=True, call_seq="auto"``;
- Backtrader: the same per-bar logic on a prefix (10 assets x 5 days), extrapolated.
"""

from __future__ import annotations

import math
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np

from .common import (
    INITIAL_CASH,
    Outcome,
    Runner,
    Size,
    Target,
    Workload,
    bt_version,
    data_path,
    load_arrays,
    ml4t_metadata,
    ml4t_outcome,
    ml4t_version,
    outcome_from_fills,
    regime_signal,
    save_arrays,
    vbt_outcome,
    vbt_version,
)

__all__ = ["FRACTION", "WORKLOAD", "generate"]

SEED = 11
FRACTION = 0.02  # of the cash, per entry
MINUTES = 390
START = np.datetime64("2024-01-02", "D")
_SIGMA = 0.0005  # per-minute log-return volatility
_NAMES = ("open", "high", "low", "close", "volume", "signal")


def asset_names(n: int) -> list[str]:
    return [f"S{i:03d}" for i in range(n)]


def timestamps(periods: int) -> np.ndarray:
    """Minutes 09:30..15:59 of consecutive weekdays from 2024-01-02 (naive ns)."""
    days = math.ceil(periods / MINUTES)
    day = np.busday_offset(START, np.arange(days), roll="forward").astype("datetime64[m]")
    minute = np.arange(MINUTES).astype("timedelta64[m]") + np.timedelta64(9 * 60 + 30, "m")
    return (day[:, None] + minute[None, :]).ravel()[:periods].astype("datetime64[ns]")


def generate(size: Size, seed: int = SEED) -> dict[str, np.ndarray]:
    """Return ``(minutes, assets)`` matrices of OHLCV and ``signal``, plus ``timestamp``."""
    assets, periods = size
    rng = np.random.default_rng(seed)
    start = rng.uniform(20.0, 200.0, assets)
    shape = (periods, assets)
    close = start * np.exp(np.cumsum(rng.normal(0.0, _SIGMA, shape), axis=0))
    open_ = np.vstack([start, close[:-1]]) * np.exp(rng.normal(0.0, 0.2 * _SIGMA, shape))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.5 * _SIGMA, shape)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.5 * _SIGMA, shape)))
    volume = rng.integers(100, 10_000, shape).astype(np.float64)
    signal = regime_signal(rng.standard_normal(shape), 0.99, 0.5)
    return {
        "timestamp": timestamps(periods),
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
        "signal": signal,
    }


def write_parquet(path: Path, d: dict[str, np.ndarray]) -> None:
    """Write the matrices as a long, (timestamp, asset)-sorted Parquet file, a day per row group."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    periods, assets = d["close"].shape
    names = pa.array(asset_names(assets))
    schema = pa.schema(
        [("timestamp", pa.timestamp("ns")), ("asset_id", pa.dictionary(pa.int32(), pa.string()))]
        + [(k, pa.float64()) for k in _NAMES]
    )
    with pq.ParquetWriter(path, schema) as writer:
        for lo in range(0, periods, MINUTES):
            hi = min(lo + MINUTES, periods)
            codes = pa.array(np.tile(np.arange(assets, dtype=np.int32), hi - lo))
            cols = [
                pa.array(np.repeat(d["timestamp"][lo:hi], assets)),
                pa.DictionaryArray.from_arrays(codes, names),
                *(pa.array(d[k][lo:hi].ravel()) for k in _NAMES),
            ]
            writer.write_table(pa.Table.from_arrays(cols, schema=schema))


def materialise(data_dir: Path, full: Size, others: list[Size]) -> None:
    data = generate(full)
    for size in [full, *others]:
        a, p = size
        part = {k: (v[:p] if v.ndim == 1 else v[:p, :a]) for k, v in data.items()}
        write_parquet(data_path(data_dir, "w3", size, "parquet"), part)
        if size == full:  # VectorBT's inputs; the prefixes also feed Backtrader
            part = {k: part[k] for k in ("timestamp", "open", "close", "signal")}
        save_arrays(data_dir, "w3", size, part)


def _load(data_dir: Path, size: Size) -> dict[str, np.ndarray]:
    return load_arrays(data_dir, "w3", size, ("timestamp", *_NAMES))


# --- ml4t -------------------------------------------------------------------------------
def _ml4t_prepare(data_dir: Path, size: Size) -> Any:
    return data_path(data_dir, "w3", size, "parquet")  # nothing in memory before the run


def _ml4t_run(path: Path, strategy: Any) -> tuple[Any, dict[str, float]]:
    from ml4t.backtest import BacktestEngine, ParquetDataFeed, SimulationBroker

    t0 = perf_counter()
    feed = ParquetDataFeed(path, signal_columns=["signal"])  # lazy, one month at a time
    t1 = perf_counter()
    broker = SimulationBroker(initial_cash=INITIAL_CASH)  # next_bar_open, no costs
    result = BacktestEngine(feed, strategy, broker).run()
    _ = result.final_equity
    t2 = perf_counter()
    return result, {"feed_scan": t1 - t0, "engine_run": t2 - t1}


def _ml4t_bar(path: Path) -> tuple[Any, dict[str, float]]:
    from ml4t.backtest import Strategy

    class RegimePerBar(Strategy):
        def on_market_data(self, event: Any, context: Any) -> None:
            signal = event.signals["signal"]
            asset = event.asset_id
            if signal == 1.0:
                if self.get_position(asset) == 0:
                    self.buy_percent(asset, FRACTION)
            elif signal == -1.0 and self.get_position(asset) > 0:
                self.close_position(asset)

    return _ml4t_run(path, RegimePerBar())


def _ml4t_batch(path: Path) -> tuple[Any, dict[str, float]]:
    from ml4t.backtest import BatchStrategy

    class RegimeBatch(BatchStrategy):
        """Entries and exits of the whole cross-section with numpy masks."""

        def on_timestamp(self, timestamp: Any, asset_batch: Any, context: Any) -> None:
            batch = self.batch
            signal = batch["signal"]
            long = batch.positions > 0
            exits = np.flatnonzero((signal == -1.0) & long)
            entries = np.flatnonzero((signal == 1.0) & ~long)
            if exits.shape[0] or entries.shape[0]:
                ids = batch.asset_ids
                for j in exits.tolist():
                    self.close_position(ids[j])
                for j in entries.tolist():
                    self.buy_percent(ids[j], FRACTION)

    return _ml4t_run(path, RegimeBatch())


def _ml4t_signal(path: Path) -> tuple[Any, dict[str, float]]:
    from ml4t.backtest import PercentSizer, Rule, SignalStrategy

    strategy = SignalStrategy(
        entry_rules=[Rule.signal_above("signal", 0.5), Rule.not_in_position()],
        exit_rules=[Rule.signal_below("signal", -0.5)],
        position_sizer=PercentSizer(FRACTION),
    )
    return _ml4t_run(path, strategy)


# --- VectorBT ---------------------------------------------------------------------------
def _vbt_prepare(data_dir: Path, size: Size) -> Any:
    d = load_arrays(data_dir, "w3", size, ("timestamp", "open", "close", "signal"))
    return d


def _vbt_execute(d: dict[str, np.ndarray]) -> tuple[Any, dict[str, float]]:
    import pandas as pd
    import vectorbt as vbt  # type: ignore[import-untyped]

    t0 = perf_counter()
    sig = d["signal"]
    entries = np.zeros(sig.shape, dtype=bool)  # next-bar-open emulation: shift one bar
    exits = np.zeros(sig.shape, dtype=bool)
    entries[1:] = sig[:-1] == 1.0
    exits[1:] = sig[:-1] == -1.0
    index = pd.DatetimeIndex(d["timestamp"])
    columns = pd.Index(asset_names(sig.shape[1]))
    close = pd.DataFrame(d["close"], index=index, columns=columns)
    open_ = pd.DataFrame(d["open"], index=index, columns=columns)
    t1 = perf_counter()
    pf = vbt.Portfolio.from_signals(
        close,
        entries=entries,
        exits=exits,
        price=open_,
        size=FRACTION,
        size_type="percent",
        init_cash=INITIAL_CASH,
        fees=0.0,
        slippage=0.0,
        direction="longonly",
        accumulate=False,
        cash_sharing=True,
        group_by=True,
        call_seq="auto",
        freq="1min",
    )
    t2 = perf_counter()
    _ = float(pf.final_value())
    t3 = perf_counter()
    return pf, {"signals_and_frames": t1 - t0, "from_signals": t2 - t1, "final_value": t3 - t2}


# --- Backtrader -------------------------------------------------------------------------
def _bt_execute(d: dict[str, np.ndarray]) -> tuple[Any, dict[str, float]]:
    import backtrader as bt  # type: ignore[import-untyped]
    import pandas as pd

    class SignalData(bt.feeds.PandasData):  # type: ignore[misc]
        lines = ("signal",)
        params = (("signal", -1),)

    class Regime(bt.Strategy):  # type: ignore[misc]
        def __init__(self) -> None:
            self.fills: list[tuple[float, str, bool, float, float]] = []

        def notify_order(self, order: Any) -> None:
            if order.status == order.Completed:
                ex = order.executed
                self.fills.append((ex.dt, order.data._name, order.isbuy(), ex.size, ex.price))

        def next(self) -> None:
            cash = self.broker.getcash()
            for x in self.datas:
                signal = x.signal[0]
                if signal == 1.0:
                    if not self.getposition(x).size:
                        self.buy(data=x, size=FRACTION * cash / x.close[0])
                elif signal == -1.0 and self.getposition(x).size > 0:
                    self.close(data=x)

    t0 = perf_counter()
    index = pd.DatetimeIndex(d["timestamp"], name="datetime")
    names = asset_names(d["close"].shape[1])
    frames = [pd.DataFrame({k: d[k][:, j] for k in _NAMES}, index=index) for j in range(len(names))]
    t1 = perf_counter()
    cerebro = bt.Cerebro(stdstats=False)
    for name, frame in zip(names, frames, strict=True):
        cerebro.adddata(SignalData(dataname=frame), name=name)
    cerebro.broker.setcash(INITIAL_CASH)
    cerebro.addstrategy(Regime)
    strat = cerebro.run()[0]
    value = float(cerebro.broker.getvalue())
    t2 = perf_counter()
    return (strat, value), {"pandas_frames": t1 - t0, "cerebro_setup_and_run": t2 - t1}


def bt_outcome(out: Any) -> Outcome:
    import backtrader as bt

    strat, value = out
    fills = strat.fills
    ts = np.array(
        [np.datetime64(bt.num2date(f[0]), "ns").astype(np.int64) for f in fills], dtype=np.int64
    )
    return outcome_from_fills(
        ts,
        np.array([f[1] for f in fills]),
        np.array([f[2] for f in fills], dtype=bool),
        np.array([f[3] for f in fills], dtype=np.float64),
        np.array([f[4] for f in fills], dtype=np.float64),
        value,
    )


def _bt_prepare(data_dir: Path, size: Size) -> Any:
    return _load(data_dir, size)


_ML4T_NOTE = "timed: ParquetDataFeed(path) (lazy, monthly chunks) + BacktestEngine(...).run()"
RUNNERS = {
    "ml4t-bar": Runner(
        "ml4t-bar",
        "ml4t",
        _ml4t_prepare,
        _ml4t_bar,
        ml4t_outcome,
        ml4t_version,
        _ML4T_NOTE + "; per-bar Strategy with buy_percent / close_position",
        ml4t_metadata,
    ),
    "ml4t-batch": Runner(
        "ml4t-batch",
        "ml4t",
        _ml4t_prepare,
        _ml4t_batch,
        ml4t_outcome,
        ml4t_version,
        _ML4T_NOTE + "; BatchStrategy with numpy masks",
        ml4t_metadata,
    ),
    "ml4t-signal": Runner(
        "ml4t-signal",
        "ml4t",
        _ml4t_prepare,
        _ml4t_signal,
        ml4t_outcome,
        ml4t_version,
        _ML4T_NOTE + "; SignalStrategy + PercentSizer(0.02)",
        ml4t_metadata,
    ),
    "vectorbt": Runner(
        "vectorbt",
        "vectorbt",
        _vbt_prepare,
        _vbt_execute,
        vbt_outcome,
        vbt_version,
        "timed: shifted entry/exit matrices + pandas frames + Portfolio.from_signals("
        "price=open, size=0.02 percent of cash, cash_sharing) + final_value(); inputs "
        "(open, close, signal matrices) loaded in memory before timing",
    ),
    "backtrader": Runner(
        "backtrader",
        "backtrader",
        _bt_prepare,
        _bt_execute,
        bt_outcome,
        bt_version,
        "timed: one pandas DataFrame per asset + Cerebro(stdstats=False) + PandasData feeds "
        "+ run()",
    ),
}

WORKLOAD = Workload(
    key="w3",
    title="W3: 250 assets x 98,280 one-minute bars (252 days x 390 minutes) from Parquet, "
    "per-asset regime signals, entries with 2 % of cash",
    unit="asset-bars",
    full=(250, 252 * MINUTES),
    quick=(20, 5 * MINUTES),
    backtrader=(10, 5 * MINUTES),
    backtrader_quick=(5, 2 * MINUTES),
    warmup=(5, MINUTES),
    materialise=materialise,
    runners=RUNNERS,
    targets={
        "ml4t-bar": Target("<= 60 s", seconds=60.0),
        "ml4t-batch": Target("<= 20 s", seconds=20.0),
        "ml4t-signal": Target("<= 5 s", seconds=5.0),
        "memory": Target("peak RSS <= 1.5 GB (VectorBT ~3 GB)", rss_mib=1.5 * 1024),
    },
    semantics="market orders at the next open, 2 % of the cash at the decision bar per "
    "entry, close on exit, no costs, fractional shares, shared cash",
    approximate={
        "vectorbt": "VectorBT's size_type='percent' takes 2 % of the cash left at the fill "
        "(after the bar's earlier orders, exits first), ml4t and Backtrader 2 % of the cash "
        "when the order is placed; the same trades, slightly different quantities",
    },
)
