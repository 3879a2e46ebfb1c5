"""Order entry of the simulation broker: submit, cancel, replace, open_orders, round_quantity.

Driven through the broker's public methods during short runs (``drive``, see conftest):
bar ``k`` is 2 Jan 2024 + k days, an order submitted on bar ``k`` is first matched against
bar ``k + 1``. The rules are those of ``docs/execution.md`` §2 (cancel and replace) and §7
(lot size, minimum quantity, tick size) and of ``OrderEntry``: what does not depend on the
fill price is checked at submission, the rest when the order fills.
"""

from __future__ import annotations

from typing import Any

import pytest

from ml4t.backtest import Order, OrderStatus, SimulationBroker

QUIET = (100.0, 101.0, 99.0, 100.0)  # reaches neither 98 nor 102
DIP = (100.0, 101.0, 96.0, 99.0)  # low 96: reaches a buy limit at 97


def test_submitting_outside_a_run_raises_and_nothing_is_working() -> None:
    broker = SimulationBroker()
    with pytest.raises(RuntimeError, match="only be submitted while a backtest runs"):
        broker.submit_order(Order("A", "buy", 10))
    assert broker.open_orders() == []
    assert broker.cancel_order(0) is False


@pytest.mark.parametrize(
    ("args", "settings", "bar", "reason"),
    [
        (
            ("ZZZ", "buy", 1),
            {},
            0,
            "unknown asset 'ZZZ'; known assets: 'A'",
        ),
        (
            ("A", "buy", 15),
            {"assets": {"A": {"lot_size": 10}}},
            0,
            "quantity 15 is not a multiple of A's lot size 10",
        ),
        (
            ("A", "buy", 10),
            {"assets": {"A": {"min_quantity": 20}}},
            0,
            "quantity 10 is below A's minimum order size 20",
        ),
        # the price decides affordability: 11 x 100 = 1,100 > 1,000 is found at the fill
        (
            ("A", "buy", 11),
            {"initial_cash": 1_000.0},
            1,
            "insufficient cash: need 1,100.00 to buy 11 A at 100.0000, have 1,000.00",
        ),
    ],
    ids=["unknown_asset", "lot_size", "min_quantity", "cash_at_fill"],
)
def test_rejection_happens_at_submission_unless_it_depends_on_the_fill_price(
    args: tuple[Any, ...], settings: dict[str, Any], bar: int, reason: str, drive: Any
) -> None:
    order = Order(*args)

    def submit(b: Any, s: Any) -> None:
        s.state["order"] = b.submit_order(order)
        s.state["status"] = order.status

    d = drive([QUIET] * 3, {0: submit}, **settings)
    assert d.state["order"] is order and order.order_id >= 0
    # rejected before submit_order returns, or left working until the fill bar
    assert d.state["status"] is (OrderStatus.REJECTED if bar == 0 else OrderStatus.PENDING)
    assert order.status is OrderStatus.REJECTED and order.reason == reason
    assert d.events(order) == [(0, "submitted", None), (bar, "rejected", reason)]
    assert d.strategy.rejected == [(order, reason)]
    assert d.result.fills_df.height == 0


def test_cancel_order_is_true_once_for_a_working_order_and_false_otherwise(drive: Any) -> None:
    def submit(b: Any, s: Any) -> None:
        s.state["filled"] = b.submit_order(Order("A", "buy", 1))
        s.state["rejected"] = b.submit_order(Order("A", "buy", 0.5, "limit", limit_price=-1.0))
        s.state["working"] = b.submit_order(Order("A", "buy", 1, "limit", limit_price=90.0))

    def cancel(b: Any, s: Any) -> None:
        st = s.state
        st["answers"] = [
            b.cancel_order(st["filled"].order_id),  # filled at bar 1's open
            b.cancel_order(st["rejected"].order_id),
            b.cancel_order(12345),  # no such order
            b.cancel_order(st["working"].order_id),
            b.cancel_order(st["working"].order_id),  # already cancelled
        ]

    d = drive([QUIET] * 3, {0: submit, 1: cancel})
    assert d.state["answers"] == [False, False, False, True, False]
    working = d.state["working"]
    assert d.strategy.cancelled == [(working, "cancelled by the strategy")]
    assert d.events(working) == [
        (0, "submitted", None),
        (1, "cancelled", "cancelled by the strategy"),
    ]
    assert d.state["filled"].status is OrderStatus.FILLED  # a False cancel changes nothing


def test_replace_quantity_is_the_new_total_and_must_exceed_what_filled(drive: Any) -> None:
    # market buy 250 with a volume limit of 10 % of 1,000: 100 fill on bar 1. Replacing the
    # total by 100 (= filled) is refused; by 150 leaves 50, which fill on bar 2.
    def submit(b: Any, s: Any) -> None:
        s.state["o"] = b.submit_order(Order("A", "buy", 250))

    def replace(b: Any, s: Any) -> None:
        o = s.state["o"]
        with pytest.raises(ValueError, match="quantity 100 is not above the filled 100"):
            b.replace_order(o.order_id, quantity=100)
        s.state["after_refusal"] = (o.quantity, o.filled_quantity)
        s.state["same"] = b.replace_order(o.order_id, quantity=150) is o

    d = drive([QUIET] * 4, {0: submit, 1: replace}, volume_limit=0.1)
    order = d.state["o"]
    assert d.state["after_refusal"] == (250.0, 100.0)
    assert d.state["same"] is True
    assert d.fills("order_id", "quantity") == [
        (1, order.order_id, 100.0),
        (2, order.order_id, 50.0),
    ]
    assert (order.status, order.quantity, order.filled_quantity) == (OrderStatus.FILLED, 150, 150)
    assert [(k, e) for k, e, _ in d.events(order)] == [
        (0, "submitted"),
        (1, "partially_filled"),
        (1, "replaced"),
        (2, "filled"),
    ]
    assert d.events(order)[2][2] == "quantity=150"


