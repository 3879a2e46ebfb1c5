"""Order links of the simulation broker: OCO, brackets, OTO and position exits.

Driven through the broker's public methods (``submit_oco``, ``submit_bracket``,
``submit_oto``, ``set_exits``, ``cancel_order``, ``open_orders``) during short runs
(``drive``, see conftest): bar ``k`` is 2 Jan 2024 + k days, an order submitted on bar
``k`` is first matched against bar ``k + 1``. The rules are those of ``docs/execution.md``
§2 (brackets, OTO and OCO) and §8 (position exits).
"""

from __future__ import annotations

from typing import Any

import pytest

from ml4t.backtest import Order, OrderStatus

QUIET = (100.0, 101.0, 99.0, 100.0)  # reaches neither 98 nor 102
DROP = (100.0, 101.0, 94.0, 95.0)  # low 94: reaches a sell stop at 95
RALLY = (100.0, 106.0, 99.0, 104.0)  # high 106: reaches a sell limit at 105
PARTIAL = "partial: volume limit 0.1 x bar volume 1000"


# --- OCO --------------------------------------------------------------------------------------
def test_oco_partial_fill_of_one_member_cancels_the_others(drive: Any) -> None:
    # market buy 250 under a 10 % volume limit fills 100 on bar 1: that first (partial)
    # fill cancels the resting buy limit 90 at once; the market order completes alone
    def submit(b: Any, s: Any) -> None:
        s.state["oco"] = b.submit_oco(
            Order("A", "buy", 250, tag="x"), Order("A", "buy", 50, "limit", limit_price=90.0)
        )

    d = drive([QUIET] * 5, {0: submit}, volume_limit=0.1)
    market, limit = d.state["oco"]
    reason = f"cancelled: OCO sibling order {market.order_id} filled"
    assert d.events(limit) == [(0, "submitted", None), (1, "cancelled", reason)]
    assert d.strategy.cancelled == [(limit, reason)]
    assert d.fills("quantity", "reason") == [
        (1, 100.0, PARTIAL),
        (2, 100.0, PARTIAL),
        (3, 50.0, None),
    ]
    assert market.status is OrderStatus.FILLED


def test_oco_member_cancelled_by_the_strategy_leaves_the_others_working(drive: Any) -> None:
    # buy limits 95 and 96 as OCO; the strategy cancels the 95 on bar 1; bar 2 (low 95.5)
    # reaches only the 96, which still works and fills
    def submit(b: Any, s: Any) -> None:
        s.state["oco"] = b.submit_oco(
            Order("A", "buy", 10, "limit", limit_price=95.0),
            Order("A", "buy", 10, "limit", limit_price=96.0),
        )

    def cancel(b: Any, s: Any) -> None:
        b.cancel_order(s.state["oco"][0].order_id)

    d = drive([QUIET, QUIET, (100.0, 101.0, 95.5, 100.0), QUIET], {0: submit, 1: cancel})
    first, second = d.state["oco"]
    assert first.status is OrderStatus.CANCELLED and second.status is OrderStatus.FILLED
    assert d.fills("order_id", "price") == [(2, second.order_id, 96.0)]
    assert d.strategy.cancelled == [(first, "cancelled by the strategy")]


def test_oco_spans_assets_a_fill_in_one_cancels_the_other(drive: Any) -> None:
    # buy limit 95 on A and on B; only A's bar 1 (low 94) reaches it
    def submit(b: Any, s: Any) -> None:
        s.state["oco"] = b.submit_oco(
            Order("A", "buy", 10, "limit", limit_price=95.0),
            Order("B", "buy", 10, "limit", limit_price=95.0),
        )

    d = drive({"A": [QUIET, DROP, QUIET], "B": [QUIET, QUIET, DROP]}, {0: submit})
    on_a, on_b = d.state["oco"]
    assert d.fills("asset_id", "price") == [(1, "A", 95.0)]
    assert on_b.status is OrderStatus.CANCELLED
    assert d.events(on_b)[-1] == (
        1,
        "cancelled",
        f"cancelled: OCO sibling order {on_a.order_id} filled",
    )


