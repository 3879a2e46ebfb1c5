"""Run a :class:`~validation.scenario.Scenario` through Backtrader (Cerebro + BackBroker).

Backtrader is used only as a library, through its documented public API: one
``bt.feeds.PandasData`` per asset, ``Cerebro(stdstats=False)`` with the default
``BackBroker``, and a strategy that places the scenario's orders in ``next()``. Source
references are to backtrader 1.9.78.123 under site-packages.

Mapping of the neutral semantics (see :mod:`validation.scenario`):

* fill timing: ``next_bar_open`` = default market orders (filled at bar t+1's open,
  ``bbroker.py`` L853); ``same_bar_close`` = ``broker.set_coc(True)`` (filled at bar t's
  close, stamped bar t, booked in bar t+1's cash and value); ``next_bar_close`` =
  ``exectype=bt.Order.Close`` (daily: bar t+1's close, ``bbroker.py`` L872).
* commission: ``setcommission(commission=rate)`` (``percabs=True`` there, so ``rate`` is a
  fraction) or, with a per-share part or a minimum, a ``CommInfoBase`` subclass with
  ``commtype=COMM_FIXED, stocklike=True`` and ``_getcommission`` overridden.
* slippage: ``set_slippage_perc`` / ``set_slippage_fixed`` with their defaults.
* exits: sell ``Stop`` / ``StopTrail`` / ``Limit`` orders (OCO) placed when the entry fills.
  A signal exit filled at the next open (or under coc at the signal bar's close) cancels
  them when it is placed: nothing they could do on the next bar comes before it (a stop
  gapped through fills at that same open). A signal exit filled at the next bar's close
  (``Order.Close``) joins their OCO group instead, so they keep working through that bar
  and whichever executes first cancels the rest (``_execute`` calls ``_ococheck``,
  ``bbroker.py`` L838, L609-620; ``next`` tries the pending orders in submission order,
  L1198-1220, so an exit reached on that bar executes before the close). A reversal always
  cancels them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import backtrader as bt  # type: ignore[import-untyped]
import numpy as np

from ..scenario import (
    Costs,
    Fill,
    Orders,
    RunResult,
    Scenario,
    Signals,
    TargetWeights,
    Unsupported,
)

__all__ = ["run"]

FRAMEWORK = "backtrader"
_REJECTED = (bt.Order.Margin, bt.Order.Rejected)


class _StockCommission(bt.CommInfoBase):  # type: ignore[misc]
    """Stock commission: ``|size| * (rate * price + per_share)``, at least ``minimum``.

    Backtrader calls ``_getcommission`` once per execution part (closed and opened part
    separately), so the minimum applies to each part of each execution.
    """

    params = (
        ("commtype", bt.CommInfoBase.COMM_FIXED),
        ("stocklike", True),
        ("rate", 0.0),
        ("minimum", 0.0),
    )

    def _getcommission(self, size: float, price: float, pseudoexec: bool) -> float:
        if not size:
            return 0.0
        value = abs(size) * (self.p.rate * price + self.p.commission)
        return float(max(value, self.p.minimum))


@dataclass
class _Plan:
    """What the strategy needs from the scenario, precomputed."""

    scenario: Scenario
    market_exectype: int | None
    long_short: bool
    notes: list[str]
    equity: list[float] = field(default_factory=list)
    cash: list[float] = field(default_factory=list)
    bar_of: dict[float, int] = field(default_factory=dict)
    raw_fills: list[tuple[float, str, float, float, float]] = field(default_factory=list)
    rejected: set[int] = field(default_factory=set)


class _ScenarioStrategy(bt.Strategy):  # type: ignore[misc]
    """Place a scenario's signals, target weights or explicit orders; record the run."""

    params = (("plan", None),)

    def __init__(self) -> None:
        self.plan: _Plan = self.p.plan
        sc = self.plan.scenario
        self.assets = sc.bars.assets
        self.program = sc.compiled
        self.working: dict[int, Any] = {}  # asset -> last signal order (to avoid doubles)
        self.exit_orders: dict[int, list[Any]] = {}  # asset -> live exit orders
        self.roles: dict[int, tuple[str, int]] = {}  # order ref -> (role, asset)
        self.orders_at: dict[int, list[Any]] = {}
        if isinstance(self.program, Orders):
            for spec in self.program.orders:
                self.orders_at.setdefault(spec.bar, []).append(spec)

    # --- bookkeeping -------------------------------------------------------------------
    def next(self) -> None:
        t = len(self) - 1
        plan = self.plan
        plan.bar_of[self.datas[0].datetime[0]] = t
        plan.equity.append(self.broker.getvalue())
        plan.cash.append(self.broker.getcash())
        if isinstance(self.program, Signals):
            self._sc_signals(t, self.program)
        elif isinstance(self.program, TargetWeights):
            self._sc_weights(t, self.program)
        else:
            self._sc_orders(t)

    def notify_order(self, order: Any) -> None:
        asset_index = self.datas.index(order.data)
        asset = self.assets[asset_index]
        for bit in order.executed.iterpending():
            self.plan.raw_fills.append(
                (bit.dt, asset, bit.size, bit.price, bit.closedcomm + bit.openedcomm)
            )
        if order.status in _REJECTED:
            self.plan.rejected.add(order.ref)
        role = self.roles.get(order.ref, ("", -1))[0]
        if order.status == bt.Order.Completed:
            if role == "signal":
                self._attach_exits(asset_index, order.executed.price)
            elif role == "exit":
                self.exit_orders.pop(asset_index, None)

    # --- signals -----------------------------------------------------------------------
    def _submit(self, role: str, j: int, size: float, **kwargs: Any) -> Any:
        data = self.datas[j]
        order = (self.buy if size > 0 else self.sell)(data=data, size=abs(size), **kwargs)
        if order is not None:
            self.roles[order.ref] = (role, j)
        return order

    def _sc_signals(self, t: int, sig: Signals) -> None:
        ls = self.plan.long_short
        for j, data in enumerate(self.datas):
            pending = self.working.get(j)
            if pending is not None and pending.alive():
                continue  # the previous signal order has not filled yet
            pos = self.getposition(data).size
            go_long = bool(sig.entries[t, j])
            go_short = ls and sig.short_entries is not None and bool(sig.short_entries[t, j])
            exit_long = bool(sig.exits[t, j])
            exit_short = ls and sig.short_exits is not None and bool(sig.short_exits[t, j])
            size = 0.0
            if pos > 0 and go_short:
                size = -(pos + self._entry_size(j, -1, pos))
            elif pos < 0 and go_long:
                size = -pos + self._entry_size(j, +1, pos)
            elif (pos > 0 and exit_long) or (pos < 0 and exit_short):
                size = -pos
            elif pos == 0 and go_long:
                size = self._entry_size(j, +1, 0.0)
            elif pos == 0 and go_short:
                size = -self._entry_size(j, -1, 0.0)
            if size == 0.0:
                continue
            kwargs: dict[str, Any] = {"exectype": self.plan.market_exectype}
            live = [o for o in self.exit_orders.get(j, []) if o.alive()]
            if live and size == -pos and self.plan.market_exectype == bt.Order.Close:
                # A close at the next bar's close: the exits keep working through that
                # bar and the first of them to execute cancels the others (OCO group).
                kwargs["oco"] = live[0]
            elif pos != 0:
                # A close at the next open (or, under coc, at this close) comes before
                # anything the exits could do on the next bar, so drop them now.
                self._cancel_exits(j)
            self.working[j] = self._submit("signal", j, size, **kwargs)

    def _entry_size(self, j: int, side: int, pos: float) -> float:
        """Quantity of a new position on asset ``j`` (``side`` +1 long, -1 short)."""
        sc = self.plan.scenario
        sz = sc.sizing
        close = float(self.datas[j].close[0])
        if sz.kind == "fixed":
            qty = float(sz.value)
        elif sz.kind == "percent_equity":
            qty = sz.value * self.broker.getvalue() / close
        else:
            qty = self._all_in(j, side, pos, close)
        if sz.integer:
            qty = float(math.floor(qty + 1e-9))
        return max(qty, 0.0)

    def _all_in(self, j: int, side: int, pos: float, close: float) -> float:
        """Largest quantity affordable at the signal bar's (slipped) close, fees included."""
        c = self.plan.scenario.costs
        price = close
        if c.slippage_rate:
            price = close * (1 + side * c.slippage_rate)
        elif c.slippage_fixed:
            price = close + side * c.slippage_fixed
        cash = self.broker.getcash()
        if pos:  # a reversal: the closing part returns the position's value first
            cash += pos * close - _commission(c, abs(pos), close)
        if cash <= 0:
            return 0.0
        qty = cash / (price * (1 + c.commission_rate) + c.commission_per_share)
        if _commission(c, qty, price) < c.commission_minimum:
            qty = (cash - c.commission_minimum) / price
        # Backtrader rejects when cash - qty*p - fee < 0 (bbroker.py L785): stay on the
        # affordable side of that float comparison at both the sizing and the fill price.
        for _ in range(64):
            if all(cash - qty * p - _commission(c, qty, p) >= 0.0 for p in (price, close)):
                break
            qty = np.nextafter(qty, 0.0)
        return max(float(qty), 0.0)

    # --- exits -------------------------------------------------------------------------
    def _attach_exits(self, j: int, fill_price: float) -> None:
        ex = self.plan.scenario.exits
        pos = self.getposition(self.datas[j]).size
        if not ex.any or pos == 0:
            return
        side = 1 if pos > 0 else -1
        size = -pos
        orders: list[Any] = []

        def add(**kwargs: Any) -> None:
            oco = orders[0] if orders else None
            orders.append(self._submit("exit", j, size, oco=oco, **kwargs))

        if ex.stop_loss is not None:
            add(exectype=bt.Order.Stop, price=fill_price * (1 - side * ex.stop_loss))
        if ex.trailing_stop is not None:
            add(exectype=bt.Order.StopTrail, price=fill_price, trailpercent=ex.trailing_stop)
        if ex.take_profit is not None:
            add(exectype=bt.Order.Limit, price=fill_price * (1 + side * ex.take_profit))
        self.exit_orders[j] = orders

    def _cancel_exits(self, j: int) -> None:
        for order in self.exit_orders.pop(j, []):
            if order.alive():
                self.cancel(order)

    # --- target weights ----------------------------------------------------------------
    def _sc_weights(self, t: int, tw: TargetWeights) -> None:
        row = tw.weights[t]
        if np.all(np.isnan(row)):
            return
        value = self.broker.getvalue()  # one equity snapshot per bar
        deltas = []
        for j, data in enumerate(self.datas):
            if np.isnan(row[j]):
                continue
            delta = row[j] * value - self.broker.getvalue(datas=[data])
            deltas.append((delta >= 0, j))  # sells (False) sort first
        et = self.plan.market_exectype
        for _, j in sorted(deltas):
            data = self.datas[j]
            if self.plan.scenario.sizing.integer:
                order = self.order_target_percent(data=data, target=float(row[j]), exectype=et)
            else:
                target = float(row[j]) * value / float(data.close[0])
                order = self.order_target_size(data=data, target=target, exectype=et)
            if order is not None:
                self.roles[order.ref] = ("weights", j)

    # --- explicit orders ---------------------------------------------------------------
    def _sc_orders(self, t: int) -> None:
        for spec in self.orders_at.get(t, []):
            j = self.assets.index(spec.asset)
            if spec.kind == "market":
                self._submit("order", j, spec.quantity, exectype=self.plan.market_exectype)
            else:
                et = bt.Order.Limit if spec.kind == "limit" else bt.Order.Stop
                self._submit("order", j, spec.quantity, exectype=et, price=spec.price)


