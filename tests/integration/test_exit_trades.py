"""``exit_trades_df``: one record per reducing fill, against the position's average cost.

Hand-computed examples (scale in and out, partial closes, a flip in one fill, commission
pools, a futures multiplier, a split, a position open at the end), the same records in
every mode (per-bar ``Strategy``, ``BatchStrategy``, compiled ``SignalStrategy``), the
exit-trade metrics of an always-invested book that is never flat, and the partition of
round-trip P&L into exit-trade P&L. VectorBT's documented examples (``vectorbt.portfolio.
trades`` module docstring) are the first four cases; the crossframework test compares with
VectorBT itself.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ml4t.backtest import (
    BacktestEngine,
    BacktestResult,
    BatchStrategy,
    Context,
    FixedCommission,
    MarketEvent,
    PercentageCommission,
    PercentageSlippage,
    PercentSizer,
    PerShareCommission,
    PolarsDataFeed,
    Rule,
    SignalStrategy,
    SimulationBroker,
    Strategy,
    TopKSizer,
)
from ml4t.backtest.testing import ScriptedStrategy, make_long_bars

CLOSES = [1.0, 2.0, 3.0, 4.0, 5.0]
DAYS = [datetime(2024, 1, 2 + i) for i in range(5)]


def _sized(
    make_bars: Any,
    run_backtest: Any,
    sizes: list[float],
    closes: list[float] = CLOSES,
    **broker: Any,
) -> BacktestResult:
    """Trade ``sizes[i]`` (signed) at bar i's close; return the result."""
    script = {i: [("buy" if q > 0 else "sell", abs(q))] for i, q in enumerate(sizes) if q}
    bars = make_bars(
        closes, opens=closes, highs=[c * 1.01 for c in closes], lows=[c * 0.99 for c in closes]
    )
    result, _ = run_backtest(
        bars, strategy=ScriptedStrategy(script=script), fill_timing="same_bar_close", **broker
    )
    return result  # type: ignore[no-any-return]


def _rows(result: BacktestResult, *cols: str) -> list[tuple[Any, ...]]:
    return result.exit_trades_df.select(cols).rows()


def _assert_partition(result: BacktestResult) -> None:
    """Exit trades split each round trip's P&L, quantity and commission exactly."""
    x = result.exit_trades_df.group_by("trade_id").agg(
        pl.col("pnl_gross").sum(),
        pl.col("pnl_net").sum(),
        pl.col("commission").sum(),
        pl.col("quantity").sum(),
        pl.col("entry_timestamp").first(),
        pl.col("asset_id").first(),
        pl.col("direction").first(),
        pl.col("is_open").any(),
    )
    t = result.trades_df.select(
        "trade_id",
        "pnl_gross",
        "pnl_net",
        "commission",
        "quantity",
        "entry_timestamp",
        "asset_id",
        "direction",
        "is_open",
    )
    both = t.join(x, on="trade_id", how="full", suffix="_x", coalesce=True).sort("trade_id")
    assert both.height == t.height == x.height
    for col in ("pnl_gross", "pnl_net", "commission", "quantity"):
        scale = max(1.0, float(both[col].abs().max() or 0.0))
        diff = (both[col] - both[f"{col}_x"]).abs().max()
        assert diff is not None and diff <= 1e-9 * scale, col
    for col in ("entry_timestamp", "asset_id", "direction", "is_open"):
        assert both[col].to_list() == both[f"{col}_x"].to_list(), col


# --- hand-computed examples ----------------------------------------------------------------


