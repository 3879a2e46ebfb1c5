"""The broker contract suite: tests any :class:`~ml4t.backtest.Broker` can run against itself.

Subclass :class:`BrokerContract` in a test module under a name pytest collects, give it a
``make_broker`` that returns a fresh broker, and declare in ``supports`` the order
features the broker implements beyond market orders (see :data:`FEATURES`)::

    from ml4t.backtest.testing import BrokerContract
    from my_broker import MyBroker


    class TestMyBroker(BrokerContract):
        supports = frozenset({"limit", "short"})
        initial_cash = 50_000.0  # optional: checked against the portfolio after setup

        def make_broker(self):
            return MyBroker(initial_cash=50_000.0)

Each inherited ``test_*`` method is one check. Most drive the broker through short
:class:`~ml4t.backtest.BacktestEngine` runs over :func:`~ml4t.backtest.testing.make_bars`
data, calling the broker's protocol members directly from inside the strategy's bar
callback; the others call ``setup`` directly. A feature left out of ``supports`` is
checked to be refused properly: ``NotImplementedError``, or the order rejected with a
reason through the listener (``set_exits`` and ``replace_order`` must raise). Every run
also checks that each order ends filled, rejected or cancelled with a reason the strategy
was told, or is still working; and that the result's books match the fills.

The runs use no dividends, fees on positions or contract multipliers (equity is checked
as cash plus quantity times close). The suite needs pytest only to collect it; it
imports nothing from pytest.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

import polars as pl

from ..builtin.feeds import PolarsDataFeed
from ..builtin.risk import ExitRules
from ..core.broker import Broker, OrderPort
from ..core.clock import Clock
from ..core.context import Context
from ..core.events import FillEvent, MarketEvent
from ..core.orders import Order, OrderRecord, OrderStatus
from ..core.portfolio import Portfolio
from ..core.results import BacktestResult
from ..engine import BacktestEngine
from ..errors import RejectedOrdersWarning
from .data import make_bars, make_long_bars
from .stubs import ScriptedStrategy, check_order_reports

__all__ = ["FEATURES", "BrokerContract"]

#: order features beyond market orders a broker may declare in ``BrokerContract.supports``
FEATURES = frozenset({"limit", "stop", "bracket", "oco", "oto", "replace", "exits", "short"})
_ENDED = (OrderStatus.REJECTED, OrderStatus.CANCELLED, OrderStatus.EXPIRED)
#: closes that dip and recover (limit and stop orders)
_DIP = [100.0, 100, 98, 96, 94, 96, 98, 100, 102, 104, 106, 108]

Step = Callable[["Probe", MarketEvent, int], None]


class Probe(ScriptedStrategy):
    """The suite's strategy: ``step(probe, event, bar)`` per bar; notes the books at fills.

    ``bar`` counts the asset's bars from 0. :meth:`attempt` calls the broker, keeping an
    exception instead of letting it stop the run.
    """

    def __init__(self, broker: Broker, step: Step) -> None:
        super().__init__()
        self.broker = broker
        self.step = step
        self.bars: dict[str, int] = {}
        self.in_bar = False
        self.orders: list[Order] = []
        self.raised: dict[str, BaseException] = {}
        self.notes: dict[str, Any] = {}
        #: per fill: (fill, cash after, position after, reported during a bar callback)
        self.at_fill: list[tuple[FillEvent, float, float, bool]] = []

    def on_market_data(self, event: MarketEvent, context: Context) -> None:
        """Run the step with the asset's bar number."""
        k = self.bars.get(event.asset_id, 0)
        self.bars[event.asset_id] = k + 1
        self.in_bar = True
        try:
            self.step(self, event, k)
        finally:
            self.in_bar = False

    def on_fill(self, fill: FillEvent) -> None:
        """Record the fill with the portfolio's cash and position right after it."""
        super().on_fill(fill)
        pf = self.broker.portfolio
        qty = pf.qty[pf.code_of[fill.asset_id]]
        self.at_fill.append((fill, pf.cash, qty, self.in_bar))

    def attempt(self, what: str, call: Callable[[], Any]) -> Any:
        """Return ``call()``; an exception is kept in ``raised[what]`` and None returned."""
        try:
            out = call()
        except Exception as exc:
            self.raised[what] = exc
            return None
        for order in out if isinstance(out, list | tuple) else [out]:
            if isinstance(order, Order) and all(o is not order for o in self.orders):
                self.orders.append(order)
        return out

    def submit(self, order: Order) -> Order | None:
        """Submit ``order`` directly to the broker (see :meth:`attempt`)."""
        placed: Order | None = self.attempt(
            f"submit {order!r}", lambda: self.broker.submit_order(order)
        )
        return placed

    def fills_of(self, order: Order) -> list[FillEvent]:
        """Return the fills reported for ``order``."""
        return [f for f in self.fills if f.order_id == order.order_id]


