"""Orders that compete for one position: closes are reduce-only, targets resolve at fill time.

Each case was observed with the engine before the rule existed (issue 15): the broker closes a
position by itself (a stop, a margin call) on the same bar on which the strategy acts on it,
and both orders fill. Every expected number below is worked out by hand from the bars.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ml4t.backtest import (
    BacktestEngine,
    BatchStrategy,
    ConfigError,
    PercentSizer,
    PolarsDataFeed,
    Rule,
    SignalStrategy,
    SimulationBroker,
)
from ml4t.backtest.builtin import fills as fills_module

START = datetime(2024, 1, 2)


def _bars(rows: list[tuple[float, float, float, float]], asset: str = "X", **cols: Any) -> Any:
    """Daily bars from (open, high, low, close) rows."""
    n = len(rows)
    o, h, lo, c = (list(x) for x in zip(*rows, strict=True))
    return pl.DataFrame(
        {
            "timestamp": [START + timedelta(days=i) for i in range(n)],
            "asset_id": [asset] * n,
            "open": o,
            "high": h,
            "low": lo,
            "close": c,
            "volume": [1e9] * n,
            **cols,
        }
    )


def _flat_bar(p: float) -> tuple[float, float, float, float]:
    p = float(p)
    return (p, p * 1.01, p * 0.99, p)


def _day(event: Any) -> int:
    return (event.timestamp - START).days


def _positions(result: Any, asset: str = "X") -> list[float]:
    """The position after every fill of ``asset``, from fills_df."""
    fills = result.fills_df.filter(pl.col("asset_id") == asset)
    signed = np.where(fills["side"].to_numpy() == "buy", 1.0, -1.0) * fills["quantity"].to_numpy()
    return np.cumsum(signed).tolist()


def _events(result: Any, order_id: int) -> list[tuple[str, str | None]]:
    rows = result.orders_df.filter(pl.col("order_id") == order_id)
    return list(zip(rows["event"].to_list(), rows["reason"].to_list(), strict=True))


# --- margin call and close_position on the same bar ------------------------------------------
def test_margin_call_and_close_position_same_bar_close_once_never_short(
    run_backtest: Any,
) -> None:
    # open = close = 100, 100, 60, 58, 57, 56, 55; a margin account with 100,000 cash buys
    # 1,900 at bar 1's open (190,000 notional at 2x). At bar 2 (60) equity is
    # 100,000 - 1,900 * 40 = 24,000 < 0.25 * 1,900 * 60 = 28,500: a margin call at its close,
    # and the strategy, down 40 %, calls close_position on the same bar. Both sells reach
    # bar 3's open (58): the strategy's (the older order) sells 1,900, the liquidation has
    # nothing left to reduce and is cancelled.
    df = _bars([_flat_bar(float(p)) for p in (100, 100, 60, 58, 57, 56, 55)])

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _day(e) == 0:
            s.buy("X", 1900)
        elif s.get_position("X") > 0 and s.get_unrealized_pnl_pct("X") < -0.30:
            s.state["close"] = s.close_position("X")

    result, strat = run_backtest(df, on_bar, asset_id=None, account="margin")
    assert _positions(result) == [1900.0, 0.0]
    sells = result.fills_df.filter(pl.col("side") == "sell")
    assert sells["price"].to_list() == [58.0]
    assert sells["order_id"].to_list() == [strat.state["close"].order_id]
    assert result.metrics["margin_calls"] == 1
    liquidation = result.orders_df.filter(pl.col("tag") == "margin_call")
    assert liquidation["event"].to_list() == ["submitted", "cancelled"]
    assert liquidation["reason"].to_list()[-1] == (
        "cancelled: reduce-only order, no long position in X left to reduce (position 0)"
    )
    final = result.portfolio_df.row(-1, named=True)
    assert final["equity"] == pytest.approx(100_000 - 1900 * 42)
    assert final["cash"] == final["equity"]


def test_margin_call_cancels_working_orders_that_add_exposure(run_backtest: Any) -> None:
    # the same crash; the strategy also rests a limit buy at 50 (an averaging-down order). The
    # margin call liquidates the position and cancels that buy, saying why; a reduce-only
    # take-profit the strategy placed stays (it cannot add exposure) and is cancelled at fill
    # time only if it ever triggers on a flat position.
    df = _bars([_flat_bar(float(p)) for p in (100, 100, 60, 58, 57, 56, 55)])

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _day(e) == 0:
            s.buy("X", 1900)
        if _day(e) == 1:
            s.state["dip"] = s.buy("X", 100, limit_price=50.0)
            s.state["tp"] = s.sell("X", 1900, limit_price=150.0, reduce_only=True)

    result, strat = run_backtest(df, on_bar, asset_id=None, account="margin")
    assert _positions(result) == [1900.0, 0.0]
    dip = strat.state["dip"]
    assert dip.status.value == "cancelled"
    assert _events(result, dip.order_id)[-1] == (
        "cancelled",
        "cancelled: margin call liquidates the X position; working orders that would add "
        "exposure to it are cancelled",
    )
    assert (dip, dip.reason) in strat.cancelled
    assert strat.state["tp"].is_open  # reduce-only: left working


# --- a position exit and a target order on the same bar --------------------------------------
def test_stop_gap_and_target_percent_same_bar_ends_at_target(run_backtest: Any) -> None:
    # margin account, stop-loss 5 % below the entry. Bar 0 targets +95 % (950 at 100, filled
    # at bar 1's open); bar 2 targets -95 % of equity 100,000 at 100: -950 (a sell of 1,900
    # when placed). Bar 3 gaps to 80: the stop (95) fills first at the open, selling the
    # 950; the target order then needs only 950 more to reach -950. Before the rule it sold
    # 1,900 and ended short 1,900 (gross leverage 1.88 against 0.95).
    df = _bars([_flat_bar(100)] * 3 + [(80.0, 81.0, 79.0, 80.0), _flat_bar(80)])

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _day(e) == 0:
            s.order_target_percent("X", 0.95)
        if _day(e) == 2:
            s.state["target"] = s.order_target_percent("X", -0.95)

    result, strat = run_backtest(
        df, on_bar, asset_id=None, account="margin", exits={"stop_loss": 0.05}
    )
    target = strat.state["target"]
    assert target.target_quantity == -950.0
    assert _positions(result) == [950.0, 0.0, -950.0]
    fills = result.fills_df
    assert fills["tag"].to_list() == [None, "stop_loss", None]
    assert fills["price"].to_list() == [100.0, 80.0, 80.0]
    assert fills["reason"].to_list()[-1] == (
        "target order: 950 to reach the target -950 (order for 1900)"
    )
    bar3 = result.portfolio_df.row(3, named=True)
    equity = 100_000 - 950 * 20
    assert bar3["equity"] == pytest.approx(equity)
    assert bar3["gross_leverage"] == pytest.approx(950 * 80 / equity)
    assert bar3["gross_leverage"] < 0.95


def test_target_order_already_at_target_is_cancelled_with_reason(run_backtest: Any) -> None:
    # two target orders for the same target placed on one bar: the first fills, the second
    # finds the position at its target and is cancelled instead of doubling it (the stacking
    # Backtrader and Zipline document for their order_target functions)
    df = _bars([_flat_bar(100)] * 4)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _day(e) == 0:
            s.state["a"] = s.order_target_quantity("X", 300)
            s.state["b"] = s.order_target_quantity("X", 300)

    result, strat = run_backtest(df, on_bar, asset_id=None)
    assert _positions(result) == [300.0]
    b = strat.state["b"]
    assert _events(result, b.order_id)[-1] == (
        "cancelled",
        "cancelled: target order, X is already at its target 300",
    )
    assert (b, b.reason) in strat.cancelled


def test_target_order_past_its_target_is_cancelled_not_reversed(run_backtest: Any) -> None:
    # hold 500; target 300 (a sell of 200) and, on the same bar, a plain sell of 400 that fills
    # first (it is older): the position (100) is already below the target, which a sell can
    # never reach: the target order is cancelled, it does not turn into a buy
    df = _bars([_flat_bar(100)] * 4)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _day(e) == 0:
            s.buy("X", 500)
        if _day(e) == 1:
            s.sell("X", 400)
            s.state["t"] = s.order_target_quantity("X", 300)

    result, strat = run_backtest(df, on_bar, asset_id=None)
    assert _positions(result) == [500.0, 100.0]
    assert _events(result, strat.state["t"].order_id)[-1] == (
        "cancelled",
        "cancelled: target order, the position 100 in X is already past its target 300 "
        "(reaching it needs a buy)",
    )


# --- a signal exit and a stop on the same bar -------------------------------------------------
SIG = [0.9, 0.7, 0.1, 0.1, 0.1]
GAP = [_flat_bar(100.0)] * 3 + [(90.0, 91.0, 89.0, 90.0), _flat_bar(90.0)]


def _close_on_signal(s: Any, e: Any, c: Any) -> bool:
    """Buy 100 on a high signal when flat, close on a low one; True when it closed."""
    pos = s.get_position("X")
    if e.signals["sig"] > 0.5 and pos == 0:
        s.buy("X", 100)
    elif e.signals["sig"] < 0.5 and pos > 0:
        s.state["close"] = s.close_position("X")
        return True
    return False


def _signal_strategy(compiled: bool) -> SignalStrategy:
    return SignalStrategy(
        entry_rules=[Rule.signal_above("sig", 0.5), Rule.not_in_position()],
        exit_rules=[Rule.signal_below("sig", 0.5), Rule.stop_loss(0.05)],
        position_sizer=PercentSizer(0.5),
        compiled=compiled,
    )


@pytest.mark.parametrize("account", ["simple", "margin", "cash"])
def test_close_position_and_stop_gap_same_bar_long_only_stays_flat(
    run_backtest: Any, account: str
) -> None:
    # long from bar 1 (open 100) with a 5 % stop (95); the exit signal on bar 2 closes the
    # position at bar 3's open, where the price gaps to 90 through the stop. The stop fills
    # first (exits rank stops first at the same point of the bar), the close finds nothing
    # to sell and is cancelled: a long-only strategy never goes short, and a cash account
    # reports a cancellation, not a rejection.
    df = _bars(GAP, sig=SIG)
    result, strat = run_backtest(
        df, _close_on_signal, asset_id=None, account=account, exits={"stop_loss": 0.05}
    )
    assert _positions(result) == [100.0, 0.0]
    assert result.fills_df["tag"].to_list() == [None, "stop_loss"]
    close = strat.state["close"]
    assert close.reduce_only
    assert strat.rejected == []
    assert (close, close.reason) in strat.cancelled
    assert close.reason == (
        "cancelled: reduce-only order, no long position in X left to reduce (position 0)"
    )
    assert result.trades_df["exit_reason"].to_list() == ["stop_loss"]


@pytest.mark.parametrize("timing", ["next_bar_open", "next_bar_close"])
def test_signal_strategy_exit_and_stop_same_bar_compiled_equals_event(timing: str) -> None:
    # the declarative form of the case above, in the kernel and on the event path. With
    # next_bar_close the signal exit fills at bar 3's close, after the stop hit intrabar
    bars = GAP if timing == "next_bar_open" else [*GAP[:3], (99.0, 99.5, 93.0, 94.0), GAP[4]]
    runs = []
    for compiled in (True, False):
        feed = PolarsDataFeed(_bars(bars, sig=SIG), signal_columns=["sig"])
        broker = SimulationBroker(account="simple", fill_timing=timing)
        result = BacktestEngine(feed, _signal_strategy(compiled), broker).run()
        assert result.metadata["mode"] == ("compiled" if compiled else "event")
        runs.append(result)
    compiled_run, event_run = runs
    for result in runs:
        positions = _positions(result)
        assert positions[-1] == 0.0 and min(positions) == 0.0
        assert result.fills_df["tag"].to_list() == [None, "stop_loss"]
    for name in ("fills_df", "trades_df", "portfolio_df"):
        assert_frame_equal(getattr(compiled_run, name), getattr(event_run, name))
    cancelled = event_run.orders_df.filter(pl.col("event") == "cancelled")
    assert cancelled["reason"].to_list() == [
        "cancelled: reduce-only order, no long position in X left to reduce (position 0)"
    ]
    assert compiled_run.metadata["unfilled_orders"] == [
        ("cancelled", "reduce-only order, no position left to reduce", 1)
    ]


def test_reduce_position_capped_at_what_is_left(run_backtest: Any) -> None:
    # hold 100; the strategy sells 70 and asks reduce_position(0.5) (50) on the same bar:
    # the older sell leaves 30, so the reduce-only order fills 30, not 50 (no short 20)
    df = _bars([_flat_bar(100)] * 4)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _day(e) == 0:
            s.buy("X", 100)
        if _day(e) == 1:
            s.sell("X", 70)
            s.state["r"] = s.reduce_position("X", 0.5)

    result, strat = run_backtest(df, on_bar, asset_id=None, account="margin")
    assert _positions(result) == [100.0, 30.0, 0.0]
    assert result.fills_df["reason"].to_list()[-1] == (
        "reduce-only: capped at the open position 30 (order for 50)"
    )
    assert strat.state["r"].quantity == 30.0 and strat.state["r"].filled_quantity == 30.0


# --- the same rule in the batch fill kernel ----------------------------------------------------
class _DoubleClose(BatchStrategy):
    """Buy every asset; later sell each in full twice on one bar, then re-target twice."""

    def on_timestamp(self, timestamp: datetime, asset_batch: Any, context: Any) -> None:
        day = (timestamp - START).days
        for asset in self.batch.asset_ids:
            if day == 0:
                self.buy(asset, 10)
            elif day == 1:
                self.sell(asset, self.get_position(asset))
                self.close_position(asset)
            elif day == 2:
                self.order_target_quantity(asset, 4)
                self.order_target_quantity(asset, 4)


def test_batch_kernel_resolves_intents_like_the_python_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 10 assets, so each phase submits >= 8 plain market orders: with the threshold at 8 they
    # go through the batch kernel, at 10**9 through the Python path; both give the same frames
    frames = [_bars([_flat_bar(100)] * 5, asset=f"A{k}") for k in range(10)]
    data = pl.concat(frames).sort("timestamp", "asset_id")
    runs = []
    for threshold in (8, 10**9):
        monkeypatch.setattr(fills_module, "_KERNEL_BATCH", threshold)
        broker = SimulationBroker(account="simple")
        runs.append(BacktestEngine(PolarsDataFeed(data), _DoubleClose(), broker).run())
    for result in runs:
        for k in range(10):
            assert _positions(result, f"A{k}") == [10.0, 0.0, 4.0]
        cancelled = result.orders_df.filter(pl.col("event") == "cancelled")
        assert sorted(cancelled["reason"].to_list()) == sorted(
            f"cancelled: {what}"
            for k in range(10)
            for what in (
                f"reduce-only order, no long position in A{k} left to reduce (position 0)",
                f"target order, A{k} is already at its target 4",
            )
        )
    for name in ("fills_df", "orders_df", "trades_df", "portfolio_df"):
        assert_frame_equal(getattr(runs[0], name), getattr(runs[1], name))


def test_target_order_working_across_a_split_targets_post_split_units(run_backtest: Any) -> None:
    # target 100 at bar 0 fills 30 a bar (volume 30, volume_limit 1.0); a 2-for-1 split before
    # bar 2 turns the 30 held into 60 and the target into 200: the order ends at 200, not 100
    rows = [_flat_bar(100.0)] * 2 + [_flat_bar(50.0)] * 8
    df = _bars(rows).with_columns(pl.lit(30.0).alias("volume"))
    split = pl.DataFrame(
        {"asset_id": ["X"], "action": ["split"], "ex_date": [START.date() + timedelta(days=2)]}
    ).with_columns(pl.lit(2.0).alias("ratio"))

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _day(e) == 0:
            s.state["t"] = s.order_target_quantity("X", 100)

    result, strat = run_backtest(
        df, on_bar, asset_id=None, volume_limit=1.0, corporate_actions=split
    )
    target = strat.state["t"]
    assert target.target_quantity == 200.0
    assert target.status.value == "filled"
    fills = result.fills_df["quantity"].to_list()
    assert fills == [30.0, 30.0, 30.0, 30.0, 30.0, 20.0]
    assert strat.get_position("X") == 200.0


def test_order_sizing_at_order_keeps_the_order_time_quantity(run_backtest: Any) -> None:
    # Backtrader's and Zipline's sizing, on request: the close placed on bar 2 is a plain
    # sell of 100, so after the stop fills at the gap it sells 100 more: short 100
    df = _bars(GAP, sig=SIG)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _close_on_signal(s, e, c):
            s.state["target"] = s.order_target_quantity("X", 0)

    result, strat = run_backtest(
        df,
        on_bar,
        asset_id=None,
        account="margin",
        exits={"stop_loss": 0.05},
        order_sizing="at_order",
    )
    assert not strat.state["close"].reduce_only
    assert strat.state["target"].target_quantity is None
    assert _positions(result)[:4] == [100.0, 0.0, -100.0, -200.0]


@pytest.mark.parametrize("name", ["vectorbt", "backtrader", "zipline"])
def test_presets_keep_fill_time_sizing(name: str) -> None:
    assert SimulationBroker.preset(name).order_sizing == "at_fill"
    assert SimulationBroker().order_sizing == "at_fill"
    with pytest.raises(ConfigError, match="order_sizing: must be one of"):
        SimulationBroker(order_sizing="later")