def test_exit_trades_scale_in_single_exit_uses_average_entry(
    make_bars: Any, run_backtest: Any
) -> None:
    # buy 1 at 1, 2, 3, 4 (1.0 commission each), sell 4 at 5:
    # cost basis (1 + 2 + 3 + 4) / 4 = 2.5, entry commission 4, exit commission 1
    # pnl_gross 4 * (5 - 2.5) = 10, pnl_net 10 - 5 = 5, return 5 / (4 * 2.5) = 0.5
    result = _sized(make_bars, run_backtest, [1, 1, 1, 1, -4], commission=FixedCommission(1.0))
    cols = ("quantity", "entry_price", "exit_price", "entry_commission", "exit_commission")
    assert _rows(result, *cols) == [(4.0, 2.5, 5.0, 4.0, 1.0)]
    x = result.exit_trades_df.row(0, named=True)
    assert (x["pnl_gross"], x["pnl_net"], x["return"]) == (10.0, 5.0, 0.5)
    assert (x["entry_timestamp"], x["exit_timestamp"]) == (DAYS[0], DAYS[4])
    assert (x["trade_id"], x["direction"], x["exit_reason"], x["is_open"]) == (
        0,
        "long",
        "signal",
        False,
    )
    assert x["holding_period_bars"] == 4
    assert x["exit_order_id"] == result.fills_df["order_id"][4]
    _assert_partition(result)


def test_exit_trades_partial_closes_take_entry_commission_pro_rata(
    make_bars: Any, run_backtest: Any
) -> None:
    # buy 4 at 1 (commission 1), sell 1 at 2, 3, 4, 5 (commission 1 each):
    # each exit takes 1/4 of the entry commission: pnl_net = (p - 1) - 0.25 - 1
    result = _sized(make_bars, run_backtest, [4, -1, -1, -1, -1], commission=FixedCommission(1.0))
    assert _rows(result, "quantity", "entry_price", "exit_price") == [
        (1.0, 1.0, p) for p in (2.0, 3.0, 4.0, 5.0)
    ]
    assert result.exit_trades_df["entry_commission"].to_list() == pytest.approx([0.25] * 4)
    assert result.exit_trades_df["exit_commission"].to_list() == [1.0] * 4
    assert result.exit_trades_df["pnl_net"].to_list() == pytest.approx([-0.25, 0.75, 1.75, 2.75])
    assert result.exit_trades_df["return"].to_list() == pytest.approx([-0.25, 0.75, 1.75, 2.75])
    assert result.exit_trades_df["entry_timestamp"].to_list() == [DAYS[0]] * 4
    assert result.exit_trades_df["trade_id"].to_list() == [0] * 4
    assert result.trades_df.height == 1  # one round trip, four exit trades
    _assert_partition(result)


def test_exit_trades_add_after_partial_exit_uses_running_average_cost(
    make_bars: Any, run_backtest: Any
) -> None:
    # buy 2 at 1, sell 1 at 2, buy 1 at 3, sell 2 at 4 (commission 1 per order):
    # first exit: basis 1, entry commission 1 * 1/2 = 0.5, pnl_net 1 - 0.5 - 1 = -0.5
    # the running average after re-entry is (1 * 1 + 1 * 3) / 2 = 2 (not (2 + 3) / 3);
    # second exit: 2 * (4 - 2) = 4, entry commission 0.5 + 1 = 1.5, pnl_net 4 - 2.5 = 1.5,
    # return 1.5 / (2 * 2) = 0.375
    result = _sized(make_bars, run_backtest, [2, -1, 1, -2, 0], commission=FixedCommission(1.0))
    assert _rows(result, "quantity", "entry_price", "exit_price") == [
        (1.0, 1.0, 2.0),
        (2.0, 2.0, 4.0),
    ]
    assert result.exit_trades_df["entry_commission"].to_list() == pytest.approx([0.5, 1.5])
    assert result.exit_trades_df["pnl_net"].to_list() == pytest.approx([-0.5, 1.5])
    assert result.exit_trades_df["return"].to_list() == pytest.approx([-0.5, 0.375])
    # the round trip averages every entry fill: (2 * 1 + 3) / 3
    assert result.trades_df["entry_price"][0] == pytest.approx(5.0 / 3.0)
    # pnl_gross of each exit trade is the fill's realized P&L
    realized = result.fills_df.filter(pl.col("side") == "sell")["realized_pnl"].to_list()
    assert result.exit_trades_df["pnl_gross"].to_list() == realized
    _assert_partition(result)


