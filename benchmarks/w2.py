"""Workload W2: daily top-25 rebalancing over 500 assets x 2,520 days.

Every day, hold the 25 assets with the highest ``score`` equally weighted (1/25 of equity
each), rebalanced daily with target-percent orders placed after the close and filled at
the next bar's open; no costs, fractional shares, shared cash.

- ml4t ``bar``: a per-bar :class:`Strategy` that stores each asset's score in an array by
  asset code in ``on_market_data`` and rebalances in ``after_trading_end`` (with daily
  bars each timestamp is one session, so it runs once after every asset's bar);
- ml4t ``batch``: a :class:`BatchStrategy` ranking ``self.batch["score"]`` with numpy in
  ``on_timestamp`` and calling ``rebalance_to_weights``;
- ml4t ``signal``: ``SignalStrategy(entry_rules=[], exit_rules=[],
  position_sizer=TopKSizer(25, "score"))``, compiled with numba;
- VectorBT: ``Portfolio.from_orders`` with ``size_type="targetpercent"``, the weights of
  day *t* applied at day *t+1*'s open (``price=open``), ``cash_sharing=True``,
  ``group_by=True``, ``call_seq="auto"`` (sells first);
- Backtrader: ``order_target_percent`` per data in ``next()`` (fractional sizes through a
  commission-info ``getsize`` override, no submit-time cash check), on a prefix of the days.
"""

from __future__ import annotations

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
    ar1,
    bt_version,
    load_arrays,
    ml4t_metadata,
    ml4t_outcome,
    ml4t_version,
    outcome_from_fills,
    save_arrays,
    vbt_outcome,
    vbt_version,
)

__all__ = ["WORKLOAD", "K", "generate"]

K = 25
WEIGHT = 1.0 / K
SEED = 7
START = np.datetime64("2015-01-02", "D")
# Orders are sized at the decision bar's close and filled at the next open, so an
# overnight gap can make the day's buys cost a little more than the cash: filled anyway
# (cash may dip slightly below zero), which is what Backtrader does without its submit
# check; "reject" would drop the last buys of such days.
CASH_POLICY = "allow"
# Backtrader's broker cancels the part of a buy the cash cannot cover at execution. To
# give it the same "allow" semantics it gets a cash reserve that the strategy leaves out
# of its equity (target percent scaled by (value - RESERVE) / value) and that is
# subtracted from the final value; the reserve is never touched in practice.
RESERVE = 1e9
_NAMES = ("open", "high", "low", "close", "volume", "score")


def asset_names(n: int) -> list[str]:
    return [f"A{i:03d}" for i in range(n)]


def generate(size: Size, seed: int = SEED) -> dict[str, np.ndarray]:
    """Return ``(days, assets)`` matrices of daily OHLCV and ``score``, plus ``timestamp``.

    Prices are geometric random walks (daily volatility 2 %, starting between 20 and 200);
    open = previous close times a small overnight gap; high/low extend max/min(open,
    close). ``score`` is a persistent AR(1) per asset (phi = 0.9), so the top 25 change by
    a few names a day. Timestamps are weekdays from 2015-01-02, naive.
    """
    assets, days = size
    rng = np.random.default_rng(seed)
    start = rng.uniform(20.0, 200.0, assets)
    close = start * np.exp(np.cumsum(rng.normal(0.0003, 0.02, (days, assets)), axis=0))
    prev = np.vstack([start, close[:-1]])
    open_ = prev * np.exp(rng.normal(0.0, 0.005, (days, assets)))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.005, (days, assets))))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.005, (days, assets))))
    volume = rng.integers(10_000, 1_000_000, (days, assets)).astype(np.float64)
    score = ar1(rng.standard_normal((days, assets)), 0.9, axis=0)
    stamps = np.busday_offset(START, np.arange(days), roll="forward").astype("datetime64[ns]")
    return {
        "timestamp": stamps,
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
        "score": score,
    }


def materialise(data_dir: Path, full: Size, others: list[Size]) -> None:
    data = generate(full)
    for size in [full, *others]:
        a, d = size
        part = {k: (v[:d] if v.ndim == 1 else v[:d, :a]) for k, v in data.items()}
        save_arrays(data_dir, "w2", size, part)


def _load(data_dir: Path, size: Size) -> dict[str, np.ndarray]:
    return load_arrays(data_dir, "w2", size, ("timestamp", *_NAMES))


# --- ml4t -------------------------------------------------------------------------------
def _ml4t_prepare(data_dir: Path, size: Size) -> Any:
    import polars as pl

    d = _load(data_dir, size)
    days, assets = d["close"].shape
    names = asset_names(assets)
    frame = pl.DataFrame(
        {
            "timestamp": np.repeat(d["timestamp"], assets),
            "asset_id": pl.Series(names).gather(np.tile(np.arange(assets), days)),
            **{k: d[k].ravel() for k in _NAMES},
        }
    )
    return frame, names


