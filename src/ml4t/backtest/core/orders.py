"""Orders and their enumerations.

An :class:`Order` is the ticket a strategy submits and the broker updates: its status,
filled quantity and average fill price change as the broker processes it. Everything the
strategy is *told* about an order arrives as immutable events (see :mod:`.events`).
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

__all__ = ["Order", "OrderSide", "OrderStatus", "OrderType", "TimeInForce"]


class OrderSide(StrEnum):
    """Direction of an order."""

    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        """Return +1 for a buy and -1 for a sell."""
        return 1 if self is OrderSide.BUY else -1


class OrderType(StrEnum):
    """How an order is priced.

    ``MARKET`` fills at the fill-timing price (next bar's open by default) plus slippage.
    ``LIMIT`` fills at the limit or better; ``STOP`` becomes a market order once the bar's
    range reaches the stop price (a gap through the stop fills at the open).
    """

    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"


class TimeInForce(StrEnum):
    """How long an order stays working.

    ``GTC`` works until filled or cancelled. ``DAY`` works until the end of the first
    session in which it can fill (for an order placed on the last bar of a day with
    next-bar fills, that is the next session).
    """

    GTC = "gtc"
    DAY = "day"


class OrderStatus(StrEnum):
    """Lifecycle state of an order."""

    PENDING = "pending"
    FILLED = "filled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REJECTED = "rejected"

    @property
    def is_open(self) -> bool:
        """Return True while the order can still fill."""
        return self is OrderStatus.PENDING


class Order:
    """A request to trade one asset.

    Parameters
    ----------
    asset_id : str
        Asset to trade.
    side : OrderSide
        Buy or sell.
    quantity : float
        Positive number of units.
    order_type : OrderType, default MARKET
    limit_price : float, optional
        Required for ``LIMIT`` orders.
    stop_price : float, optional
        Required for ``STOP`` orders.
    time_in_force : TimeInForce, default GTC
    tag : str, optional
        Free text carried into the fills frame (e.g. ``"signal"``); it becomes the trade's
        ``exit_reason`` when the order closes a position.

    Notes
    -----
    The broker sets ``order_id``, ``status``, ``filled_quantity``, ``avg_fill_price``,
    ``created_at`` and ``reason``. Strategies should treat them as read-only.
    """

    __slots__ = (
        "_code",
        "_context_snapshot",
        "_created_row",
        "_created_ts",
        "_signals_snapshot",
        "asset_id",
        "avg_fill_price",
        "commission",
        "filled_quantity",
        "limit_price",
        "order_id",
        "order_type",
        "quantity",
        "reason",
        "side",
        "slippage",
        "status",
        "stop_price",
        "tag",
        "time_in_force",
    )

    def __init__(
        self,
        asset_id: str,
        side: OrderSide | str,
        quantity: float,
        order_type: OrderType | str = OrderType.MARKET,
        limit_price: float | None = None,
        stop_price: float | None = None,
        time_in_force: TimeInForce | str = TimeInForce.GTC,
        tag: str | None = None,
    ) -> None:
        self.asset_id = asset_id
        self.side = OrderSide(side)
        self.quantity = float(quantity)
        self.order_type = OrderType(order_type)
        self.limit_price = None if limit_price is None else float(limit_price)
        self.stop_price = None if stop_price is None else float(stop_price)
        self.time_in_force = TimeInForce(time_in_force)
        self.tag = tag
        self.order_id = -1
        self.status = OrderStatus.PENDING
        self.filled_quantity = 0.0
        self.avg_fill_price = math.nan
        self.commission = 0.0
        self.slippage = 0.0
        self.reason: str | None = None
        self._code = -1
        self._created_ts = 0
        self._created_row: Any = None
        self._signals_snapshot: dict[str, float] | None = None
        self._context_snapshot: dict[str, float] | None = None

    def validation_error(self) -> str | None:
        """Return why the order is malformed, or ``None`` if it is well formed."""
        if self.quantity == 0:
            return "quantity is 0 (the requested size rounds to less than one unit)"
        if not math.isfinite(self.quantity) or self.quantity < 0:
            return f"quantity must be a positive finite number, got {self.quantity!r}"
        if self.order_type is OrderType.LIMIT and not _positive(self.limit_price):
            return f"limit order needs a positive limit_price, got {self.limit_price!r}"
        if self.order_type is OrderType.STOP and not _positive(self.stop_price):
            return f"stop order needs a positive stop_price, got {self.stop_price!r}"
        return None

    @property
    def signed_quantity(self) -> float:
        """Return the quantity with the side's sign (+ buy, - sell)."""
        return self.quantity if self.side is OrderSide.BUY else -self.quantity

    @property
    def remaining_quantity(self) -> float:
        """Return the quantity not yet filled."""
        return self.quantity - self.filled_quantity

    def __repr__(self) -> str:
        price = ""
        if self.limit_price is not None:
            price += f" limit={self.limit_price:g}"
        if self.stop_price is not None:
            price += f" stop={self.stop_price:g}"
        return (
            f"Order(id={self.order_id}, {self.side.value} {self.quantity:g} {self.asset_id} "
            f"{self.order_type.value}{price} {self.time_in_force.value}, {self.status.value})"
        )


def _positive(x: float | None) -> bool:
    return x is not None and math.isfinite(x) and x > 0