def test_link_helpers_refuse_malformed_groups(drive: Any) -> None:
    def submit(b: Any, s: Any) -> None:
        calls = {
            "oco": lambda: b.submit_oco(Order("A", "buy", 1)),
            "bracket": lambda: b.submit_bracket(Order("A", "buy", 1)),
            "exits": lambda: b.set_exits("ZZZ", {"stop_loss": 0.05}),
        }
        for key, call in calls.items():
            try:
                call()
            except (ValueError, KeyError) as exc:
                s.state[key] = (type(exc), str(exc))
        s.state["open"] = b.open_orders()

    d = drive([QUIET] * 2, {0: submit})
    assert d.state["oco"] == (ValueError, "an OCO group needs at least two orders")
    assert d.state["bracket"] == (ValueError, "a bracket needs stop_loss and/or take_profit")
    assert d.state["exits"] == (KeyError, "\"unknown asset 'ZZZ'\"")
    assert d.state["open"] == [] and d.result.orders_df.height == 0


# --- brackets ---------------------------------------------------------------------------------
def test_bracket_rejected_at_submission_rejects_children_that_never_work(drive: Any) -> None:
    def submit(b: Any, s: Any) -> None:
        s.state["bracket"] = b.submit_bracket(Order("A", "buy", -5), 90.0, 110.0)

    d = drive([QUIET] * 3, {0: submit})
    entry, stop, target = d.state["bracket"]
    why = "quantity must be a positive finite number, got -5.0"
    assert entry.status is OrderStatus.REJECTED and entry.reason == why
    for child in (stop, target):
        assert child.status is OrderStatus.REJECTED
        assert child.reason == f"bracket entry rejected: {why}"
    assert d.strategy.rejected == [(entry, why)]  # one report: the entry
    assert set(d.result.orders_df["order_id"].to_list()) == {entry.order_id}


def test_bracket_entry_rejected_at_fill_cancels_its_children(drive: Any) -> None:
    # 200 x 100 = 20,000 > cash 10,000: the entry is rejected on bar 1, its children with it
    def submit(b: Any, s: Any) -> None:
        s.state["bracket"] = b.submit_bracket(Order("A", "buy", 200), 90.0, 110.0)

    d = drive([QUIET] * 3, {0: submit}, initial_cash=10_000.0)
    entry, stop, target = d.state["bracket"]
    assert entry.status is OrderStatus.REJECTED
    reason = f"cancelled: parent order {entry.order_id} ended unfilled (rejected)"
    for child in (stop, target):
        assert child.status is OrderStatus.CANCELLED
        assert d.events(child) == [(0, "submitted", None), (1, "cancelled", reason)]
    assert sorted(d.strategy.cancelled, key=lambda t: t[0].order_id) == [
        (stop, reason),
        (target, reason),
    ]


def test_bracket_children_take_the_quantity_the_entry_filled_after_a_resize(
    drive: Any,
) -> None:
    # cash 10,000 and cash_policy="resize": the entry for 200 fills 100 at 100 on bar 1, so
    # the stop (95) sells 100 on bar 3 (low 94) and the target is cancelled
    def submit(b: Any, s: Any) -> None:
        s.state["bracket"] = b.submit_bracket(Order("A", "buy", 200), 95.0, 110.0)

    rows = [QUIET, QUIET, QUIET, DROP, QUIET]
    d = drive(rows, {0: submit}, initial_cash=10_000.0, cash_policy="resize")
    entry, stop, target = d.state["bracket"]
    assert entry.filled_quantity == 100.0
    assert (stop.quantity, target.quantity) == (100.0, 100.0)
    assert d.fills() == [(1, "buy", 100.0, 100.0, None), (3, "sell", 100.0, 95.0, "stop_loss")]
    assert target.status is OrderStatus.CANCELLED
    assert d.cash() == pytest.approx(10_000.0 - 100 * 100.0 + 100 * 95.0)