def _commission(c: Costs, qty: float, price: float) -> float:
    """The neutral commission of one order of ``qty`` shares at ``price``."""
    if qty <= 0:
        return 0.0
    fee = qty * (c.commission_rate * price + c.commission_per_share)
    return float(max(fee, c.commission_minimum))


def _configure(cerebro: bt.Cerebro, scenario: Scenario, notes: list[str]) -> int | None:
    """Set cash, costs and fill timing on the broker; return the market exectype."""
    broker = cerebro.broker
    broker.setcash(float(scenario.initial_cash))
    c = scenario.costs
    minute = scenario.bars.frequency == "minute"
    if c.commission_per_share or c.commission_minimum:
        broker.addcommissioninfo(
            _StockCommission(
                commission=c.commission_per_share,
                rate=c.commission_rate,
                minimum=c.commission_minimum,
            )
        )
        notes.append(
            "commission: CommInfoBase subclass (COMM_FIXED, stocklike=True, _getcommission "
            "overridden); Backtrader charges it per execution and separately on the closed "
            "and opened parts of a reversal, so a minimum is charged twice on a reversal "
            "(bbroker.py L754, L782)"
        )
    elif c.commission_rate:
        broker.setcommission(commission=c.commission_rate)  # percabs=True: a fraction
        notes.append("commission: setcommission(rate), percabs=True -> fraction of value")
    if c.slippage_rate and c.slippage_fixed:
        raise Unsupported(
            "slippage_rate and slippage_fixed together — BackBroker applies only one "
            "(slip_perc takes precedence), backtrader/brokers/bbroker.py L994-1013"
        )
    if c.slippage_rate or c.slippage_fixed:
        if c.slippage_rate:
            broker.set_slippage_perc(c.slippage_rate)
        else:
            broker.set_slippage_fixed(c.slippage_fixed)
        notes.append(
            "slippage: the setters turn slip_open on (bbroker.py L326-346); slip_match=True "
            "caps a slipped price at the bar's high (buys) / low (sells) — under coc the cap "
            "is the high/low of the bar after the signal bar (_try_exec_market L853); limit "
            "fills at the open are slipped but capped at the limit, intrabar limit fills are "
            "not slipped (L898), intrabar stop fills are slipped (L921)"
        )
    timing = scenario.fill_timing
    if timing == "same_bar_close":
        broker.set_coc(True)
        notes.append(
            "same_bar_close via set_coc(True): executions are stamped at the signal bar, "
            "but Backtrader books their cash, commission and position in the next bar's "
            "broker cycle, so equity/cash show the fill one bar later (bbroker.py L853)"
        )
        return None
    if timing == "next_bar_close":
        if minute:
            raise Unsupported(
                "next_bar_close on minute bars — Order.Close fills at the close of the "
                "session's last bar, not the next bar, backtrader/brokers/bbroker.py L872-896"
            )
        return int(bt.Order.Close)
    return None


