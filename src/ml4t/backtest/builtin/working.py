"""The simulation broker's working state of an order it has accepted.

An :class:`~ml4t.backtest.core.orders.Order` holds what the strategy asked for and what the
broker reports (status, fills, links). What the broker needs to work the order — which
asset code it trades, when it was placed, whether a stop has triggered, which position exit
it is — lives in a :class:`Working` record the broker keeps beside it, one per accepted
order, in its pending book (``SimulationBroker._pending``, keyed by order id).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..core.orders import Order, OrderType

__all__ = ["Working"]


class Working:
    """One accepted order and the broker's working state of it.

    Parameters
    ----------
    order : Order
        The order (its ``order_id`` is set).
    code : int
        The order's asset code (index in the run's asset list).
    created_ts : int
        Timestamp (int ns) the order was placed, replaced or activated at: it is matched
        against later bars only.
    managed : str, optional
        For the broker's own orders: the position exit it is (``"stop_loss"``,
        ``"take_profit"``, ``"trailing_stop"``, ``"time_exit"``) or ``"margin_call"``.
    expire_ns : int, optional
        A GTD order's expiry (int ns UTC).

    Attributes
    ----------
    kind : OrderType
        The order's type (an order's type never changes once placed).
    sign : int
        +1 for a buy, -1 for a sell.
    active : bool
        False while an OTO or bracket child waits for its parent to fill.
    triggered : bool
        A stop or stop-limit has reached its stop: a stop-limit now works as a limit, a
        stop's remainder (after a volume-limited partial fill) as a market order.
    eligible_index : int
        First timestamp index the order may fill at (a time exit's ``max_bars``); -1: any.
    moc_bar : tuple, optional
        For a market-on-close order: ``(chunk, row, ts, index)`` of the last bar seen in
        the session, filled at its close when the session ends.
    track : bool
        A bracket leg: its quantity follows what the entry filled.
    """

    __slots__ = (
        "active",
        "code",
        "created_ts",
        "eligible_index",
        "expire_ns",
        "kind",
        "managed",
        "moc_bar",
        "order",
        "sign",
        "track",
        "triggered",
    )

    def __init__(
        self,
        order: Order,
        code: int,
        created_ts: int,
        managed: str | None = None,
        expire_ns: int | None = None,
    ) -> None:
        self.order = order
        self.code = code
        self.kind: OrderType = order.order_type
        self.sign = order.side.sign
        self.created_ts = created_ts
        self.managed = managed
        self.expire_ns = expire_ns
        self.active = True
        self.triggered = False
        self.eligible_index = -1
        self.moc_bar: tuple[Any, int, int, int] | None = None
        self.track = False

    def __repr__(self) -> str:
        state = [f"code={self.code}", f"created_ts={self.created_ts}"]
        if self.managed is not None:
            state.append(f"managed={self.managed!r}")
        if not self.active:
            state.append("inactive")
        if self.triggered:
            state.append("triggered")
        return f"Working({self.order!r}, {', '.join(state)})"
