"""A minimal broker written from the ``Broker`` protocol and public names alone.

Market orders only, filled whole at the open of the asset's next bar, no costs, no cash
check, whole units; ``order_sizing = "at_order"``. Everything else is refused: other order
types, reduce-only and target orders and unsupported times in force are rejected with a
reason; brackets, OCO, OTO, position exits and replacing raise ``NotImplementedError``.

It imports only ``ml4t.backtest``: the ``Chunk`` handed to ``process_open`` (``ts``,
``offsets``, ``code``, ``px``, ``to_datetime``) and the ``Clock`` handed to ``setup``
(``now_ns``, ``now_index``) are public for that.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from ml4t.backtest import (
    BrokerListener,
    Chunk,
    Clock,
    FillEvent,
    Order,
    OrderRecord,
    OrderStatus,
    OrderType,
    Portfolio,
    TimeInForce,
)


class MinimalBroker:
    """Fill market orders at the next bar's open; book them in a :class:`Portfolio`."""

    fractional = False
    order_sizing = "at_order"

    def __init__(self, initial_cash: float = 100_000.0) -> None:
        self.initial_cash = float(initial_cash)
        self.portfolio = Portfolio(self.initial_cash, [])
        self.has_pending = False
        self._working: list[Order] = []
        self._records: list[OrderRecord] = []
        self._listener: BrokerListener | None = None
        self._clock: Clock | None = None
        self._next_id = 0

    @property
    def exact_quantities(self) -> bool:
        """Whole units only: sizing helpers must round."""
        return False

    # --- the engine's side -----------------------------------------------------------------
    def setup(self, asset_ids: Sequence[str], listener: BrokerListener, clock: Clock) -> None:
        """Start a run: a new portfolio, no orders, no records."""
        self.portfolio = Portfolio(self.initial_cash, asset_ids)
        self._listener, self._clock = listener, clock
        self._working, self._records, self._next_id = [], [], 0
        self.has_pending = False

    def check_columns(self, columns: Sequence[str]) -> None:
        """Need no column beyond OHLCV."""

    def process_open(self, chunk: Chunk, i: int) -> None:
        """Fill every working order whose asset has a bar here, sells first, at the open."""
        assert self._clock is not None, "setup() comes first"
        ts, index = chunk.ts[i], self._clock.now_index
        lo, hi = chunk.offsets[i], chunk.offsets[i + 1]
        for order in sorted(self._working, key=lambda o: o.side.value != "sell"):
            code = self.portfolio.code_of[order.asset_id]
            row = bisect_left(chunk.code, code, lo, hi)
            if row < hi and chunk.code[row] == code:
                self._fill(order, code, chunk.px["open"][row], ts, index, chunk.to_datetime(ts))
        self._working = [o for o in self._working if o.status.is_open]
        self.has_pending = bool(self._working)

    def process_close(self, chunk: Chunk, i: int) -> None:
        """Nothing fills at the close."""

    def start_session(self, ts_ns: int, day: int) -> None:
        """No account events."""

    def end_session(self, last_ts_ns: int) -> None:
        """Nothing expires: a DAY market order fills at the next open, in any session."""

    def order_records(self) -> list[OrderRecord]:
        """Return the order log."""
        return self._records

    def settings(self) -> dict[str, Any]:
        """Return the settings recorded in the result's metadata."""
        return {"broker": "minimal", "initial_cash": self.initial_cash, "fills": "next open"}

    def run_metrics(self) -> dict[str, Any]:
        """No metrics of its own."""
        return {}

    # --- the strategy's side ---------------------------------------------------------------
    def submit_order(self, order: Order) -> Order:
        """Accept a market order for whole units of a known asset, or reject it."""
        order.order_id, self._next_id = self._next_id, self._next_id + 1
        self._log(order, "submitted", None)
        problem = order.validation_error()
        if problem is None:
            problem = self._refusal(order)
        if problem is not None:
            order.status, order.reason = OrderStatus.REJECTED, problem
            self._log(order, "rejected", problem)
            assert self._listener is not None
            self._listener.order_rejected(order, problem)
            return order
        self._working.append(order)
        self.has_pending = True
        return order

    def _refusal(self, order: Order) -> str | None:
        if order.asset_id not in self.portfolio.code_of:
            return f"unknown asset {order.asset_id!r}"
        if order.order_type is not OrderType.MARKET:
            return f"{order.order_type.value} orders are not supported (market orders only)"
        if order.reduce_only or order.target_quantity is not None:
            return "reduce-only and target orders are not supported (order_sizing='at_order')"
        if order.time_in_force not in (TimeInForce.GTC, TimeInForce.DAY):
            return f"time in force {order.time_in_force.value} is not supported"
        if not float(order.quantity).is_integer():
            return f"fractional quantity {order.quantity:g} (whole units only)"
        return None

    def cancel_order(self, order_id: int) -> bool:
        """Cancel a working order; False when no working order has this id."""
        order = next((o for o in self._working if o.order_id == order_id), None)
        if order is None:
            return False
        self._working.remove(order)
        self.has_pending = bool(self._working)
        reason = "cancelled by the strategy"
        order.status, order.reason = OrderStatus.CANCELLED, reason
        self._log(order, "cancelled", reason)
        assert self._listener is not None
        self._listener.order_cancelled(order, reason)
        return True

    def open_orders(self, asset_id: str | None = None) -> list[Order]:
        """Return the working orders (of one asset)."""
        return [o for o in self._working if asset_id is None or o.asset_id == asset_id]

    def round_quantity(self, asset_id: str, quantity: float) -> float:
        """Round down to whole units."""
        return float(math.floor(quantity + 1e-9))

    def replace_order(self, order_id: int, **changes: Any) -> Order:
        """Not supported."""
        raise NotImplementedError("MinimalBroker cannot replace orders")

    def submit_bracket(
        self, entry: Order, stop_loss: float | None = None, take_profit: float | None = None
    ) -> tuple[Order, Order | None, Order | None]:
        """Not supported."""
        raise NotImplementedError("MinimalBroker has no bracket orders")

    def submit_oco(self, *orders: Order) -> list[Order]:
        """Not supported."""
        raise NotImplementedError("MinimalBroker has no OCO orders")

    def submit_oto(self, parent: Order, child: Order) -> tuple[Order, Order]:
        """Not supported."""
        raise NotImplementedError("MinimalBroker has no OTO orders")

    def set_exits(self, asset_id: str, rules: Any) -> None:
        """Not supported."""
        raise NotImplementedError("MinimalBroker has no position exits")

    # --- bookkeeping -----------------------------------------------------------------------
    def _fill(self, order: Order, code: int, price: float, ts: int, index: int, when: Any) -> None:
        qty = order.quantity
        self.portfolio.apply_fill(code, order.signed_quantity, price, 0.0, 0.0, ts, index, order)
        order.filled_quantity, order.avg_fill_price = qty, price
        order.status = OrderStatus.FILLED
        self._log(order, "filled", None, ts)
        fill = FillEvent(
            order.order_id,
            order.asset_id,
            when,
            order.side.value,
            qty,
            price,
            0.0,
            0.0,
            price,
            order.tag,
        )
        assert self._listener is not None
        self._listener.order_filled(order, fill)

    def _log(self, order: Order, event: str, reason: str | None, ts: int | None = None) -> None:
        assert self._clock is not None, "setup() comes first"
        self._records.append(
            OrderRecord(
                self._clock.now_ns if ts is None else ts,
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
