"""Orders that depend on other orders or on positions: brackets, OTO, OCO, position exits.

- **OTO** (one triggers other): the child is inactive until the parent is finished with
  something filled (completely, or cancelled/expired after a partial fill); if the parent
  ends with nothing filled the child is cancelled.
- **Bracket**: an entry with a stop-loss and/or take-profit child; the children are OTO
  children of the entry, sized to the quantity the entry filled, and one-cancels-other
  between themselves. Like Backtrader's, they are first matched on the bar after the
  entry fill.
- **OCO** (one cancels other): the first fill of any member cancels the others.
- **Position exits** (:class:`~ml4t.backtest.builtin.risk.ExitRules`): protective orders
  the broker keeps in line with each position (see :mod:`.risk`).

This is a mixin of :class:`~ml4t.backtest.builtin.sim_broker.SimulationBroker`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..core.orders import Order, OrderSide, OrderStatus, OrderType, round_price
from .risk import ExitRules, as_exit_rules

if TYPE_CHECKING:
    from ..core.clock import Clock
    from ..core.portfolio import Portfolio
    from .broker_settings import BrokerSettings
    from .working import Working

__all__ = ["OrderLinks"]


class OrderLinks:
    """Order-link bookkeeping shared by the simulation broker."""

    if TYPE_CHECKING:  # provided by the other parts of the broker

        def submit_order(self, order: Order) -> Order: ...

        def _accept(
            self, order: Order, code: int, note: str | None = None, managed: str | None = None
        ) -> Working: ...

        def _check_new(self, order: Order, code: int) -> tuple[str | None, str | None]: ...

        def _finish(self, order: Order, event: str, reason: str, notify: bool = True) -> None: ...

        def _reject(self, order: Order, reason: str) -> None: ...

        def _log(
            self, order: Order, event: str, reason: str | None, ts: int | None = None
        ) -> None: ...

    config: BrokerSettings
    portfolio: Portfolio
    exits: ExitRules | None
    _clock: Clock | None
    _fill_close: float
    _pending: dict[int, Working]
    _tick: list[float]

    def _setup_links(self, asset_ids: Sequence[str]) -> None:
        self._exit_rules: dict[int, ExitRules | None] = {}
        #: asset code -> the working position exits of its position (one OCO group)
        self._exit_groups: dict[int, list[Working]] = {}
        self._exit_index: dict[int, int] = {}

    # --- submission ---------------------------------------------------------------------
    def submit_bracket(
        self,
        entry: Order,
        stop_loss: float | None = None,
        take_profit: float | None = None,
    ) -> tuple[Order, Order | None, Order | None]:
        """Submit ``entry`` with a stop-loss and/or take-profit child (prices).

        Returns ``(entry, stop order or None, take-profit order or None)``. A bracket
        whose entry or child is invalid is rejected as a whole.
        """
        if stop_loss is None and take_profit is None:
            raise ValueError("a bracket needs stop_loss and/or take_profit")
        exit_side = OrderSide.SELL if entry.side is OrderSide.BUY else OrderSide.BUY
        reduce = self.config.order_sizing == "at_fill"  # legs only close what the entry opened
        stop = tp = None
        if stop_loss is not None:
            stop = Order(
                entry.asset_id,
                exit_side,
                entry.quantity,
                OrderType.STOP,
                stop_price=stop_loss,
                tag="stop_loss",
                reduce_only=reduce,
            )
        if take_profit is not None:
            tp = Order(
                entry.asset_id,
                exit_side,
                entry.quantity,
                OrderType.LIMIT,
                limit_price=take_profit,
                tag="take_profit",
                reduce_only=reduce,
            )
        children = [c for c in (stop, tp) if c is not None]
        problem = self._link_problem(entry, children)
        self.submit_order(entry)
        if entry.status is OrderStatus.REJECTED:
            for c in children:
                c.status, c.reason = OrderStatus.REJECTED, f"bracket entry rejected: {entry.reason}"
            return entry, stop, tp
        if problem is not None:
            self._reject(entry, problem)
            return entry, stop, tp
        group = children if len(children) > 1 else None
        for c in children:
            c.oco = group
        self._attach(entry, children, track=True)
        return entry, stop, tp

    def submit_oto(self, parent: Order, child: Order) -> tuple[Order, Order]:
        """Submit ``parent``; ``child`` works once the parent has filled (see module doc)."""
        problem = self._link_problem(parent, [child])
        self.submit_order(parent)
        if parent.status is OrderStatus.REJECTED:
            child.status, child.reason = (
                OrderStatus.REJECTED,
                f"OTO parent rejected: {parent.reason}",
            )
            return parent, child
        if problem is not None:
            self._reject(parent, problem)
            return parent, child
        self._attach(parent, [child])
        return parent, child

    def submit_oco(self, *orders: Order) -> list[Order]:
        """Submit orders as one-cancels-other: the first fill cancels the rest."""
        if len(orders) < 2:
            raise ValueError("an OCO group needs at least two orders")
        group = list(orders)
        for order in group:
            order.oco = group
            self.submit_order(order)
        return group

    def _link_problem(self, parent: Order, children: list[Order]) -> str | None:
        code = self.portfolio.code_of.get(parent.asset_id)
        for child in children:
            problem = child.validation_error()
            if problem is None and code is not None:
                if self.portfolio.code_of.get(child.asset_id) is None:
                    problem = f"unknown asset {child.asset_id!r}"
                else:
                    problem, _ = self._check_new(child, self.portfolio.code_of[child.asset_id])
            if problem is not None:
                return f"child order invalid: {problem}"
        return None

    def _attach(self, parent: Order, children: list[Order], track: bool = False) -> None:
        """Accept ``children`` as waiting for ``parent``; ``track``: sized to its fills."""
        for child in children:
            child.parent = parent
            parent.children.append(child)
            working = self._accept(child, self.portfolio.code_of[child.asset_id])
            working.active = False
            working.track = track

    # --- after a fill or finish -------------------------------------------------------------
    def _after_fill(self, working: Working, old: float, new: float, ts: int, index: int) -> None:
        """Cancel OCO siblings, activate children and keep position exits in line after a
        fill of ``working`` took its asset's position from ``old`` to ``new``."""
        order, code = working.order, working.code
        if order.oco is not None and working.managed is None:
            for other in order.oco:
                if other is not order and other.status.is_open:
                    self._finish(
                        other, "cancelled", f"cancelled: OCO sibling order {order.order_id} filled"
                    )
        if order.children and not order.status.is_open:
            self._activate_children(order, ts)
        rules = self._exit_rules.get(code, self.exits)
        if rules is not None or code in self._exit_groups:
            self._sync_exits(code, old, new, ts, index, rules)

    def _unlink(self, order: Order) -> None:
        """Handle the children of an order that ended without completing."""
        if order.children:
            if order.filled_quantity > 0:
                self._activate_children(order, None)
            else:
                for child in order.children:
                    if child.status.is_open:
                        self._finish(
                            child,
                            "cancelled",
                            f"cancelled: parent order {order.order_id} ended unfilled "
                            f"({order.status.value})",
                        )

    def _activate_children(self, parent: Order, ts: int | None) -> None:
        clock = self._clock
        for child in parent.children:
            working = self._pending.get(child.order_id)
            if working is None or not child.status.is_open or working.active:
                continue
            working.active = True
            working.created_ts = ts if ts is not None else (clock.now_ns if clock else 0)
            if working.track:
                child.quantity = parent.filled_quantity
            self._log(child, "activated", f"parent order {parent.order_id} filled")

    # --- position exits -----------------------------------------------------------------
    def set_exits(self, asset_id: str, rules: ExitRules | dict[str, Any] | None) -> None:
        """Set (or with ``None`` switch off) the position exits of one asset.

        Applies to the open position at once (its protective orders are replaced; they
        work from the next bar) and to later positions in the asset.
        """
        code = self.portfolio.code_of.get(asset_id)
        if code is None:
            raise KeyError(f"unknown asset {asset_id!r}")
        parsed = as_exit_rules(rules, where=f"exits for {asset_id!r}")
        self._exit_rules[code] = parsed
        q = self.portfolio.qty[code]
        if q != 0:
            self._fill_close = math.nan  # measured from the latest close, not a fill
            clock = self._clock
            assert clock is not None
            self._sync_exits(code, 0.0, q, clock.now_ns, clock.now_index, parsed, restart=True)

    def _sync_exits(
        self,
        code: int,
        old: float,
        new: float,
        ts: int,
        index: int,
        rules: ExitRules | None,
        restart: bool = False,
    ) -> None:
        group = self._exit_groups.get(code)
        flipped = old == 0 or (old > 0) != (new > 0)
        if new == 0 or rules is None or flipped or restart:
            if group:
                for w in group:
                    if w.order.status.is_open:
                        self._finish(
                            w.order,
                            "cancelled",
                            "cancelled: position exit no longer needed",
                            notify=False,
                        )
                del self._exit_groups[code]
            if new == 0 or rules is None:
                return
            if flipped:
                self._exit_index[code] = index
            self._exit_groups[code] = self._place_exits(code, new, rules)
            return
        assert group is not None
        grew = abs(new) > abs(old)
        avg = self._exit_base(code)
        d = 1 if new > 0 else -1
        for w in group:
            o = w.order
            if not o.status.is_open:
                continue
            o.quantity = o.filled_quantity + abs(new)
            if grew and w.managed == "stop_loss" and rules.stop_loss is not None:
                o.stop_price = self._level(code, avg * (1 - d * rules.stop_loss), -d)
            elif grew and w.managed == "take_profit" and rules.take_profit is not None:
                o.limit_price = self._level(code, avg * (1 + d * rules.take_profit), d)

    def _exit_base(self, code: int) -> float:
        """Return the price position exits are measured from (see ``exit_base``)."""
        if self.config.exit_base == "bar_close":
            close = self._fill_close
            return close if close == close else self.portfolio.price_of(code)
        return float(self.portfolio.avg_cost[code])

    def _level(self, code: int, price: float, direction: int) -> float:
        return round_price(price, self._tick[code], direction)

    def _place_exits(self, code: int, position: float, rules: ExitRules) -> list[Working]:
        pf = self.portfolio
        asset = pf.asset_ids[code]
        avg = self._exit_base(code)
        d = 1 if position > 0 else -1
        side = OrderSide.SELL if d > 0 else OrderSide.BUY
        qty = abs(position)
        orders = []
        if rules.stop_loss is not None:
            level = self._level(code, avg * (1 - d * rules.stop_loss), -d)
            orders.append(
                Order(asset, side, qty, OrderType.STOP, stop_price=level, tag="stop_loss")
            )
        if rules.take_profit is not None:
            level = self._level(code, avg * (1 + d * rules.take_profit), d)
            orders.append(
                Order(asset, side, qty, OrderType.LIMIT, limit_price=level, tag="take_profit")
            )
        if rules.trailing_stop is not None or rules.trailing_amount is not None:
            trail = Order(
                asset,
                side,
                qty,
                OrderType.TRAILING_STOP,
                tag="trailing_stop",
                trail_percent=rules.trailing_stop,
                trail_amount=rules.trailing_amount,
            )
            trail.trail_reference_price = avg
            orders.append(trail)
        if rules.max_bars is not None:
            orders.append(Order(asset, side, qty, tag="time_exit"))
        group = []
        for o in orders:
            o.oco = orders
            o.reduce_only = True
            working = self._accept(o, code, managed=o.tag)
            if rules.max_bars is not None and o.tag == "time_exit":
                working.eligible_index = self._exit_index.get(code, 0) + rules.max_bars
            group.append(working)
        return group