def _ml4t_run(frame: Any, strategy: Any) -> tuple[Any, dict[str, float]]:
    from ml4t.backtest import BacktestEngine, PolarsDataFeed, SimulationBroker

    t0 = perf_counter()
    feed = PolarsDataFeed(frame, signal_columns=["score"])
    t1 = perf_counter()
    broker = SimulationBroker(initial_cash=INITIAL_CASH, cash_policy=CASH_POLICY)
    result = BacktestEngine(feed, strategy, broker).run()
    _ = result.final_equity
    t2 = perf_counter()
    return result, {"feed": t1 - t0, "engine_run": t2 - t1}


def _ml4t_bar(prepared: Any) -> tuple[Any, dict[str, float]]:
    from ml4t.backtest import Strategy

    frame, names = prepared

    class TopKPerBar(Strategy):
        """Collect the scores bar by bar, rebalance once the day's bars are all in."""

        def __init__(self) -> None:
            self.code = {a: i for i, a in enumerate(names)}
            self.scores = np.full(len(names), np.nan)

        def on_market_data(self, event: Any, context: Any) -> None:
            self.scores[self.code[event.asset_id]] = event.signals["score"]

        def after_trading_end(self, timestamp: Any, context: Any) -> None:
            top = np.argsort(-self.scores, kind="stable")[:K]
            self.rebalance_to_weights({names[i]: WEIGHT for i in top})

    return _ml4t_run(frame, TopKPerBar())


def _ml4t_batch(prepared: Any) -> tuple[Any, dict[str, float]]:
    from ml4t.backtest import BatchStrategy

    frame, _ = prepared

    class TopKBatch(BatchStrategy):
        """Rank the day's cross-section with numpy and rebalance."""

        def on_timestamp(self, timestamp: Any, asset_batch: Any, context: Any) -> None:
            top = np.argsort(-self.batch["score"], kind="stable")[:K]
            ids = self.batch.asset_ids
            self.rebalance_to_weights({ids[i]: WEIGHT for i in top})

    return _ml4t_run(frame, TopKBatch())


def _ml4t_signal(prepared: Any) -> tuple[Any, dict[str, float]]:
    from ml4t.backtest import SignalStrategy, TopKSizer

    frame, _ = prepared
    strategy = SignalStrategy(entry_rules=[], exit_rules=[], position_sizer=TopKSizer(K, "score"))
    return _ml4t_run(frame, strategy)


# --- VectorBT ---------------------------------------------------------------------------
def _vbt_prepare(data_dir: Path, size: Size) -> Any:
    return _load(data_dir, size)


def _vbt_execute(d: dict[str, np.ndarray]) -> tuple[Any, dict[str, float]]:
    import pandas as pd
    import vectorbt as vbt  # type: ignore[import-untyped]

    t0 = perf_counter()
    score = d["score"]
    weights = np.zeros_like(score)
    top = np.argpartition(-score, K - 1, axis=1)[:, :K]  # the top K per day, any order
    np.put_along_axis(weights, top, WEIGHT, axis=1)
    size = np.full_like(weights, np.nan)  # day t's weights are traded at day t+1's open
    size[1:] = weights[:-1]
    index = pd.DatetimeIndex(d["timestamp"])
    columns = pd.Index(asset_names(score.shape[1]))
    close = pd.DataFrame(d["close"], index=index, columns=columns)
    open_ = pd.DataFrame(d["open"], index=index, columns=columns)
    t1 = perf_counter()
    pf = vbt.Portfolio.from_orders(
        close,
        size=size,
        size_type="targetpercent",
        price=open_,
        init_cash=INITIAL_CASH,
        fees=0.0,
        slippage=0.0,
        cash_sharing=True,
        group_by=True,
        call_seq="auto",
        freq="1D",
    )
    t2 = perf_counter()
    _ = float(pf.final_value())
    t3 = perf_counter()
    return pf, {"weights_and_frames": t1 - t0, "from_orders": t2 - t1, "final_value": t3 - t2}