def test_exit_trades_flip_in_one_fill_splits_the_fill(make_bars: Any, run_backtest: Any) -> None:
    # +1, -2, +2, -2, +1 at 1..5 with commission 1 per order: every middle order closes 1
    # (half its commission) and opens 1 the other way (the other half)
    result = _sized(
        make_bars,
        run_backtest,
        [1, -2, 2, -2, 1],
        account="margin",
        commission=FixedCommission(1.0),
    )
    x = result.exit_trades_df
    assert x["direction"].to_list() == ["long", "short", "long", "short"]
    assert x["quantity"].to_list() == [1.0] * 4
    assert x["entry_price"].to_list() == [1.0, 2.0, 3.0, 4.0]
    assert x["exit_price"].to_list() == [2.0, 3.0, 4.0, 5.0]
    assert x["entry_commission"].to_list() == [1.0, 0.5, 0.5, 0.5]
    assert x["exit_commission"].to_list() == [0.5, 0.5, 0.5, 1.0]
    assert x["pnl_net"].to_list() == pytest.approx([-0.5, -2.0, 0.0, -2.5])
    assert x["return"].to_list() == pytest.approx([-0.5, -1.0, 0.0, -0.625])
    assert x["trade_id"].to_list() == [0, 1, 2, 3]
    assert x["entry_timestamp"].to_list() == DAYS[:4]  # a flip opens at its fill
    assert result.trades_df.height == 4
    _assert_partition(result)


def test_exit_trades_position_open_at_end_is_marked_at_last_price(
    make_bars: Any, run_backtest: Any
) -> None:
    # buy 4 at 1 (commission 1), sell 1 at 2; 3 still held at the last close 5:
    # open exit trade: 3 * (5 - 1) = 12, entry commission 0.75, no exit commission
    result = _sized(make_bars, run_backtest, [4, -1, 0, 0, 0], commission=FixedCommission(1.0))
    closed, still = (
        result.exit_trades_df.row(0, named=True),
        result.exit_trades_df.row(1, named=True),
    )
    assert (closed["pnl_net"], closed["is_open"]) == (pytest.approx(-0.25), False)
    assert still["is_open"] and still["exit_reason"] == "end_of_data"
    assert (still["quantity"], still["entry_price"], still["exit_price"]) == (3.0, 1.0, 5.0)
    assert still["entry_commission"] == pytest.approx(0.75)
    assert still["exit_commission"] == 0.0
    assert still["pnl_gross"] == 12.0
    assert still["pnl_net"] == pytest.approx(11.25)
    assert still["return"] == pytest.approx(11.25 / 3.0)
    assert still["exit_order_id"] is None
    trade = result.trades_df.row(0, named=True)
    assert trade["is_open"] and still["exit_timestamp"] == trade["exit_timestamp"] == DAYS[4]
    # metrics count closed exit trades only
    assert result.metrics["num_exit_trades"] == 1
    assert result.metrics["exit_win_rate"] == 0.0
    assert result.metrics["num_trades"] == 0
    _assert_partition(result)


def test_exit_trades_docs_worked_example(make_bars: Any, run_backtest: Any) -> None:
    # docs/results.md, "Worked example": buy 10 @ 10, sell 4 @ 12, buy 6 @ 11, sell 8 @ 14,
    # 4 held at the last close 13; commission 1 per order
    result = _sized(
        make_bars,
        run_backtest,
        [10, -4, 6, -8, 0],
        closes=[10.0, 12.0, 11.0, 14.0, 13.0],
        commission=FixedCommission(1.0),
    )
    x = result.exit_trades_df
    assert x["quantity"].to_list() == [4.0, 8.0, 4.0]
    assert x["entry_price"].to_list() == [10.0, 10.5, 10.5]
    assert x["exit_price"].to_list() == [12.0, 14.0, 13.0]
    assert x["entry_commission"].to_list() == pytest.approx([0.4, 1.6 * 8 / 12, 1.6 * 4 / 12])
    assert x["exit_commission"].to_list() == [1.0, 1.0, 0.0]
    assert x["pnl_gross"].to_list() == [8.0, 28.0, 10.0]
    assert x["pnl_net"].to_list() == pytest.approx([6.6, 28 - 1 - 1.6 * 8 / 12, 10 - 1.6 / 3])
    assert x["return"].to_list() == pytest.approx([0.165, 0.308730, 0.225397], abs=1e-6)
    assert x["exit_reason"].to_list() == ["signal", "signal", "end_of_data"]
    trade = result.trades_df.row(0, named=True)
    assert (trade["quantity"], trade["entry_price"], trade["exit_price"]) == (16.0, 10.375, 13.25)
    assert (trade["pnl_gross"], trade["pnl_net"]) == (46.0, 42.0)
    m = result.metrics
    assert (m["num_trades"], m["num_exit_trades"], m["exit_win_rate"]) == (0, 2, 1.0)
    assert m["exit_profit_factor"] == math.inf
    assert m["avg_exit_trade_pnl"] == pytest.approx((6.6 + 28 - 1 - 1.6 * 8 / 12) / 2)
    _assert_partition(result)