def run(scenario: Scenario) -> RunResult:
    """Run ``scenario`` through Backtrader and report it in the common schema.

    Parameters
    ----------
    scenario
        The framework-neutral scenario.

    Returns
    -------
    RunResult
        Fills in execution order (``bar`` = the execution timestamp Backtrader reports),
        ``broker.getvalue()`` / ``getcash()`` recorded in ``next()`` for every bar, the
        number of orders that ended ``Margin`` or ``Rejected``, and notes.

    Raises
    ------
    Unsupported
        When Backtrader cannot express part of the scenario.
    """
    bars = scenario.bars
    program = scenario.compiled
    notes: list[str] = []
    cerebro = bt.Cerebro(stdstats=False)
    minute = bars.frequency == "minute"
    for asset in bars.assets:
        kwargs: dict[str, Any] = {"dataname": bars.pandas(asset), "name": asset}
        if minute:
            kwargs.update(timeframe=bt.TimeFrame.Minutes, compression=1)
        cerebro.adddata(bt.feeds.PandasData(**kwargs))
    market_exectype = _configure(cerebro, scenario, notes)
    _program_notes(scenario, program, notes)
    plan = _Plan(scenario, market_exectype, scenario.direction == "long_short", notes)
    cerebro.addstrategy(_ScenarioStrategy, plan=plan)
    cerebro.run()
    if len(plan.equity) != bars.n_bars:
        raise RuntimeError(f"next() ran {len(plan.equity)} times for {bars.n_bars} bars")
    fills = [
        Fill(plan.bar_of[dt], asset, float(size), float(price), float(comm))
        for dt, asset, size, price, comm in plan.raw_fills
    ]
    return RunResult(
        framework=FRAMEWORK,
        fills=fills,
        equity=np.asarray(plan.equity, dtype=float),
        cash=np.asarray(plan.cash, dtype=float),
        rejected=len(plan.rejected),
        notes=notes,
    )


