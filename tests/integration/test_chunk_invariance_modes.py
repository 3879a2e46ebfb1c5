"""Chunk-size invariance of the batch and compiled declarative modes.

The compiled kernel keeps cash, positions, position exits and working orders in arrays
that carry from one block to the next, and the batch strategy's per-chunk frame is rebuilt
per block; neither may change a result. The minute data of
``test_chunk_invariance`` (three assets, missing bars, a month end) runs in memory and from
Parquet in daily, monthly and row-count windows; every result frame must be identical.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ml4t.backtest import (
    BacktestEngine,
    BacktestResult,
    BatchStrategy,
    ParquetDataFeed,
    PercentageCommission,
    PercentageSlippage,
    PercentSizer,
    PolarsDataFeed,
    Rule,
    SignalStrategy,
    SimulationBroker,
    TopKSizer,
)

from .test_chunk_invariance import _minute_bars

CHUNKS: tuple[Any, ...] = ("1d", "1mo", 700)


def _bars_with_signal() -> pl.DataFrame:
    bars = _minute_bars()
    rng = np.random.default_rng(11)
    noise = rng.normal(0.0, 1.0, bars.height)
    smooth = np.convolve(noise, np.ones(40) / np.sqrt(40), mode="same")
    return bars.with_columns(pred=pl.Series(np.round(smooth, 3)))


@pytest.fixture(scope="module")
def bars() -> pl.DataFrame:
    return _bars_with_signal()


@pytest.fixture(scope="module")
def parquet(bars: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("modes") / "bars.parquet"
    bars.write_parquet(path, row_group_size=500)
    return path


class _TopTwo(BatchStrategy):
    """Hold the two highest ``pred`` at half the equity each (a batch rebalance)."""

    def on_timestamp(self, timestamp: Any, asset_batch: pl.DataFrame, context: Any) -> None:
        pred = self.batch["pred"]
        ids = self.batch.asset_ids
        order = np.argsort(-pred, kind="stable")[:2]
        self.rebalance_to_weights({ids[j]: 0.5 for j in order.tolist()})


def _declarative() -> SignalStrategy:
    return SignalStrategy(
        entry_rules=[Rule.signal_above("pred", 0.8), Rule.not_in_position()],
        exit_rules=[
            Rule.signal_below("pred", -0.5),
            Rule.stop_loss(0.004),
            Rule.trailing_stop(0.006),
            Rule.max_holding_bars(600),
        ],
        position_sizer=PercentSizer(0.3),
    )


def _run(feed: Any, strategy: Any, costs: bool) -> BacktestResult:
    kw: dict[str, Any] = {}
    if costs:
        kw = {"commission": PercentageCommission(0.001), "slippage": PercentageSlippage(0.0002)}
    broker = SimulationBroker(initial_cash=100_000, **kw)
    return BacktestEngine(feed, strategy, broker).run()


def _same(a: BacktestResult, b: BacktestResult) -> None:
    for name in ("trades_df", "fills_df", "portfolio_df"):
        assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True)


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("costs", [False, True])
def test_compiled_signal_strategy_is_chunk_invariant(
    bars: pl.DataFrame, parquet: Path, chunk: Any, costs: bool
) -> None:
    whole = _run(PolarsDataFeed(bars, signal_columns=["pred"]), _declarative(), costs)
    cut = _run(
        ParquetDataFeed(parquet, signal_columns=["pred"], chunk_size=chunk), _declarative(), costs
    )
    assert whole.metadata["mode"] == cut.metadata["mode"] == "compiled"
    assert set(whole.trades_df["exit_reason"]) >= {"signal", "stop_loss", "trailing_stop"}
    _same(whole, cut)


@pytest.mark.parametrize("chunk", CHUNKS)
def test_top_k_declarative_and_batch_are_chunk_invariant(
    bars: pl.DataFrame, parquet: Path, chunk: Any
) -> None:
    top_k = SignalStrategy(position_sizer=TopKSizer(2, "pred"))
    whole = _run(PolarsDataFeed(bars, signal_columns=["pred"]), top_k, True)
    cut = _run(ParquetDataFeed(parquet, signal_columns=["pred"], chunk_size=chunk), top_k, True)
    _same(whole, cut)
    batch_whole = _run(PolarsDataFeed(bars, signal_columns=["pred"]), _TopTwo(), True)
    batch_cut = _run(
        ParquetDataFeed(parquet, signal_columns=["pred"], chunk_size=chunk), _TopTwo(), True
    )
    _same(batch_whole, batch_cut)
    assert batch_whole.metadata["mode"] == "batch"
    assert batch_whole.fills_df.height > 100