@dataclass
class Outcome:
    """A finished contract run."""

    result: BacktestResult
    probe: Probe
    broker: Broker
    frame: pl.DataFrame


class BrokerContract:
    """Contract tests for a broker; subclass it as ``Test...`` and define :meth:`make_broker`.

    Attributes
    ----------
    supports : frozenset of str
        The features of :data:`FEATURES` the broker implements; the others are checked to
        be refused (``NotImplementedError`` or a rejection with a reason).
    initial_cash : float, optional
        The cash ``make_broker`` gives the broker, checked after ``setup``.
    always_pending : bool
        True when the broker keeps ``has_pending`` set without orders, because it needs
        its phases on every bar (margin checks, say); otherwise it must be False after
        ``setup``.
    engine_options : mapping
        Keyword arguments for :class:`~ml4t.backtest.BacktestEngine` in the runs.
    """

    supports: frozenset[str] = frozenset()
    initial_cash: float | None = None
    always_pending = False
    engine_options: Mapping[str, Any] = MappingProxyType({})

    def make_broker(self) -> Broker:
        """Return a new broker (override this)."""
        raise NotImplementedError(f"{type(self).__name__} must define make_broker()")

    # --- running ---------------------------------------------------------------------------
    def run(
        self, step: Step, frame: pl.DataFrame | None = None, broker: Broker | None = None
    ) -> Outcome:
        """Run ``step`` over ``frame`` (default: 12 rising daily bars of asset ``"A"``)."""
        broker = broker if broker is not None else self.make_broker()
        frame = frame if frame is not None else make_bars(12)
        single = "asset_id" not in frame.columns
        probe = Probe(broker, step)
        engine = BacktestEngine(
            PolarsDataFeed(frame, asset_id="A" if single else None),
            probe,
            broker,
            **self.engine_options,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RejectedOrdersWarning)
            try:
                result = engine.run()
            except Exception:
                for record in broker.order_records():  # a malformed record breaks the result
                    check_record(record)
                raise
        outcome = Outcome(result, probe, broker, frame)
        check_accounted(outcome)
        check_books(outcome)
        return outcome

    # --- the protocol ----------------------------------------------------------------------
    def test_is_a_broker(self) -> None:
        """The broker is a ``Broker`` (and an ``OrderPort``) with every member."""
        broker = self.make_broker()
        unknown = set(self.supports) - FEATURES
        assert not unknown, (
            f"supports names unknown features {sorted(unknown)}; known {sorted(FEATURES)}"
        )
        missing = [name for name in protocol_members() if not hasattr(broker, name)]
        assert not missing, f"{type(broker).__name__} lacks protocol members {missing}"
        assert isinstance(broker, OrderPort) and isinstance(broker, Broker)
        assert isinstance(broker.fractional, bool), "fractional must be a bool"
        assert isinstance(broker.exact_quantities, bool), "exact_quantities must be a bool"
        assert isinstance(broker.has_pending, bool), "has_pending must be a bool"
        assert broker.order_sizing in ("at_fill", "at_order"), (
            f"order_sizing {broker.order_sizing!r}"
        )

    def test_setup_creates_the_portfolio(self) -> None:
        """``setup`` makes a fresh portfolio over the assets; no orders, no reports."""
        broker = self.make_broker()
        listener = _Listener()
        frame = make_long_bars(["A", "B"], 3)
        broker.setup(["A", "B"], listener, Clock([PolarsDataFeed(frame)]))
        pf = broker.portfolio
        assert isinstance(pf, Portfolio), f"portfolio is a {type(pf).__name__}"
        assert pf.asset_ids == ["A", "B"], f"portfolio assets {pf.asset_ids}"
        assert pf.cash == pf.initial_cash > 0, f"cash {pf.cash}, initial_cash {pf.initial_cash}"
        if self.initial_cash is not None:
            assert pf.initial_cash == self.initial_cash, f"initial_cash {pf.initial_cash}"
        assert list(pf.qty) == [0.0, 0.0] and not pf.fills, "a new portfolio holds nothing"
        if not self.always_pending:
            assert broker.has_pending is False, "has_pending must be False with no orders"
        assert broker.open_orders() == [] and broker.open_orders("A") == []
        assert broker.cancel_order(12345) is False, "cancel of an unknown id must return False"
        assert list(broker.order_records()) == [], "no order records before any order"
        broker.check_columns(())
        assert listener.calls == [], f"setup reported {listener.calls}"

    def test_settings_metrics_and_rounding(self) -> None:
        """``settings()`` is JSON, ``run_metrics()`` a dict, quantities round down."""
        broker = self.make_broker()
        broker.setup(["A"], _Listener(), Clock([PolarsDataFeed(make_bars(3), asset_id="A")]))
        settings = broker.settings()
        assert isinstance(settings, dict), f"settings() returned a {type(settings).__name__}"
        try:  # the result's metadata is written as JSON
            json.dumps(settings)
        except (TypeError, ValueError) as exc:
            raise AssertionError(f"settings() is not JSON-serialisable: {exc}") from exc
        metrics = broker.run_metrics()
        assert isinstance(metrics, dict) and all(isinstance(k, str) for k in metrics), metrics
        for q in (0.4, 1.0, 1.7, 10.3, 123.456):
            r = broker.round_quantity("A", q)
            assert 0 <= r <= q + 1e-12, f"round_quantity('A', {q}) = {r}"
            if broker.exact_quantities:
                assert r == q, f"exact_quantities is True but round_quantity('A', {q}) = {r}"
            if not broker.fractional:
                assert float(r).is_integer(), f"not fractional but round_quantity gave {r}"

    # --- orders ------------------------------------------------------------------------------
    def test_market_buy_fills_once(self) -> None:
        """A market buy fills once, in a broker phase, and moves cash and position."""

        def step(p: Probe, event: MarketEvent, k: int) -> None:
            if k == 1:
                p.notes["cash"] = p.broker.portfolio.cash
                p.notes["ts"] = event.timestamp
                order = p.submit(Order("A", "buy", 10))
                p.notes["status"] = None if order is None else order.status

        out = self.run(step)
        probe = out.probe
        assert len(probe.orders) == 1 and not probe.raised, f"submit_order: {probe.raised}"
        (order,) = probe.orders
        assert order.order_id >= 0, f"no order id assigned: {order!r}"
        assert probe.notes["status"] in (OrderStatus.PENDING, OrderStatus.FILLED), probe.notes
        fills = probe.fills_of(order)
        assert len(fills) == 1, f"a market buy of 10 must fill exactly once, got {fills}"
        fill, cash, qty, during_bar = next(a for a in probe.at_fill if a[0] is fills[0])
        assert isinstance(fill, FillEvent) and fill.asset_id == "A" and fill.side == "buy"
        assert not during_bar, "filled inside submit_order: fills belong to a broker phase"
        assert fill.quantity == 10 and math.isfinite(fill.price) and fill.price > 0, fill
        assert fill.timestamp >= probe.notes["ts"], "filled before the bar it was placed on"
        assert order.status is OrderStatus.FILLED and order.filled_quantity == 10, order
        expected = probe.notes["cash"] - (fill.quantity * fill.price + fill.commission)
        assert _close(cash, expected), f"cash after the fill {cash}, expected {expected}"
        assert qty == 10, f"position after the fill {qty}, expected 10"
        records = [
            r
            for r in map(OrderRecord._make, out.broker.order_records())
            if r.order_id == order.order_id
        ]
        for rec in out.broker.order_records():
            check_record(rec)
        assert "filled" in [r.event for r in records], f"no 'filled' record: {records}"
        assert out.result.fills_df["order_id"].to_list() == [order.order_id]

    def test_cancel_and_open_orders(self) -> None:
        """``open_orders`` lists working orders; cancelling works once, and is reported."""
        limit = "limit" in self.supports

        def step(p: Probe, event: MarketEvent, k: int) -> None:
            broker = p.broker
            if k == 1:
                order = p.submit(Order("A", "buy", 5))
                if order is None:
                    return
                p.notes["status"] = order.status
                ids = [o.order_id for o in broker.open_orders()]
                p.notes["listed"] = order.order_id in ids and broker.open_orders("B") == []
                p.notes["cancel"] = broker.cancel_order(order.order_id)
                p.notes["after"] = [o.order_id for o in broker.open_orders("A")]
                p.notes["again"] = broker.cancel_order(order.order_id)
                p.notes["unknown"] = broker.cancel_order(10**9)
                if limit:
                    p.notes["far"] = p.submit(Order("A", "buy", 5, "limit", limit_price=1.0))
            if limit and k == 4:
                far = p.notes["far"]
                p.notes["far_open"] = far in broker.open_orders("A")
                p.notes["far_cancel"] = broker.cancel_order(far.order_id)

        out = self.run(step)
        assert out.probe.orders and not out.probe.raised, f"submit_order: {out.probe.raised}"
        order, notes = out.probe.orders[0], out.probe.notes
        assert notes.get("status") is OrderStatus.PENDING, f"a new market order: {order!r}"
        assert notes["listed"], "open_orders() must list a working order (and only its asset's)"
        assert notes["cancel"] is True, "cancel_order of a working order must return True"
        assert order.order_id not in notes["after"], "a cancelled order is still in open_orders()"
        assert notes["again"] is False, "cancel_order of a cancelled order must return False"
        assert notes["unknown"] is False, "cancel_order of an unknown id must return False"
        assert order.status is OrderStatus.CANCELLED and not out.probe.fills_of(order), order
        assert [o for o, _ in out.probe.cancelled][:1] == [order], "cancellation not reported"
        if limit:
            assert notes["far_open"] and notes["far_cancel"] is True, notes
        check_order_reports(out.result, out.probe)
        assert not out.result.warnings, (  # the results tell cancels apart by their reason
            f"{out.result.warnings}: use the reason 'cancelled by the strategy' for cancel_order"
        )

    def test_invalid_orders_are_rejected(self) -> None:
        """Malformed orders are rejected with a reason through the listener."""

        def step(p: Probe, event: MarketEvent, k: int) -> None:
            if k == 1:
                for order in (
                    Order("A", "buy", 0),
                    Order("A", "buy", -5),
                    Order("A", "sell", math.nan),
                    Order("NOPE", "buy", 1),
                ):
                    p.submit(order)

        out = self.run(step)
        assert not out.probe.raised, f"submit_order must not raise: {out.probe.raised}"
        assert len(out.probe.orders) == 4 and not out.probe.fills, out.probe.fills
        for order in out.probe.orders:
            assert order.status is OrderStatus.REJECTED and order.reason, order
        assert len(out.probe.rejected) == 4, "each rejection is reported to the listener"
        check_order_reports(out.result, out.probe)

    # --- whole runs ---------------------------------------------------------------------------
    def test_full_backtest_books(self) -> None:
        """A two-asset run gives the standard frames; a second run the same ones."""
        frame = make_long_bars(["A", "B"], 30, seed=3)

        def step(p: Probe, event: MarketEvent, k: int) -> None:
            if (k, event.asset_id) in ((2, "A"), (4, "B")):
                p.orders.append(p.buy(event.asset_id, 10))
            elif (k, event.asset_id) in ((12, "A"), (20, "B")):
                p.orders.append(p.close_position(event.asset_id))  # type: ignore[arg-type]

        broker = self.make_broker()
        out = self.run(step, frame, broker)
        res = out.result
        for name in ("fills_df", "orders_df", "portfolio_df", "trades_df", "exit_trades_df"):
            assert isinstance(getattr(res, name), pl.DataFrame), name
        assert res.fills_df.height == len(out.probe.fills) == 4, res.fills_df
        assert res.fills_df["order_id"].to_list() == [f.order_id for f in out.probe.fills]
        assert res.trades_df.filter(~pl.col("is_open")).height == 2, res.trades_df
        assert res.exit_trades_df.height == 2, res.exit_trades_df
        again = self.run(step, frame, broker)  # the same broker, set up again for a new run
        assert again.result.fills_df.equals(res.fills_df), "a second run on the same broker differs"
        assert again.result.portfolio_df.equals(res.portfolio_df)

    def test_flat_round_trip_makes_no_money(self) -> None:
        """A round trip on flat prices ends at the initial cash minus its costs."""
        flat = [100.0] * 10
        frame = make_bars(flat, opens=flat, highs=flat, lows=flat)

        def step(p: Probe, event: MarketEvent, k: int) -> None:
            if k == 1:
                p.orders.append(p.buy("A", 10))
            elif k == 5:
                p.orders.append(p.close_position("A"))  # type: ignore[arg-type]

        out = self.run(step, frame)
        res, broker = out.result, out.broker
        assert len(out.probe.fills) == 2 and broker.portfolio.qty[0] == 0, out.probe.fills
        costs = sum(f.commission + f.quantity * abs(f.price - 100.0) for f in out.probe.fills)
        initial = broker.portfolio.initial_cash
        assert _close(res.final_equity, initial - costs), (
            f"final equity {res.final_equity} != initial cash {initial} - costs {costs}"
        )
        assert res.final_equity <= initial + 1e-9, "a round trip on flat prices made money"
        assert res.trades_df.height == 1, res.trades_df

    def test_sessions(self) -> None:
        """A run over three days calls the session methods at each session's edges."""
        day0 = datetime(2024, 1, 2, 10)
        stamps = [day0 + timedelta(days=d, hours=h) for d in range(3) for h in range(3)]
        frame = make_bars(9, timestamps=stamps)
        broker = self.make_broker()
        calls: list[tuple[str, int]] = []
        for name in ("start_session", "end_session"):
            _spy(broker, name, calls)

        def step(p: Probe, event: MarketEvent, k: int) -> None:
            if k in (1, 2, 5):
                p.submit(Order("A", "buy", 2, time_in_force="day" if k == 2 else "gtc"))

        out = self.run(step, frame, broker)
        assert len(out.probe.orders) == 3
        if calls:  # the broker's methods could be replaced on the instance
            ns = [_ns(t) for t in stamps]
            starts = [ts for what, ts in calls if what == "start_session"]
            ends = [ts for what, ts in calls if what == "end_session"]
            assert starts == ns[::3] and ends == ns[2::3], calls

    # --- features ----------------------------------------------------------------------------
    def feature(
        self, name: str, place: Callable[[Probe], Any], frame: pl.DataFrame | None = None
    ) -> Outcome | None:
        """Run ``place(probe)`` on bar 1; return the outcome, or None once an unsupported
        feature has been checked to be refused (``NotImplementedError`` or rejections with a
        reason; ``replace`` and ``exits`` must raise)."""
        out = self.run(
            lambda p, event, k: p.attempt(name, lambda: place(p)) if k == 1 else None, frame
        )
        exc = out.probe.raised.get(name)
        if name in self.supports:
            assert exc is None, f"{name!r} is in supports but raised {exc!r}"
            refused = [o for o in out.probe.orders if o.status is OrderStatus.REJECTED]
            assert not refused, f"{name!r} is in supports but rejected {refused}"
            return out
        if exc is not None or name in ("replace", "exits"):
            assert isinstance(exc, NotImplementedError), (
                f"unsupported {name!r} must raise NotImplementedError, got {exc!r}"
            )
            return None
        for order in out.probe.orders:
            assert order.status is OrderStatus.REJECTED and order.reason, (
                f"{name!r} is not in supports: expected NotImplementedError or a rejection "
                f"with a reason, got {order!r} (declare it in supports?)"
            )
        assert not out.probe.fills, f"unsupported {name!r} filled: {out.probe.fills}"
        return None

    def test_limit_orders(self) -> None:
        """Limit orders fill at the limit or better once reached (or are refused)."""

        def place(p: Probe) -> list[Order]:
            return [p.broker.submit_order(_order("buy", 5, limit_price=x)) for x in (95.0, 1.0)]

        out = self.feature("limit", place, make_bars(_DIP))
        if out is not None:
            reached, never = out.probe.orders
            (fill,) = out.probe.fills_of(reached)
            assert fill.price <= 95.0 + 1e-9, f"a buy limit at 95 filled at {fill.price}"
            assert _bar(out.frame, fill.timestamp)["low"] <= 95.0, "95 was not reached there"
            assert never in out.broker.open_orders(), "an unreached limit must stay working"

    def test_stop_orders(self) -> None:
        """Stop orders fill at the stop or worse once reached (or are refused)."""

        def place(p: Probe) -> list[Order]:
            return [p.broker.submit_order(_order("buy", 5, stop_price=x)) for x in (103.0, 1e3)]

        out = self.feature("stop", place, make_bars(_DIP))
        if out is not None:
            reached, never = out.probe.orders
            (fill,) = out.probe.fills_of(reached)
            assert fill.price >= 103.0 - 1e-9, f"a buy stop at 103 filled at {fill.price}"
            assert _bar(out.frame, fill.timestamp)["high"] >= 103.0, "103 was not reached there"
            assert never in out.broker.open_orders(), "an unreached stop must stay working"

    def test_brackets(self) -> None:
        """A bracket's take-profit closes the entry and cancels its stop (or is refused)."""

        def place(p: Probe) -> Any:
            return p.broker.submit_bracket(_order("buy", 10), stop_loss=50.0, take_profit=105.0)

        out = self.feature("bracket", place, make_bars(20))
        if out is not None:
            entry, stop, take = out.probe.orders
            assert [f.order_id for f in out.probe.fills] == [entry.order_id, take.order_id]
            assert out.probe.fills[1].price >= 105.0 - 1e-9, out.probe.fills
            assert stop.status is OrderStatus.CANCELLED, "the take-profit cancels the stop"

    def test_oco(self) -> None:
        """Of two OCO orders one fills and the other is cancelled (or OCO is refused)."""
        limit = "limit" in self.supports  # limits: one marketable, one far away

        def place(p: Probe) -> Any:
            first = _order("buy", 3, limit_price=1e3 if limit else None)
            other = _order("buy", 4, limit_price=1.0 if limit else None)
            return p.broker.submit_oco(first, other)

        out = self.feature("oco", place)
        if out is not None:
            states = sorted(o.status.value for o in out.probe.orders)
            assert states == ["cancelled", "filled"], f"one fills, the other is cancelled: {states}"

    def test_oto(self) -> None:
        """An OTO child fills after its parent (or OTO is refused)."""

        def place(p: Probe) -> Any:
            return p.broker.submit_oto(_order("buy", 10), _order("sell", 10))

        out = self.feature("oto", place)
        if out is not None:
            parent, child = out.probe.orders
            assert [f.order_id for f in out.probe.fills] == [parent.order_id, child.order_id]

    def test_replace(self) -> None:
        """Replacing keeps the id and changes the quantity (or raises NotImplementedError)."""

        def place(p: Probe) -> Any:
            order = p.broker.submit_order(_order("buy", 10))
            p.orders.append(order)
            p.attempt("unknown id", lambda: p.broker.replace_order(10**9, quantity=1))
            return p.broker.replace_order(order.order_id, quantity=20)

        out = self.feature("replace", place)
        if out is not None:
            first, *rest = out.probe.orders
            assert all(o.order_id == first.order_id for o in rest), "replace keeps the id"
            assert [f.quantity for f in out.probe.fills] == [20.0], out.probe.fills
            exc = out.probe.raised.get("unknown id")
            assert isinstance(exc, ValueError), (
                f"replacing an unknown id must raise ValueError: {exc!r}"
            )

    def test_exits(self) -> None:
        """A take-profit exit closes the position (or ``set_exits`` raises NotImplementedError)."""

        def place(p: Probe) -> Any:
            p.broker.set_exits("A", ExitRules(take_profit=0.03))
            return p.broker.submit_order(_order("buy", 10))

        out = self.feature("exits", place, make_bars(20))
        if out is not None:
            sides = [(f.side, f.quantity) for f in out.probe.fills]
            assert sides == [("buy", 10.0), ("sell", 10.0)], f"no take-profit exit: {sides}"

    def test_short_selling(self) -> None:
        """A sale without a position opens a short, or is refused with a reason."""

        def step(p: Probe, event: MarketEvent, k: int) -> None:
            if k == 1:
                p.notes["cash"] = p.broker.portfolio.cash
                p.submit(_order("sell", 5))
            elif k == 5 and p.broker.portfolio.qty[0] < 0:
                p.submit(_order("buy", 5))

        out = self.run(step)
        short = out.probe.orders[0]
        if "short" not in self.supports:
            assert short.status in _ENDED and not out.probe.fills, f"a short sale filled: {short}"
            return
        (fill, cash, qty, _), cover = out.probe.at_fill
        assert fill.order_id == short.order_id and qty == -5, (fill, qty)
        assert _close(cash, out.probe.notes["cash"] + 5 * fill.price - fill.commission), cash
        assert cover[2] == 0, "the cover did not close the short"