def _program_notes(scenario: Scenario, program: Any, notes: list[str]) -> None:
    """Add the notes that depend on what the strategy does."""
    if isinstance(program, Signals):
        if scenario.sizing.kind == "all_in":
            notes.append(
                "all_in sized at the signal bar's close (slipped if slippage is set), fees "
                "included; Backtrader checks cash again at the fill price, so a higher fill "
                "(e.g. the next open) ends the whole order as Margin — no resize "
                "(bbroker.py L558, L785)"
            )
        if scenario.exits.any:
            notes.append(
                "exits are submitted when the entry fill is notified, so they are first "
                "checked on the bar after the fill bar (coc: two bars after the signal); "
                "StopTrail starts from the entry fill price (price=fill) and is raised with "
                "each later bar's close (order.py L323-339, L595; bbroker.py L944); on a "
                "bar where several trigger, the earliest-created (stop, trail, limit) fills "
                "and OCO cancels the rest"
            )
    elif isinstance(program, TargetWeights):
        if scenario.sizing.integer:
            notes.append(
                "TargetWeights via order_target_percent: value snapshot = broker.getvalue() "
                "at the bar; shares = int(|target - position value| // close), i.e. the "
                "trade (not the target) is floored (strategy.py L1283-1375, comminfo.py L192)"
            )
        else:
            notes.append(
                "TargetWeights with fractional sizes: order_target_percent floors to whole "
                "shares (comminfo.py L192), so the runner passes the fractional target "
                "weight * broker.getvalue() / close to order_target_size (strategy.py L1247)"
            )
    if scenario.exits.any and not isinstance(program, Signals):
        notes.append("exits ignored: only positions opened by Signals carry exits")