def test_exit_trades_short_scale_out_with_per_share_commission(
    make_bars: Any, run_backtest: Any
) -> None:
    # short 10 at 50 and 10 at 40 (0.01 per share): basis 45, entry commission 0.2
    # buy 5 at 30: 5 * (45 - 30) = 75 gross, entry commission 0.2 * 5/20 = 0.05, exit 0.05
    # buy 15 at 60: 15 * (45 - 60) = -225, entry commission 0.15, exit 0.15
    result = _sized(
        make_bars,
        run_backtest,
        [-10, -10, 5, 15, 0],
        closes=[50.0, 40.0, 30.0, 60.0, 60.0],
        account="margin",
        commission=PerShareCommission(0.01),
    )
    x = result.exit_trades_df
    assert x["direction"].to_list() == ["short", "short"]
    assert x["entry_price"].to_list() == [45.0, 45.0]
    assert x["pnl_gross"].to_list() == pytest.approx([75.0, -225.0])
    assert x["entry_commission"].to_list() == pytest.approx([0.05, 0.15])
    assert x["exit_commission"].to_list() == pytest.approx([0.05, 0.15])
    assert x["pnl_net"].to_list() == pytest.approx([74.9, -225.3])
    assert x["return"].to_list() == pytest.approx([74.9 / 225.0, -225.3 / 675.0])
    _assert_partition(result)


ES = {
    "ES": {
        "asset_class": "future",
        "multiplier": 50,
        "initial_margin": 12_000,
        "maintenance_margin": 11_000,
        "tick_size": 0.25,
    }
}


def test_exit_trades_futures_multiplier_scales_pnl_and_basis(
    make_bars: Any, run_backtest: Any
) -> None:
    # 2 ES at 4000 (2.5 per contract), sell 1 at 4010, sell 1 at 4030:
    # 1 * 50 * 10 = 500 and 1 * 50 * 30 = 1,500 gross; entry commission 2.5 each, exit 2.5
    # return = pnl_net / (1 * 50 * 4000)
    script = {0: [("buy", 2)], 2: [("sell", 1)], 3: [("sell", 1)]}
    result, _ = run_backtest(
        make_bars([4000.0, 4005.0, 4010.0, 4030.0], asset_id="ES"),
        strategy=ScriptedStrategy(script=script),
        asset_id="ES",
        assets=ES,
        fill_timing="same_bar_close",
        commission=PerShareCommission(2.5),
    )
    x = result.exit_trades_df
    assert x["pnl_gross"].to_list() == [500.0, 1500.0]
    assert x["entry_commission"].to_list() == [2.5, 2.5]
    assert x["exit_commission"].to_list() == [2.5, 2.5]
    assert x["pnl_net"].to_list() == [495.0, 1495.0]
    assert x["return"].to_list() == pytest.approx([495.0 / 200_000.0, 1495.0 / 200_000.0])
    assert x["pnl_gross"].to_list() == result.fills_df["realized_pnl"].to_list()[1:]
    _assert_partition(result)