# --- Backtrader -------------------------------------------------------------------------
def _bt_execute(d: dict[str, np.ndarray]) -> tuple[Any, dict[str, float]]:
    import backtrader as bt  # type: ignore[import-untyped]
    import pandas as pd

    class ScoreData(bt.feeds.PandasData):  # type: ignore[misc]
        lines = ("score",)
        params = (("score", -1),)

    class Fractional(bt.CommissionInfo):  # type: ignore[misc]
        """Fractional sizes for the order_target_* helpers (default: whole units)."""

        def getsize(self, price: float, cash: float) -> float:
            return float(self.p.leverage * (cash / price))

    class TopK(bt.Strategy):  # type: ignore[misc]
        def __init__(self) -> None:
            self.fills: list[tuple[float, str, bool, float, float]] = []

        def notify_order(self, order: Any) -> None:
            if order.status == order.Completed:
                ex = order.executed
                self.fills.append((ex.dt, order.data._name, order.isbuy(), ex.size, ex.price))

        def next(self) -> None:
            datas = self.datas
            scores = np.fromiter((x.score[0] for x in datas), np.float64, len(datas))
            top = np.argsort(-scores, kind="stable")[:K]
            chosen = set(top.tolist())
            value = self.broker.getvalue()
            pct = WEIGHT * (value - RESERVE) / value  # 1/25 of the equity without the reserve
            for i, x in enumerate(datas):
                if i not in chosen and self.getposition(x).size:
                    self.order_target_percent(x, target=0.0)
            for i in top:
                self.order_target_percent(datas[i], target=pct)

    t0 = perf_counter()
    index = pd.DatetimeIndex(d["timestamp"], name="datetime")
    names = asset_names(d["close"].shape[1])
    frames = [pd.DataFrame({k: d[k][:, j] for k in _NAMES}, index=index) for j in range(len(names))]
    t1 = perf_counter()
    cerebro = bt.Cerebro(stdstats=False)
    for name, frame in zip(names, frames, strict=True):
        cerebro.adddata(ScoreData(dataname=frame), name=name)
    cerebro.broker.setcash(INITIAL_CASH + RESERVE)
    cerebro.broker.set_checksubmit(False)  # no cash check at submission
    cerebro.broker.addcommissioninfo(Fractional())
    cerebro.addstrategy(TopK)
    strat = cerebro.run()[0]
    value = float(cerebro.broker.getvalue()) - RESERVE
    t2 = perf_counter()
    return (strat, value), {"pandas_frames": t1 - t0, "cerebro_setup_and_run": t2 - t1}


def bt_outcome(out: Any) -> Outcome:
    """Outcome of a Backtrader strategy that recorded ``(dt, name, is_buy, size, price)``."""
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


_ML4T_NOTE = "timed: PolarsDataFeed(polars frame) + BacktestEngine(...).run() incl. results"
RUNNERS = {
    "ml4t-bar": Runner(
        "ml4t-bar",
        "ml4t",
        _ml4t_prepare,
        _ml4t_bar,
        ml4t_outcome,
        ml4t_version,
        _ML4T_NOTE + "; per-bar Strategy, rebalance in after_trading_end",
        ml4t_metadata,
    ),
    "ml4t-batch": Runner(
        "ml4t-batch",
        "ml4t",
        _ml4t_prepare,
        _ml4t_batch,
        ml4t_outcome,
        ml4t_version,
        _ML4T_NOTE + "; BatchStrategy.on_timestamp, numpy argsort",
        ml4t_metadata,
    ),
    "ml4t-signal": Runner(
        "ml4t-signal",
        "ml4t",
        _ml4t_prepare,
        _ml4t_signal,
        ml4t_outcome,
        ml4t_version,
        _ML4T_NOTE + "; SignalStrategy + TopKSizer(25, 'score')",
        ml4t_metadata,
    ),
    "vectorbt": Runner(
        "vectorbt",
        "vectorbt",
        _vbt_prepare,
        _vbt_execute,
        vbt_outcome,
        vbt_version,
        "timed: top-25 weights with numpy argpartition + pandas frames + Portfolio.from_orders("
        "targetpercent, price=open, weights shifted one day) + final_value()",
    ),
    "backtrader": Runner(
        "backtrader",
        "backtrader",
        _vbt_prepare,
        _bt_execute,
        bt_outcome,
        bt_version,
        "timed: one pandas DataFrame per asset + Cerebro(stdstats=False) + PandasData feeds "
        "+ run() with order_target_percent",
    ),
}

WORKLOAD = Workload(
    key="w2",
    title="W2: 500 assets x 2,520 daily bars, hold the top 25 by score equal-weighted, "
    "rebalanced daily with target-percent orders",
    unit="asset-bars",
    full=(500, 2_520),
    quick=(60, 120),
    backtrader=(500, 126),
    backtrader_quick=(60, 40),
    warmup=(30, 10),
    materialise=materialise,
    runners=RUNNERS,
    targets={
        "ml4t-bar": Target(">= 500,000 asset-bars/s", bars_per_s=500_000),
        "ml4t-batch": Target("<= 1.0 s (VectorBT ~0.4 s)", seconds=1.0),
        "ml4t-signal": Target("<= 0.4 s", seconds=0.4),
    },
    semantics="decision at the close, target-percent orders filled at the next open, "
    "no costs, fractional shares, shared cash",
    approximate={
        "vectorbt": "VectorBT sizes each target-percent order at the fill bar's open with "
        "the portfolio value at that open; ml4t and Backtrader size it at the decision "
        "bar's close and fill at the next open, so quantities (and the final value) differ "
        "slightly while the names held each day are the same",
    },
)
