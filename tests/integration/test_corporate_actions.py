"""Splits and cash dividends applied to positions and cash, end to end.

Prices are unadjusted: they drop by the split ratio (or the dividend) on the ex-date, so a
held position's equity has no jump. Expected values are computed by hand in each test.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import polars as pl
import pytest

from ml4t.backtest import DataValidationError, SimulationBroker
from ml4t.backtest.builtin.corporate import CorporateActions

# Tue 2, Wed 3, Thu 4, Fri 5, Mon 8, Tue 9, Wed 10 Jan 2024
DAYS = [datetime(2024, 1, d) for d in (2, 3, 4, 5, 8, 9, 10)]


def _frame(make_bars: Any, closes: list[float]) -> pl.DataFrame:
    """Return bars opening at each close (a gap on the ex-date, no move within a bar)."""
    return make_bars(
        closes,
        opens=closes,
        highs=[c + 1 for c in closes],
        lows=[c - 1 for c in closes],
        timestamps=DAYS[: len(closes)],
    )


def _actions(**row: Any) -> pl.DataFrame:
    return pl.DataFrame([{"asset_id": "A", **row}])


def _bar(e: Any) -> int:
    return DAYS.index(e.timestamp)


def _trade_once(side: str, qty: float, at: int = 0) -> Any:
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == at:
            getattr(s, side)("A", qty)
        s.state.setdefault("pos", []).append(s.get_position("A"))
        s.state.setdefault("upnl", []).append(s.get_unrealized_pnl_pct("A"))

    return on_bar


# --- splits ---------------------------------------------------------------------------------
SPLIT_CLOSES = [150.0, 150.0, 150.0, 100.0, 102.0, 102.0]  # ex-date Fri 5 (bar 3): 150 / 1.5
SPLIT = _actions(action="split", ex_date=date(2024, 1, 5), ratio=1.5)


def test_split_long_whole_shares_pays_remainder_in_cash(make_bars: Any, run_backtest: Any) -> None:
    # 101 bought @ 150 (Wed open): cash 100,000 - 15,150 = 84,850
    # 3-for-2: 101 * 1.5 = 151.5 -> 151 shares + 0.5 share in cash at 150 / 1.5 = 100 -> +50
    result, strat = run_backtest(
        _frame(make_bars, SPLIT_CLOSES),
        _trade_once("buy", 101),
        fractional=False,
        corporate_actions=SPLIT,
    )
    assert strat.state["pos"] == [0.0, 101.0, 101.0, 151.0, 151.0, 151.0]
    ev = result.account_events_df.row(0, named=True)
    assert result.account_events_df.height == 1
    assert ev["timestamp"] == DAYS[3]
    assert ev["event"] == "split"
    assert ev["quantity_change"] == 50.0
    assert ev["price"] == pytest.approx(100.0)
    assert ev["amount"] == pytest.approx(50.0)
    assert ev["cash_after"] == pytest.approx(84_900.0)
    assert ev["position_after"] == 151.0
    assert result.metrics["cash_in_lieu"] == pytest.approx(50.0)
    pdf = result.portfolio_df
    assert pdf["cash"].to_list() == pytest.approx(
        [100_000.0, 84_850.0, 84_850.0, 84_900.0, 84_900.0, 84_900.0]
    )
    # no jump: Thu 84,850 + 101 * 150 = 100,000; Fri 84,900 + 151 * 100 = 100,000
    assert pdf["equity"][3] == pytest.approx(pdf["equity"][2])
    assert pdf["equity"].to_list() == pytest.approx([100_000.0] * 4 + [84_900.0 + 151 * 102.0] * 2)
    # avg cost 150 / 1.5 = 100: unrealized 0 at 100, 102 / 100 - 1 = 2 % on Mon
    assert strat.state["upnl"][3] == pytest.approx(0.0)
    assert strat.state["upnl"][4] == pytest.approx(0.02)
    trade = result.trades_df.row(0, named=True)
    assert trade["entry_price"] == pytest.approx(100.0)  # post-split units
    # 0.5 settled at 100 plus 151 marked at 102 against 151.5 * 100: 50 + 15,402 - 15,150
    assert trade["pnl_gross"] == pytest.approx(302.0)


def test_split_short_whole_shares_pays_remainder(make_bars: Any, run_backtest: Any) -> None:
    # short 101 @ 150: cash 100,000 + 15,150 = 115,150
    # -151.5 -> -151 (toward zero): the short buys back 0.5 share at 100, paying 50
    result, strat = run_backtest(
        _frame(make_bars, SPLIT_CLOSES),
        _trade_once("sell", 101),
        account="margin",
        fractional=False,
        corporate_actions=SPLIT,
    )
    assert strat.state["pos"][3] == -151.0
    ev = result.account_events_df.row(0, named=True)
    assert ev["event"] == "split"
    assert ev["quantity_change"] == -50.0  # -101 -> -151
    assert ev["amount"] == pytest.approx(-50.0)
    assert ev["cash_after"] == pytest.approx(115_100.0)
    assert result.metrics["cash_in_lieu"] == pytest.approx(-50.0)
    pdf = result.portfolio_df
    # Thu 115,150 - 101 * 150 = 100,000; Fri 115,100 - 151 * 100 = 100,000
    assert pdf["equity"][3] == pytest.approx(pdf["equity"][2])
    assert pdf["equity"][3] == pytest.approx(100_000.0)
    # avg cost 100: a short at 102 is 2 % under water
    assert strat.state["upnl"][4] == pytest.approx(-0.02)


def test_split_fractional_account_keeps_fraction(make_bars: Any, run_backtest: Any) -> None:
    # default fractional=True: 101 -> 151.5 shares, no cash
    result, strat = run_backtest(
        _frame(make_bars, SPLIT_CLOSES), _trade_once("buy", 101), corporate_actions=SPLIT
    )
    assert strat.state["pos"][3] == 151.5
    assert result.account_events_df["amount"].to_list() == [0.0]
    assert result.metrics["cash_in_lieu"] == 0.0
    assert result.portfolio_df["equity"][3] == pytest.approx(100_000.0)


def test_split_adjusts_resting_order_quantity_and_price(make_bars: Any, run_backtest: Any) -> None:
    # a resting sell limit 101 @ 180 becomes 151 @ 120 (180 / 1.5), never reached
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.buy("A", 101)
        if _bar(e) == 1:
            s.state["limit"] = s.sell("A", 101, limit_price=180.0)

    result, strat = run_backtest(
        _frame(make_bars, SPLIT_CLOSES), on_bar, fractional=False, corporate_actions=SPLIT
    )
    order = strat.state["limit"]
    assert order.quantity == 151.0
    assert order.limit_price == pytest.approx(120.0)
    adjusted = result.orders_df.filter(pl.col("event") == "adjusted")
    # dated like the split itself (account_events_df): the ex-date's first bar
    assert result.account_events_df["timestamp"].to_list() == [DAYS[3]]
    assert adjusted.select("timestamp", "order_id", "quantity", "limit_price", "reason").rows() == [
        (DAYS[3], order.order_id, 151.0, 120.0, "1.5-for-1 split")
    ]


def test_split_ex_date_on_sunday_applies_monday(make_bars: Any, run_backtest: Any) -> None:
    closes = [150.0, 150.0, 150.0, 150.0, 100.0, 100.0]  # Mon 8 (bar 4) opens at 100
    actions = _actions(action="split", ex_date="2024-01-07", ratio=1.5)
    result, strat = run_backtest(
        _frame(make_bars, closes),
        _trade_once("buy", 100),
        corporate_actions=actions,
    )
    assert strat.state["pos"] == [0.0, 100.0, 100.0, 100.0, 150.0, 150.0]
    assert result.account_events_df["timestamp"].to_list() == [DAYS[4]]
    assert result.portfolio_df["equity"].to_list() == pytest.approx([100_000.0] * 6)


# --- dividends ------------------------------------------------------------------------------
# 0.50 dividend, ex Fri 5 (bar 3), paid Tue 9 (bar 5); price drops 50 -> 49.50 at the ex-date
DIV_CLOSES = [50.0, 50.0, 50.0, 49.5, 49.5, 49.5, 49.5]
DIVIDEND = _actions(
    action="dividend", ex_date=date(2024, 1, 5), pay_date=date(2024, 1, 9), amount=0.5
)


def test_dividend_long_accrued_at_ex_paid_at_pay_date(make_bars: Any, run_backtest: Any) -> None:
    # 100 @ 50: cash 95,000; entitled 100 * 0.50 = 50 at Fri, cash at Tue
    result, _ = run_backtest(
        _frame(make_bars, DIV_CLOSES), _trade_once("buy", 100), corporate_actions=DIVIDEND
    )
    pdf = result.portfolio_df
    assert pdf["accrued_dividends"].to_list() == [0.0, 0.0, 0.0, 50.0, 50.0, 0.0, 0.0]
    assert pdf["cash"].to_list() == pytest.approx(
        [100_000.0, 95_000.0, 95_000.0, 95_000.0, 95_000.0, 95_050.0, 95_050.0]
    )
    # equity continuous: Fri 95,000 + 50 + 100 * 49.50 = 100,000
    assert pdf["equity"].to_list() == pytest.approx([100_000.0] * 7)
    ev = result.account_events_df
    assert ev.select("timestamp", "event", "amount", "cash_after", "position_after").rows() == [
        (DAYS[3], "dividend_ex", 50.0, 95_000.0, 100.0),
        (DAYS[5], "dividend_paid", 50.0, 95_050.0, 100.0),
    ]
    assert result.metrics["dividends_earned"] == pytest.approx(50.0)
    assert result.metrics["dividends_paid"] == pytest.approx(50.0)
    assert result.trades_df["dividends"].to_list() == [pytest.approx(50.0)]


def test_dividend_short_owes_it(make_bars: Any, run_backtest: Any) -> None:
    # short 100 @ 50: cash 105,000; owes 50 from Fri, paid out of cash Tue
    result, _ = run_backtest(
        _frame(make_bars, DIV_CLOSES),
        _trade_once("sell", 100),
        account="margin",
        corporate_actions=DIVIDEND,
    )
    pdf = result.portfolio_df
    assert pdf["accrued_dividends"].to_list() == [0.0, 0.0, 0.0, -50.0, -50.0, 0.0, 0.0]
    assert pdf["cash"][-1] == pytest.approx(104_950.0)
    # Fri: 105,000 - 50 - 100 * 49.50 = 100,000
    assert pdf["equity"].to_list() == pytest.approx([100_000.0] * 7)
    ev = result.account_events_df
    assert ev["event"].to_list() == ["dividend_ex", "dividend_paid"]
    assert ev["amount"].to_list() == pytest.approx([-50.0, -50.0])
    assert result.metrics["dividends_earned"] == pytest.approx(-50.0)
    assert result.metrics["dividends_paid"] == pytest.approx(-50.0)
    assert result.trades_df["dividends"].to_list() == [pytest.approx(-50.0)]


def test_dividend_belongs_to_holder_at_previous_close(make_bars: Any, run_backtest: Any) -> None:
    # sold by an order on Thu -> filled Fri open (the ex-date): still entitled, paid Tue
    # bought by an order on Thu -> filled Fri open: not entitled
    def seller(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.buy("A", 100)
        if _bar(e) == 2:
            s.sell("A", 100)

    sold, _ = run_backtest(_frame(make_bars, DIV_CLOSES), seller, corporate_actions=DIVIDEND)
    assert sold.account_events_df["event"].to_list() == ["dividend_ex", "dividend_paid"]
    # 95,000 + 100 * 49.50 (sold at Fri open) + 50 dividend = 100,000
    assert sold.portfolio_df["cash"][-1] == pytest.approx(100_000.0)
    assert sold.trades_df["dividends"].to_list() == [pytest.approx(50.0)]

    bought, _ = run_backtest(
        _frame(make_bars, DIV_CLOSES), _trade_once("buy", 100, at=2), corporate_actions=DIVIDEND
    )
    assert bought.account_events_df.height == 0
    assert bought.metrics["dividends_earned"] == 0.0


def test_dividend_ex_date_on_weekend_applies_next_session(
    make_bars: Any, run_backtest: Any
) -> None:
    # ex Sat 6: entitlement booked at Mon 8 (bar 4) open, when the price drops to 49.50
    closes = [50.0, 50.0, 50.0, 50.0, 49.5, 49.5]
    actions = _actions(action="dividend", ex_date="2024-01-06", pay_date="2024-01-09", amount=0.5)
    result, _ = run_backtest(
        _frame(make_bars, closes), _trade_once("buy", 100), corporate_actions=actions
    )
    ev = result.account_events_df
    assert ev.select("timestamp", "event").rows() == [
        (DAYS[4], "dividend_ex"),
        (DAYS[5], "dividend_paid"),
    ]
    assert result.portfolio_df["equity"].to_list() == pytest.approx([100_000.0] * 6)


def test_dividend_without_pay_date_paid_at_ex_date(make_bars: Any, run_backtest: Any) -> None:
    actions = _actions(action="dividend", ex_date="2024-01-05", amount=0.5)
    result, _ = run_backtest(
        _frame(make_bars, DIV_CLOSES), _trade_once("buy", 100), corporate_actions=actions
    )
    ev = result.account_events_df
    assert ev.select("timestamp", "event", "amount").rows() == [
        (DAYS[3], "dividend_ex", 50.0),
        (DAYS[3], "dividend_paid", 50.0),
    ]
    assert result.portfolio_df["accrued_dividends"].to_list() == [0.0] * 7
    assert result.portfolio_df["cash"][3] == pytest.approx(95_050.0)


# --- bad frames -----------------------------------------------------------------------------
def test_corporate_actions_missing_ex_date_column_clear_error() -> None:
    frame = pl.DataFrame({"asset_id": ["A"], "action": ["split"], "ratio": [2.0]})
    with pytest.raises(DataValidationError, match="missing required column 'ex_date'"):
        SimulationBroker(corporate_actions=frame)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"action": "split", "ex_date": "2024-01-05", "ratio": 0.0},
            "row 0: column 'ratio' must be > 0 for a split, got 0.0",
        ),
        (
            {"action": "split", "ex_date": "2024-01-05", "ratio": "two"},
            "row 0: column 'ratio' is not a number: 'two'",
        ),
        (
            {"action": "dividend", "ex_date": "2024-01-05", "amount": -0.5},
            "row 0: column 'amount' must be >= 0 for a dividend, got -0.5",
        ),
        (
            {"action": "merger", "ex_date": "2024-01-05", "ratio": 1.0},
            "row 0: column 'action' must be 'split' or 'dividend', got 'merger'",
        ),
    ],
)
def test_corporate_actions_bad_values_name_row_and_column(
    row: dict[str, Any], message: str
) -> None:
    with pytest.raises(DataValidationError, match=message):
        SimulationBroker(corporate_actions=[{"asset_id": "A", **row}])


def test_corporate_actions_object_accepted_by_broker(make_bars: Any, run_backtest: Any) -> None:
    actions = CorporateActions(SPLIT)
    assert (actions.n_splits, actions.n_dividends) == (1, 0)
    result, strat = run_backtest(
        _frame(make_bars, SPLIT_CLOSES), _trade_once("buy", 100), corporate_actions=actions
    )
    assert strat.state["pos"][-1] == 150.0
    assert result.portfolio_df["equity"][3] == pytest.approx(100_000.0)