def test_exit_trades_split_remainder_is_an_exit_in_post_split_units(
    make_bars: Any, run_backtest: Any
) -> None:
    # 101 bought at 150; 3-for-2 split: 151 shares + 0.5 paid in cash at 150 / 1.5 = 100
    # against a basis of 150 / 1.5 = 100 (pnl 0); 151 still held, marked at 102: 302
    days = [datetime(2024, 1, d) for d in (2, 3, 4, 5, 8, 9)]
    closes = [150.0, 150.0, 150.0, 100.0, 102.0, 102.0]
    bars = make_bars(
        closes,
        opens=closes,
        highs=[c + 1 for c in closes],
        lows=[c - 1 for c in closes],
        timestamps=days,
    )
    split = pl.DataFrame(
        [{"asset_id": "A", "action": "split", "ex_date": date(2024, 1, 5), "ratio": 1.5}]
    )
    result, _ = run_backtest(
        bars,
        strategy=ScriptedStrategy(script={0: [("buy", 101)]}),
        fractional=False,
        corporate_actions=split,
    )
    x = result.exit_trades_df
    assert x["exit_reason"].to_list() == ["split_cash_in_lieu", "end_of_data"]
    assert x["quantity"].to_list() == pytest.approx([0.5, 151.0])
    assert x["entry_price"].to_list() == pytest.approx([100.0, 100.0])
    assert x["exit_price"].to_list() == pytest.approx([100.0, 102.0])
    assert x["pnl_gross"].to_list() == pytest.approx([0.0, 302.0])
    assert x["exit_timestamp"][0] == days[3]
    assert x["exit_order_id"][0] is None
    _assert_partition(result)


def test_exit_trades_exit_reason_is_the_reducing_order_tag(
    make_bars: Any, run_backtest: Any
) -> None:
    # a stop loss at 5 % closes the position bought at 100 when the price falls to 90
    result, _ = run_backtest(
        make_bars([100.0, 100.0, 90.0, 90.0]),
        strategy=ScriptedStrategy(script={0: [("buy", 10)]}),
        exits={"stop_loss": 0.05},
    )
    assert result.exit_trades_df["exit_reason"].to_list() == ["stop_loss"]
    assert result.trades_df["exit_reason"].to_list() == ["stop_loss"]
    _assert_partition(result)


def test_exit_trades_no_fills_empty_frame_with_schema(make_bars: Any, run_backtest: Any) -> None:
    result = _sized(make_bars, run_backtest, [0, 0, 0, 0, 0])
    x = result.exit_trades_df
    assert x.height == 0
    assert x.schema["entry_timestamp"] == result.trades_df.schema["entry_timestamp"]
    assert x.schema["holding_period"] == pl.Duration("ns")
    assert result.metrics["num_exit_trades"] == 0
    assert math.isnan(result.metrics["exit_win_rate"])


def test_exit_trades_written_by_to_parquet(
    make_bars: Any, run_backtest: Any, tmp_path: Any
) -> None:
    result = _sized(make_bars, run_backtest, [4, -1, -1, 0, 0], commission=FixedCommission(1.0))
    out = result.to_parquet(tmp_path)
    assert_frame_equal(pl.read_parquet(out / "exit_trades.parquet"), result.exit_trades_df)


# --- an always-invested book ---------------------------------------------------------------


class WeeklyEqualWeight(BatchStrategy):
    """Hold every asset at equal weight, rebalanced every fifth timestamp: never flat."""

    def __init__(self) -> None:
        self.count = 0

    def on_timestamp(self, timestamp: datetime, asset_batch: pl.DataFrame, context: Any) -> None:
        if self.count % 5 == 0:
            ids = self.batch.asset_ids
            self.order_target_percent(ids, np.full(len(ids), 0.3))
        self.count += 1


def test_exit_trades_weekly_rebalanced_book_has_exit_trade_stats() -> None:
    frame = make_long_bars(["A", "B", "C"], 260, seed=3)
    broker = SimulationBroker(initial_cash=100_000.0, commission=PercentageCommission(0.001))
    result = BacktestEngine(PolarsDataFeed(frame), WeeklyEqualWeight(), broker).run()
    m = result.metrics
    # the round trips never close: three open "trades" over the whole year
    assert result.trades_df["is_open"].to_list() == [True, True, True]
    assert m["num_trades"] == 0 and math.isnan(m["win_rate"])
    # every weekly reduction is an exit trade
    closed = result.exit_trades_df.filter(~pl.col("is_open"))
    sells = result.fills_df.filter(pl.col("side") == "sell").height
    assert m["num_exit_trades"] == closed.height == sells > 20
    wins = (closed["pnl_net"] > 0).sum()
    assert m["exit_win_rate"] == pytest.approx(wins / closed.height)
    assert 0.0 < m["exit_win_rate"] < 1.0
    gains = closed.filter(pl.col("pnl_net") > 0)["pnl_net"].sum()
    losses = -closed.filter(pl.col("pnl_net") < 0)["pnl_net"].sum()
    assert m["exit_profit_factor"] == pytest.approx(gains / losses)
    assert m["avg_exit_trade_pnl"] == pytest.approx(closed["pnl_net"].mean())
    assert m["avg_exit_trade_return"] == pytest.approx(closed["return"].mean())
    assert "exit_win_rate" in result.summary()
    _assert_partition(result)