def test_bracket_entry_cancelled_after_a_partial_fill_children_protect_what_filled(
    drive: Any,
) -> None:
    # entry 250 under a 10 % volume limit fills 100 on bar 1; the strategy then cancels it.
    # The children activate for those 100 and work from bar 2: the stop sells 100 on bar 3
    def submit(b: Any, s: Any) -> None:
        s.state["bracket"] = b.submit_bracket(Order("A", "buy", 250), 95.0, 110.0)

    def cancel(b: Any, s: Any) -> None:
        b.cancel_order(s.state["bracket"][0].order_id)

    rows = [QUIET, QUIET, QUIET, DROP, QUIET]
    d = drive(rows, {0: submit, 1: cancel}, volume_limit=0.1)
    entry, stop, target = d.state["bracket"]
    assert (entry.status, entry.filled_quantity) == (OrderStatus.CANCELLED, 100.0)
    assert [(k, e) for k, e, _ in d.events(stop)] == [
        (0, "submitted"),
        (1, "activated"),
        (3, "filled"),
    ]
    assert d.fills("side", "quantity", "price") == [
        (1, "buy", 100.0, 100.0),
        (3, "sell", 100.0, 95.0),
    ]
    assert target.status is OrderStatus.CANCELLED
    assert d.result.portfolio_df["num_positions"][-1] == 0


def test_cancelling_a_bracket_entry_before_it_fills_cancels_its_children(drive: Any) -> None:
    def submit(b: Any, s: Any) -> None:
        s.state["bracket"] = b.submit_bracket(
            Order("A", "buy", 10, "limit", limit_price=90.0), 85.0, 110.0
        )

    def cancel(b: Any, s: Any) -> None:
        s.state["ok"] = b.cancel_order(s.state["bracket"][0].order_id)
        s.state["open"] = b.open_orders()

    d = drive([QUIET] * 3, {0: submit, 1: cancel})
    entry, stop, target = d.state["bracket"]
    assert d.state["ok"] is True and d.state["open"] == []
    reason = f"cancelled: parent order {entry.order_id} ended unfilled (cancelled)"
    assert d.events(stop)[-1] == (1, "cancelled", reason)
    assert d.events(target)[-1] == (1, "cancelled", reason)
    assert {o.order_id for o, _ in d.strategy.cancelled} == {
        entry.order_id,
        stop.order_id,
        target.order_id,
    }


def test_bracket_leg_reached_after_the_strategy_closed_the_position_is_cancelled(
    drive: Any,
) -> None:
    # long 10 from bar 1 with a stop at 95; the strategy sells 10 itself (bar 3). When bar 4
    # reaches 95 the reduce-only stop has nothing to reduce: cancelled, no short is opened
    def submit(b: Any, s: Any) -> None:
        s.state["bracket"] = b.submit_bracket(Order("A", "buy", 10), 95.0, 110.0)

    def close(b: Any, s: Any) -> None:
        b.submit_order(Order("A", "sell", 10))

    d = drive([QUIET, QUIET, QUIET, QUIET, DROP, QUIET], {0: submit, 2: close})
    _, stop, _ = d.state["bracket"]
    reason = "cancelled: reduce-only order, no long position in A left to reduce (position 0)"
    assert d.events(stop)[-1] == (4, "cancelled", reason)
    assert d.fills("side", "quantity") == [(1, "buy", 10.0), (3, "sell", 10.0)]
    assert d.result.portfolio_df["num_positions"][-1] == 0


