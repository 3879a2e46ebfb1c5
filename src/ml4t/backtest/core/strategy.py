"""The per-bar strategy base class and its trading helpers.

Subclass :class:`Strategy` and implement :meth:`Strategy.on_market_data`. Helpers read
the portfolio and submit orders through the broker; sizing helpers price orders at the
asset's latest close (the bar being handled), and the order then fills according to the
broker's fill timing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import polars as pl

from .orders import Order, OrderSide, OrderType, TimeInForce

if TYPE_CHECKING:
    from .broker import OrderPort
    from .calendar import Session
    from .context import Context
    from .events import FillEvent, MarketEvent, TradeEvent
    from .portfolio import Portfolio
    from .runtime import Runner, RunView

__all__ = ["Strategy"]


class Strategy:
    """Base class of per-bar strategies.

    Lifecycle (all optional except :meth:`on_market_data`): :meth:`on_start`, then per
    session :meth:`before_trading_start`, per bar :meth:`on_market_data`, per fill
    :meth:`on_fill` (then :meth:`on_trade` when the fill opened or closed a round trip),
    per rejection :meth:`on_order_rejected`, per cancellation or expiry
    :meth:`on_order_cancelled`, per session :meth:`after_trading_end`, and finally
    :meth:`on_end`. :meth:`record` keeps values of your own in ``result.records_df``.

    Notes
    -----
    Quantities are positive; ``sell`` opens a short only when the broker allows shorting.
    Closing helpers (``close_position``, ``reduce_position``, ``sell_percent``) place
    reduce-only orders: at fill time they are capped at the position then held and
    cancelled when it is gone, so a close never reverses a position. Target helpers
    (``order_target_*``, ``rebalance_to_weights``, ``size_by_confidence``) place orders
    that carry their target position and are resolved against the position at fill
    time. Both ignore orders still working when they are placed. With a broker set to
    ``order_sizing="at_order"`` they place plain orders of the quantity computed now
    instead, as Backtrader and Zipline do (the presets keep ``"at_fill"``).
    """

    _run: RunView
    _broker: OrderPort
    _pf: Portfolio
    _pos: dict[str, float]
    _at_fill: bool

    # --- lifecycle -----------------------------------------------------------------------
    def on_start(self) -> None:
        """Run once before the first bar."""

    def before_trading_start(self, timestamp: datetime, context: Context) -> None:
        """Run once per session before its first bar; ``timestamp`` is that bar's time.

        Data and context are as of just before the session's first bar, and orders
        placed here can fill at that bar's open.
        """

    def on_market_data(self, event: MarketEvent, context: Context) -> None:
        """Handle one bar of one asset (after the bar has closed)."""
        raise NotImplementedError("a Strategy must implement on_market_data(event, context)")

    def on_fill(self, fill: FillEvent) -> None:
        """Run after each fill."""

    def on_trade(self, trade: TradeEvent) -> None:
        """Handle a round trip opened or closed (after the fill's :meth:`on_fill`).

        ``trade.status`` is ``"open"`` or ``"closed"``; a fill that reverses a position
        closes one trade and opens another (two calls). Backtrader's ``notify_trade``.
        """

    def on_order_rejected(self, order: Order, reason: str) -> None:
        """Run when an order is rejected; ``reason`` says why."""

    def on_order_cancelled(self, order: Order, reason: str) -> None:
        """Run when an order is cancelled or expires."""

    def after_trading_end(self, timestamp: datetime, context: Context) -> None:
        """Run once per session after its last bar; ``timestamp`` is that bar's time."""

    def on_end(self, result: Any) -> None:
        """Run once after the last bar with the :class:`BacktestResult`."""

    # --- state ---------------------------------------------------------------------------
    def compiled_runner(self, run: RunView) -> Runner | None:
        """Return a runner that runs this strategy whole in a kernel, or ``None``.

        A capability a strategy declares: the base class returns ``None`` and the per-bar
        loop runs it. :class:`~ml4t.backtest.SignalStrategy` returns its compiled runner
        when its rules, the broker's settings and the run allow it. Called once per run,
        before :meth:`on_start`.
        """
        return None

    def _bind(self, run: RunView) -> None:
        self._run = run
        self._broker = run.broker
        self._pf = run.broker.portfolio
        self._pos = self._pf.position_by_id
        self._at_fill = run.broker.order_sizing == "at_fill"

    @property
    def current_time(self) -> datetime:
        """Timestamp of the bar being handled."""
        clock = self._run.clock
        return clock.to_datetime(clock.now_ns)

    @property
    def session(self) -> Session | None:
        """The current trading session (date, open, close, early_close), or ``None``.

        Only with a calendar (``BacktestEngine(calendar="NYSE")``).
        """
        return self._run.session

    def get_position(self, asset_id: str) -> float:
        """Return the signed quantity held (0.0 when flat)."""
        return self._pos.get(asset_id, 0.0)

    @property
    def positions(self) -> dict[str, float]:
        """Return a copy of ``{asset_id: signed quantity}`` for non-zero positions."""
        return dict(self._pos)

    def get_position_value(self, asset_id: str) -> float:
        """Return the position's market value at the asset's latest close."""
        code = self._code(asset_id)
        q = self._pf.qty[code]
        return 0.0 if q == 0 else q * self._pf.price_of(code)

    def get_unrealized_pnl_pct(self, asset_id: str) -> float:
        """Return the open position's return since entry (0.0 when flat).

        Positive when the position is in profit, for longs and shorts alike.
        """
        code = self._code(asset_id)
        q = self._pf.qty[code]
        if q == 0:
            return 0.0
        avg = self._pf.avg_cost[code]
        return (self._pf.price_of(code) / avg - 1.0) * (1.0 if q > 0 else -1.0)

    def get_cash(self) -> float:
        """Return the cash balance."""
        return self._pf.cash

    def get_equity(self) -> float:
        """Return cash plus the market value of all positions at the latest closes."""
        return self._pf.equity()

    def history(self, asset_id: str | Sequence[str], field: str, n: int) -> np.ndarray:
        """Return the last ``n`` values of ``field``, oldest first, as a read-only array.

        ``field`` is a price column (``open``, ``high``, ``low``, ``close``, ``volume``),
        a signal, an indicator or ``"timestamp"`` (the bars' times, int64 nanoseconds
        since the epoch in UTC). Only bars at or before the current timestamp are
        returned, so fewer than ``n`` values come back near the start of the data.

        With one asset id the result is 1-D: that asset's last ``n`` bars. With a list of
        asset ids it is the cross-section: shape ``(m, len(asset_ids))`` over the last
        ``m <= n`` timestamps of the data, ``NaN`` where an asset has no bar. Values are
        views of the feed's columns where the layout allows, never a copy of a column.
        """
        if n <= 0:
            raise ValueError(f"history needs n > 0, got {n}")
        hist = self._run.history
        if isinstance(asset_id, str):
            values: np.ndarray = hist.get(self._code(asset_id), field, int(n))
            return values
        matrix: np.ndarray = hist.cross_section([self._code(a) for a in asset_id], field, int(n))
        return matrix

    def history_frame(
        self, asset_id: str, n: int, fields: Sequence[str] | None = None
    ) -> pl.DataFrame:
        """Return the asset's last ``n`` bars at or before now as a polars frame.

        Columns: ``timestamp`` (in the data's time zone) and ``fields`` (default: the
        price columns, then the feed's signals and indicators), oldest row first; fewer
        than ``n`` rows near the start of the data. The same values as :meth:`history`.
        """
        clock = self._run.clock
        names = (
            list(fields)
            if fields is not None
            else [
                "open",
                "high",
                "low",
                "close",
                "volume",
                *clock.signal_names,
                *clock.indicator_names,
            ]
        )
        ts = self.history(asset_id, "timestamp", n)
        columns = {name: self.history(asset_id, name, n) for name in names}
        stamp = pl.Series("timestamp", ts, dtype=pl.Datetime("ns", "UTC"))
        if clock.timezone is None:
            stamp = stamp.dt.replace_time_zone(None)
        else:
            stamp = stamp.dt.convert_time_zone(clock.timezone)
        return pl.DataFrame([stamp, *(pl.Series(k, v) for k, v in columns.items())])

    def record(self, **values: Any) -> None:
        """Keep values of your own at the current timestamp, in ``result.records_df``.

        ``self.record(leverage=lev, longs=3)``: one column per name, one row per
        timestamp of the run; a value is carried forward until it is recorded again (as
        Zipline's ``record``). Numbers, booleans and strings make typed columns; other
        values are kept as they are (an ``Object`` column, left out of Parquet output).
        """
        self._run.record(values)

    # --- orders --------------------------------------------------------------------------
    def submit_order(self, order: Order) -> Order:
        """Submit an order; rejections are reported to :meth:`on_order_rejected`."""
        self._snapshot(order)
        submitted: Order = self._broker.submit_order(order)
        return submitted

    def _snapshot(self, order: Order) -> None:
        run = self._run
        code = self._pf.code_of.get(order.asset_id)
        if code is not None:
            order._signals_snapshot = run.signals_now(code)
        order._context_snapshot = run.context_now()

    def buy(
        self,
        asset_id: str,
        quantity: float,
        limit_price: float | None = None,
        stop_price: float | None = None,
        time_in_force: TimeInForce | str = TimeInForce.GTC,
        tag: str | None = None,
        **kwargs: Any,
    ) -> Order:
        """Buy ``quantity`` units.

        The order type follows from the prices given: none -> market, ``limit_price`` ->
        limit, ``stop_price`` -> stop, both -> stop-limit, ``trail_amount`` or
        ``trail_percent`` -> trailing stop; ``order_type="market_on_open"`` /
        ``"market_on_close"`` pick those. ``expire_at`` (with ``time_in_force="gtd"``)
        sets a good-till-date expiry; ``reduce_only=True`` makes an order that can only
        reduce an open short (see :class:`~ml4t.backtest.Order`).
        """
        side = OrderSide.BUY
        return self.submit_order(
            _make(asset_id, side, quantity, limit_price, stop_price, time_in_force, tag, kwargs)
        )

    def sell(
        self,
        asset_id: str,
        quantity: float,
        limit_price: float | None = None,
        stop_price: float | None = None,
        time_in_force: TimeInForce | str = TimeInForce.GTC,
        tag: str | None = None,
        **kwargs: Any,
    ) -> Order:
        """Sell ``quantity`` units; the order type follows from the prices as in :meth:`buy`."""
        side = OrderSide.SELL
        return self.submit_order(
            _make(asset_id, side, quantity, limit_price, stop_price, time_in_force, tag, kwargs)
        )

    def buy_bracket(
        self,
        asset_id: str,
        quantity: float,
        stop_loss: float | None = None,
        take_profit: float | None = None,
        limit_price: float | None = None,
        tag: str | None = None,
        **kwargs: Any,
    ) -> tuple[Order, Order | None, Order | None]:
        """Buy with a protective stop-loss and/or take-profit (prices) as one bracket.

        The entry is a market order, or a limit order with ``limit_price``. The children
        (sell stop at ``stop_loss``, sell limit at ``take_profit``) work from the bar after
        the entry has filled, one cancelling the other; they carry the tags
        ``stop_loss`` / ``take_profit``, which become the trade's ``exit_reason``.
        Returns ``(entry, stop, take_profit)``.
        """
        return self._bracket(
            OrderSide.BUY, asset_id, quantity, stop_loss, take_profit, limit_price, tag, kwargs
        )

    def sell_bracket(
        self,
        asset_id: str,
        quantity: float,
        stop_loss: float | None = None,
        take_profit: float | None = None,
        limit_price: float | None = None,
        tag: str | None = None,
        **kwargs: Any,
    ) -> tuple[Order, Order | None, Order | None]:
        """Sell (short) with a buy stop-loss above and/or a buy take-profit below."""
        return self._bracket(
            OrderSide.SELL, asset_id, quantity, stop_loss, take_profit, limit_price, tag, kwargs
        )

    def _bracket(
        self,
        side: OrderSide,
        asset_id: str,
        quantity: float,
        stop_loss: float | None,
        take_profit: float | None,
        limit_price: float | None,
        tag: str | None,
        kwargs: dict[str, Any],
    ) -> tuple[Order, Order | None, Order | None]:
        tif = kwargs.pop("time_in_force", TimeInForce.GTC)
        entry = _make(asset_id, side, quantity, limit_price, None, tif, tag, kwargs)
        self._snapshot(entry)
        result: tuple[Order, Order | None, Order | None] = self._broker.submit_bracket(
            entry, stop_loss, take_profit
        )
        return result

    def submit_oco(self, *orders: Order) -> list[Order]:
        """Submit orders as one-cancels-other: the first fill cancels the others."""
        for order in orders:
            self._snapshot(order)
        group: list[Order] = self._broker.submit_oco(*orders)
        return group

    def submit_oto(self, parent: Order, child: Order) -> tuple[Order, Order]:
        """Submit ``parent``; ``child`` starts working once ``parent`` has filled."""
        self._snapshot(parent)
        self._snapshot(child)
        pair: tuple[Order, Order] = self._broker.submit_oto(parent, child)
        return pair

    def replace_order(self, order: Order | int, **changes: Any) -> Order:
        """Change a working order in place (quantity, prices, time in force, tag).

        The change applies from the next bar; raises ValueError if the order is not
        working or the change is invalid.
        """
        order_id = order.order_id if isinstance(order, Order) else int(order)
        replaced: Order = self._broker.replace_order(order_id, **changes)
        return replaced

    def set_exits(self, asset_id: str, rules: Any = None, **kwargs: Any) -> None:
        """Set position exits for one asset (``stop_loss=0.05, take_profit=0.1, ...``).

        Keywords are those of :class:`~ml4t.backtest.ExitRules`; ``set_exits(asset, None)``
        switches exits off for the asset. They apply to the open position at once.
        """
        if rules is None and kwargs:
            rules = kwargs
        self._broker.set_exits(asset_id, rules)

    def buy_percent(self, asset_id: str, percent: float, **kwargs: Any) -> Order:
        """Buy with ``percent`` (a fraction, 0.95 = 95 %) of the available cash.

        The quantity is ``percent * cash / latest close``; if the price moves before the
        fill, the broker's ``cash_policy`` decides between rejecting and resizing.
        """
        _check_fraction("percent", percent)
        qty = self._round(percent * self._pf.cash / self._unit_value(asset_id), asset_id)
        return self.buy(asset_id, qty, **kwargs)

    def sell_percent(self, asset_id: str, percent: float, **kwargs: Any) -> Order | None:
        """Sell ``percent`` (a fraction) of the current long position; None when not long.

        The order is reduce-only (see the class notes): it never sells more than the
        position held when it fills.
        """
        _check_fraction("percent", percent)
        held = self.get_position(asset_id)
        if held <= 0:
            return None
        kwargs.setdefault("reduce_only", self._at_fill)
        return self.sell(asset_id, self._round(percent * held, asset_id), **kwargs)

    def close_position(self, asset_id: str, tag: str | None = None) -> Order | None:
        """Close the whole position with a market order; return None when flat.

        The order is reduce-only: if something else (a stop, a margin call) closes or
        shrinks the position before it fills, it fills only what is left, or is
        cancelled with a reason (``on_order_cancelled``) when nothing is.
        """
        held = self.get_position(asset_id)
        if held == 0:
            return None
        side = OrderSide.SELL if held > 0 else OrderSide.BUY
        return self.submit_order(
            Order(asset_id, side, abs(held), tag=tag, reduce_only=self._at_fill)
        )

    def reduce_position(
        self, asset_id: str, fraction: float, tag: str | None = None
    ) -> Order | None:
        """Close ``fraction`` (0..1] of the position with a reduce-only market order."""
        _check_fraction("fraction", fraction)
        held = self.get_position(asset_id)
        qty = self._round(abs(held) * fraction, asset_id)
        if held == 0:
            return None
        side = OrderSide.SELL if held > 0 else OrderSide.BUY
        return self.submit_order(Order(asset_id, side, qty, tag=tag, reduce_only=self._at_fill))

    def order_target_quantity(
        self, asset_id: str, target: float, tag: str | None = None
    ) -> Order | None:
        """Trade to hold ``target`` units (negative = short); None when already there.

        The order carries its target: at fill time it trades the position then held to
        the target (see the class notes).
        """
        held = self.get_position(asset_id)
        delta = self._round_signed(target - held, asset_id)
        if delta == 0:
            return None
        return self.submit_order(self._target_order(asset_id, held, delta, tag))

    def _target_order(self, asset_id: str, held: float, delta: float, tag: str | None) -> Order:
        """Return the market order trading ``held`` by ``delta`` toward its target."""
        side = OrderSide.BUY if delta > 0 else OrderSide.SELL
        target = held + delta if self._at_fill else None
        return Order(asset_id, side, abs(delta), tag=tag, target_quantity=target)

    def order_target_value(
        self, asset_id: str, value: float, tag: str | None = None
    ) -> Order | None:
        """Trade to hold ``value`` currency of the asset at its latest close."""
        return self.order_target_quantity(asset_id, value / self._unit_value(asset_id), tag=tag)

    @overload
    def order_target_percent(
        self, asset_id: str, percent: float, tag: str | None = None
    ) -> Order | None: ...

    @overload
    def order_target_percent(
        self, asset_id: Mapping[str, float], percent: None = None, tag: str | None = None
    ) -> list[Order]: ...

    @overload
    def order_target_percent(
        self, asset_id: Sequence[str], percent: Sequence[float] | np.ndarray, tag: str | None = None
    ) -> list[Order]: ...

    def order_target_percent(
        self,
        asset_id: str | Mapping[str, float] | Sequence[str],
        percent: float | Sequence[float] | np.ndarray | None = None,
        tag: str | None = None,
    ) -> Order | list[Order] | None:
        """Trade so the position is ``percent`` (a fraction) of current equity.

        Several assets at once: ``order_target_percent({"AAPL": 0.1, "MSFT": 0.05})``, or
        a list of assets with an array of percents,
        ``order_target_percent(["AAPL", "MSFT"], np.array([0.1, 0.05]))`` (the target
        quantities are computed with numpy). Equity is measured once for all of them and
        sells are submitted before buys, so the cash they free is there for the buys;
        assets not listed are left alone (use :meth:`rebalance_to_weights` to close them).
        Returns the orders placed.
        """
        if isinstance(asset_id, Mapping):
            return self._trade_to_weights(asset_id, tag)
        if not isinstance(asset_id, str):
            assets = list(asset_id)
            if percent is None or isinstance(percent, int | float):
                raise TypeError(
                    "order_target_percent(assets, percents) needs one percent per asset"
                )
            weights = np.asarray(percent, dtype=np.float64)
            if weights.shape != (len(assets),):
                raise ValueError(
                    f"order_target_percent: {len(assets)} assets but percents of shape "
                    f"{weights.shape}"
                )
            return self._trade_to_weights(dict(zip(assets, weights.tolist(), strict=True)), tag)
        if percent is None:
            raise TypeError("order_target_percent(asset_id, percent) needs a percent")
        if not isinstance(percent, int | float):
            raise TypeError("order_target_percent(asset_id, percent): percent must be a number")
        return self.order_target_value(asset_id, percent * self._pf.equity(), tag=tag)

    def rebalance_to_weights(
        self, weights: Mapping[str, float], tag: str | None = None
    ) -> list[Order]:
        """Trade every asset to ``weight * equity``; held assets not listed go to zero.

        Equity is measured once, sells are submitted before buys.
        """
        targets = dict.fromkeys(self._pos, 0.0)
        targets.update(weights)
        return self._trade_to_weights(targets, tag)

    def _trade_to_weights(self, weights: Mapping[str, float], tag: str | None) -> list[Order]:
        equity = self._pf.equity()
        orders: list[tuple[float, str]] = []
        pf = self._pf
        code_of, qty_of, price_of, mult = pf.code_of, pf.qty, pf.price_of, pf.mult
        exact = self._broker.exact_quantities
        for asset_id, weight in weights.items():
            if not math.isfinite(weight):
                raise ValueError(f"weight for {asset_id!r} must be finite, got {weight!r}")
            code = code_of.get(asset_id)
            if code is None or not exact:  # the general path: lots, errors for unknown ids
                qty = weight * equity / self._unit_value(asset_id) if weight else 0.0
                delta = self._round_signed(qty - self.get_position(asset_id), asset_id)
            else:  # fractional without lots: no rounding; same arithmetic, fewer calls
                if weight:
                    price = price_of(code)
                    if not price > 0:
                        self._price(asset_id)  # raises the usual error
                    qty = weight * equity / (price * mult[code])
                else:
                    qty = 0.0
                delta = qty - qty_of[code]
                if abs(delta) < 1e-12:
                    delta = 0.0
            if delta != 0:
                orders.append((delta, asset_id))
        out = []
        pos = self._pos
        for delta, asset_id in sorted(orders, key=lambda t: t[0] > 0):
            held = pos.get(asset_id, 0.0)
            out.append(self.submit_order(self._target_order(asset_id, held, delta, tag)))
        return out

    @overload
    def size_by_confidence(
        self,
        asset_id: str,
        confidence: float,
        max_percent: float = 1.0,
        min_confidence: float = 0.0,
        tag: str | None = None,
    ) -> Order | None: ...

    @overload
    def size_by_confidence(
        self,
        asset_id: Mapping[str, float],
        confidence: None = None,
        max_percent: float = 1.0,
        min_confidence: float = 0.0,
        tag: str | None = None,
    ) -> list[Order]: ...

    def size_by_confidence(
        self,
        asset_id: str | Mapping[str, float],
        confidence: float | None = None,
        max_percent: float = 1.0,
        min_confidence: float = 0.0,
        tag: str | None = None,
    ) -> Order | list[Order] | None:
        """Target a position of ``max_percent * scaled confidence`` of equity.

        Confidence is rescaled linearly from ``[min_confidence, 1]`` to ``[0, 1]`` and
        clipped; a NaN confidence places no order. Several assets at once:
        ``size_by_confidence({"AAPL": 0.9, "MSFT": 0.6}, max_percent=0.1)`` sizes each
        the same way, with equity measured once and sells before buys (NaN entries are
        skipped, unlisted assets left alone).
        """
        if not 0 <= min_confidence < 1:
            raise ValueError(f"min_confidence must be in [0, 1), got {min_confidence!r}")

        def scaled(c: float) -> float:
            return min(max((c - min_confidence) / (1 - min_confidence), 0.0), 1.0)

        if isinstance(asset_id, Mapping):
            weights = {a: max_percent * scaled(c) for a, c in asset_id.items() if math.isfinite(c)}
            return self._trade_to_weights(weights, tag)
        if confidence is None:
            raise TypeError("size_by_confidence(asset_id, confidence) needs a confidence")
        if not math.isfinite(confidence):
            return None
        return self.order_target_percent(asset_id, max_percent * scaled(confidence), tag=tag)

    def cancel_order(self, order: Order | int) -> bool:
        """Cancel a working order (by object or id); return False if it is not working."""
        order_id = order.order_id if isinstance(order, Order) else int(order)
        return bool(self._broker.cancel_order(order_id))

    def get_open_orders(self, asset_id: str | None = None) -> list[Order]:
        """Return working orders, optionally only those of ``asset_id``."""
        orders: list[Order] = self._broker.open_orders(asset_id)
        return orders

    # --- internals ----------------------------------------------------------------------
    def _code(self, asset_id: str) -> int:
        code = self._pf.code_of.get(asset_id)
        if code is None:
            raise KeyError(f"unknown asset {asset_id!r}")
        return code

    def _price(self, asset_id: str) -> float:
        price = self._pf.price_of(self._code(asset_id))
        if not price > 0:
            raise ValueError(f"no price for {asset_id!r} yet: it has had no bar at or before now")
        return price

    def _unit_value(self, asset_id: str) -> float:
        """Return the notional of one unit: latest close times the contract multiplier."""
        return self._price(asset_id) * self._pf.mult[self._code(asset_id)]

    def _round(self, qty: float, asset_id: str | None = None) -> float:
        if asset_id is not None:
            return float(self._broker.round_quantity(asset_id, qty))
        return qty if self._broker.fractional else float(math.floor(qty + 1e-9))

    def _round_signed(self, qty: float, asset_id: str | None = None) -> float:
        if abs(qty) < 1e-12:
            return 0.0
        return math.copysign(self._round(abs(qty), asset_id), qty)


def _make(
    asset_id: str,
    side: OrderSide,
    quantity: float,
    limit_price: float | None,
    stop_price: float | None,
    tif: TimeInForce | str,
    tag: str | None,
    extra: dict[str, Any] | None = None,
) -> Order:
    extra = dict(extra or {})
    allowed = {"order_type", "trail_amount", "trail_percent", "expire_at", "reduce_only"}
    unknown = set(extra) - allowed
    if unknown:
        raise TypeError(f"unexpected order arguments {sorted(unknown)}; allowed: {sorted(allowed)}")
    kind = extra.pop("order_type", None)
    if kind is None:
        if extra.get("trail_amount") is not None or extra.get("trail_percent") is not None:
            kind = OrderType.TRAILING_STOP
        elif limit_price is not None and stop_price is not None:
            kind = OrderType.STOP_LIMIT
        elif limit_price is not None:
            kind = OrderType.LIMIT
        elif stop_price is not None:
            kind = OrderType.STOP
        else:
            kind = OrderType.MARKET
    if extra.get("expire_at") is not None and tif == TimeInForce.GTC:
        tif = TimeInForce.GTD
    return Order(asset_id, side, quantity, kind, limit_price, stop_price, tif, tag, **extra)


def _check_fraction(name: str, value: float) -> None:
    if not (math.isfinite(value) and 0 < value <= 1):
        raise ValueError(f"{name} must be a fraction in (0, 1], got {value!r}")
