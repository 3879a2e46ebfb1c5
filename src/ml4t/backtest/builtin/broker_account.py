"""Session-level account events of the simulation broker.

Once per session, before its first bar: corporate actions (splits, dividend entitlement at
the ex-date, dividend cash at the pay date) and borrow fees on short positions. At every
bar's close while positions are open on margin: the maintenance-margin check (margin call)
and the drawdown halt of the risk limits. These live here so ``sim_broker`` keeps to the
order flow.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..core.orders import Order, OrderSide, OrderType
from .accounts import MarginBook

if TYPE_CHECKING:
    from ..core.clock import Clock
    from ..core.portfolio import Portfolio
    from .corporate import ActionSchedule
    from .risk import RiskLimits
    from .working import Working

__all__ = ["AccountEvents"]

_YEAR_DAYS = 365.0


class AccountEvents:
    """Apply per-session and per-bar account events to a broker's portfolio.

    Parameters
    ----------
    broker : SimulationBroker
        The broker (its portfolio, orders, listener and settings).
    """

    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self.pf: Portfolio = broker.portfolio
        self.clock: Clock = broker._clock
        self.schedule: ActionSchedule | None = broker._schedule
        self.margin: MarginBook = broker._margin
        self.limits: RiskLimits | None = broker._limits
        self.prev_day: int | None = None
        self.receivable: dict[tuple[int, int], float] = {}
        self.peak = broker.portfolio.initial_cash
        self.halted = False
        self.margin_calls = 0

    # --- sessions -----------------------------------------------------------------------
    def start_session(self, ts: int, day: int) -> None:
        """Book borrow fees, then corporate actions, before the session's first bar."""
        prev = self.prev_day
        self.prev_day = day
        index = self.clock.now_index
        if prev is not None:
            self._borrow_fees(ts, index, day - prev)
        if self.schedule is not None:
            splits, ex, pay = self.schedule.between(prev, day)
            for s in splits:
                self._split(s.code, s.ratio, ts, index)
            for d in ex:
                self._dividend_ex(d.code, d.row, d.amount, ts, index)
            for p in pay:
                self._dividend_pay(p.code, p.row, ts, index)

    def _borrow_fees(self, ts: int, index: int, days: int) -> None:
        pf, broker = self.pf, self.broker
        for c in list(pf.held):
            q = pf.qty[c]
            if q >= 0 or pf.is_future[c]:
                continue
            rate = broker._asset_borrow[c]
            if math.isnan(rate):
                rate = broker.config.borrow_rate
            if rate <= 0:
                continue
            value = abs(q) * pf.mult[c] * pf.price_of(c)
            fee = value * rate * days / _YEAR_DAYS
            pf.income["borrow_fees"] += fee
            pf.trades.on_income(c, fee, "borrow_fees")
            pf.book_event(
                "borrow_fee",
                c,
                ts,
                index,
                cash=-fee,
                price=pf.price_of(c),
                note=f"{days} day(s) at {rate:.4%}/yr on short value {value:,.2f}",
            )

    def _split(self, code: int, ratio: float, ts: int, index: int) -> None:
        pf, broker = self.pf, self.broker
        if pf.qty[code] != 0:
            lot = broker._lot[code]
            pf.apply_split(code, ratio, lot if lot > 0 else 0.0, ts, index, pf.price_of(code))
        for working in list(broker._pending.values()):
            if working.code != code:
                continue
            order = working.order
            order.quantity = order.filled_quantity + broker._round_lot(
                code, order.remaining_quantity * ratio
            )
            if order.target_quantity is not None:  # in post-split units, like the position
                target = order.target_quantity * ratio
                order.target_quantity = math.copysign(broker._round_lot(code, abs(target)), target)
            for attr in ("limit_price", "stop_price", "trail_amount"):
                value = getattr(order, attr)
                if value is not None:
                    setattr(order, attr, value / ratio)
            order.trail_reference_price /= ratio
            broker._log(order, "adjusted", f"{ratio:g}-for-1 split", ts)
            if order.quantity <= order.filled_quantity:
                broker._finish(
                    order, "cancelled", "cancelled: split left no whole lot to trade", ts=ts
                )

    def _dividend_ex(self, code: int, key: int, amount: float, ts: int, index: int) -> None:
        pf = self.pf
        q = pf.qty[code]
        if q == 0 or amount == 0:
            return
        owed = q * pf.mult[code] * amount
        self.receivable[(code, key)] = owed
        pf.income["dividends_earned"] += owed
        pf.trades.on_income(code, owed, "dividends")
        side = "owed by the short" if owed < 0 else "earned"
        pf.book_event(
            "dividend_ex",
            code,
            ts,
            index,
            accrued=owed,
            price=amount,
            note=f"{amount:g}/share on {q:g}: {owed:,.2f} {side}, paid at the pay date",
        )

    def _dividend_pay(self, code: int, key: int, ts: int, index: int) -> None:
        owed = self.receivable.pop((code, key), 0.0)
        if owed == 0:
            return
        self.pf.income["dividends_paid"] += owed
        self.pf.book_event(
            "dividend_paid", code, ts, index, cash=owed, accrued=-owed, note="dividend cash"
        )

    # --- per bar ------------------------------------------------------------------------
    def check_close(self) -> None:
        """Run the drawdown halt and the margin check at a bar's close."""
        pf = self.pf
        limits = self.limits
        if limits is not None and limits.max_drawdown is not None and not self.halted:
            equity = pf.equity()
            self.peak = max(self.peak, equity)
            if self.peak > 0 and (self.peak - equity) / self.peak >= limits.max_drawdown:
                self.halted = True
                self.broker._note_event(
                    f"drawdown halt: equity {equity:,.2f} is "
                    f"{(self.peak - equity) / self.peak:.2%} below its peak {self.peak:,.2f} "
                    f"(max_drawdown {limits.max_drawdown:g}); orders that add exposure are "
                    "rejected from now on"
                )
        if self.broker._margin_watch and pf.held and not self._liquidating():
            equity, need = self.margin.deficit()
            if equity < need:
                self._margin_call(equity, need)

    def _margin_call(self, equity: float, need: float) -> None:
        broker = self.broker
        self.margin_calls += 1
        policy = broker.config.margin_call
        plan = self.margin.liquidation_plan(policy)
        note = (
            f"margin call: equity {equity:,.2f} below maintenance requirement {need:,.2f}; "
            f"policy {policy!r} closes {len(plan)} position(s)"
        )
        broker._note_event(note)
        for code, signed in plan:
            asset = self.pf.asset_ids[code]
            for working in list(broker._pending.values()):
                if working.code == code and _adds_after_close(working):
                    broker._finish(
                        working.order,
                        "cancelled",
                        f"cancelled: margin call liquidates the {asset} position; working "
                        "orders that would add exposure to it are cancelled",
                    )
            side = OrderSide.BUY if signed > 0 else OrderSide.SELL
            order = Order(
                asset,
                side,
                abs(signed),
                OrderType.MARKET_ON_OPEN,
                tag="margin_call",
                reduce_only=True,
            )
            broker._accept(order, code, managed="margin_call")

    def _liquidating(self) -> bool:
        """Return True while a margin call's liquidation orders are still working."""
        return any(
            w.managed == "margin_call" and w.order.status.is_open
            for w in self.broker._pending.values()
        )


def _adds_after_close(working: Working) -> bool:
    """Return True if a working strategy order would add exposure once the position is closed.

    Reduce-only orders (and the broker's own position exits) cannot; a target order for a
    flat position fills nothing; every other order would open a position again.
    """
    order = working.order
    if not order.status.is_open or working.managed is not None or order.reduce_only:
        return False
    return order.target_quantity != 0.0
