"""Futures accounting and the asset registry (lots, minimum size, ticks, crypto) end to end.

Expected values are computed by hand from the designed bars, with the arithmetic in comments.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl
import pytest

from ml4t.backtest import FixedSlippage, PerShareCommission

DAYS = [datetime(2024, 1, d) for d in (2, 3, 4, 5, 8, 9, 10, 11)]
ES = {
    "ES": {
        "asset_class": "future",
        "multiplier": 50,
        "initial_margin": 12_000,
        "maintenance_margin": 11_000,
        "tick_size": 0.25,
    }
}


def _frame(
    make_bars: Any, rows: list[tuple[float, float, float, float]], asset_id: str | None = None
) -> pl.DataFrame:
    """Return bars from (open, high, low, close) rows on the business days of ``DAYS``."""
    o, h, lo, c = (list(x) for x in zip(*rows, strict=True))
    return make_bars(c, opens=o, highs=h, lows=lo, timestamps=DAYS[: len(rows)], asset_id=asset_id)


def _bar(e: Any) -> int:
    return DAYS.index(e.timestamp)


# --- futures -------------------------------------------------------------------------------
ES_ROWS = [
    (4000.0, 4005.0, 3995.0, 4000.0),  # 0: order
    (4000.0, 4012.0, 3995.0, 4010.0),  # 1: entry fills at 4000
    (4010.0, 4015.0, 3985.0, 3990.0),  # 2
    (3990.0, 4021.0, 3989.0, 4020.0),  # 3: exit order
    (4030.0, 4035.0, 4025.0, 4030.0),  # 4: exit fills at 4030
]


def _long_two_es(make_bars: Any, run_backtest: Any, **kw: Any) -> tuple[Any, Any]:
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.buy("ES", 2)
        if _bar(e) == 3:
            s.sell("ES", 2)

    return run_backtest(
        _frame(make_bars, ES_ROWS),
        on_bar,
        asset_id="ES",
        assets=ES,
        commission=PerShareCommission(2.5),
        **kw,
    )


def test_future_long_equity_is_cash_plus_multiplied_pnl(make_bars: Any, run_backtest: Any) -> None:
    result, strat = _long_two_es(make_bars, run_backtest)
    assert strat.rejected == []
    pdf = result.portfolio_df
    # the entry moves cash only by commission: 100,000 - 2 * 2.5 = 99,995
    # exit: + realized 2 * 50 * (4030 - 4000) = 3,000 - 5 commission = 102,990
    assert pdf["cash"].to_list() == pytest.approx(
        [100_000.0, 99_995.0, 99_995.0, 99_995.0, 102_990.0]
    )
    # equity = 99,995 + 2 * 50 * (close - 4000) while open
    assert pdf["equity"].to_list() == pytest.approx(
        [
            100_000.0,
            99_995.0 + 100 * 10,  # 100,995
            99_995.0 + 100 * -10,  # 98,995
            99_995.0 + 100 * 20,  # 101,995
            102_990.0,
        ]
    )
    # positions_value = unrealized P&L
    assert pdf["positions_value"].to_list() == pytest.approx([0.0, 1_000.0, -1_000.0, 2_000.0, 0.0])
    trade = result.trades_df.row(0, named=True)
    assert trade["pnl_gross"] == pytest.approx(2 * 50 * (4030 - 4000))  # 3,000
    assert trade["pnl_net"] == pytest.approx(3_000.0 - 10.0)
    assert trade["entry_price"] == 4000.0
    assert trade["exit_price"] == 4030.0
    assert result.fills_df["realized_pnl"].to_list() == pytest.approx([0.0, 3_000.0])
    assert result.final_equity == pytest.approx(102_990.0)


def test_future_gross_leverage_uses_notional(make_bars: Any, run_backtest: Any) -> None:
    result, _ = _long_two_es(make_bars, run_backtest)
    pdf = result.portfolio_df
    # bar 1: notional 2 * 50 * 4010 = 401,000 over equity 100,995
    assert pdf["gross_leverage"][1] == pytest.approx(401_000.0 / 100_995.0)
    # bar 2: 2 * 50 * 3990 = 399,000 over 98,995
    assert pdf["gross_leverage"][2] == pytest.approx(399_000.0 / 98_995.0)
    assert pdf["gross_leverage"][4] == 0.0


def test_future_net_leverage_uses_signed_notional(make_bars: Any, run_backtest: Any) -> None:
    # a long of 401,000 notional on 100,995 equity is ~3.97x net long, as for a stock
    result, _ = _long_two_es(make_bars, run_backtest)
    pdf = result.portfolio_df
    assert pdf["net_leverage"][1] == pytest.approx(401_000.0 / 100_995.0)


def test_future_order_needing_more_margin_than_equity_rejected(
    make_bars: Any, run_backtest: Any
) -> None:
    # 12,000 per contract against 100,000 equity: 8 contracts (96,000) fit, 9 (108,000) do not
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.state["nine"] = s.buy("ES", 9)
        if _bar(e) == 1:
            s.state["eight"] = s.buy("ES", 8)

    result, strat = run_backtest(_frame(make_bars, ES_ROWS[:3]), on_bar, asset_id="ES", assets=ES)
    assert [o for o, _ in strat.rejected] == [strat.state["nine"]]
    assert strat.rejected[0][1] == (
        "insufficient margin: the position would need 108,000.00 initial margin, equity 100,000.00"
    )
    assert result.fills_df.select("timestamp", "quantity", "price").rows() == [
        (DAYS[2], 8.0, 4010.0)
    ]


def test_future_short_gains_when_price_falls(make_bars: Any, run_backtest: Any) -> None:
    rows = [
        (4000.0, 4005.0, 3995.0, 4000.0),
        (4000.0, 4005.0, 3945.0, 3950.0),  # short 3 fills at 4000
        (3950.0, 3955.0, 3895.0, 3900.0),
    ]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.sell("ES", 3)

    result, _ = run_backtest(
        _frame(make_bars, rows),
        on_bar,
        asset_id="ES",
        assets=ES,
        account="margin",
        commission=PerShareCommission(2.5),
    )
    pdf = result.portfolio_df
    # no short-sale proceeds: cash 100,000 - 3 * 2.5 = 99,992.50
    assert pdf["cash"].to_list() == pytest.approx([100_000.0, 99_992.5, 99_992.5])
    # equity = 99,992.50 - 3 * 50 * (close - 4000): +7,500 at 3950, +15,000 at 3900
    assert pdf["equity"].to_list() == pytest.approx([100_000.0, 107_492.5, 114_992.5])
    # gross leverage = 3 * 50 * 3900 / 114,992.50
    assert pdf["gross_leverage"][2] == pytest.approx(585_000.0 / 114_992.5)
    trade = result.trades_df.row(0, named=True)
    assert trade["direction"] == "short"
    assert trade["pnl_gross"] == pytest.approx(15_000.0)  # open trade marked at 3900


def test_future_short_allowed_in_default_account(make_bars: Any, run_backtest: Any) -> None:
    # futures trade on margin in either account type; a short contract borrows nothing, so the
    # default broker (as Backtrader or Zipline) should let a strategy sell ES short
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.sell("ES", 1)

    result, strat = run_backtest(_frame(make_bars, ES_ROWS[:3]), on_bar, asset_id="ES", assets=ES)
    assert strat.rejected == []
    assert result.fills_df.select("side", "quantity", "price").rows() == [("sell", 1.0, 4000.0)]


def test_future_maintenance_breach_liquidates_at_next_open(
    make_bars: Any, run_backtest: Any
) -> None:
    # 30,000 cash, 2 contracts: initial 24,000 fits; maintenance 2 * 11,000 = 22,000;
    # equity = 29,995 + 100 * (close - 4000): 3950 -> 24,995 (ok), 3920 -> 21,995 < 22,000
    rows = [
        (4000.0, 4005.0, 3995.0, 4000.0),
        (4000.0, 4005.0, 3945.0, 3950.0),
        (3950.0, 3955.0, 3915.0, 3920.0),  # margin call at this close
        (3910.0, 3915.0, 3900.0, 3905.0),  # sold at the open, 3910
    ]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.buy("ES", 2)

    result, _ = run_backtest(
        _frame(make_bars, rows),
        on_bar,
        asset_id="ES",
        assets=ES,
        initial_cash=30_000.0,
        commission=PerShareCommission(2.5),
    )
    assert result.metrics["margin_calls"] == 1
    account = result.orders_df.filter(pl.col("event") == "account")
    assert account["timestamp"].to_list() == [DAYS[2]]
    assert "equity 21,995.00 below maintenance requirement 22,000.00" in account["reason"][0]
    assert result.fills_df.select("timestamp", "side", "price", "tag").rows()[-1] == (
        DAYS[3],
        "sell",
        3910.0,
        "margin_call",
    )
    # cash = 29,995 + 100 * (3910 - 4000) - 5 = 20,990
    assert result.portfolio_df["cash"][-1] == pytest.approx(20_990.0)
    assert result.trades_df["exit_reason"].to_list() == ["margin_call"]


# --- asset registry: lots, minimum size, ticks --------------------------------------------
FLAT = [(100.0, 100.5, 99.5, 100.0)] * 3


def test_lot_size_rejects_odd_lot_and_buy_percent_rounds_down(
    make_bars: Any, run_backtest: Any
) -> None:
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.state["odd"] = s.buy("A", 150)
            # 0.333 * 100,000 / 100 = 333 shares -> 300 (3 lots of 100)
            s.state["pct"] = s.buy_percent("A", 0.333)

    result, strat = run_backtest(_frame(make_bars, FLAT), on_bar, assets={"A": {"lot_size": 100}})
    odd, reason = strat.rejected[0]
    assert odd is strat.state["odd"]
    assert reason == "quantity 150 is not a multiple of A's lot size 100"
    rows = result.orders_df.filter(pl.col("order_id") == odd.order_id)
    assert rows.select("event", "reason").rows() == [("submitted", None), ("rejected", reason)]
    assert rows["timestamp"].to_list() == [DAYS[0], DAYS[0]]  # rejected on submission
    assert strat.state["pct"].quantity == 300.0
    assert result.fills_df["quantity"].to_list() == [300.0]


def test_min_quantity_rejects_smaller_orders(make_bars: Any, run_backtest: Any) -> None:
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.buy("A", 5)
            s.buy("A", 10)

    result, strat = run_backtest(
        _frame(make_bars, FLAT), on_bar, assets={"A": {"min_quantity": 10}}
    )
    assert [r for _, r in strat.rejected] == ["quantity 5 is below A's minimum order size 10"]
    assert result.fills_df["quantity"].to_list() == [10.0]


def test_tick_size_rounds_limit_and_stop_prices_on_submission(
    make_bars: Any, run_backtest: Any
) -> None:
    # tick 0.25: buy limit down, sell limit up, buy stop up, sell stop down (none reachable)
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.state["orders"] = [
                s.buy("A", 1, limit_price=99.13),
                s.sell("A", 1, limit_price=101.1),
                s.buy("A", 1, stop_price=101.1),
                s.sell("A", 1, stop_price=98.9),
                s.buy("A", 1, limit_price=99.25),  # already on the grid
            ]

    result, strat = run_backtest(_frame(make_bars, FLAT), on_bar, assets={"A": {"tick_size": 0.25}})
    orders = strat.state["orders"]
    assert [o.limit_price or o.stop_price for o in orders] == [99.0, 101.25, 101.25, 98.75, 99.25]
    submitted = result.orders_df.filter(pl.col("event") == "submitted").sort("order_id")
    assert submitted["reason"].to_list() == [
        "rounded to tick 0.25: limit_price 99.13 -> 99",
        "rounded to tick 0.25: limit_price 101.1 -> 101.25",
        "rounded to tick 0.25: stop_price 101.1 -> 101.25",
        "rounded to tick 0.25: stop_price 98.9 -> 98.75",
        None,
    ]
    assert submitted["limit_price"].to_list()[:2] == [99.0, 101.25]
    assert result.fills_df.height == 0
    assert strat.rejected == []


def test_tick_size_rounds_slipped_fill_price_against_trader(
    make_bars: Any, run_backtest: Any
) -> None:
    # open 100 + 0.1 slippage = 100.10 -> buy pays 100.25; sell 100 - 0.1 = 99.90 -> 99.75
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.buy("A", 10)
        if _bar(e) == 1:
            s.sell("A", 10)

    result, _ = run_backtest(
        _frame(make_bars, FLAT),
        on_bar,
        assets={"A": {"tick_size": 0.25}},
        slippage=FixedSlippage(0.1),
    )
    fills = result.fills_df
    assert fills["price"].to_list() == [100.25, 99.75]
    # the whole cost against the open is recorded: 10 * 0.25 per fill
    costs = (fills["slippage"] + fills["impact"]).to_list()
    assert costs == pytest.approx([2.5, 2.5])
    assert fills["slippage"].to_list() == pytest.approx([1.0, 1.0])  # 10 * 0.1
    # round trip loses 10 * (100.25 - 99.75) = 5
    assert result.final_equity == pytest.approx(100_000.0 - 5.0)


def test_crypto_fractional_lot_buy_percent_rounds_to_lot(make_bars: Any, run_backtest: Any) -> None:
    rows = [(43_210.0, 43_300.0, 43_100.0, 43_210.0)] * 3

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            # 0.5 * 100,000 / 43,210 = 1.157139... -> 1.157 (lots of 0.001)
            s.state["pct"] = s.buy_percent("BTC", 0.5)
            s.state["bad"] = s.buy("BTC", 0.0015)

    result, strat = run_backtest(
        _frame(make_bars, rows),
        on_bar,
        asset_id="BTC",
        assets={"BTC": {"asset_class": "crypto", "lot_size": 0.001}},
    )
    assert strat.state["pct"].quantity == pytest.approx(1.157, abs=1e-12)
    assert [o for o, _ in strat.rejected] == [strat.state["bad"]]
    assert strat.rejected[0][1] == "quantity 0.0015 is not a multiple of BTC's lot size 0.001"
    fill = result.fills_df.row(0, named=True)
    assert fill["quantity"] == pytest.approx(1.157, abs=1e-12)
    # cash = 100,000 - 1.157 * 43,210 = 50,006.03
    assert result.portfolio_df["cash"][1] == pytest.approx(100_000.0 - 1.157 * 43_210.0)


def test_registry_frame_source_accepted_by_broker(make_bars: Any, run_backtest: Any) -> None:
    # the same lot rule given as a polars frame
    assets = pl.DataFrame({"asset_id": ["A"], "lot_size": [100.0]})

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.buy("A", 250)

    _, strat = run_backtest(_frame(make_bars, FLAT), on_bar, assets=assets)
    assert [r for _, r in strat.rejected] == ["quantity 250 is not a multiple of A's lot size 100"]