# --- the same records in every mode --------------------------------------------------------

ENTRY, EXIT = 0.03, -0.02


def _momentum_frame() -> pl.DataFrame:
    frame = make_long_bars(["A", "B", "C", "D"], 250, seed=11)
    keep = np.random.default_rng(2).random(frame.height) >= 0.1
    mom = pl.col("close") / pl.col("close").shift(10).over("asset_id") - 1.0
    return (
        frame.filter(pl.Series(keep))
        .with_columns(mom.fill_null(float("nan")).alias("signal"))
        .sort("timestamp", "asset_id")
    )


class PerBarRules(Strategy):
    def __init__(self, assets: list[str]) -> None:
        self.assets = assets

    def on_start(self) -> None:
        for asset in self.assets:
            self.set_exits(asset, stop_loss=0.03)

    def on_market_data(self, event: MarketEvent, context: Context) -> None:
        asset, sig = event.asset_id, event.signals["signal"]
        pos = self.get_position(asset)
        if pos != 0 and sig < EXIT:
            self.close_position(asset)
        elif pos == 0 and sig > ENTRY:
            self.buy_percent(asset, 0.3)


class BatchRules(BatchStrategy):
    def __init__(self, assets: list[str]) -> None:
        self.assets = assets

    def on_start(self) -> None:
        for asset in self.assets:
            self.set_exits(asset, stop_loss=0.03)

    def on_timestamp(self, timestamp: datetime, asset_batch: pl.DataFrame, context: Any) -> None:
        signal = self.batch["signal"]
        for j, asset in enumerate(self.batch.asset_ids):
            pos = self.get_position(asset)
            if pos != 0 and signal[j] < EXIT:
                self.close_position(asset)
            elif pos == 0 and signal[j] > ENTRY:
                self.buy_percent(asset, 0.3)


def _top(scores: list[tuple[str, float]], k: int) -> list[str]:
    finite = [(a, s) for a, s in scores if np.isfinite(s)]
    return [a for a, _ in sorted(finite, key=lambda t: -t[1])[:k]]