# --- checks shared by the tests --------------------------------------------------------------
class _Listener:
    """A :class:`~ml4t.backtest.BrokerListener` that records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Order, Any]] = []

    def order_filled(self, order: Order, fill: object) -> None:
        self.calls.append(("filled", order, fill))

    def order_rejected(self, order: Order, reason: str) -> None:
        self.calls.append(("rejected", order, reason))

    def order_cancelled(self, order: Order, reason: str) -> None:
        self.calls.append(("cancelled", order, reason))


def protocol_members() -> list[str]:
    """Return the public members of :class:`OrderPort` and :class:`Broker`."""
    names: set[str] = set()
    for proto in (OrderPort, Broker):
        names.update(vars(proto).get("__annotations__", {}))
        names.update(
            k
            for k, v in vars(proto).items()
            if not k.startswith("_") and (callable(v) or isinstance(v, property))
        )
    return sorted(names)


def check_record(row: Any) -> None:
    """Check an ``order_records()`` row: :class:`OrderRecord`'s fields, of the right types.

    A row is an ``OrderRecord`` or a plain tuple of its fields in the same order.
    """
    width = len(OrderRecord._fields)
    assert isinstance(row, tuple) and len(row) == width, (
        f"order_records() rows must be OrderRecords or tuples of its {width} fields, got {row!r}"
    )
    rec = OrderRecord._make(row)
    assert _integer(rec.timestamp_ns) and _integer(rec.order_id), rec
    assert isinstance(rec.event, str) and rec.event, rec
    for name in ("asset_id", "side", "order_type", "time_in_force", "reason", "tag"):
        value = getattr(rec, name)
        assert value is None or isinstance(value, str), f"{name} must be str or None: {rec}"
    for name in ("quantity", "limit_price", "stop_price"):
        value = getattr(rec, name)
        assert value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool)), (
            rec
        )
    assert rec.side in (None, "buy", "sell"), rec


def check_accounted(out: Outcome) -> None:
    """Check every order placed is filled, ended with a reported reason, or still working."""
    probe, working = out.probe, out.broker.open_orders()
    told = {id(o): r for o, r in [*probe.rejected, *probe.cancelled]}
    for order in probe.orders:
        if order is None:
            continue
        filled = sum(f.quantity for f in probe.fills_of(order))
        if order.status is OrderStatus.FILLED:
            assert _close(filled, order.quantity), f"{order!r} is filled but fills sum to {filled}"
        elif order.status in _ENDED:
            assert order.reason and told.get(id(order)) == order.reason, (
                f"{order!r} ended without telling the strategy its reason ({order.reason!r})"
            )
        else:
            assert order in working, f"{order!r} is open but not in open_orders()"


def check_books(out: Outcome) -> None:
    """Check ``portfolio_df`` against cash and positions rebuilt from ``fills_df`` and closes."""
    res, pf = out.result, out.broker.portfolio
    book = res.portfolio_df
    equity = book["cash"] + book["accrued_dividends"] + book["positions_value"]
    worst = (book["equity"] - equity).abs().max()
    assert not isinstance(worst, float) or worst < 1e-6, (
        f"equity != cash + accrued + positions value (off by {worst})"
    )
    frame = (
        out.frame
        if "asset_id" in out.frame.columns
        else out.frame.with_columns(asset_id=pl.lit("A"))
    )
    closes: dict[datetime, dict[str, float]] = {}
    for ts, asset, close in frame.select("timestamp", "asset_id", "close").iter_rows():
        closes.setdefault(ts, {})[asset] = close
    assert book.height == len(closes), f"portfolio_df: {book.height} rows, {len(closes)} bars"
    moves: dict[datetime, list[tuple[str, float, float]]] = {}  # (asset, qty, cash) changes
    cols = ("timestamp", "asset_id", "side", "quantity", "price", "commission")
    for ts, asset, side, q, price, comm in res.fills_df.select(cols).iter_rows():
        signed = q if side == "buy" else -q
        moves.setdefault(ts, []).append((asset, signed, -signed * price - comm))
    events = res.account_events_df.filter(pl.col("event") != "dividend_ex")
    for ts, asset, amount in events.select("timestamp", "asset_id", "amount").iter_rows():
        moves.setdefault(ts, []).append((asset, 0.0, amount))
    cash, qty, last = pf.initial_cash, dict.fromkeys(pf.asset_ids, 0.0), {}
    for row, (ts, prices) in enumerate(sorted(closes.items())):
        for asset, signed, amount in moves.get(ts, ()):
            qty[asset] += signed
            cash += amount
        last.update(prices)
        value = sum(q * last[a] for a, q in qty.items() if q)
        assert _close(book["cash"][row], cash), f"cash at {ts}: {book['cash'][row]} != {cash}"
        assert _close(book["positions_value"][row], value), f"positions value at {ts}"
    assert _close(pf.cash, cash), f"portfolio cash {pf.cash} != {cash} from the fills"
    assert all(_close(pf.qty[pf.code_of[a]], q) for a, q in qty.items()), "positions != fills"
    assert all(order.order_id >= 0 for order in out.probe.orders), "an order without an id"


def _spy(broker: Broker, name: str, calls: list[tuple[str, int]]) -> None:
    original = getattr(broker, name)

    def spy(ts_ns: int, *rest: Any) -> Any:
        calls.append((name, int(ts_ns)))
        return original(ts_ns, *rest)

    with contextlib.suppress(AttributeError):  # slots: the run still exercises the method
        setattr(broker, name, spy)


def _order(side: str, qty: float, limit_price: float | None = None, **kw: float) -> Order:
    """Return an order of asset ``"A"``: limit, stop (``stop_price=``) or market."""
    kind = "limit" if limit_price else "stop" if kw else "market"
    return Order("A", side, qty, kind, limit_price, kw.get("stop_price"))


def _ns(t: datetime) -> int:
    return int((t - datetime(1970, 1, 1)) / timedelta(microseconds=1)) * 1000


def _bar(frame: pl.DataFrame, ts: datetime) -> dict[str, Any]:
    return frame.filter(pl.col("timestamp") == ts).row(0, named=True)


def _integer(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
