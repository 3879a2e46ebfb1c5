"""Matching and filling orders: the broker's per-bar fill path.

For each order to be matched on a bar, :meth:`FillEngine._fill_batch` finds where the bar's
assumed path reaches it (:mod:`.matching`), ranks the orders (exits first, then by that
time, stops before limits on a tie) and fills them one by one with
:meth:`FillEngine._try_fill`: volume cap, slippage, impact, tick rounding, short and
buying-power checks (:mod:`.accounts`), risk limits (:mod:`.risk`), then the books.
This is a mixin of :class:`~ml4t.backtest.builtin.sim_broker.SimulationBroker`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.assets import round_price, round_to_lot
from ..core.clock import describe_ts
from ..core.data import PRICE_COLUMNS, Chunk
from ..core.events import FillEvent
from ..core.orders import Order, OrderStatus, OrderType, TimeInForce
from ..errors import PluginError, RejectOrder
from ..kernel_cache import drop_stale_cache
from ..kernels.fills import (
    ST_BAD_PRICE,
    ST_CANCELLED,
    ST_NO_CASH,
    ST_RESIZED,
    ST_SHORT,
    market_batch_nb,
)
from ..kernels.intent import (
    AT_TARGET,
    CHANGED,
    INTENT_NONE,
    INTENT_REDUCE,
    INTENT_TARGET,
    RESOLVED,
    resolve_intent,
)
from .accounts import qty_for_abs_cap
from .matching import bar_path, match_order

if TYPE_CHECKING:
    from ..core.broker import BrokerListener, CommissionModel, ImpactModel, SlippageModel
    from ..core.clock import Clock
    from ..core.portfolio import Portfolio
    from ..registry import PluginRegistry
    from .accounts import MarginBook
    from .risk import RiskLimits

__all__ = ["FillEngine"]

_EPS = 1e-9
#: a resize below this fraction of the order is treated as nothing affordable
_DUST = 1e-9
_NO_SLIP = (OrderType.LIMIT, OrderType.STOP_LIMIT)
_AT_OPEN_ONLY = (OrderType.MARKET_ON_OPEN,)
_STOPS = (OrderType.STOP, OrderType.TRAILING_STOP)
#: position exits that fill at a level (``exit_slippage=False`` leaves them unslipped)
_PRICED_EXITS = ("stop_loss", "take_profit", "trailing_stop")
drop_stale_cache()  # before any kernel compiles (see ml4t.backtest.kernel_cache)

#: market orders matched together through the batch kernel from this many on
_KERNEL_BATCH = 8


class FillEngine:
    """Fill path shared by the simulation broker (state is set up by the broker)."""

    if TYPE_CHECKING:  # provided by the other parts of the broker

        def _reject(self, order: Order, reason: str) -> None: ...

        def _finish(self, order: Order, event: str, reason: str, notify: bool = True) -> None: ...

        def _log(self, order: Order, event: str, reason: str | None) -> None: ...

        def _drop_done(self) -> None: ...

        def _after_fill(
            self, order: Order, code: int, old: float, new: float, ts: int, index: int
        ) -> None: ...

    portfolio: Portfolio
    commission_model: CommissionModel
    slippage_model: SlippageModel
    impact_model: ImpactModel
    account: str
    allow_short: bool
    cash_policy: str
    intrabar: str
    fractional: bool
    fill_timing: str
    exit_slippage: bool
    one_order_per_bar: bool
    slippage_within_bar: bool
    _traded_at: dict[int, int]
    _fill_close: float
    _clock: Clock | None
    _listener: BrokerListener | None
    _cap: float | None
    _vol_ts: int
    _vol_used: dict[int, float]
    _bar_cols: tuple[str, ...]
    _impact_on: bool
    _any_tick: bool
    _tick: list[float]
    _lot: list[float]
    _min_qty: list[float]
    _shortable: list[bool]
    _margin: MarginBook
    _limits: RiskLimits | None
    _record: Any
    _partial: Any
    _when_kw: bool
    _notional_kw: bool
    _events: Any
    _kernel_settings: tuple[Any, Any] | None
    _registry: PluginRegistry | None
    _rebates: bool
    _improves: bool

    def _fill_batch(self, chunk: Chunk, todo: list[tuple[Order, int]], at_close: bool) -> None:
        if not todo:
            return
        clock = self._clock
        assert clock is not None
        ts, index = clock.now_ns, clock.now_index
        qty = self.portfolio.qty
        px = chunk.px
        ranked = []
        mode = self.intrabar
        next_close = self.fill_timing == "next_bar_close"
        for order, row in todo:
            kind = order.order_type
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
                    order.side.sign,
                    mode,
                )
                hit = match_order(order, path)
                if hit is not None and kind in _STOPS:
                    order._triggered = True  # a remainder left by the volume limit is market
                if hit is not None and hit[2] and not order._triggered:
                    order._triggered = True
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
            adds = qty[order._code] * order.side.sign >= 0  # exits (False) sort first
            not_stop = kind not in _STOPS  # on a tie, the stop fills first
            ranked.append((adds, hit[0], not_stop, order.order_id, order, row, hit[1]))
        ranked.sort(key=lambda t: t[:4])
        start = 0
        if (
            self._kernel_settings is not None
            and len(ranked) >= _KERNEL_BATCH
            and not self.one_order_per_bar
            and all(_plain_market(t[4]) for t in ranked)
        ):
            start = self._fill_market_batch(chunk, [t[4:] for t in ranked], ts, index)
        for _, _, _, _, order, row, base in ranked[start:]:
            if order.status.is_open:
                self._try_fill(chunk, order, row, base, ts, index)
        self._drop_done()

    def _fill_market_batch(
        self, chunk: Chunk, batch: list[tuple[Any, ...]], ts: int, index: int
    ) -> int:
        """Fill ranked market orders through the batch kernel; return how many were handled.

        The kernel settles every fill's terms (slippage, short and cash checks, commission,
        resizing) with the cash and positions earlier fills leave; each result is then
        booked exactly as :meth:`_try_fill` books it. If a callback changes an order of the
        batch meanwhile (cancels it), the rest goes through the Python path.
        """
        assert self._kernel_settings is not None
        ip, fp = self._kernel_settings
        pf = self.portfolio
        px = chunk.px
        m = len(batch)
        code = np.fromiter((o._code for o, _, _ in batch), np.int64, m)
        side = np.fromiter((o.side.sign for o, _, _ in batch), np.int64, m)
        quantity = np.fromiter((o.remaining_quantity for o, _, _ in batch), np.float64, m)
        base = np.fromiter((b for _, _, b in batch), np.float64, m)
        high = np.fromiter((px["high"][r] for _, r, _ in batch), np.float64, m)
        low = np.fromiter((px["low"][r] for _, r, _ in batch), np.float64, m)
        intent = np.fromiter((intent_of(o) for o, _, _ in batch), np.int64, m)
        target = np.fromiter((_target(o) for o, _, _ in batch), np.float64, m)
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
        for j, ((order, row, b), st, (q, price, commission, _, need, resolved)) in enumerate(
            zip(batch, status.tolist(), terms, strict=True)
        ):
            if not order.status.is_open:
                return j  # changed by a callback: the kernel's later terms no longer hold
            held = pf.qty[order._code]
            if st == ST_CANCELLED:
                self._finish(order, "cancelled", intent_cancel_text(int(need), order, held))
            elif st == ST_BAD_PRICE:
                self._reject(order, self._bad_price_text(price))
            elif st == ST_SHORT:
                problem = "short selling is disabled" + (
                    " (cash account)" if self.account == "cash" else ""
                )
                self._reject(order, _short_text(order, held, q, problem))
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
                    chunk, order, row, b, ts, index, q, price, price, commission, 0.0, reason
                )
        return m

    def _try_fill(
        self,
        chunk: Chunk,
        order: Order,
        row: int,
        base: float,
        ts: int,
        index: int,
    ) -> None:
        pf = self.portfolio
        code = order._code
        side = order.side.sign
        quantity = order.remaining_quantity
        reason = None
        tif = order.time_in_force
        if self.one_order_per_bar and order._managed is None and self._traded_at.get(code) == ts:
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
                intent, side, quantity, _target(order), held, self._lot[code]
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
            priced = self._price_fill(chunk, order, row, base, quantity)
            if priced is not None:
                self._finish_fill(
                    chunk, order, row, (base, ts, index, total), quantity, priced, reason
                )
        except RejectOrder as why:  # a cost model declined to price this fill
            text = str(why)
            if not isinstance(why, _ModelRejection):  # the commission model's
                model = _label(self.commission_model)
                text = f"commission model {model} rejected the order: {text}"
            self._reject(order, text)

    def _price_fill(
        self, chunk: Chunk, order: Order, row: int, base: float, quantity: float
    ) -> tuple[float, float, float] | None:
        """Return ``(price, slipped price, impact per unit)``, or None after a rejection.

        Slippage, impact and tick rounding; the models' outputs are checked here.
        """
        kind = order.order_type
        side = order.side.sign
        impact = 0.0
        if kind in _NO_SLIP or (order._managed in _PRICED_EXITS and not self.exit_slippage):
            return base, base, 0.0
        model = self.slippage_model
        try:
            if self._bar_cols:
                price = model.fill_price(  # type: ignore[call-arg]
                    base, side, quantity, chunk.px["volume"][row], self._bar(chunk, row)
                )
            else:
                price = model.fill_price(base, side, quantity, chunk.px["volume"][row])
        except RejectOrder as why:
            text = f"slippage model {_label(model)} rejected the order: {why}"
            raise _ModelRejection(text) from why
        if not (price > 0 and price < math.inf):
            if not math.isfinite(price):
                raise self._model_error(
                    "slippage",
                    model,
                    f"returned the fill price {price!r} (base price {base:g}); a slipped "
                    "price must be a finite number (raise RejectOrder to reject an order)",
                    order,
                )
            self._reject(order, self._bad_price_text(price))
            return None
        if side * (price - base) < -1e-12 * base and not self._improves:
            raise self._model_error(
                "slippage",
                model,
                f"returned {price!r} for a {order.side.value} at the market price {base:g}, "
                "a better price than the market; a model that improves prices declares "
                "price_improvement = True",
                order,
            )
        if self.slippage_within_bar:
            bound = chunk.px["high"][row] if side > 0 else chunk.px["low"][row]
            price = min(price, bound) if side > 0 else max(price, bound)
        slipped = price
        if self._impact_on:
            impact = self._impact(chunk, row, price, order, quantity)
            price = slipped + side * impact
            if not price > 0:
                self._reject(
                    order, f"market impact {impact:g} per unit exceeds the price {slipped:g}"
                )
                return None
        if self._any_tick and price != base:
            tick = self._tick[order._code]
            if not math.isnan(tick):
                rounded = round_price(price, tick, side)
                impact += abs(rounded - price)
                price = rounded
        return price, slipped, impact

    def _finish_fill(
        self,
        chunk: Chunk,
        order: Order,
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
        code = order._code
        side = order.side.sign
        price, slipped, impact = priced
        held = pf.qty[code]
        if side < 0 and quantity > held + _EPS * max(1.0, abs(held)):
            problem = None
            if pf.is_future[code]:
                pass  # a short future borrows nothing: margin rules apply, not allow_short
            elif not self.allow_short:
                problem = "short selling is disabled" + (
                    " (cash account)" if self.account == "cash" else ""
                )
            elif not self._shortable[code]:
                problem = f"{order.asset_id} is not shortable (asset registry)"
            if problem is not None:
                self._reject(order, _short_text(order, held, quantity, problem))
                return
        commission = self._commission(order, quantity, price, ts)
        adds = held * side >= 0 or quantity > abs(held) + _EPS
        if adds and order._managed is None:
            allowed, why, resize = self._max_affordable(code, side, held, quantity, price)
            if allowed + _EPS * max(1.0, quantity) < quantity:
                got = self._resize_or_reject(order, quantity, allowed, why, resize)
                if got is None:
                    return
                quantity, resized = got
                reason = resized if reason is None else f"{resized}; {reason}"
                commission = self._commission(order, quantity, price, ts)
        order.quantity = total
        self._book(
            chunk, order, row, base, ts, index, quantity, price, slipped, commission, impact, reason
        )

    def _book(
        self,
        chunk: Chunk,
        order: Order,
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
        code = order._code
        side = order.side.sign
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
        self._after_fill(order, code, held, pf.qty[code], ts, index)
        assert self._listener is not None
        self._listener.order_filled(order, fill)
        if not done and tif is TimeInForce.IOC:
            self._finish(
                order,
                "cancelled",
                f"cancelled: IOC remainder {order.remaining_quantity:g} not filled on its "
                "first bar",
            )

    def _bad_price_text(self, price: float) -> str:
        return (
            f"slippage model {_label(self.slippage_model)} moved the price to {price!r}, "
            "not a price > 0"
        )

    def _commission(self, order: Order, quantity: float, price: float, ts: int) -> float:
        kw: dict[str, Any] = {}
        if self._when_kw:  # e.g. a tiered model that resets its volume each month
            assert self._clock is not None
            kw["when"] = self._clock.to_datetime(ts)
        if order.filled_quantity > 0 and self._partial is not None:
            if self._notional_kw:  # the earlier fills at their own prices, not this one's
                kw["notional_before"] = order.avg_fill_price * order.filled_quantity
            value = self._partial(quantity, price, order.filled_quantity, order.commission, **kw)
        else:
            value = self.commission_model.calculate(quantity, price, **kw)  # type: ignore[call-arg]
        try:
            got = float(value)
        except (TypeError, ValueError):
            got = math.nan
        if not 0.0 <= got < math.inf and not (self._rebates and math.isfinite(got)):
            raise self._model_error(
                "commission",
                self.commission_model,
                f"returned {value!r} for {quantity:g} units at {price:g}; a commission must "
                "be a finite number >= 0 (a model that pays rebates declares rebates = True; "
                "raise RejectOrder to reject an order)",
                order,
            )
        return got

    def _max_affordable(
        self, code: int, side: int, held: float, quantity: float, price: float
    ) -> tuple[float, str, bool]:
        """Return the largest quantity the account and risk limits allow, why, and whether
        the configured policy resizes (rather than rejects) an order above it."""
        pf = self.portfolio
        best, why = math.inf, ""
        resize = self.cash_policy == "resize"
        if self.cash_policy == "allow":
            pass  # no buying-power check: cash may go negative
        elif pf.is_future[code] or self.account == "margin":
            equity = pf.equity()
            calc = self.commission_model.calculate
            best = quantity
            for _ in range(30):  # fixed point: the commission depends on the quantity
                cap = self._margin.max_abs_position(code, price, equity - calc(best, price))
                nxt = qty_for_abs_cap(held, side, cap)
                if abs(nxt - best) <= 1e-12 * max(1.0, best):
                    best = min(best, nxt)
                    break
                best = nxt
            need = self._margin.unit_requirement(code, price) * abs(held + side * quantity)
            why = (
                f"insufficient margin: the position would need {need:,.2f} initial margin, "
                f"equity {equity:,.2f}"
            )
        elif side > 0:
            cost = quantity * price * pf.mult[code] + self.commission_model.calculate(
                quantity, price
            )
            if cost > pf.cash + _EPS * max(1.0, abs(pf.cash)):
                best = self._affordable(price * pf.mult[code], pf.cash, code)
                why = cash_text(cost, quantity, pf.asset_ids[code], price, pf.cash)
        limits = self._limits
        if limits is not None:
            net, gross = pf.mark()  # one pass: futures count their P&L in net, so
            signed = self._signed_net() if pf.any_multiplier else net  # re-sum notionals
            q, text = limits.max_quantity(
                old=held,
                side=side,
                unit_value=price * pf.mult[code],
                equity=pf.cash + pf.accrued + net,
                gross=gross,
                net=signed,
                num_positions=len(pf.held),
                halted=self._events.halted,
            )
            if q < best:
                best, why = q, f"risk limit: {text}"
                resize = limits.on_breach == "resize"
        return best, why, resize

    def _signed_net(self) -> float:
        pf = self.portfolio
        return sum(pf.qty[c] * pf.mult[c] * pf.price_of(c) for c in pf.held)

    def _resize_or_reject(
        self, order: Order, quantity: float, allowed: float, why: str, resize: bool
    ) -> tuple[float, str] | None:
        code = order._code
        new = self._round_lot(code, max(allowed, 0.0))
        if new <= _DUST * quantity:  # nothing left to buy (cash spent): reject, no dust fill
            new = 0.0
        if resize and order.time_in_force is not TimeInForce.FOK and new > 0:
            if new < self._min_qty[code]:
                self._reject(
                    order, f"{why}; the affordable {new:g} is below the minimum order size"
                )
                return None
            return new, resized_text(quantity, new, why)
        self._reject(order, why)
        return None

    def _bar(self, chunk: Chunk, row: int) -> dict[str, float]:
        bar = {c: chunk.px[c][row] for c in PRICE_COLUMNS}
        bar.update({c: chunk.sig[c][row] for c in chunk.sig.keys()})  # noqa: SIM118
        bar.update({c: chunk.ind[c][row] for c in chunk.ind.keys()})  # noqa: SIM118
        return bar

    def _impact(self, chunk: Chunk, row: int, price: float, order: Order, quantity: float) -> float:
        """Return the impact model's impact per unit for this fill, checked (>= 0, finite)."""
        model = self.impact_model
        try:
            value = model.price_impact(price, order.side.sign, quantity, self._bar(chunk, row))
        except RejectOrder as why:
            text = f"impact model {_label(model)} rejected the order: {why}"
            raise _ModelRejection(text) from why
        try:
            got = float(value)
        except (TypeError, ValueError):
            got = math.nan
        if not 0.0 <= got < math.inf:
            raise self._model_error(
                "impact",
                model,
                f"returned {value!r}; an impact must be a finite number >= 0 per unit (raise "
                "RejectOrder to reject an order, e.g. when an input is missing on a bar)",
                order,
            )
        return got

    def _model_error(self, kind: str, model: object, problem: str, order: Order) -> PluginError:
        """Return the error for a cost model whose output cannot be booked, naming the
        model, its plugin and distribution, the timestamp, the asset and the order."""
        clock = self._clock
        when = describe_ts(clock.to_datetime, clock.now_ns) if clock is not None else "?"
        registry = self._registry
        prov = None if registry is None else registry.provider_of(kind, model)
        label = f"{kind} model " + (
            _label(model) if prov is None else f"{prov.name!r} ({_label(model)})"
        )
        which = f"order {order.order_id} ({order.side.value} {order.asset_id}) at {when}"
        text = f"{label} {problem}: {which}"
        if registry is not None and prov is not None:
            err = registry.error_for(kind, model, text)  # "plugin NAME (DISTRIBUTION) ..."
        else:
            err = PluginError(f"{text} (a model object given in code, not from a plugin)")
        err.model = label
        err.timestamp, err.asset_id = when, order.asset_id
        return err

    def _affordable(self, unit_price: float, cash: float, code: int) -> float:
        if cash <= 0:
            return 0.0
        mult = self.portfolio.mult[code]
        price = unit_price / mult
        q = cash / unit_price
        for _ in range(50):
            cost = q * unit_price + self.commission_model.calculate(q, price)
            if cost <= cash * (1 + 1e-12):
                break
            q *= cash / cost * (1 - 1e-12)
        lot = self._lot[code]
        if lot > 0:
            q = self._round_lot(code, q)
            while q > 0 and q * unit_price + self.commission_model.calculate(q, price) > cash:
                q -= lot
        return max(q, 0.0)

    def _round_lot(self, code: int, q: float) -> float:
        lot = self._lot[code]
        return round_to_lot(q, lot) if lot > 0 else q

    def round_quantity(self, asset_id: str, quantity: float) -> float:
        """Round a positive quantity down to the asset's lot (whole units if not fractional)."""
        code = self.portfolio.code_of.get(asset_id)
        if code is None or not hasattr(self, "_lot"):
            return quantity if self.fractional else float(math.floor(quantity + 1e-9))
        return self._round_lot(code, quantity)


