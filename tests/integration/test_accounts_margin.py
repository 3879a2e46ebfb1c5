"""Cash and margin accounts end to end: shorting rules, buying power, margin calls, borrow fees.

Every expected number is computed by hand in the test from the designed bars.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl
import pytest

from ml4t.backtest import ConfigError, PercentageCommission, SimulationBroker

# business days: Tue 2 Jan 2024 ... (Fri 5 -> Mon 8 is a weekend)
DAYS = [datetime(2024, 1, d) for d in (2, 3, 4, 5, 8, 9, 10, 11, 12)]


def _frame(
    make_bars: Any,
    rows: list[tuple[float, float, float, float]],
    asset_id: str | None = None,
) -> pl.DataFrame:
    """Return bars from (open, high, low, close) rows on the business days of ``DAYS``."""
    o, h, lo, c = (list(x) for x in zip(*rows, strict=True))
    return make_bars(c, opens=o, highs=h, lows=lo, timestamps=DAYS[: len(rows)], asset_id=asset_id)


def _flat(
    make_bars: Any, n: int, price: float = 100.0, asset_id: str | None = None
) -> pl.DataFrame:
    return _frame(make_bars, [(price, price + 1, price - 1, price)] * n, asset_id)


def _bar(e: Any) -> int:
    return DAYS.index(e.timestamp)


# --- cash account ---------------------------------------------------------------------------
def test_cash_account_short_sale_rejected_with_reason(make_bars: Any, run_backtest: Any) -> None:
    df = _flat(make_bars, 4)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.state["short"] = s.sell("A", 10)
        if _bar(e) == 1:
            s.buy("A", 5)
        if _bar(e) == 2:
            s.state["oversell"] = s.sell("A", 8)  # holds 5

    result, strat = run_backtest(df, on_bar)
    assert [o for o, _ in strat.rejected] == [strat.state["short"], strat.state["oversell"]]
    reasons = [r for _, r in strat.rejected]
    assert (
        reasons[0] == "nothing to sell: no position in A; short selling is disabled (cash account)"
    )
    assert reasons[1] == (
        "insufficient position: hold 5 A, order sells 8 (short selling is disabled (cash account))"
    )
    rejected = result.orders_df.filter(pl.col("event") == "rejected")
    assert rejected["reason"].to_list() == reasons
    # rejected when they would fill: at the next bar's open
    assert rejected["timestamp"].to_list() == [DAYS[1], DAYS[3]]
    assert result.fills_df.select("side", "quantity").rows() == [("buy", 5.0)]
    assert result.metrics["num_rejected_orders"] == 2


def test_cash_account_allow_short_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="cash account cannot sell short"):
        SimulationBroker(account="cash", allow_short=True)


def test_cash_account_default_allow_short_false_margin_true() -> None:
    assert SimulationBroker().allow_short is False
    assert SimulationBroker(account="margin").allow_short is True


# --- margin account: buying power ---------------------------------------------------------
@pytest.mark.parametrize(("qty", "accepted"), [(150.0, True), (200.0, True), (201.0, False)])
def test_margin_buy_beyond_cash_up_to_twice_equity_accepted(
    qty: float, accepted: bool, make_bars: Any, run_backtest: Any
) -> None:
    # equity 10,000, initial margin 0.5 -> buying power 10,000 / 0.5 = 20,000 = 200 shares @ 100
    df = _flat(make_bars, 3)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.buy("A", qty)

    result, strat = run_backtest(df, on_bar, initial_cash=10_000.0, account="margin")
    if accepted:
        assert strat.rejected == []
        assert result.fills_df["quantity"].to_list() == [qty]
        pdf = result.portfolio_df
        # cash = 10,000 - qty * 100 (a loan when qty > 100); equity unchanged at 10,000
        assert pdf["cash"][1] == pytest.approx(10_000.0 - qty * 100.0)
        assert pdf["cash"][1] < 0
        assert pdf["equity"][1] == pytest.approx(10_000.0)
        # gross leverage = qty * 100 / 10,000
        assert pdf["gross_leverage"][1] == pytest.approx(qty * 100.0 / 10_000.0)
    else:
        assert result.fills_df.height == 0
        (reason,) = [r for _, r in strat.rejected]
        # 201 * 100 * 0.5 = 10,050 > equity 10,000
        assert reason == (
            "insufficient margin: the position would need 10,050.00 initial margin, "
            "equity 10,000.00"
        )
        assert result.orders_df.filter(pl.col("event") == "rejected")["reason"].to_list() == [
            reason
        ]


def test_margin_resize_policy_buys_largest_whole_quantity_margin_allows(
    make_bars: Any, run_backtest: Any
) -> None:
    # commission 0.1 %: a fill of q @ 100 leaves equity 10,000 - 0.1 q and needs 50 q margin;
    # 10,000 - 0.1 q >= 50 q  <=>  q <= 10,000 / 50.1 = 199.60 -> 199 whole shares
    # (200 would need 10,000 > 10,000 - 20 = 9,980)
    df = _flat(make_bars, 3)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.buy("A", 250)

    result, strat = run_backtest(
        df,
        on_bar,
        initial_cash=10_000.0,
        account="margin",
        cash_policy="resize",
        fractional=False,
        commission=PercentageCommission(0.001),
    )
    assert strat.rejected == []
    fill = result.fills_df.row(0, named=True)
    assert fill["quantity"] == 199.0
    assert fill["commission"] == pytest.approx(199 * 100 * 0.001)  # 19.90
    assert fill["reason"].startswith("resized from 250 to 199: insufficient margin")
    # cash = 10,000 - 19,900 - 19.90 = -9,919.90
    assert result.portfolio_df["cash"][1] == pytest.approx(-9_919.90)


def test_margin_resize_policy_fractional_buys_exact_margin_limit(
    make_bars: Any, run_backtest: Any
) -> None:
    # like the whole-share case, fractional: the largest q with 10,000 - 0.1 q >= 50 q is
    # 10,000 / 50.1 = 199.6008; afterwards the initial requirement equals equity
    df = _flat(make_bars, 3)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.buy("A", 250)

    result, _ = run_backtest(
        df,
        on_bar,
        initial_cash=10_000.0,
        account="margin",
        cash_policy="resize",
        commission=PercentageCommission(0.001),
    )
    q = result.fills_df["quantity"][0]
    assert q == pytest.approx(10_000.0 / 50.1, rel=1e-9)
    equity = result.portfolio_df["equity"][1]
    assert 0.5 * q * 100.0 == pytest.approx(equity, rel=1e-9)


def test_margin_short_sale_credits_proceeds_to_cash(make_bars: Any, run_backtest: Any) -> None:
    rows = [(100.0, 101.0, 99.0, 100.0), (100.0, 101.0, 99.0, 100.0), (100.0, 111.0, 99.0, 110.0)]
    df = _frame(make_bars, rows)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.sell("A", 50)

    result, _ = run_backtest(df, on_bar, initial_cash=10_000.0, account="margin")
    pdf = result.portfolio_df
    # cash = 10,000 + 50 * 100 = 15,000 from bar 1 on
    assert pdf["cash"].to_list() == [10_000.0, 15_000.0, 15_000.0]
    # positions value = -50 * close; equity = 15,000 - 50 * 100 = 10,000, then - 50 * 110
    assert pdf["positions_value"].to_list() == [0.0, -5_000.0, -5_500.0]
    assert pdf["equity"].to_list() == [10_000.0, 10_000.0, 9_500.0]


# --- margin calls ---------------------------------------------------------------------------
def _short_squeeze(make_bars: Any) -> pl.DataFrame:
    # short 100 @ 100 with 10,000 equity: cash 20,000, equity(p) = 20,000 - 100 p,
    # maintenance 0.25 * 100 p = 25 p -> margin call once 20,000 - 100 p < 25 p, p > 160
    rows = [
        (100.0, 101.0, 99.0, 100.0),  # 0: sell 100
        (100.0, 101.0, 99.0, 100.0),  # 1: short filled @ 100
        (100.0, 131.0, 99.0, 130.0),  # 2: equity 7,000, need 3,250
        (130.0, 151.0, 129.0, 150.0),  # 3: equity 5,000, need 3,750
        (150.0, 161.0, 149.0, 160.0),  # 4: equity 4,000, need 4,000 -> not below: no call
        (160.0, 166.0, 159.0, 165.0),  # 5: equity 3,500 < need 4,125 -> margin call
        (170.0, 171.0, 168.0, 169.0),  # 6: cover fills at the open, 170
        (169.0, 170.0, 168.0, 169.0),  # 7
    ]
    return _frame(make_bars, rows)


def test_margin_call_on_rising_short_fills_at_next_open(make_bars: Any, run_backtest: Any) -> None:
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.sell("A", 100)

    result, strat = run_backtest(
        _short_squeeze(make_bars),
        on_bar,
        initial_cash=10_000.0,
        account="margin",
        initial_margin=0.5,
        maintenance_margin=0.25,
    )
    assert result.metrics["margin_calls"] == 1
    account = result.orders_df.filter(pl.col("event") == "account")
    assert account["timestamp"].to_list() == [DAYS[5]]
    assert account["reason"][0] == (
        "margin call: equity 3,500.00 below maintenance requirement 4,125.00; "
        "policy 'liquidate' closes 1 position(s)"
    )
    fills = result.fills_df.select("timestamp", "side", "quantity", "price", "tag").rows()
    assert fills == [
        (DAYS[1], "sell", 100.0, 100.0, None),
        (DAYS[6], "buy", 100.0, 170.0, "margin_call"),
    ]
    trade = result.trades_df.row(0, named=True)
    assert trade["exit_reason"] == "margin_call"
    assert trade["direction"] == "short"
    # pnl = 100 * (100 - 170) = -7,000; final cash = 20,000 - 17,000 = 3,000
    assert trade["pnl_gross"] == pytest.approx(-7_000.0)
    assert result.portfolio_df["cash"][-1] == pytest.approx(3_000.0)
    assert result.final_equity == pytest.approx(3_000.0)
    # the liquidation is the broker's: no rejection, and the strategy got the fill
    assert strat.rejected == []
    assert [f.tag for f in strat.fills] == [None, "margin_call"]


def test_margin_call_not_triggered_when_equity_equals_requirement(
    make_bars: Any, run_backtest: Any
) -> None:
    # bars 0-4 of the squeeze: at 160 equity 4,000 == requirement 4,000 (not below)
    df = _short_squeeze(make_bars).head(5)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.sell("A", 100)

    result, _ = run_backtest(df, on_bar, initial_cash=10_000.0, account="margin")
    assert result.metrics["margin_calls"] == 0
    assert result.orders_df.filter(pl.col("event") == "account").height == 0


def _two_assets(make_bars: Any) -> pl.DataFrame:
    # A flat at 50; B 100, 100, 200, 260, 270
    a = _frame(make_bars, [(50.0, 51.0, 49.0, 50.0)] * 5, asset_id="A")
    b_rows = [
        (100.0, 101.0, 99.0, 100.0),
        (100.0, 101.0, 99.0, 100.0),
        (100.0, 201.0, 99.0, 200.0),
        (200.0, 261.0, 199.0, 260.0),
        (270.0, 271.0, 265.0, 270.0),
    ]
    b = _frame(make_bars, b_rows, asset_id="B")
    return pl.concat([a, b]).sort("timestamp", "asset_id")


@pytest.mark.parametrize(
    ("policy", "closed"), [("liquidate", ["B"]), ("liquidate_all", ["A", "B"])]
)
def test_margin_call_policy_liquidate_vs_liquidate_all(
    policy: str, closed: list[str], make_bars: Any, run_backtest: Any
) -> None:
    # long A 100 @ 50 (5,000), short B 40 @ 100 (4,000): cash 10,000 - 5,000 + 4,000 = 9,000
    # equity(pB) = 9,000 + 5,000 - 40 pB; maintenance = 0.25 (5,000 + 40 pB) = 1,250 + 10 pB
    # bar 2 (pB 200): equity 6,000 >= 3,250; bar 3 (pB 260): equity 3,600 < 3,850 -> call
    # requirements A 1,250, B 2,600: "liquidate" closes B (largest), leaving 1,250 <= 3,600
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0 and e.asset_id == "A":
            s.buy("A", 100)
            s.sell("B", 40)

    result, _ = run_backtest(
        _two_assets(make_bars), on_bar, initial_cash=10_000.0, account="margin", margin_call=policy
    )
    assert result.metrics["margin_calls"] == 1
    note = result.orders_df.filter(pl.col("event") == "account")
    assert note["timestamp"].to_list() == [DAYS[3]]
    assert note["reason"][0] == (
        "margin call: equity 3,600.00 below maintenance requirement 3,850.00; "
        f"policy {policy!r} closes {len(closed)} position(s)"
    )
    calls = result.fills_df.filter(pl.col("tag") == "margin_call")
    assert sorted(calls["asset_id"].to_list()) == closed
    assert set(calls["timestamp"].to_list()) == {DAYS[4]}
    want_price = {"A": 50.0, "B": 270.0}  # bar 4 opens
    for asset, price in calls.select("asset_id", "price").rows():
        assert price == want_price[asset]
    trades = result.trades_df
    exit_reasons = dict(trades.select("asset_id", "exit_reason").rows())
    assert exit_reasons["B"] == "margin_call"
    assert exit_reasons["A"] == ("margin_call" if policy == "liquidate_all" else "end_of_data")
    # B covered at 270: cash 9,000 - 40 * 270 = -1,800; A still worth 5,000 when kept
    final_cash = -1_800.0 + (5_000.0 if policy == "liquidate_all" else 0.0)
    assert result.portfolio_df["cash"][-1] == pytest.approx(final_cash)
    assert result.final_equity == pytest.approx(3_200.0)  # -1,800 + 100 * 50


# --- borrow fees ----------------------------------------------------------------------------
def _short_over_weekend(make_bars: Any, asset_id: str | None = None) -> pl.DataFrame:
    # Wed 3, Thu 4, Fri 5, Mon 8, Tue 9, Wed 10 Jan 2024; closes 100, 100, 105, 110, 110, 110
    rows = [
        (100.0, 101.0, 99.0, 100.0),
        (100.0, 101.0, 99.0, 100.0),
        (100.0, 106.0, 99.0, 105.0),
        (105.0, 111.0, 104.0, 110.0),
        (110.0, 111.0, 109.0, 110.0),
        (110.0, 111.0, 109.0, 110.0),
    ]
    o, h, lo, c = (list(x) for x in zip(*rows, strict=True))
    return make_bars(c, opens=o, highs=h, lows=lo, timestamps=DAYS[1:7], asset_id=asset_id)


def test_borrow_fee_accrues_per_calendar_day_over_weekend(
    make_bars: Any, run_backtest: Any
) -> None:
    # short 100 on Wed -> filled Thu open 100; covered by an order on Mon -> Tue open 110.
    # rate 7.3 %/yr = 0.02 %/day; fee = 100 * previous close * 0.0002 * calendar days:
    #   Fri (1 day, Thu close 100): 2.00; Mon (3 days, Fri close 105): 6.30;
    #   Tue (1 day, Mon close 110, still short before the open): 2.20; total 10.50
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if e.timestamp == DAYS[1]:
            s.sell("A", 100)
        if e.timestamp == DAYS[4]:
            s.buy("A", 100)

    result, _ = run_backtest(
        _short_over_weekend(make_bars), on_bar, account="margin", borrow_rate=0.073
    )
    ev = result.account_events_df
    assert ev["event"].to_list() == ["borrow_fee"] * 3
    assert ev["timestamp"].to_list() == [DAYS[3], DAYS[4], DAYS[5]]
    assert ev["amount"].to_list() == pytest.approx([-2.0, -6.3, -2.2])
    assert ev["price"].to_list() == [100.0, 105.0, 110.0]  # the previous close
    assert ev["asset_id"].to_list() == ["A"] * 3
    assert "3 day(s)" in ev["note"][1]
    # cash: 100,000 + 10,000 proceeds - 2.00 (Fri) - 6.30 (Mon) - 2.20 (Tue) - 11,000 cover
    assert ev["cash_after"].to_list() == pytest.approx([109_998.0, 109_991.7, 109_989.5])
    assert result.metrics["borrow_fees"] == pytest.approx(10.5)
    trade = result.trades_df.row(0, named=True)
    assert trade["borrow_fees"] == pytest.approx(10.5)
    pdf = result.portfolio_df
    # Mon equity = cash 109,991.70 - 100 * 110 = 98,991.70
    assert pdf.filter(pl.col("timestamp") == DAYS[4])["equity"][0] == pytest.approx(98_991.7)
    assert result.portfolio_df["cash"][-1] == pytest.approx(109_989.5 - 11_000.0)


def test_borrow_fee_registry_rate_overrides_broker_rate(make_bars: Any, run_backtest: Any) -> None:
    # A: registry 14.6 %/yr (0.04 %/day); B: broker 7.3 %/yr (0.02 %/day); both short 100
    # Mon fee (3 days on Fri close 105): A 100*105*0.0004*3 = 12.60, B 100*105*0.0002*3 = 6.30
    df = pl.concat([_short_over_weekend(make_bars, "A"), _short_over_weekend(make_bars, "B")]).sort(
        "timestamp", "asset_id"
    )

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if e.timestamp == DAYS[1]:
            s.sell(e.asset_id, 100)

    result, _ = run_backtest(
        df.filter(pl.col("timestamp") <= DAYS[4]),
        on_bar,
        account="margin",
        borrow_rate=0.073,
        assets={"A": {"borrow_rate": 0.146}},
    )
    ev = result.account_events_df
    got = {(t, a): amt for t, a, amt in ev.select("timestamp", "asset_id", "amount").rows()}
    assert got == {
        (DAYS[3], "A"): pytest.approx(-4.0),  # 100 * 100 * 0.0004 * 1
        (DAYS[3], "B"): pytest.approx(-2.0),
        (DAYS[4], "A"): pytest.approx(-12.6),
        (DAYS[4], "B"): pytest.approx(-6.3),
    }
    assert result.metrics["borrow_fees"] == pytest.approx(4.0 + 2.0 + 12.6 + 6.3)
    fees = dict(result.trades_df.select("asset_id", "borrow_fees").rows())
    assert fees == {"A": pytest.approx(16.6), "B": pytest.approx(8.3)}


def test_borrow_fee_not_charged_for_long_or_zero_rate(make_bars: Any, run_backtest: Any) -> None:
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if e.timestamp == DAYS[1]:
            s.buy("A", 100)

    result, _ = run_backtest(
        _short_over_weekend(make_bars), on_bar, account="margin", borrow_rate=0.073
    )
    assert result.account_events_df.height == 0
    assert result.metrics["borrow_fees"] == 0.0
