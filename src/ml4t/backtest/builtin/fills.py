"""Matching and filling orders: the simulation broker's per-bar fill path.

For each order to be matched on a bar, :meth:`FillMixin._fill_batch` finds where the bar's
assumed path reaches it (:mod:`.matching`), ranks the orders (exits first, then by that
time, stops before limits on a tie) and fills them one by one with
:meth:`FillMixin._try_fill`: fill-time intent (reduce-only, target), volume cap, then the
fill's terms (:mod:`.fill_terms`: slippage, impact, ticks, commission, short and
buying-power checks, risk limits), then the books (:meth:`FillMixin._book`). Eight or more
plain market orders on a bar are settled together by the batch kernel
(``kernels.fills.market_batch_nb``) when the broker's settings allow it.
This is a mixin of :class:`~ml4t.backtest.builtin.sim_broker.SimulationBroker`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.data import Chunk
from ..core.events import FillEvent
from ..core.orders import Order, OrderStatus, OrderType, TimeInForce
from ..errors import RejectOrder
from ..kernels.fills import (
    ST_BAD_PRICE,
    ST_CANCELLED,
    ST_NO_CASH,
    ST_RESIZED,
    ST_SHORT,
    market_batch_nb,
)
from ..kernels.intent import CHANGED, INTENT_NONE, RESOLVED, resolve_intent
from ..kernels.matching import path as bar_path
from .fill_reasons import (
    cash_text,
    intent_cancel_text,
    intent_change_reason,
    intent_of,
    resized_text,
    short_text,
    target_of,
)
from .fill_terms import ModelRejection, model_label
from .matching import match_order

if TYPE_CHECKING:
    from ..core.broker import BrokerListener, CommissionModel
    from ..core.clock import Clock
    from ..core.portfolio import Portfolio
    from .broker_settings import BrokerSettings
    from .working import Working

# the reasons' texts are imported from here by the compiled signal runner
__all__ = ["FillMixin", "cash_text", "intent_change_reason", "resized_text"]

_EPS = 1e-9
_AT_OPEN_ONLY = (OrderType.MARKET_ON_OPEN,)
_STOPS = (OrderType.STOP, OrderType.TRAILING_STOP)

#: market orders matched together through the batch kernel from this many on
_KERNEL_BATCH = 8


class FillMixin:
    """The fill path of the simulation broker (state is set up by the broker)."""

    if TYPE_CHECKING:  # provided by the other parts of the broker

        def _reject(self, order: Order, reason: str) -> None: ...

        def _finish(self, order: Order, event: str, reason: str, notify: bool = True) -> None: ...

        def _log(
            self, order: Order, event: str, reason: str | None, ts: int | None = None
        ) -> None: ...

        def _end(self, order: Order) -> None: ...

        def _after_fill(
            self, working: Working, old: float, new: float, ts: int, index: int
        ) -> None: ...

        def _price_fill(
            self, chunk: Chunk, working: Working, row: int, base: float, quantity: float
        ) -> tuple[float, float, float] | None: ...

        def _commission(self, order: Order, quantity: float, price: float, ts: int) -> float: ...

        def _max_affordable(
            self, code: int, side: int, held: float, quantity: float, price: float
        ) -> tuple[float, str, bool]: ...

        def _resize_or_reject(
            self, working: Working, quantity: float, allowed: float, why: str, resize: bool
        ) -> tuple[float, str] | None: ...

        def _round_lot(self, code: int, q: float) -> float: ...

        def _bad_price_text(self, price: float) -> str: ...

    config: BrokerSettings
    portfolio: Portfolio
    commission_model: CommissionModel
    _mode: int
    _next_close: bool
    _traded_at: dict[int, int]
    _fill_close: float
    _clock: Clock | None
    _listener: BrokerListener | None
    _cap: float | None
    _vol_ts: int
    _vol_used: dict[int, float]
    _lot: list[float]
    _shortable: list[bool]
    _record: Any
    _kernel_settings: tuple[Any, Any] | None

    def _fill_batch(self, chunk: Chunk, todo: list[tuple[Working, int]], at_close: bool) -> None:
        """Match the orders ``todo`` (each with its row in ``chunk``) on this timestamp's
        bar, rank them and fill them in that order."""
        if not todo:
            return
        clock = self._clock
        assert clock is not None
        ts, index = clock.now_ns, clock.now_index
        qty = self.portfolio.qty
        px = chunk.px
        ranked = []
        mode = self._mode
        next_close = self._next_close
        for working, row in todo:
            kind = working.kind
            order = working.order
            if at_close or (next_close and kind is OrderType.MARKET):
                hit: tuple[float, float, bool] | None = (3.0, px["close"][row], False)
            elif kind is OrderType.MARKET or kind in _AT_OPEN_ONLY:
                hit = (0.0, px["open"][row], False)
            else:
                path = bar_path(
                    px["open"][row],
                    px["high"][row],
                    px["low"][row],
                    px["close"][row],
                    working.sign,
                    mode,
                )
                hit = match_order(order, path, working.triggered)
                if hit is not None and kind in _STOPS:
                    working.triggered = True  # a remainder left by the volume limit is market
                if hit is not None and hit[2] and not working.triggered:
                    working.triggered = True
                    self._log(order, "triggered", "stop reached; working as a limit order")
                if hit is None or math.isnan(hit[1]):
                    if order.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
                        self._finish(
                            order,
                            "cancelled",
                            f"cancelled: {order.time_in_force.value.upper()} order not marketable "
                            "on its first bar",
                        )
                    continue
            assert hit is not None
            adds = qty[working.code] * working.sign >= 0  # exits (False) sort first
            not_stop = kind not in _STOPS  # on a tie, the stop fills first
            ranked.append((adds, hit[0], not_stop, order.order_id, working, row, hit[1]))
        ranked.sort(key=lambda t: t[:4])
        start = 0
        if (
            self._kernel_settings is not None
            and len(ranked) >= _KERNEL_BATCH
            and not self.config.one_order_per_bar
            and all(_plain_market(t[4]) for t in ranked)
        ):
            start = self._fill_market_batch(chunk, [t[4:] for t in ranked], ts, index)
        for _, _, _, _, working, row, base in ranked[start:]:
            if working.order.status.is_open:
                self._try_fill(chunk, working, row, base, ts, index)

    def _fill_market_batch(
        self, chunk: Chunk, batch: list[tuple[Any, ...]], ts: int, index: int
    ) -> int:
        """Fill ranked market orders through the batch kernel; return how many were handled.

        ``batch`` holds ``(working, row, base price)``. The kernel settles every fill's
        terms (slippage, short and cash checks, commission, resizing) with the cash and
        positions earlier fills leave; each result is then booked exactly as
        :meth:`_try_fill` books it. If a callback changes an order of the batch meanwhile
        (cancels it), the rest goes through the Python path.
        """
        assert self._kernel_settings is not None
        ip, fp = self._kernel_settings
        pf = self.portfolio
        px = chunk.px
        m = len(batch)
        code = np.fromiter((w.code for w, _, _ in batch), np.int64, m)
        side = np.fromiter((w.sign for w, _, _ in batch), np.int64, m)
        quantity = np.fromiter((w.order.remaining_quantity for w, _, _ in batch), np.float64, m)
        base = np.fromiter((b for _, _, b in batch), np.float64, m)
        high = np.fromiter((px["high"][r] for _, r, _ in batch), np.float64, m)
        low = np.fromiter((px["low"][r] for _, r, _ in batch), np.float64, m)
        intent = np.fromiter((intent_of(w.order) for w, _, _ in batch), np.int64, m)
        target = np.fromiter((target_of(w.order) for w, _, _ in batch), np.float64, m)
        position = np.array(pf.qty, dtype=np.float64)
        cash = np.array([pf.cash])
        status = np.empty(m, dtype=np.int64)
        out = np.empty((m, 6))
        market_batch_nb(
            code,
            side,
            quantity,
            base,
            high,
            low,
            intent,
            target,
            position,
            cash,
            ip,
            fp,
            status,
            out,
        )
        terms = out.tolist()
        for j, ((working, row, b), st, (q, price, commission, _, need, resolved)) in enumerate(
            zip(batch, status.tolist(), terms, strict=True)
        ):
            order = working.order
            if not order.status.is_open:
                return j  # changed by a callback: the kernel's later terms no longer hold
            held = pf.qty[working.code]
            if st == ST_CANCELLED:
                self._finish(order, "cancelled", intent_cancel_text(int(need), order, held))
            elif st == ST_BAD_PRICE:
                self._reject(order, self._bad_price_text(price))
            elif st == ST_SHORT:
                self._reject(order, short_text(order, held, q, self._no_short_text()))
            elif st == ST_NO_CASH:
                asset = order.asset_id
                self._reject(order, cash_text(need, q, asset, price, pf.cash))
            else:
                asked = quantity[j]
                reason = None
                if resolved != asked:  # a reduce-only or target order resolved differently
                    reason = intent_change_reason(asked, resolved, order.target_quantity)
                    order.quantity = order.filled_quantity + resolved
                if st == ST_RESIZED:
                    why = cash_text(need, resolved, order.asset_id, price, pf.cash)
                    resized = resized_text(resolved, q, why)
                    reason = resized if reason is None else f"{resized}; {reason}"
                self._book(
                    chunk, working, row, b, ts, index, q, price, price, commission, 0.0, reason
                )
        return m

    def _try_fill(
        self,
        chunk: Chunk,
        working: Working,
        row: int,
        base: float,
        ts: int,
        index: int,
    ) -> None:
        """Fill what can be filled of ``working``'s order at ``base`` (before slippage)."""
        pf = self.portfolio
        order = working.order
        code = working.code
        quantity = order.remaining_quantity
        reason = None
        tif = order.time_in_force
        if (
            self.config.one_order_per_bar
            and working.managed is None
            and self._traded_at.get(code) == ts
        ):
            self._reject(
                order,
                f"one order per bar: {order.asset_id} already traded on this bar "
                "(one_order_per_bar)",
            )
            return
        total = order.quantity  # the order's total once resolved against the position
        intent = intent_of(order)
        if intent != INTENT_NONE:
            held = pf.qty[code]
            status, resolved = resolve_intent(
                intent, working.sign, quantity, target_of(order), held, self._lot[code]
            )
            if status != RESOLVED:
                if status != CHANGED:
                    self._finish(order, "cancelled", intent_cancel_text(status, order, held))
                    return
                reason = intent_change_reason(quantity, resolved, order.target_quantity)
                total = order.filled_quantity + resolved
                quantity = resolved
        if self._cap is not None:
            if ts != self._vol_ts:
                self._vol_ts, self._vol_used = ts, {}
            volume = chunk.px["volume"][row]
            room = self._cap * volume - self._vol_used.get(code, 0.0)
            avail = self._round_lot(code, max(room, 0.0))
            if avail + _EPS * max(1.0, quantity) < quantity:
                if tif is TimeInForce.FOK:
                    self._finish(
                        order,
                        "cancelled",
                        f"cancelled: FOK order for {quantity:g} but the volume limit allows "
                        f"{avail:g} on this bar",
                    )
                    return
                if avail <= 0:
                    if tif is TimeInForce.IOC:
                        self._finish(
                            order,
                            "cancelled",
                            "cancelled: IOC order, no volume available under the volume limit",
                        )
                    return
                partial = f"partial: volume limit {self._cap:g} x bar volume {volume:g}"
                reason = partial if reason is None else f"{partial}; {reason}"
                quantity = avail
        try:
            priced = self._price_fill(chunk, working, row, base, quantity)
            if priced is not None:
                self._finish_fill(
                    chunk, working, row, (base, ts, index, total), quantity, priced, reason
                )
        except RejectOrder as why:  # a cost model declined to price this fill
            text = str(why)
            if not isinstance(why, ModelRejection):  # the commission model's
                model = model_label(self.commission_model)
                text = f"commission model {model} rejected the order: {text}"
            self._reject(order, text)

    def _finish_fill(
        self,
        chunk: Chunk,
        working: Working,
        row: int,
        at: tuple[float, int, int, float],
        quantity: float,
        priced: tuple[float, float, float],
        reason: str | None,
    ) -> None:
        """Check a priced fill against the account (short sales, cash, margin, risk limits)
        and book it; ``at`` is (base price, timestamp, timestamp index, the order's total)."""
        base, ts, index, total = at
        pf = self.portfolio
        order = working.order
        code = working.code
        side = working.sign
        price, slipped, impact = priced
        held = pf.qty[code]
        if side < 0 and quantity > held + _EPS * max(1.0, abs(held)):
            problem = None
            if pf.is_future[code]:
                pass  # a short future borrows nothing: margin rules apply, not allow_short
            elif not self.config.allow_short:
                problem = self._no_short_text()
            elif not self._shortable[code]:
                problem = f"{order.asset_id} is not shortable (asset registry)"
            if problem is not None:
                self._reject(order, short_text(order, held, quantity, problem))
                return
        commission = self._commission(order, quantity, price, ts)
        adds = held * side >= 0 or quantity > abs(held) + _EPS
        if adds and working.managed is None:
            allowed, why, resize = self._max_affordable(code, side, held, quantity, price)
            if allowed + _EPS * max(1.0, quantity) < quantity:
                got = self._resize_or_reject(working, quantity, allowed, why, resize)
                if got is None:
                    return
                quantity, resized = got
                reason = resized if reason is None else f"{resized}; {reason}"
                commission = self._commission(order, quantity, price, ts)
        order.quantity = total
        terms = (quantity, price, slipped, commission, impact)
        self._book(chunk, working, row, base, ts, index, *terms, reason)

    def _no_short_text(self) -> str:
        cash_account = " (cash account)" if self.config.account == "cash" else ""
        return "short selling is disabled" + cash_account

    def _book(
        self,
        chunk: Chunk,
        working: Working,
        row: int,
        base: float,
        ts: int,
        index: int,
        quantity: float,
        price: float,
        slipped: float,
        commission: float,
        impact: float,
        reason: str | None,
    ) -> None:
        """Book a fill whose terms are settled: ledger, order state, log, exits, listener."""
        pf = self.portfolio
        order = working.order
        code = working.code
        side = working.sign
        tif = order.time_in_force
        held = pf.qty[code]
        impact_cost = quantity * impact
        slip_cost = quantity * abs(slipped - base)
        pf.apply_fill(
            code,
            side * quantity,
            price,
            commission,
            slip_cost,
            ts,
            index,
            order,
            impact_cost,
            reason,
        )
        if self._cap is not None:
            self._vol_used[code] = self._vol_used.get(code, 0.0) + quantity
        self._traded_at[code] = ts
        self._fill_close = chunk.px["close"][row]
        before = order.filled_quantity
        order.filled_quantity = before + quantity
        avg = order.avg_fill_price
        order.avg_fill_price = (
            price if before == 0 else (avg * before + price * quantity) / order.filled_quantity
        )
        order.commission += commission
        order.slippage += slip_cost
        order.reason = reason
        done = order.remaining_quantity <= _EPS * max(1.0, order.quantity) or (
            reason is not None and not reason.startswith("partial")
        )
        order.status = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
        self._log(order, "filled" if done else "partially_filled", reason)
        if done:
            self._end(order)
        assert self._clock is not None
        if self._record is not None:
            self._record(quantity, price, commission, self._clock.to_datetime(ts))
        fill = FillEvent(
            order.order_id,
            order.asset_id,
            self._clock.to_datetime(ts),
            order.side.value,
            quantity,
            price,
            commission,
            slip_cost,
            base,
            order.tag,
            impact_cost,
        )
        self._after_fill(working, held, pf.qty[code], ts, index)
        assert self._listener is not None
        self._listener.order_filled(order, fill)
        if not done and tif is TimeInForce.IOC:
            self._finish(
                order,
                "cancelled",
                f"cancelled: IOC remainder {order.remaining_quantity:g} not filled on its "
                "first bar",
            )


def _plain_market(working: Working) -> bool:
    """A strategy market order not yet partly filled (what the batch kernel handles)."""
    order = working.order
    return (
        working.kind is OrderType.MARKET
        and working.managed is None
        and order.filled_quantity == 0
        and order.time_in_force not in (TimeInForce.IOC, TimeInForce.FOK)
    )