class PerBarTopK(Strategy):
    """Rebalance to the top k at the end of each daily session (see test_mode_equivalence)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.scores: list[tuple[str, float]] = []

    def on_market_data(self, event: MarketEvent, context: Context) -> None:
        self.scores.append((event.asset_id, event.signals["signal"]))

    def after_trading_end(self, timestamp: datetime, context: Context) -> None:
        self.rebalance_to_weights({a: 1.0 / self.k for a in _top(self.scores, self.k)})
        self.scores = []


class BatchTopK(BatchStrategy):
    def __init__(self, k: int) -> None:
        self.k = k

    def on_timestamp(self, timestamp: datetime, asset_batch: pl.DataFrame, context: Any) -> None:
        scores = list(zip(self.batch.asset_ids, self.batch["signal"].tolist(), strict=True))
        top = _top(scores, self.k)
        held = list(self.positions)
        assets = held + [a for a in top if a not in held]
        weights = np.array([1.0 / self.k if a in top else 0.0 for a in assets])
        if assets:
            self.order_target_percent(assets, weights)


COSTS = {"commission": PercentageCommission(0.001), "slippage": PercentageSlippage(0.0005)}


def _run(frame: pl.DataFrame, strategy: Strategy, **broker: Any) -> BacktestResult:
    feed = PolarsDataFeed(frame, signal_columns=["signal"])
    return BacktestEngine(feed, strategy, SimulationBroker(initial_cash=100_000.0, **broker)).run()


def _assert_same_exit_trades(results: list[BacktestResult]) -> None:
    first = results[0]
    assert first.exit_trades_df.height > 0
    for other in results[1:]:
        assert_frame_equal(first.fills_df, other.fills_df, check_exact=True)
        assert_frame_equal(first.exit_trades_df, other.exit_trades_df, check_exact=True)
        for key in ("num_exit_trades", "exit_win_rate", "exit_profit_factor"):
            assert first.metrics[key] == other.metrics[key]
    for result in results:
        _assert_partition(result)


def test_exit_trades_rules_with_stops_identical_in_every_mode() -> None:
    frame = _momentum_frame()
    assets = sorted(frame["asset_id"].unique().to_list())
    compiled_rules = SignalStrategy(
        entry_rules=[Rule.signal_above("signal", ENTRY), Rule.not_in_position()],
        exit_rules=[Rule.signal_below("signal", EXIT), Rule.stop_loss(0.03)],
        position_sizer=PercentSizer(0.3),
    )
    results = [
        _run(frame, PerBarRules(assets), **COSTS),
        _run(frame, BatchRules(assets), **COSTS),
        _run(frame, compiled_rules, **COSTS),
    ]
    assert results[2].metadata["mode"] == "compiled"
    reasons = set(results[0].exit_trades_df["exit_reason"].to_list())
    assert {"signal", "stop_loss"} <= reasons
    _assert_same_exit_trades(results)


@pytest.mark.parametrize("costs", [{}, COSTS], ids=["no_costs", "costs"])
def test_exit_trades_top_k_rebalance_identical_in_every_mode(costs: dict[str, Any]) -> None:
    frame = _momentum_frame()
    results = [
        _run(frame, PerBarTopK(2), **costs),
        _run(frame, BatchTopK(2), **costs),
        _run(frame, SignalStrategy(position_sizer=TopKSizer(2, "signal")), **costs),
    ]
    assert results[2].metadata["mode"] == "compiled"
    # rebalancing trims held names: more exit trades than round trips
    assert results[0].exit_trades_df.height > results[0].trades_df.height
    _assert_same_exit_trades(results)


# --- against VectorBT -----------------------------------------------------------------------


@pytest.mark.crossframework
def test_exit_trades_match_vectorbt_exit_trades(make_bars: Any, run_backtest: Any) -> None:
    vbt = pytest.importorskip("vectorbt")
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(7)
    closes = list(np.round(100 * np.cumprod(1 + rng.normal(0, 0.02, 12)), 2))
    # scale in, partial exits, add after a partial exit, a flip, short scale-out, open end
    sizes = [10.0, 5.0, -3.0, -4.0, 6.0, -20.0, 4.0, 0.0, -2.0, 3.0, 0.0, 2.0]
    rate = 0.001
    ours = _sized(
        make_bars,
        run_backtest,
        sizes,
        closes=closes,
        account="margin",
        initial_cash=1_000_000.0,
        commission=PercentageCommission(rate),
    )
    assert ours.fills_df.height == sum(1 for q in sizes if q)
    pf = vbt.Portfolio.from_orders(
        close=pd.Series(closes), size=pd.Series(sizes), fees=rate, init_cash=1_000_000.0
    )
    theirs = pf.exit_trades.records_readable
    x = ours.exit_trades_df
    assert x.height == len(theirs)
    pairs = {
        "quantity": "Size",
        "entry_price": "Avg Entry Price",
        "exit_price": "Avg Exit Price",
        "entry_commission": "Entry Fees",
        "exit_commission": "Exit Fees",
        "pnl_net": "PnL",
        "return": "Return",
    }
    for mine, their in pairs.items():
        assert x[mine].to_list() == pytest.approx(theirs[their].tolist(), rel=1e-9), mine
    assert x["direction"].to_list() == [d.lower() for d in theirs["Direction"]]
    assert x["is_open"].to_list() == [s == "Open" for s in theirs["Status"]]
    # their timestamps are bar positions
    day = {d: i for i, d in enumerate(ours.portfolio_df["timestamp"].to_list())}
    assert [day[t] for t in x["entry_timestamp"]] == theirs["Entry Timestamp"].tolist()
    assert [day[t] for t in x["exit_timestamp"]] == theirs["Exit Timestamp"].tolist()
    assert x["trade_id"].to_list() == theirs["Position Id"].tolist()