def test_replace_checks_the_lot_and_rounds_the_price_to_the_tick_like_a_submission(
    drive: Any,
) -> None:
    # lot 10, tick 0.05. Quantity 25 is refused (order unchanged); the buy limit 97.03 is
    # rounded down to 97.00, so bar 3 (low 96) fills it at 97.00, not at 97.03
    def submit(b: Any, s: Any) -> None:
        s.state["o"] = b.submit_order(Order("A", "buy", 20, "limit", limit_price=90.0))

    def replace(b: Any, s: Any) -> None:
        o = s.state["o"]
        with pytest.raises(ValueError, match="quantity 25 is not a multiple of A's lot size 10"):
            b.replace_order(o.order_id, quantity=25)
        s.state["after_refusal"] = (o.quantity, o.limit_price)
        b.replace_order(o.order_id, limit_price=97.03)

    assets = {"A": {"lot_size": 10, "tick_size": 0.05}}
    d = drive([QUIET, QUIET, QUIET, DIP, QUIET], {0: submit, 1: replace}, assets=assets)
    order = d.state["o"]
    assert d.state["after_refusal"] == (20.0, 90.0)
    assert order.limit_price == 97.0
    assert d.fills() == [(3, "buy", 20.0, 97.0, None)]


def test_replace_to_day_expires_at_the_end_of_the_next_session(drive: Any) -> None:
    # a GTC buy limit 90 replaced by a DAY order on bar 1 applies from bar 2 and expires at
    # the end of bar 2's session (daily bars: one bar per session)
    def submit(b: Any, s: Any) -> None:
        s.state["o"] = b.submit_order(Order("A", "buy", 20, "limit", limit_price=90.0))

    def replace(b: Any, s: Any) -> None:
        b.replace_order(s.state["o"].order_id, time_in_force="day")

    d = drive([QUIET] * 5, {0: submit, 1: replace})
    order = d.state["o"]
    reason = "expired: DAY order not filled by the end of its session"
    assert d.events(order) == [
        (0, "submitted", None),
        (1, "replaced", "time_in_force='day'"),
        (2, "expired", reason),
    ]
    assert order.status is OrderStatus.EXPIRED
    assert d.strategy.cancelled == [(order, reason)]


def test_replace_of_an_unknown_or_finished_order_raises_not_working(drive: Any) -> None:
    def submit(b: Any, s: Any) -> None:
        s.state["o"] = b.submit_order(Order("A", "buy", 5, "limit", limit_price=90.0))
        b.cancel_order(s.state["o"].order_id)
        for key, order_id in (("cancelled", s.state["o"].order_id), ("unknown", 999)):
            try:
                b.replace_order(order_id, limit_price=95.0)
            except ValueError as exc:
                s.state[key] = str(exc)

    d = drive([QUIET] * 2, {0: submit})
    order_id = d.state["o"].order_id
    assert d.state["cancelled"] == f"replace_order: order {order_id} is not working"
    assert d.state["unknown"] == "replace_order: order 999 is not working"
    assert d.state["o"].limit_price == 90.0


def test_open_orders_lists_working_orders_per_asset_with_bracket_children(drive: Any) -> None:
    # bar 0: buy limits on A and B, and a bracket on A (entry + stop + target, 3 orders);
    # bar 1: the bracket entry has filled and the strategy cancelled A's limit
    def submit(b: Any, s: Any) -> None:
        s.state["a"] = b.submit_order(Order("A", "buy", 10, "limit", limit_price=90.0))
        s.state["b"] = b.submit_order(Order("B", "buy", 10, "limit", limit_price=90.0))
        s.state["bracket"] = b.submit_bracket(Order("A", "buy", 5), 90.0, 120.0)
        s.state[0] = ([o.order_id for o in b.open_orders("A")], b.open_orders("B"))

    def later(b: Any, s: Any) -> None:
        b.cancel_order(s.state["a"].order_id)
        s.state[1] = [o.order_id for o in b.open_orders()]

    d = drive({"A": [QUIET] * 3, "B": [QUIET] * 3}, {0: submit, 1: later})
    a, b = d.state["a"], d.state["b"]
    entry, stop, target = d.state["bracket"]
    on_a, on_b = d.state[0]
    assert on_a == [a.order_id, entry.order_id, stop.order_id, target.order_id]
    assert on_b == [b]
    assert d.state[1] == [b.order_id, stop.order_id, target.order_id]


@pytest.mark.parametrize(
    ("settings", "quantity", "want"),
    [
        ({"assets": {"A": {"lot_size": 10}}}, 37.9, 30.0),
        ({"assets": {"A": {"lot_size": 0.001}}}, 0.12345, 0.123),
        ({"fractional": False}, 37.9, 37.0),
        ({}, 37.9, 37.9),
    ],
    ids=["lot_10", "lot_0.001", "whole_units", "fractional"],
)
def test_round_quantity_rounds_down_to_the_lot(
    settings: dict[str, Any], quantity: float, want: float, drive: Any
) -> None:
    def ask(b: Any, s: Any) -> None:
        s.state["got"] = b.round_quantity("A", quantity)

    d = drive([QUIET] * 2, {0: ask}, **settings)
    assert d.state["got"] == pytest.approx(want, abs=1e-12)
