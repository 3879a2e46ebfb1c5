"""Order entry of the simulation broker: submit, validate, cancel, replace; the orders log.

Submission checks what can be checked before a fill: a well-formed order, a known asset,
a quantity that is a multiple of the asset's lot (whole units when the broker is not
fractional) and not below its minimum, a GTD expiry that parses; limit and stop prices are
rounded to the asset's tick (against the trader). Everything that depends on the fill
price — cash, margin, risk limits — is checked when the order fills (:mod:`.fills`).
An accepted order gets a :class:`~.working.Working` record in the broker's pending book;
an order ends filled (:mod:`.fills`), rejected, cancelled or expired (here), each event
recorded in the orders log (``result.orders_df``).
This is a mixin of :class:`~ml4t.backtest.builtin.sim_broker.SimulationBroker`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..core.orders import Order, OrderStatus, OrderType, TimeInForce, round_price
from .working import Working

if TYPE_CHECKING:
    from ..core.broker import BrokerListener
    from ..core.clock import Clock
    from ..core.portfolio import Portfolio
    from .broker_settings import BrokerSettings

__all__ = ["OrderEntry"]


class OrderEntry:
    """Order entry and order endings of the simulation broker (state set up by it)."""

    if TYPE_CHECKING:  # provided by the other parts of the broker

        def _unlink(self, order: Order) -> None: ...

    config: BrokerSettings
    portfolio: Portfolio
    has_pending: bool
    order_log: list[tuple[Any, ...]]
    _watch: bool
    _clock: Clock | None
    _listener: BrokerListener | None
    _next_id: int
    #: the working orders by order id, in the order they were accepted
    _pending: dict[int, Working]
    _lot: list[float]
    _min_qty: list[float]
    _tick: list[float]

    def submit_order(self, order: Order) -> Order:
        """Accept an order placed at the current timestamp, or reject it with a reason."""
        clock = self._clock
        if clock is None or self._listener is None:
            raise RuntimeError("orders can only be submitted while a backtest runs")
        code = self.portfolio.code_of.get(order.asset_id)
        problem = order.validation_error()
        if code is None:
            known = self.portfolio.asset_ids
            shown = ", ".join(map(repr, known[:10])) + (" ..." if len(known) > 10 else "")
            problem = f"unknown asset {order.asset_id!r}; known assets: {shown}"
        note = None
        if problem is None:
            assert code is not None
            problem, note = self._check_new(order, code)
        if problem is not None:
            order.order_id = self._next_id
            self._next_id += 1
            self._log(order, "submitted", None)
            self._reject(order, problem)
            return order
        assert code is not None
        self._accept(order, code, note)
        return order

    def _check_new(self, order: Order, code: int) -> tuple[str | None, str | None]:
        """Return ``(problem, note)`` for a new or replaced order of asset ``code``."""
        lot = self._lot[code]
        q = order.quantity
        if lot > 0:
            units = q / lot
            if abs(units - round(units)) > 1e-9 * max(1.0, units):
                if lot == 1.0 and not self.config.fractional:
                    text = f"fractional quantity {q:g} while fractional=False (whole units only)"
                else:
                    text = (
                        f"quantity {q:g} is not a multiple of {order.asset_id}'s lot size {lot:g}"
                    )
                return text, None
        if q < self._min_qty[code] - 1e-12:
            return (
                f"quantity {q:g} is below {order.asset_id}'s minimum order size "
                f"{self._min_qty[code]:g}",
                None,
            )
        try:
            self._expiry(order)
        except (TypeError, ValueError) as exc:
            return f"expire_at {order.expire_at!r} is not a date or time: {exc}", None
        note = None
        tick = self._tick[code]
        if not math.isnan(tick):
            buy = order.side.sign > 0
            changed = []
            for attr, direction in (
                ("limit_price", -1 if buy else 1),
                ("stop_price", 1 if buy else -1),
            ):
                value = getattr(order, attr)
                if value is not None:
                    rounded = round_price(value, tick, direction)
                    if rounded != value:
                        setattr(order, attr, rounded)
                        changed.append(f"{attr} {value:g} -> {rounded:g}")
            if changed:
                note = f"rounded to tick {tick:g}: " + ", ".join(changed)
        return None, note

    def _expiry(self, order: Order) -> int | None:
        """Return a GTD order's expiry as int ns UTC (None for other orders)."""
        if order.time_in_force is not TimeInForce.GTD:
            return None
        assert self._clock is not None
        return _to_ns(order.expire_at, self._clock.timezone)

    def _accept(
        self, order: Order, code: int, note: str | None = None, managed: str | None = None
    ) -> Working:
        """Give a checked order its id and put it in the pending book; return its record.

        ``managed`` marks the broker's own orders (position exits, margin calls).
        """
        clock = self._clock
        assert clock is not None
        order.order_id = self._next_id
        self._next_id += 1
        gtd = order.time_in_force is TimeInForce.GTD
        working = Working(order, code, clock.now_ns, managed, self._expiry(order) if gtd else None)
        if order.order_type is OrderType.TRAILING_STOP and math.isnan(order.trail_reference_price):
            order.trail_reference_price = self.portfolio.price_of(code)
        self._log(order, "submitted", note)
        self._pending[order.order_id] = working
        self.has_pending = True
        return working

    def cancel_order(self, order_id: int) -> bool:
        """Cancel a working order (and its unfilled children); False if it is not working."""
        working = self._pending.get(order_id)
        if working is None or not working.order.status.is_open:
            return False
        self._finish(working.order, "cancelled", "cancelled by the strategy")
        return True

    def replace_order(self, order_id: int, **changes: Any) -> Order:
        """Change a working order in place (same id); it applies from the next bar.

        ``changes`` may set ``quantity`` (the new total, above what has filled),
        ``limit_price``, ``stop_price``, ``trail_amount``, ``trail_percent``,
        ``time_in_force``, ``expire_at`` and ``tag``. Raises ValueError for an order that
        is not working or an invalid change (the order is then left unchanged).
        """
        allowed = {
            "quantity",
            "limit_price",
            "stop_price",
            "trail_amount",
            "trail_percent",
            "time_in_force",
            "expire_at",
            "tag",
        }
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(
                f"replace_order: cannot change {sorted(unknown)}; allowed {sorted(allowed)}"
            )
        working = self._pending.get(order_id)
        if working is None or not working.order.status.is_open:
            raise ValueError(f"replace_order: order {order_id} is not working")
        order = working.order
        before = {k: getattr(order, k) for k in allowed}
        for key, value in changes.items():
            if key == "time_in_force":
                value = TimeInForce(value)
            elif key in ("quantity", "limit_price", "stop_price", "trail_amount", "trail_percent"):
                value = None if value is None else float(value)
            setattr(order, key, value)
        problem = order.validation_error()
        if problem is None and order.quantity <= order.filled_quantity:
            problem = (
                f"quantity {order.quantity:g} is not above the filled {order.filled_quantity:g}"
            )
        if problem is None:
            problem, _ = self._check_new(order, working.code)
        if problem is not None:
            for k, v in before.items():
                setattr(order, k, v)
            raise ValueError(f"replace_order: {problem}")
        assert self._clock is not None
        working.created_ts = self._clock.now_ns
        working.expire_ns = self._expiry(order)
        self._log(order, "replaced", ", ".join(f"{k}={v!r}" for k, v in changes.items()))
        return order

    def open_orders(self, asset_id: str | None = None) -> list[Order]:
        """Return the working orders, optionally only those of ``asset_id``.

        Position exits and bracket children are included (a strategy may cancel or replace
        them); the broker's own margin-call liquidations are not.
        """
        return [
            w.order
            for w in self._pending.values()
            if w.managed != "margin_call" and (asset_id is None or w.order.asset_id == asset_id)
        ]

    # --- how orders end -------------------------------------------------------------------
    def _reject(self, order: Order, reason: str) -> None:
        order.status = OrderStatus.REJECTED
        order.reason = reason
        self._log(order, "rejected", reason)
        self._end(order)
        self._unlink(order)
        assert self._listener is not None
        self._listener.order_rejected(order, reason)

    def _finish(
        self, order: Order, event: str, reason: str, notify: bool = True, ts: int | None = None
    ) -> None:
        """Cancel or expire a working order and tell the strategy (not for the broker's
        own orders); ``ts`` stamps the orders log (default: now)."""
        working = self._pending.get(order.order_id)
        own = working is not None and working.managed is not None
        order.status = OrderStatus.EXPIRED if event == "expired" else OrderStatus.CANCELLED
        order.reason = reason
        self._log(order, event, reason, ts)
        self._end(order)
        self._unlink(order)
        if notify and not own:
            assert self._listener is not None
            self._listener.order_cancelled(order, reason)

    def _end(self, order: Order) -> None:
        """Take an order that is no longer working (filled, rejected, cancelled, expired)
        out of the pending book; the book holds exactly the working orders."""
        self._pending.pop(order.order_id, None)
        self.has_pending = bool(self._pending) or self._watch

    # --- the orders log -------------------------------------------------------------------
    def order_records(self) -> list[tuple[Any, ...]]:
        """Return the orders log: every order event and broker note so far, in order.

        Rows are plain tuples in :class:`~ml4t.backtest.OrderRecord`'s field order (the
        layout is named there): the garbage collector stops tracking a plain tuple of
        plain values, never a named tuple, and a log of 10^5 tracked rows sets off full
        collections that cost a W2 run 15 %.
        """
        return self.order_log

    def _note_event(self, text: str) -> None:
        """Record a broker event (margin call, halt) in the orders log."""
        clock = self._clock
        self.order_log.append(
            (  # an OrderRecord's fields, as a plain tuple (see order_records)
                clock.now_ns if clock else 0,
                -1,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                "account",
                text,
                None,
            )
        )

    def _log(self, order: Order, event: str, reason: str | None, ts: int | None = None) -> None:
        clock = self._clock
        self.order_log.append(
            (  # an OrderRecord's fields, as a plain tuple (see order_records)
                ts if ts is not None else clock.now_ns if clock else 0,
                order.order_id,
                order.asset_id,
                order.side.value,
                order.quantity,
                order.order_type.value,
                order.limit_price,
                order.stop_price,
                order.time_in_force.value,
                event,
                reason,
                order.tag,
            )
        )


def _to_ns(value: Any, timezone: str | None) -> int:
    """Return an ``expire_at`` as int ns UTC; a date (no time) means the end of that day."""
    import datetime as _dt

    import pandas as pd

    end_of_day = isinstance(value, _dt.date) and not isinstance(value, _dt.datetime)
    if isinstance(value, str) and len(value.strip()) <= 10:
        end_of_day = True
    stamp = pd.Timestamp(value)
    if end_of_day:
        stamp = stamp.normalize() + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    if stamp.tzinfo is None:
        if timezone is not None:
            stamp = stamp.tz_localize(timezone)
        else:
            return int(stamp.value)
    return int(stamp.tz_convert("UTC").value)