# --- OTO --------------------------------------------------------------------------------------
def test_oto_parent_cancelled_after_a_partial_fill_activates_the_child_as_given(
    drive: Any,
) -> None:
    # parent market buy 250 (volume limit: 100 fill on bar 1), cancelled on bar 1; the child
    # (sell limit 105 for 30) then works with its own quantity and fills on bar 3 (high 106)
    def submit(b: Any, s: Any) -> None:
        s.state["oto"] = b.submit_oto(
            Order("A", "buy", 250), Order("A", "sell", 30, "limit", limit_price=105.0)
        )

    def cancel(b: Any, s: Any) -> None:
        b.cancel_order(s.state["oto"][0].order_id)

    d = drive([QUIET, QUIET, QUIET, RALLY, QUIET], {0: submit, 1: cancel}, volume_limit=0.1)
    parent, child = d.state["oto"]
    assert parent.filled_quantity == 100.0
    assert [(k, e) for k, e, _ in d.events(child)] == [
        (0, "submitted"),
        (1, "activated"),
        (3, "filled"),
    ]
    assert d.fills("side", "quantity", "price") == [
        (1, "buy", 100.0, 100.0),
        (3, "sell", 30.0, 105.0),
    ]


@pytest.mark.parametrize(
    ("parent_args", "child_args", "parent_reason", "child_reason"),
    [
        (
            ("A", "buy", 0.0),
            ("A", "sell", 10, "limit", 105.0),
            "quantity is 0 (the requested size rounds to less than one unit)",
            "OTO parent rejected: quantity is 0 (the requested size rounds to less than one unit)",
        ),
        (
            ("A", "buy", 10),
            ("A", "sell", 10, "limit", -1.0),
            "child order invalid: limit order needs a positive limit_price, got -1.0",
            None,
        ),
    ],
    ids=["bad_parent", "bad_child"],
)
def test_oto_is_rejected_as_a_whole_when_parent_or_child_is_invalid(
    parent_args: tuple[Any, ...],
    child_args: tuple[Any, ...],
    parent_reason: str,
    child_reason: str | None,
    drive: Any,
) -> None:
    def submit(b: Any, s: Any) -> None:
        s.state["oto"] = b.submit_oto(Order(*parent_args), Order(*child_args))

    d = drive([QUIET] * 3, {0: submit})
    parent, child = d.state["oto"]
    assert (parent.status, parent.reason) == (OrderStatus.REJECTED, parent_reason)
    assert d.strategy.rejected == [(parent, parent_reason)]
    assert child.reason == child_reason
    assert child.status is (OrderStatus.REJECTED if child_reason else OrderStatus.PENDING)
    assert d.result.fills_df.height == 0
    assert child.order_id not in d.result.orders_df["order_id"].to_list()


# --- position exits ---------------------------------------------------------------------------
def test_set_exits_on_an_open_position_places_exits_from_the_average_entry(drive: Any) -> None:
    # 10 bought at 100 (bar 1); set_exits on bar 2: stop 100 x 0.95 = 95, target
    # 100 x 1.10 = 110, both working from bar 3. Bar 3 (low 94) fills the stop at 95
    def buy(b: Any, s: Any) -> None:
        b.submit_order(Order("A", "buy", 10))

    def protect(b: Any, s: Any) -> None:
        b.set_exits("A", {"stop_loss": 0.05, "take_profit": 0.10})
        s.state["open"] = [(o.tag, o.stop_price, o.limit_price) for o in b.open_orders("A")]

    d = drive([QUIET, QUIET, QUIET, DROP, QUIET], {0: buy, 2: protect})
    (stop_tag, stop, no_limit), (target_tag, no_stop, target) = d.state["open"]
    assert (stop_tag, no_limit, target_tag, no_stop) == ("stop_loss", None, "take_profit", None)
    assert (stop, target) == (pytest.approx(95.0, abs=1e-9), pytest.approx(110.0, abs=1e-9))
    assert d.fills() == [(1, "buy", 10.0, 100.0, None), (3, "sell", 10.0, 95.0, "stop_loss")]
    assert d.result.trades_df["exit_reason"].to_list() == ["stop_loss"]
    take_profit = d.result.orders_df.filter(d.result.orders_df["tag"] == "take_profit")
    assert take_profit["event"].to_list() == ["submitted", "cancelled"]
