"""Order construction, validation, enums and representation."""

from __future__ import annotations

import math

import pytest

from ml4t.backtest import Order, OrderSide, OrderStatus, OrderType, TimeInForce


def test_order_defaults() -> None:
    order = Order("A", OrderSide.BUY, 10)
    assert order.order_type is OrderType.MARKET
    assert order.time_in_force is TimeInForce.GTC
    assert order.status is OrderStatus.PENDING
    assert order.limit_price is None and order.stop_price is None
    assert order.filled_quantity == 0.0
    assert math.isnan(order.avg_fill_price)
    assert order.reason is None
    assert order.validation_error() is None


def test_order_enums_from_strings() -> None:
    order = Order("A", "sell", 5, order_type="limit", limit_price=99, time_in_force="day")
    assert order.side is OrderSide.SELL
    assert order.order_type is OrderType.LIMIT
    assert order.time_in_force is TimeInForce.DAY
    assert order.limit_price == 99.0 and isinstance(order.limit_price, float)


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"side": "hold"}, "hold"),
        ({"order_type": "iceberg"}, "iceberg"),
        ({"time_in_force": "opg"}, "opg"),
    ],
)
def test_order_unknown_enum_string_rejected(kwargs: dict[str, str], bad: str) -> None:
    args = {"asset_id": "A", "side": "buy", "quantity": 1, **kwargs}
    with pytest.raises(ValueError, match=bad):
        Order(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("quantity", [0, -1, math.nan, math.inf])
def test_order_validation_error_bad_quantity(quantity: float) -> None:
    problem = Order("A", "buy", quantity).validation_error()
    assert problem is not None
    assert "quantity" in problem


@pytest.mark.parametrize("price", [None, 0.0, -5.0, math.nan, math.inf])
def test_order_validation_error_limit_without_positive_price(price: float | None) -> None:
    problem = Order("A", "buy", 1, order_type="limit", limit_price=price).validation_error()
    assert problem is not None
    assert "limit_price" in problem


@pytest.mark.parametrize("price", [None, 0.0, -5.0, math.nan])
def test_order_validation_error_stop_without_positive_price(price: float | None) -> None:
    problem = Order("A", "sell", 1, order_type="stop", stop_price=price).validation_error()
    assert problem is not None
    assert "stop_price" in problem


def test_order_valid_limit_and_stop() -> None:
    assert Order("A", "buy", 1, "limit", limit_price=10).validation_error() is None
    assert Order("A", "sell", 1, "stop", stop_price=9).validation_error() is None
    assert Order("A", "buy", 0.5).validation_error() is None  # fractional is the broker's call


def test_order_signed_quantity() -> None:
    assert Order("A", "buy", 7).signed_quantity == 7.0
    assert Order("A", "sell", 7).signed_quantity == -7.0


def test_order_remaining_quantity() -> None:
    order = Order("A", "buy", 10)
    order.filled_quantity = 4.0
    assert order.remaining_quantity == 6.0


def test_order_side_sign_and_status_open() -> None:
    assert OrderSide.BUY.sign == 1 and OrderSide.SELL.sign == -1
    assert OrderStatus.PENDING.is_open
    closed = [OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.REJECTED]
    assert not any(s.is_open for s in closed)


def test_order_enums_are_strings() -> None:
    members = [OrderSide.BUY, OrderType.STOP, TimeInForce.DAY, OrderStatus.REJECTED]
    assert all(isinstance(m, str) for m in members)
    assert [m.value for m in members] == ["buy", "stop", "day", "rejected"]


def test_order_repr_market() -> None:
    assert repr(Order("AAPL", "buy", 10)) == "Order(id=-1, buy 10 AAPL market gtc, pending)"


def test_order_repr_limit_and_stop() -> None:
    limit = Order("A", "sell", 2.5, "limit", limit_price=101.25, time_in_force="day")
    assert repr(limit) == "Order(id=-1, sell 2.5 A limit limit=101.25 day, pending)"
    stop = Order("A", "sell", 3, "stop", stop_price=95)
    assert repr(stop) == "Order(id=-1, sell 3 A stop stop=95 gtc, pending)"


def test_order_tag_kept() -> None:
    assert Order("A", "buy", 1, tag="entry").tag == "entry"


def test_order_carries_no_broker_working_state() -> None:
    # what the broker needs to work an order lives in its own record (builtin.working)
    private = {name for name in Order.__slots__ if name.startswith("_")}
    assert private == {"_signals_snapshot", "_context_snapshot"}


def test_trail_level_follows_the_public_reference_price() -> None:
    order = Order("A", "sell", 10, "trailing_stop", trail_amount=2.0)
    assert math.isnan(order.trail_reference_price) and order.trail_level is None
    order.trail_reference_price = 104.0  # the broker writes it
    assert order.trail_level == 102.0
    buy = Order("A", "buy", 10, "trailing_stop", trail_percent=0.1)
    buy.trail_reference_price = 100.0
    assert buy.trail_level == pytest.approx(110.0)
