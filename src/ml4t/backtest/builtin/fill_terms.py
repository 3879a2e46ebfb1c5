"""The terms of one fill: price (slippage, impact, ticks), commission, what the account allows.

The simulation broker's fill path (:mod:`.fills`) asks these for each fill: the slipped,
impacted and tick-rounded price (:meth:`FillTermsMixin._price_fill`), the commission, and
the largest quantity the cash, margin (:mod:`.accounts`) and risk limits (:mod:`.risk`)
allow. Every cost model's output is checked here: a value that cannot be booked raises a
:class:`~ml4t.backtest.PluginError` naming the model and its plugin; a model that declines
to price a fill raises :class:`~ml4t.backtest.RejectOrder` and the order is rejected.
This is a mixin of :class:`~ml4t.backtest.builtin.sim_broker.SimulationBroker`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..core.clock import describe_ts
from ..core.data import PRICE_COLUMNS, Chunk
from ..core.orders import Order, OrderType, TimeInForce, round_price, round_to_lot
from ..errors import PluginError, RejectOrder
from .accounts import qty_for_abs_cap
from .fill_reasons import cash_text, resized_text

if TYPE_CHECKING:
    from ..core.broker import CommissionModel, ImpactModel, SlippageModel
    from ..core.clock import Clock
    from ..core.portfolio import Portfolio
    from ..registry import PluginRegistry
    from .accounts import MarginBook
    from .broker_settings import BrokerSettings
    from .risk import RiskLimits
    from .working import Working

__all__ = ["FillTermsMixin", "ModelRejection", "model_label"]

_EPS = 1e-9
#: a resize below this fraction of the order is treated as nothing affordable
_DUST = 1e-9
_NO_SLIP = (OrderType.LIMIT, OrderType.STOP_LIMIT)
#: position exits that fill at a level (``exit_slippage=False`` leaves them unslipped)
_PRICED_EXITS = ("stop_loss", "take_profit", "trailing_stop")


class FillTermsMixin:
    """The terms of a fill, for the simulation broker (state is set up by the broker)."""

    if TYPE_CHECKING:  # provided by the other parts of the broker

        def _reject(self, order: Order, reason: str) -> None: ...

    config: BrokerSettings
    portfolio: Portfolio
    commission_model: CommissionModel
    slippage_model: SlippageModel
    impact_model: ImpactModel
    _clock: Clock | None
    _bar_cols: tuple[str, ...]
    _impact_on: bool
    _improves: bool
    _rebates: bool
    _any_tick: bool
    _tick: list[float]
    _lot: list[float]
    _min_qty: list[float]
    _margin: MarginBook
    _limits: RiskLimits | None
    _partial: Any
    _when_kw: bool
    _notional_kw: bool
    _events: Any
    _registry: PluginRegistry | None

    def _price_fill(
        self, chunk: Chunk, working: Working, row: int, base: float, quantity: float
    ) -> tuple[float, float, float] | None:
        """Return ``(price, slipped price, impact per unit)``, or None after a rejection.

        Slippage, impact and tick rounding; the models' outputs are checked here.
        """
        order = working.order
        side = working.sign
        impact = 0.0
        if working.kind in _NO_SLIP or (
            working.managed in _PRICED_EXITS and not self.config.exit_slippage
        ):
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
            text = f"slippage model {model_label(model)} rejected the order: {why}"
            raise ModelRejection(text) from why
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
        if self.config.slippage_within_bar:
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
            tick = self._tick[working.code]
            if not math.isnan(tick):
                rounded = round_price(price, tick, side)
                impact += abs(rounded - price)
                price = rounded
        return price, slipped, impact

    def _bad_price_text(self, price: float) -> str:
        return (
            f"slippage model {model_label(self.slippage_model)} moved the price to {price!r}, "
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
        policy = self.config.cash_policy
        resize = policy == "resize"
        if policy == "allow":
            pass  # no buying-power check: cash may go negative
        elif pf.is_future[code] or self.config.account == "margin":
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
        self, working: Working, quantity: float, allowed: float, why: str, resize: bool
    ) -> tuple[float, str] | None:
        """Return the quantity the account allows and the fill's reason, or None after
        rejecting the order (the policy rejects, it is FOK, or nothing fits)."""
        order, code = working.order, working.code
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
            text = f"impact model {model_label(model)} rejected the order: {why}"
            raise ModelRejection(text) from why
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
            model_label(model) if prov is None else f"{prov.name!r} ({model_label(model)})"
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
            return quantity if self.config.fractional else float(math.floor(quantity + 1e-9))
        return self._round_lot(code, quantity)


class ModelRejection(RejectOrder):
    """A slippage or impact model's :class:`RejectOrder`, its reason already naming it."""


def model_label(model: object) -> str:
    """A model as messages show it: its own repr, or its class name (never an address)."""
    cls = type(model)
    return repr(model) if cls.__repr__ is not object.__repr__ else cls.__qualname__