def _short_text(order: Order, held: float, quantity: float, problem: str) -> str:
    if held <= 0:
        return f"nothing to sell: no position in {order.asset_id}; {problem}"
    return (
        f"insufficient position: hold {held:g} {order.asset_id}, order sells {quantity:g} "
        f"({problem})"
    )


def cash_text(cost: float, quantity: float, asset_id: str, price: float, cash: float) -> str:
    """The reason an order does not fit in the cash (also used by the compiled path)."""
    return (
        f"insufficient cash: need {cost:,.2f} to buy {quantity:g} {asset_id} at {price:,.4f}, "
        f"have {cash:,.2f}"
    )


def resized_text(asked: float, filled: float, why: str) -> str:
    """The reason recorded on a fill the cash policy resized."""
    return f"resized from {asked:g} to {filled:g}: {why}"


def intent_of(order: Order) -> int:
    """Return the order's fill-time intent (``kernels.intent``: none, reduce, target)."""
    if order.reduce_only:
        return INTENT_REDUCE
    return INTENT_NONE if order.target_quantity is None else INTENT_TARGET


def _target(order: Order) -> float:
    return 0.0 if order.target_quantity is None else order.target_quantity


def intent_cancel_text(status: int, order: Order, held: float) -> str:
    """The reason a reduce-only or target order is cancelled at fill time (``status`` is a
    cancel status of :func:`~ml4t.backtest.kernels.intent.resolve_intent`)."""
    asset_id, side, target = order.asset_id, order.side.sign, order.target_quantity
    if target is None:
        want = "long" if side < 0 else "short"
        return (
            f"cancelled: reduce-only order, no {want} position in {asset_id} left to reduce "
            f"(position {held:g})"
        )
    if status == AT_TARGET:
        return f"cancelled: target order, {asset_id} is already at its target {target:g}"
    other = "sell" if side > 0 else "buy"
    return (
        f"cancelled: target order, the position {held:g} in {asset_id} is already past its "
        f"target {target:g} (reaching it needs a {other})"
    )


def intent_change_reason(asked: float, resolved: float, target: float | None) -> str:
    """The fill reason of a reduce-only (``target`` None) or target order whose quantity
    the position at fill time changed (also built by the compiled path)."""
    if target is None:
        return f"reduce-only: capped at the open position {resolved:g} (order for {asked:g})"
    return f"target order: {resolved:g} to reach the target {target:g} (order for {asked:g})"


def _plain_market(order: Order) -> bool:
    """A strategy market order not yet partly filled (what the batch kernel handles)."""
    return (
        order.order_type is OrderType.MARKET
        and order._managed is None
        and order.filled_quantity == 0
        and order.time_in_force not in (TimeInForce.IOC, TimeInForce.FOK)
    )


class _ModelRejection(RejectOrder):
    """A slippage or impact model's :class:`RejectOrder`, its reason already naming it."""


def _label(model: object) -> str:
    """A model as messages show it: its own repr, or its class name (never an address)."""
    cls = type(model)
    return repr(model) if cls.__repr__ is not object.__repr__ else cls.__qualname__
