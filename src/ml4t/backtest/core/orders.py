"""Orders and their enumerations.

An :class:`Order` is the ticket a strategy submits and the broker updates: its status,
filled quantity and average fill price change as the broker processes it. Everything the
strategy is *told* about an order arrives as immutable events (see :mod:`.events`).
"""

from __future__ import annotations

import math
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from typing import Any, NamedTuple

from ..errors import ConfigError

__all__ = [
    "Order",
    "OrderRecord",
    "OrderSide",
    "OrderStatus",
    "OrderType",
    "TimeInForce",
    "round_price",
    "round_to_lot",
    "trail_level",
]


class OrderRecord(NamedTuple):
    """One row of the orders log (``result.orders_df``): an order event or a broker note.

    A broker event that concerns no order (a margin call, say) has ``order_id == -1``,
    ``event == "account"`` and the text in ``reason``.
    """

    timestamp_ns: int
    order_id: int
    asset_id: str | None
    side: str | None
    quantity: float | None
    order_type: str | None
    limit_price: float | None
    stop_price: float | None
    time_in_force: str | None
    event: str
    reason: str | None
    tag: str | None


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
    range reaches the stop price (a gap through the stop fills at the open);
    ``STOP_LIMIT`` becomes a limit order at ``limit_price`` once ``stop_price`` is reached;
    ``TRAILING_STOP`` is a stop whose level trails the best price since submission by
    ``trail_amount`` (currency) or ``trail_percent`` (fraction). ``MARKET_ON_OPEN`` fills
    at the open of the next bar whatever the broker's fill timing, ``MARKET_ON_CLOSE`` at
    the close of the last bar of the session in which it becomes eligible.
    """

    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"
    TRAILING_STOP = "trailing_stop"
    MARKET_ON_OPEN = "market_on_open"
    MARKET_ON_CLOSE = "market_on_close"


class TimeInForce(StrEnum):
    """How long an order stays working.

    ``GTC`` works until filled or cancelled. ``DAY`` works until the end of the first
    session in which it can fill (for an order placed on the last bar of a day with
    next-bar fills, that is the next session). ``IOC`` (immediate or cancel) fills what it
    can on the first bar it is matched against and cancels the rest; ``FOK`` (fill or kill)
    fills completely on that bar or is cancelled. ``GTD`` works until ``expire_at``.
    """

    GTC = "gtc"
    DAY = "day"
    IOC = "ioc"
    FOK = "fok"
    GTD = "gtd"


class OrderStatus(StrEnum):
    """Lifecycle state of an order."""

    PENDING = "pending"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REJECTED = "rejected"

    @property
    def is_open(self) -> bool:
        """Return True while the order can still fill."""
        return self is OrderStatus.PENDING or self is OrderStatus.PARTIALLY_FILLED


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
        Required for ``LIMIT`` and ``STOP_LIMIT`` orders.
    stop_price : float, optional
        Required for ``STOP`` and ``STOP_LIMIT`` orders.
    time_in_force : TimeInForce, default GTC
    tag : str, optional
        Free text carried into the fills frame (e.g. ``"signal"``); it becomes the trade's
        ``exit_reason`` when the order closes a position.
    trail_amount, trail_percent : float, optional
        For ``TRAILING_STOP``: the distance of the stop from the best price since
        submission, in currency or as a fraction (give exactly one).
    expire_at : datetime, date or str, optional
        For ``GTD``: the order works through this time (a date means the end of that day,
        in the data's timezone).
    reduce_only : bool, default False
        Only reduce an open position: at fill time the order is capped at the position
        held in the opposite direction, and cancelled (with a reason) when there is none,
        so it can never open or reverse a position. ``close_position`` and
        ``reduce_position`` place such orders.
    target_quantity : float, optional
        The signed position this order trades to. At fill time its quantity is resolved
        against the position then held (``|target - position|``), so whatever else filled
        first, the order ends at its target; it is cancelled when the position is already
        there or beyond it. The ``order_target_*`` helpers place such orders.

    Attributes
    ----------
    order_id : int
        Set by the broker when it receives the order (-1 before).
    status : OrderStatus
        Where the order is in its lifecycle.
    filled_quantity, avg_fill_price : float
        Units filled so far and their average price (NaN before the first fill).
    commission, slippage : float
        Commission and slippage cost of the fills so far.
    reason : str or None
        Why the order last changed: a rejection, cancellation or expiry reason, or the
        reason recorded on its last fill (a resize, a partial fill).
    parent, children, oco : Order, list of Order, list of Order or None
        Links: the parent an OTO or bracket child waits for, the children waiting for
        this order, the one-cancels-other group it belongs to.
    trail_reference_price : float
        For a ``TRAILING_STOP``: the price its stop level is measured from (the best
        price since submission, followed as the broker's ``trail_reference`` setting
        says). NaN until the broker references it when it accepts the order; after that
        the broker moves it after each bar. :attr:`trail_level` is the level it gives.

    Notes
    -----
    The broker sets every attribute listed under Attributes; strategies should treat
    them, and the order's parameters, as read-only and change a working order with
    ``replace_order``. The broker keeps its own working state of an order (where it
    trades, when it became eligible, whether a stop has triggered) apart from the order.
    """

    __slots__ = (
        "_context_snapshot",
        "_signals_snapshot",
        "asset_id",
        "avg_fill_price",
        "children",
        "commission",
        "expire_at",
        "filled_quantity",
        "limit_price",
        "oco",
        "order_id",
        "order_type",
        "parent",
        "quantity",
        "reason",
        "reduce_only",
        "side",
        "slippage",
        "status",
        "stop_price",
        "tag",
        "target_quantity",
        "time_in_force",
        "trail_amount",
        "trail_percent",
        "trail_reference_price",
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
        *,
        trail_amount: float | None = None,
        trail_percent: float | None = None,
        expire_at: Any = None,
        reduce_only: bool = False,
        target_quantity: float | None = None,
    ) -> None:
        self.asset_id = asset_id
        self.side = OrderSide(side)
        self.quantity = float(quantity)
        self.order_type = OrderType(order_type)
        self.limit_price = None if limit_price is None else float(limit_price)
        self.stop_price = None if stop_price is None else float(stop_price)
        self.time_in_force = TimeInForce(time_in_force)
        self.tag = tag
        self.trail_amount = None if trail_amount is None else float(trail_amount)
        self.trail_percent = None if trail_percent is None else float(trail_percent)
        self.expire_at = expire_at
        self.reduce_only = bool(reduce_only)
        self.target_quantity = None if target_quantity is None else float(target_quantity)
        self.order_id = -1
        self.status = OrderStatus.PENDING
        self.filled_quantity = 0.0
        self.avg_fill_price = math.nan
        self.commission = 0.0
        self.slippage = 0.0
        self.reason: str | None = None
        self.parent: Order | None = None
        self.children: list[Order] = []
        self.oco: list[Order] | None = None
        self.trail_reference_price = math.nan
        self._signals_snapshot: dict[str, float] | None = None
        self._context_snapshot: dict[str, float] | None = None

    def validation_error(self) -> str | None:
        """Return why the order is malformed, or ``None`` if it is well formed."""
        if self.quantity == 0:
            return "quantity is 0 (the requested size rounds to less than one unit)"
        if not math.isfinite(self.quantity) or self.quantity < 0:
            return f"quantity must be a positive finite number, got {self.quantity!r}"
        kind = self.order_type
        if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT) and not _positive(self.limit_price):
            return f"{kind.value} order needs a positive limit_price, got {self.limit_price!r}"
        if kind in (OrderType.STOP, OrderType.STOP_LIMIT) and not _positive(self.stop_price):
            return f"{kind.value} order needs a positive stop_price, got {self.stop_price!r}"
        if self.limit_price is not None and kind not in (OrderType.LIMIT, OrderType.STOP_LIMIT):
            return f"limit_price is only for limit and stop_limit orders, not {kind.value}"
        if self.stop_price is not None and kind not in (OrderType.STOP, OrderType.STOP_LIMIT):
            return f"stop_price is only for stop and stop_limit orders, not {kind.value}"
        if kind is OrderType.TRAILING_STOP:
            given = [x for x in (self.trail_amount, self.trail_percent) if x is not None]
            if len(given) != 1:
                return "trailing_stop order needs exactly one of trail_amount and trail_percent"
            if self.trail_amount is not None and not _positive(self.trail_amount):
                return f"trail_amount must be a positive number, got {self.trail_amount!r}"
            pct = self.trail_percent
            if pct is not None and not (math.isfinite(pct) and 0 < pct < 1):
                return f"trail_percent must be a fraction in (0, 1), got {pct!r}"
        elif self.trail_amount is not None or self.trail_percent is not None:
            return f"trail_amount/trail_percent are only for trailing_stop orders, not {kind.value}"
        if (self.time_in_force is TimeInForce.GTD) != (self.expire_at is not None):
            return "a GTD order needs expire_at, and expire_at needs time_in_force='gtd'"
        target = self.target_quantity
        if target is not None:
            if self.reduce_only:
                return "an order is either reduce_only or has a target_quantity, not both"
            if not math.isfinite(target):
                return f"target_quantity must be a finite number, got {target!r}"
        return None

    @property
    def signed_quantity(self) -> float:
        """Return the quantity with the side's sign (+ buy, - sell)."""
        return self.quantity if self.side is OrderSide.BUY else -self.quantity

    @property
    def remaining_quantity(self) -> float:
        """Return the quantity not yet filled."""
        return self.quantity - self.filled_quantity

    @property
    def is_open(self) -> bool:
        """Return True while the order can still fill."""
        return self.status.is_open

    @property
    def trail_level(self) -> float | None:
        """Return a trailing stop's current level (``None`` before it is referenced).

        The level trails ``trail_reference_price`` by the order's ``trail_amount`` or
        ``trail_percent``: below it for a sell, above it for a buy (see :func:`trail_level`).
        """
        ref = self.trail_reference_price
        if self.order_type is not OrderType.TRAILING_STOP or math.isnan(ref):
            return None
        return trail_level(self, ref)

    def __repr__(self) -> str:
        price = ""
        if self.limit_price is not None:
            price += f" limit={self.limit_price:g}"
        if self.stop_price is not None:
            price += f" stop={self.stop_price:g}"
        if self.trail_amount is not None:
            price += f" trail={self.trail_amount:g}"
        if self.trail_percent is not None:
            price += f" trail={self.trail_percent:.2%}"
        intent = " reduce-only" if self.reduce_only else ""
        if self.target_quantity is not None:
            intent = f" target={self.target_quantity:g}"
        return (
            f"Order(id={self.order_id}, {self.side.value} {self.quantity:g} {self.asset_id} "
            f"{self.order_type.value}{price} {self.time_in_force.value}{intent}, "
            f"{self.status.value})"
        )


