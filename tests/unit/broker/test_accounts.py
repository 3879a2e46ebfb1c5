"""Accounts of the simulation broker: short sales, margin, margin calls, borrow fees, splits.

Driven through the broker's public methods during short runs (``drive``, see conftest): bar
``k`` is 2 Jan 2024 + k days (one session per bar), an order submitted on bar ``k`` is
first matched against bar ``k + 1``. The rules are those of ``docs/execution.md`` §6
(accounts), §7 (asset registry, futures) and §10 (corporate actions). Every expected number
is worked out in the test.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from ml4t.backtest import Order, OrderStatus

QUIET = (100.0, 101.0, 99.0, 100.0)
MARGIN = {"initial_cash": 10_000.0, "account": "margin"}  # initial 0.5, maintenance 0.25
FUTURE = {
    "asset_class": "future",
    "multiplier": 50,
    "initial_margin": 1_000,
    "maintenance_margin": 800,
}
# a long of 200 bought at 100 on margin: cash -10,000. Closes 70, 65, 62 follow
FALLING = [
    QUIET,
    QUIET,
    (100.0, 101.0, 69.0, 70.0),
    (70.0, 71.0, 64.0, 65.0),
    (66.0, 67.0, 60.0, 62.0),
    (62.0, 63.0, 61.0, 62.0),
]


def _split(ratio: float, ex_date: str = "2024-01-05") -> pl.DataFrame:
    """A split of A on ``ex_date`` (bar 3), ``ratio`` new shares per old."""
    return pl.DataFrame(
        {
            "asset_id": ["A"],
            "action": ["split"],
            "ex_date": [ex_date],
            "ratio": [ratio],
            "amount": [None],
        }
    )


# --- short sales ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({}, "nothing to sell: no position in A; short selling is disabled (cash account)"),
        (
            {"account": "margin", "allow_short": False},
            "nothing to sell: no position in A; short selling is disabled",
        ),
        (
            {"account": "margin", "assets": {"A": {"shortable": False}}},
            "nothing to sell: no position in A; A is not shortable (asset registry)",
        ),
        ({"account": "margin"}, None),
    ],
    ids=["cash_account", "margin_allow_short_false", "not_shortable", "margin"],
)
def test_short_sale_needs_a_margin_account_that_allows_it(
    settings: dict[str, Any], reason: str | None, drive: Any
) -> None:
    def sell(b: Any, s: Any) -> None:
        s.state["o"] = b.submit_order(Order("A", "sell", 10))

    d = drive([QUIET] * 3, {0: sell}, **settings)
    order = d.state["o"]
    if reason is not None:  # accepted when placed, rejected when it would fill
        assert d.events(order) == [(0, "submitted", None), (1, "rejected", reason)]
        assert d.cash() == 100_000.0
        return
    assert d.fills() == [(1, "sell", 10.0, 100.0, None)]
    assert d.cash() == 100_000.0 + 10 * 100.0  # the proceeds are credited
    assert d.result.final_equity == pytest.approx(100_000.0)  # less the short's value 1,000


# --- initial margin ---------------------------------------------------------------------------
def test_max_leverage_raises_the_effective_initial_margin(drive: Any) -> None:
    # max_leverage 1.25: initial margin max(0.5, 1 / 1.25) = 0.8. Equity 10,000 carries at
    # most 12,500 at 100: 126 shares need 126 x 100 x 0.8 = 10,080 (rejected), 125 fit
    def first(b: Any, s: Any) -> None:
        s.state["126"] = b.submit_order(Order("A", "buy", 126))

    def second(b: Any, s: Any) -> None:
        s.state["125"] = b.submit_order(Order("A", "buy", 125))

    d = drive([QUIET] * 4, {0: first, 1: second}, max_leverage=1.25, **MARGIN)
    assert d.strategy.rejected == [
        (
            d.state["126"],
            "insufficient margin: the position would need 10,080.00 initial margin, "
            "equity 10,000.00",
        )
    ]
    assert d.fills() == [(2, "buy", 125.0, 100.0, None)]
    assert d.cash() == 10_000.0 - 12_500.0  # a loan of 2,500


def test_initial_margin_counts_other_positions_at_their_latest_close(drive: Any) -> None:
    # long A 100 at 50 (cash 5,000); A closes at 60 on bar 1: equity 5,000 + 6,000 = 11,000,
    # A's requirement 100 x 60 x 0.5 = 3,000. B at 100 needs 50 per share:
    # (11,000 - 3,000) / 50 = 160 shares at most, so 161 are rejected and 160 fill
    a_rows = [(50.0, 51.0, 49.0, 50.0), (50.0, 61.0, 49.0, 60.0)] + [(60.0, 61.0, 59.0, 60.0)] * 2

    def buy_a(b: Any, s: Any) -> None:
        b.submit_order(Order("A", "buy", 100))

    def buy_b(b: Any, s: Any) -> None:
        s.state["161"] = b.submit_order(Order("B", "buy", 161))
        s.state["160"] = b.submit_order(Order("B", "buy", 160))

    d = drive({"A": a_rows, "B": [QUIET] * 4}, {0: buy_a, 1: buy_b}, **MARGIN)
    [(order, reason)] = d.strategy.rejected
    assert order is d.state["161"] and reason.startswith("insufficient margin")
    assert d.fills("asset_id", "quantity", "price") == [
        (1, "A", 100.0, 50.0),
        (2, "B", 160.0, 100.0),
    ]
    assert d.cash() == 10_000.0 - 5_000.0 - 16_000.0


# --- margin calls -----------------------------------------------------------------------------
def test_margin_call_on_a_falling_long_liquidates_at_the_next_open(drive: Any) -> None:
    # long 200 at 100, cash -10,000. Close 70: equity -10,000 + 14,000 = 4,000 >= 0.25 x
    # 14,000 = 3,500, no call. Close 65: equity 3,000 < 3,250: margin call on bar 3; the
    # position is sold at bar 4's open 66: cash -10,000 + 13,200 = 3,200.
    # The strategy's plain sell limit 120 (not reduce-only) would open a short once the
    # position is gone, so the call cancels it; its reduce-only twin keeps working.
    def buy(b: Any, s: Any) -> None:
        b.submit_order(Order("A", "buy", 200))

    def exits(b: Any, s: Any) -> None:
        s.state["plain"] = b.submit_order(Order("A", "sell", 200, "limit", limit_price=120.0))
        s.state["reduce"] = b.submit_order(
            Order("A", "sell", 200, "limit", limit_price=120.0, reduce_only=True)
        )

    d = drive(FALLING[:5], {0: buy, 1: exits}, **MARGIN)
    assert d.notes() == [
        (
            3,
            "margin call: equity 3,000.00 below maintenance requirement 3,250.00; "
            "policy 'liquidate' closes 1 position(s)",
        )
    ]
    assert d.fills("side", "quantity", "price", "tag") == [
        (1, "buy", 200.0, 100.0, None),
        (4, "sell", 200.0, 66.0, "margin_call"),
    ]
    assert d.result.metrics["margin_calls"] == 1
    assert d.result.trades_df["exit_reason"].to_list() == ["margin_call"]
    assert d.cash() == pytest.approx(3_200.0)
    plain, reduce = d.state["plain"], d.state["reduce"]
    assert plain.status is OrderStatus.CANCELLED
    assert plain.reason is not None and plain.reason.startswith("cancelled: margin call liquidates")
    assert d.events(plain)[-1][0] == 3
    assert reduce.status is OrderStatus.PENDING


def test_no_second_margin_call_while_the_liquidation_works_and_open_orders_hides_it(
    drive: Any,
) -> None:
    # as above, but bar 4 trades no volume (volume limit 50 %): the liquidation called on
    # bar 3 cannot fill there. Bar 4 closes at 62, still below maintenance (2,400 < 3,100),
    # yet no second call is made; the order fills at bar 5's open 62: cash 2,400
    def buy(b: Any, s: Any) -> None:
        b.submit_order(Order("A", "buy", 200))

    def look(b: Any, s: Any) -> None:
        s.state["open"] = b.open_orders()

    volume = [1_000.0, 1_000.0, 1_000.0, 1_000.0, 0.0, 1_000.0]
    d = drive(FALLING, {0: buy, 4: look}, volume=volume, volume_limit=0.5, **MARGIN)
    assert d.state["open"] == []  # the broker's liquidation is not the strategy's order
    assert d.result.metrics["margin_calls"] == 1
    assert d.fills("side", "price", "tag") == [
        (1, "buy", 100.0, None),
        (5, "sell", 62.0, "margin_call"),
    ]
    assert d.cash() == pytest.approx(-10_000.0 + 200 * 62.0)


# --- borrow fees ------------------------------------------------------------------------------
def test_borrow_fee_is_charged_on_a_short_share_but_not_on_a_short_future(drive: Any) -> None:
    # short 10 A and 1 future F at 100 on bar 1. Rate 36.5 %/yr = 0.1 %/day on A's value
    # 10 x 100 = 1,000: 1.00 before bars 2 and 3 (one calendar day each). F pays none.
    def sell(b: Any, s: Any) -> None:
        b.submit_order(Order("A", "sell", 10))
        b.submit_order(Order("F", "sell", 1))

    d = drive(
        {"A": [QUIET] * 4, "F": [QUIET] * 4},
        {0: sell},
        account="margin",
        borrow_rate=0.365,
        assets={"F": FUTURE},
    )
    ev = d.result.account_events_df
    rows = ev.select("asset_id", "event", "amount").rows()
    assert rows == [("A", "borrow_fee", pytest.approx(-1.0))] * 2
    assert [d.bar(t) for t in ev["timestamp"]] == [2, 3]
    assert d.result.metrics["borrow_fees"] == pytest.approx(2.0)
    # the short share credited 1,000; the future moves cash only by P&L (none at 100)
    assert d.cash() == pytest.approx(100_000.0 + 1_000.0 - 2.0)


# --- splits -----------------------------------------------------------------------------------
def test_reverse_split_rounds_the_position_down_and_pays_the_remainder_in_cash(
    drive: Any,
) -> None:
    # 15 shares at 100 (whole units); 1-for-2 on bar 3: 7.5 -> 7 shares at cost 200, the
    # half share paid at the previous close 100 / 0.5 = 200: 100 in cash. Prices are
    # unadjusted (bar 3 trades at 200), so equity stays 100,000
    def buy(b: Any, s: Any) -> None:
        b.submit_order(Order("A", "buy", 15))

    after = (200.0, 202.0, 198.0, 200.0)
    d = drive(
        [QUIET, QUIET, QUIET, after, after],
        {0: buy},
        fractional=False,
        corporate_actions=_split(0.5),
    )
    ev = d.result.account_events_df.row(0, named=True)
    assert (ev["event"], ev["quantity_change"], ev["position_after"]) == ("split", -8.0, 7.0)
    assert (ev["price"], ev["amount"]) == (200.0, 100.0)
    assert d.result.metrics["cash_in_lieu"] == 100.0
    assert d.cash() == 100_000.0 - 1_500.0 + 100.0
    assert d.result.portfolio_df["equity"].to_list() == [100_000.0] * 5
    # in post-split units: the half share is a partial exit, the 7 shares stay open
    exits = d.result.exit_trades_df.select("quantity", "entry_price", "exit_reason", "is_open")
    assert exits.rows() == [
        (0.5, 200.0, "split_cash_in_lieu", False),
        (7.0, 200.0, "end_of_data", True),
    ]


def test_split_rounds_the_position_and_working_orders_to_the_lot(drive: Any) -> None:
    # lot 10: 30 shares, 3-for-2 on bar 3: 45 -> 40, the 5 left paid at 100 / 1.5 each
    # (333.33). A working buy limit of 10 at 60 becomes 15 -> 10 shares at 40
    def submit(b: Any, s: Any) -> None:
        b.submit_order(Order("A", "buy", 30))
        s.state["w"] = b.submit_order(Order("A", "buy", 10, "limit", limit_price=60.0))

    after = (66.0, 67.0, 65.0, 66.0)
    d = drive(
        [QUIET, QUIET, QUIET, after, after],
        {0: submit},
        corporate_actions=_split(1.5),
        assets={"A": {"lot_size": 10}},
    )
    ev = d.result.account_events_df.row(0, named=True)
    assert (ev["quantity_change"], ev["position_after"]) == (10.0, 40.0)
    assert ev["amount"] == pytest.approx(5 * 100.0 / 1.5)
    working = d.state["w"]
    assert (working.quantity, working.limit_price, working.status) == (
        10.0,
        40.0,
        OrderStatus.PENDING,
    )
    assert d.events(working)[-1] == (3, "adjusted", "1.5-for-1 split")


def test_split_cancels_a_working_order_left_without_a_whole_lot(drive: Any) -> None:
    # a working buy limit of 1 share (whole units); 1-for-2 leaves half a share: cancelled
    def submit(b: Any, s: Any) -> None:
        s.state["w"] = b.submit_order(Order("A", "buy", 1, "limit", limit_price=50.0))

    after = (200.0, 202.0, 198.0, 200.0)
    d = drive(
        [QUIET, QUIET, QUIET, after, after],
        {0: submit},
        fractional=False,
        corporate_actions=_split(0.5),
    )
    working = d.state["w"]
    reason = "cancelled: split left no whole lot to trade"
    assert working.status is OrderStatus.CANCELLED
    assert d.strategy.cancelled == [(working, reason)]
    assert [(e, r) for _, e, r in d.events(working)] == [
        ("submitted", None),
        ("adjusted", "0.5-for-1 split"),
        ("cancelled", reason),
    ]


def test_split_cancellation_is_logged_on_the_split_bar(drive: Any) -> None:
    def submit(b: Any, s: Any) -> None:
        s.state["w"] = b.submit_order(Order("A", "buy", 1, "limit", limit_price=50.0))

    after = (200.0, 202.0, 198.0, 200.0)
    d = drive(
        [QUIET, QUIET, QUIET, after, after],
        {0: submit},
        fractional=False,
        corporate_actions=_split(0.5),
    )
    assert [(k, e) for k, e, _ in d.events(d.state["w"])] == [
        (0, "submitted"),
        (3, "adjusted"),
        (3, "cancelled"),
    ]
