"""Partial fills under a per-bar volume limit, end to end against hand-built bars.

Daily bars from 2024-01-02 written as ``(open, high, low, close)``; volume 1000 per bar
unless stated. With ``volume_limit=0.1`` at most ``0.1 * 1000 = 100`` units of an asset
fill per bar; the rest of an order carries to later bars.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import polars as pl
import pytest

from ml4t.backtest import (
    Order,
    OrderStatus,
    PercentageCommission,
    PerShareCommission,
)
from ml4t.backtest.testing import check_order_reports

Bar = tuple[float, float, float, float]
NEUTRAL: Bar = (100.0, 101.0, 99.0, 100.0)
START = datetime(2024, 1, 2)
PARTIAL = "partial: volume limit 0.1 x bar volume 1000"
# opens 100, 101, 102, 103, 104, 105: a market order placed on bar 0 fills at 101, 102, ...
RISING: list[Bar] = [(100.0 + k, 101.0 + k, 99.0 + k, 100.5 + k) for k in range(6)]


def _bars(rows: list[Bar], make_bars: Any, **kw: Any) -> pl.DataFrame:
    o, h, lo, c = (list(x) for x in zip(*rows, strict=True))
    return make_bars(c, opens=o, highs=h, lows=lo, **kw)


def _day(k: int) -> datetime:
    return START + timedelta(days=k)


def _events(result: Any, order: Order) -> list[tuple[datetime, str]]:
    log = result.orders_df.filter(pl.col("order_id") == order.order_id)
    return log.select("timestamp", "event").rows()


def test_partial_fills_market_250_fills_100_100_50_at_each_open(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # bars 1-3 open 101, 102, 103 with volume 1000 -> 100, 100, 50. Bar 4 has volume 10000
    # so the closing sell of 250 fills at once at its open 104.
    df = _bars(RISING, make_bars, volume=[1_000.0] * 4 + [10_000.0] * 2)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["o"] = s.buy("A", 250)
        for k in (1, 2, 3):
            if at_day(e, k):
                o = s.state["o"]
                s.state[k] = (o.status, o.filled_quantity, s.get_position("A"))
        if at_day(e, 3):
            s.sell("A", 250)

    result, strat = run_backtest(df, on_bar, volume_limit=0.1)
    order = strat.state["o"]
    buys = result.fills_df.filter(pl.col("order_id") == order.order_id)
    assert buys.select("timestamp", "quantity", "price", "reason").rows() == [
        (_day(1), 100.0, 101.0, PARTIAL),
        (_day(2), 100.0, 102.0, PARTIAL),
        (_day(3), 50.0, 103.0, None),  # the last 50 fit under the cap: a complete fill
    ]
    assert strat.state[1] == (OrderStatus.PARTIALLY_FILLED, 100.0, 100.0)
    assert strat.state[2] == (OrderStatus.PARTIALLY_FILLED, 200.0, 200.0)
    assert strat.state[3] == (OrderStatus.FILLED, 250.0, 250.0)
    # (100 * 101 + 100 * 102 + 50 * 103) / 250 = 25450 / 250 = 101.8
    assert order.avg_fill_price == pytest.approx(101.8, abs=1e-12)
    assert _events(result, order) == [
        (_day(0), "submitted"),
        (_day(1), "partially_filled"),
        (_day(2), "partially_filled"),
        (_day(3), "filled"),
    ]
    filled_reasons = result.orders_df.filter(
        (pl.col("order_id") == order.order_id) & (pl.col("event") == "partially_filled")
    )["reason"].to_list()
    assert filled_reasons == [PARTIAL, PARTIAL]
    trade = result.trades_df.row(0, named=True)
    assert result.trades_df.height == 1
    assert trade["quantity"] == 250.0
    assert trade["entry_price"] == pytest.approx(101.8, abs=1e-12)
    assert trade["exit_price"] == 104.0
    assert trade["entry_timestamp"] == _day(1)
    assert trade["pnl_gross"] == pytest.approx(250 * (104.0 - 101.8), abs=1e-9)
    assert strat.cancelled == [] and strat.rejected == []


def test_partial_fills_two_orders_on_one_asset_share_bar_volume(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # cap 100 per bar for the asset: bar 1 gives the first order its 80 and the second the
    # remaining 20; bar 2 fills the second order's last 40
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["a"] = s.buy("A", 80, tag="a")
            s.state["b"] = s.buy("A", 60, tag="b")

    result, strat = run_backtest(_bars(RISING, make_bars), on_bar, volume_limit=0.1)
    got = result.fills_df.select("timestamp", "tag", "quantity", "price").rows()
    assert got == [
        (_day(1), "a", 80.0, 101.0),
        (_day(1), "b", 20.0, 101.0),
        (_day(2), "b", 40.0, 102.0),
    ]
    # b's average: (20 * 101 + 40 * 102) / 60 = 6100 / 60
    assert strat.state["b"].avg_fill_price == pytest.approx(6100.0 / 60.0, abs=1e-12)
    assert result.fills_df.filter(pl.col("tag") == "b")["reason"].to_list() == [PARTIAL, None]


def test_partial_fills_per_share_minimum_charged_once_per_order(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # PerShareCommission(0.01, minimum=2): the order owes max(2, 0.01 * 250) = 2.5 in all.
    # fill 1: max(2, 0.01 * 100) = 2.0; fill 2: max(2, 0.01 * 200) - 2.0 = 0.0;
    # fill 3: max(2, 0.01 * 250) - 2.0 = 0.5. (Three separate minimums would be 6.0.)
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["o"] = s.buy("A", 250)

    model = PerShareCommission(0.01, minimum=2.0)
    assert hasattr(model, "calculate_partial")
    result, strat = run_backtest(
        _bars(RISING, make_bars), on_bar, volume_limit=0.1, commission=model
    )
    commissions = result.fills_df["commission"].to_list()
    assert commissions == [pytest.approx(x, abs=1e-12) for x in (2.0, 0.0, 0.5)]
    assert strat.state["o"].commission == pytest.approx(2.5, abs=1e-12)
    assert result.metrics["total_commission"] == pytest.approx(2.5, abs=1e-12)
    # cash: 100000 - (100 * 101 + 100 * 102 + 50 * 103) - 2.5 = 100000 - 25450 - 2.5
    assert result.portfolio_df["cash"][-1] == pytest.approx(100_000.0 - 25_450.0 - 2.5, abs=1e-9)


def test_partial_fills_percentage_minimum_charged_once_per_order(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # PercentageCommission(0.001, minimum=30): the order's notional 25450 owes
    # max(30, 0.001 * 25450 = 25.45) = 30 in all, paid on the first fill (max(30, 10.1))
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.buy("A", 250)

    model = PercentageCommission(0.001, minimum=30.0)
    result, _ = run_backtest(_bars(RISING, make_bars), on_bar, volume_limit=0.1, commission=model)
    commissions = result.fills_df["commission"].to_list()
    assert commissions == [pytest.approx(x, abs=1e-12) for x in (30.0, 0.0, 0.0)]
    assert result.metrics["total_commission"] == pytest.approx(30.0, abs=1e-12)


#: fills of 100 @ 100, 50 @ 102 and 100 @ 104 for one order of 250 (volume_limit 0.1)
STEPPED: list[Bar] = [NEUTRAL, NEUTRAL, (102.0, 103.0, 101.0, 102.0), (104.0, 105.0, 103.0, 104.0)]
STEPPED_VOLUME = [1_000.0, 1_000.0, 500.0, 1_000.0]


def test_partial_fills_percentage_minimum_uses_the_earlier_fills_own_value(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # 0.1 % with a 20 minimum: the order owes max(20, 0.001 * (10,000 + 5,100 + 10,400)) =
    # 25.50 in all: 20 (the minimum), then 0 (max(20, 15.10) - 20), then 25.50 - 20 = 5.50.
    # Re-pricing the earlier 150 shares at the last fill's 104 would charge 6.00.
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.buy("A", 250)

    model = PercentageCommission(0.001, minimum=20.0)
    df = _bars(STEPPED, make_bars, volume=STEPPED_VOLUME)
    result, _ = run_backtest(df, on_bar, volume_limit=0.1, commission=model)
    assert result.fills_df.select("quantity", "price").rows() == [
        (100.0, 100.0),
        (50.0, 102.0),
        (100.0, 104.0),
    ]
    commissions = result.fills_df["commission"].to_list()
    assert commissions == [pytest.approx(x, abs=1e-12) for x in (20.0, 0.0, 5.5)]


def test_partial_fills_per_share_cap_uses_the_earlier_fills_own_value(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # 0.01 per share capped at 0.005 % of the order's value: the caps after each fill are
    # 0.5, 0.755 and 1.275 (values 10,000, 15,100 and 25,500), so the fills pay 0.5, 0.255
    # and 0.52. Estimating the earlier value at the current price gives 0.265 and 0.545.
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.buy("A", 250)

    model = PerShareCommission(0.01, maximum_rate=0.00005)
    df = _bars(STEPPED, make_bars, volume=STEPPED_VOLUME)
    result, _ = run_backtest(df, on_bar, volume_limit=0.1, commission=model)
    commissions = result.fills_df["commission"].to_list()
    assert commissions == [pytest.approx(x, abs=1e-12) for x in (0.5, 0.255, 0.52)]


def test_partial_fills_limit_order_fills_each_part_at_limit(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # buy limit 99.5 for 250; every bar opens 100 and dips to 99 -> 100/100/50 at 99.5
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["o"] = s.buy("A", 250, limit_price=99.5)

    result, strat = run_backtest(_bars([NEUTRAL] * 5, make_bars), on_bar, volume_limit=0.1)
    got = result.fills_df.select("timestamp", "quantity", "price").rows()
    assert got == [(_day(1), 100.0, 99.5), (_day(2), 100.0, 99.5), (_day(3), 50.0, 99.5)]
    assert strat.state["o"].avg_fill_price == 99.5


def test_partial_fills_zero_volume_bar_fills_nothing_and_carries_over(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # bar 1 has volume 0 -> cap 0, nothing fills; bar 2 (volume 1000) fills all 50 at 102
    df = _bars(RISING[:4], make_bars, volume=[1_000.0, 0.0, 1_000.0, 1_000.0])

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["o"] = s.buy("A", 50)

    result, strat = run_backtest(df, on_bar, volume_limit=0.1)
    assert result.fills_df.select("timestamp", "quantity", "price").rows() == [
        (_day(2), 50.0, 102.0)
    ]
    assert strat.state["o"].status is OrderStatus.FILLED
    assert strat.cancelled == []


def test_partial_fills_cancel_after_partial_keeps_filled_part(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # 100 fill on bar 1; the strategy cancels the other 150 on bar 1
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["o"] = s.buy("A", 250)
        if at_day(e, 1):
            s.cancel_order(s.state["o"])

    result, strat = run_backtest(_bars(RISING, make_bars), on_bar, volume_limit=0.1)
    order = strat.state["o"]
    assert result.fills_df.select("timestamp", "quantity").rows() == [(_day(1), 100.0)]
    assert order.status is OrderStatus.CANCELLED
    assert (order.filled_quantity, order.avg_fill_price) == (100.0, 101.0)
    assert strat.cancelled == [(order, "cancelled by the strategy")]
    assert result.trades_df["quantity"].to_list() == [100.0]
    check_order_reports(result, strat)


def test_partial_fills_volume_share_slippage_caps_and_prices_each_part(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # VolumeShareSlippage(volume_limit=0.05, price_impact=0.1): cap 0.05 x 1000 = 50 per bar,
    # 120 -> 50 / 50 / 20. Price = open * (1 + 0.1 * share**2):
    # 101 * (1 + 0.1 * 0.05**2), 102 * (1 + 0.1 * 0.05**2), 103 * (1 + 0.1 * 0.02**2)
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.buy("A", 120)

    slippage = {"model": "volume_share", "params": {"volume_limit": 0.05, "price_impact": 0.1}}
    result, _ = run_backtest(_bars(RISING, make_bars), on_bar, slippage=slippage)
    got = result.fills_df.select("quantity", "price").rows()
    want = [
        (50.0, 101.0 * (1 + 0.1 * 0.05**2)),
        (50.0, 102.0 * (1 + 0.1 * 0.05**2)),
        (20.0, 103.0 * (1 + 0.1 * 0.02**2)),
    ]
    assert [q for q, _ in got] == [q for q, _ in want]
    assert [p for _, p in got] == [pytest.approx(p, abs=1e-9) for _, p in want]
    reasons = result.fills_df["reason"].to_list()
    assert reasons == ["partial: volume limit 0.05 x bar volume 1000"] * 2 + [None]


def test_partial_fills_sell_exit_split_across_bars(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # buy 250 on bar 0 with volume 10000 on bar 1 (one fill at 101); sell 250 on bar 1,
    # bars 2-4 have volume 1000 -> 100 at 102, 100 at 103, 50 at 104
    df = _bars(RISING, make_bars, volume=[1_000.0, 10_000.0] + [1_000.0] * 4)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.buy("A", 250)
        if at_day(e, 1):
            s.state["o"] = s.sell("A", 250)

    result, strat = run_backtest(df, on_bar, volume_limit=0.1)
    sells = result.fills_df.filter(pl.col("side") == "sell")
    assert sells.select("timestamp", "quantity", "price").rows() == [
        (_day(2), 100.0, 102.0),
        (_day(3), 100.0, 103.0),
        (_day(4), 50.0, 104.0),
    ]
    # exit average (100 * 102 + 100 * 103 + 50 * 104) / 250 = 25700 / 250 = 102.8
    assert strat.state["o"].avg_fill_price == pytest.approx(102.8, abs=1e-12)
    assert result.trades_df["quantity"].sum() == 250.0
    # P&L over all pieces: 250 * (102.8 - 101) = 450
    assert result.trades_df["pnl_gross"].sum() == pytest.approx(450.0, abs=1e-9)
    assert result.portfolio_df["num_positions"][-1] == 0


@pytest.mark.parametrize(
    "trigger",
    [{"stop_price": 95.0}, {"trail_amount": 5.0}],  # trail: close 100 - 5 = 95 as well
    ids=["stop", "trailing_stop"],
)
def test_partial_fills_triggered_stop_remainder_fills_as_market_on_later_bars(
    trigger: dict[str, float], make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # long 250 from bar 1 (volume 10000). Sell stop at 95 placed on bar 1. Bar 2 gaps to 94:
    # the stop triggers and 100 fill at the open 94. Bars 3-4 (open 96, low 95.5) never
    # trade at 95 again, but a triggered stop is a market order (Backtrader, Zipline): the
    # remainder fills 100 at bar 3's open 96 and 50 at bar 4's open 96.
    rows = [NEUTRAL, NEUTRAL, (94.0, 96.0, 93.0, 95.0)] + [(96.0, 97.0, 95.5, 96.5)] * 3
    df = _bars(rows, make_bars, volume=[1_000.0, 10_000.0] + [1_000.0] * 4)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.buy("A", 250)
        if at_day(e, 1):
            s.state["o"] = s.sell("A", 250, **trigger)

    result, strat = run_backtest(df, on_bar, volume_limit=0.1)
    sells = result.fills_df.filter(pl.col("side") == "sell")
    assert sells.select("timestamp", "quantity", "price").rows() == [
        (_day(2), 100.0, 94.0),
        (_day(3), 100.0, 96.0),
        (_day(4), 50.0, 96.0),
    ]
    assert strat.state["o"].status is OrderStatus.FILLED