def trail_level(order: Order, ref: float) -> float:
    """Return the stop level of a trailing order whose reference price is ``ref``.

    A sell (protecting a long) trails below the highest reference, a buy above the lowest.
    """
    sign = order.side.sign
    if order.trail_amount is not None:
        return ref + sign * order.trail_amount
    assert order.trail_percent is not None
    return ref * (1.0 + sign * order.trail_percent)


def _positive(x: float | None) -> bool:
    return x is not None and math.isfinite(x) and x > 0


# -- rounding to an asset's lot and tick -----------------------------------------------------

_TOLERANCE = 1e-9  # in units of lots/ticks: float error, never a real fraction of a lot


def _near_whole(units: float) -> int | None:
    """Return the whole number within float tolerance of ``units``, else None."""
    nearest = round(units)
    # relative term: ulp noise of a large count (1e8 lots) exceeds the absolute 1e-9
    return nearest if abs(units - nearest) <= max(_TOLERANCE, abs(units) * 1e-12) else None


@lru_cache(maxsize=256)
def _decimals(step: float) -> int:
    """Return the decimal places of ``step`` as written (0.25 -> 2, 1e-08 -> 8, 5.0 -> 0)."""
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    return max(0, -int(exponent))


def _step(name: str, step: float | None) -> float | None:
    if step is None or math.isnan(step):
        return None
    if not step > 0 or math.isinf(step):
        raise ConfigError(f"{name} must be > 0 and finite, got {step}")
    return float(step)


