"""The batch market-fill kernel's threshold changes how fills are computed, never what they are.

When a fill phase has at least ``builtin.fills._KERNEL_BATCH`` plain market orders (and the
broker's settings have a kernel version), the broker settles their terms together in
``kernels.fills.market_batch_nb``; below it, one by one in Python. Over random multi-asset
bars, costs, cash policies, accounts and fill timings, a batch strategy rebalancing every
asset each bar (with some competing reduce-only closes on the same bar) gives the same
frames with the threshold at 8 (the batch kernel runs) and at 10**9 (it never does).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from ml4t.backtest import (
    BacktestEngine,
    BasisPointsSlippage,
    BatchStrategy,
    FixedCommission,
    FixedSlippage,
    NoCommission,
    NoSlippage,
    PercentageCommission,
    PercentageSlippage,
    PerShareCommission,
    PolarsDataFeed,
    SimulationBroker,
)
from ml4t.backtest.builtin import fills as fills_module

START = datetime(2024, 1, 2)
FRAMES = ("fills_df", "orders_df", "portfolio_df", "trades_df")


def make_bars(n_assets: int, n_bars: int, seed: int, missing: float, shorts: bool) -> pl.DataFrame:
    """Random-walk bars with a target weight ``w`` and a close flag ``exit`` per row.

    The first two timestamps have every asset, so the orders placed on the first bar (one
    per asset, every weight non-zero) fill together: at least 8 in one phase.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for a in range(n_assets):
        base = float(rng.uniform(5.0, 300.0))
        vol = float(rng.uniform(0.005, 0.05))
        close = base * np.exp(np.cumsum(rng.normal(0.0, vol, n_bars)))
        open_ = np.r_[base, close[:-1]] * np.exp(rng.normal(0.0, vol / 2, n_bars))
        high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0.0, vol, n_bars)))
        low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0.0, vol, n_bars)))
        weight = rng.uniform(0.01, 0.25, n_bars)
        if shorts:
            weight *= np.where(rng.random(n_bars) < 0.3, -1.0, 1.0)
        keep = rng.random(n_bars) >= missing
        keep[:2] = True
        frames.append(
            pl.DataFrame(
                {
                    "timestamp": [START + timedelta(days=k) for k in range(n_bars)],
                    "asset_id": [f"A{a:02d}"] * n_bars,
                    "open": open_,
                    "high": high,
                    "low": low,
                    "close": close,
                    "volume": rng.uniform(1e3, 1e6, n_bars),
                    "w": weight,
                    "exit": rng.random(n_bars),
                }
            ).filter(pl.Series(keep))
        )
    return pl.concat(frames).sort("timestamp", "asset_id")


class Rebalance(BatchStrategy):
    """Every bar: target ``w * leverage`` of equity in each asset (sells first, one call);
    then close the assets whose ``exit`` flag is high, an order competing with the target."""

    def __init__(self, leverage: float) -> None:
        super().__init__()
        self.leverage = leverage

    def on_timestamp(self, timestamp: datetime, asset_batch: Any, context: Any) -> None:
        ids = self.batch.asset_ids
        self.order_target_percent(ids, self.batch["w"] * self.leverage)
        for asset, flag in zip(ids, self.batch["exit"].tolist(), strict=True):
            if flag > 0.85 and self.get_position(asset) != 0:
                self.close_position(asset)


commissions = st.sampled_from(
    [
        NoCommission(),
        PercentageCommission(0.001),
        PercentageCommission(0.002, 1.0),
        PerShareCommission(0.01),
        FixedCommission(1.0),
    ]
)
slippages = st.sampled_from(
    [NoSlippage(), PercentageSlippage(0.001), FixedSlippage(0.05), BasisPointsSlippage(20.0)]
)


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    """Bars, strategy leverage and broker settings of one run."""
    account = draw(st.sampled_from(["cash", "simple"]))
    return {
        "bars": {
            "n_assets": draw(st.integers(8, 16)),
            "n_bars": draw(st.integers(2, 8)),
            "seed": draw(st.integers(0, 2**31 - 1)),
            "missing": draw(st.sampled_from([0.0, 0.2])),
            "shorts": account == "simple",
        },
        "leverage": draw(st.sampled_from([0.5, 1.0, 1.6])),
        "broker": {
            "account": account,
            "cash_policy": draw(st.sampled_from(["reject", "resize", "allow"])),
            "fill_timing": draw(
                st.sampled_from(["next_bar_open", "same_bar_close", "next_bar_close"])
            ),
            "fractional": draw(st.booleans()),
            "commission": draw(commissions),
            "slippage": draw(slippages),
        },
    }


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios())
def test_batch_threshold_gives_the_same_frames(
    scenario: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_bars(**scenario["bars"])
    batches: list[int] = []
    original = fills_module.FillMixin._fill_market_batch

    def counted(self: Any, *args: Any) -> int:
        batches.append(len(args[1]))
        return original(self, *args)

    monkeypatch.setattr(fills_module.FillMixin, "_fill_market_batch", counted)
    runs = []
    for threshold in (8, 10**9):
        monkeypatch.setattr(fills_module, "_KERNEL_BATCH", threshold)
        batches.clear()
        broker = SimulationBroker(initial_cash=100_000.0, **scenario["broker"])
        assert broker.kernel_problem() is None  # else no run would use the batch kernel
        feed = PolarsDataFeed(data, signal_columns=["w", "exit"])
        runs.append(BacktestEngine(feed, Rebalance(scenario["leverage"]), broker).run())
        # the first bar's orders (one per asset, >= 8) fill in one phase: the kernel runs
        assert (len(batches) > 0) == (threshold == 8), batches
    assert runs[0].fills_df.height > 0
    for name in FRAMES:
        assert_frame_equal(getattr(runs[0], name), getattr(runs[1], name))