def round_to_lot(quantity: float, lot: float | None) -> float:
    """Round ``quantity`` toward zero to a whole number of lots.

    A quantity within 1e-9 lots of a whole number counts as that number, so float noise
    does not lose a lot (2.9999999999 lots of 1 -> 3.0). The result is rounded to the
    lot's decimal places (3 lots of 0.1 -> 0.3, not 0.30000000000000004).

    Parameters
    ----------
    quantity : float
        Signed quantity (negative for sells/shorts keeps its sign).
    lot : float or None
        Lot size, > 0; ``None`` or NaN returns ``quantity`` unchanged.

    Raises
    ------
    ConfigError
        ``lot`` is zero, negative or infinite.
    ValueError
        ``quantity`` is not finite.
    """
    size = _step("lot", lot)
    if size is None:
        return float(quantity)
    if not math.isfinite(quantity):
        raise ValueError(f"quantity must be finite, got {quantity}")
    lots = quantity / size
    whole = _near_whole(lots)
    count = math.trunc(lots) if whole is None else whole
    return round(count * size, _decimals(size)) + 0.0  # + 0.0 turns -0.0 into 0.0


def round_price(price: float, tick: float | None, direction: int = 0) -> float:
    """Round ``price`` to a multiple of ``tick``.

    Prices within 1e-9 ticks of a multiple count as on it, so 101.23 stays 101.23 with a
    0.01 tick although ``101.23 / 0.01`` is 10123.000000000002 in floating point.

    Parameters
    ----------
    price : float
        The price.
    tick : float or None
        Tick size, > 0; ``None`` or NaN returns ``price`` unchanged.
    direction : int
        ``+1`` rounds up, ``-1`` down, ``0`` to the nearest tick (half a tick rounds up).

    Raises
    ------
    ConfigError
        ``tick`` is zero, negative or infinite, or ``direction`` is not -1, 0 or 1.
    ValueError
        ``price`` is not finite.
    """
    size = _step("tick", tick)
    if direction not in (-1, 0, 1):
        raise ConfigError(f"direction must be -1, 0 or 1, got {direction!r}")
    if size is None:
        return float(price)
    if not math.isfinite(price):
        raise ValueError(f"price must be finite, got {price}")
    ticks = price / size
    whole = _near_whole(ticks)
    if whole is not None:
        count = whole
    elif direction > 0:
        count = math.ceil(ticks)
    elif direction < 0:
        count = math.floor(ticks)
    else:
        count = math.floor(ticks + 0.5)
    return round(count * size, _decimals(size)) + 0.0
