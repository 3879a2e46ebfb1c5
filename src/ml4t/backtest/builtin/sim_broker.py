"""The simulation broker: fills orders against bars under the fill contract (DESIGN §4).

Per timestamp the engine calls :meth:`SimulationBroker.process_open` before the strategy
sees the bar and :meth:`SimulationBroker.process_close` after it. Orders placed while
handling bar *t* fill against bar *t+1* by default (market orders at its open), or at bar
*t*'s close with ``fill_timing="same_bar_close"``. Within one phase, orders that reduce a
position are filled before orders that open or grow one, so freed cash can be reused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..core.broker import BrokerListener, CommissionModel, ImpactModel, SlippageModel
from ..core.clock import Clock
from ..core.data import PRICE_COLUMNS, Chunk, row_of
from ..core.events import FillEvent
from ..core.orders import Order, OrderStatus, OrderType, TimeInForce
from ..core.portfolio import Portfolio
from ..errors import ConfigError
from ..hookspecs import hookimpl
from ..plugins import KINDS
from .commission import NoCommission
from .impact import NoImpact
from .slippage import NoSlippage

if TYPE_CHECKING:
    from ..plugins import PluginRegistry

__all__ = ["SimulationBroker", "ml4t_make_broker", "ml4t_register_brokers"]

FILL_TIMINGS = ("next_bar_open", "same_bar_close")
CASH_POLICIES = ("reject", "resize")
_EPS = 1e-9
#: cost-model kind -> (attribute, default object factory)
_MODELS: dict[str, tuple[str, Callable[[], Any]]] = {
    "commission": ("commission_model", NoCommission),
    "slippage": ("slippage_model", NoSlippage),
    "impact": ("impact_model", NoImpact),
}


class SimulationBroker:
    """Fill orders against historical bars and keep the books.

    Parameters
    ----------
    initial_cash : float, default 100_000
        Starting cash; must be positive.
    commission : CommissionModel, str or dict, optional
        A model object (``PercentageCommission(0.001)``), a registry name
        (``"per_share"``, or the class name ``"PerShareCommission"``) or
        ``{"model": "per_share", "params": {"cost_per_share": 0.005}}``. Names resolve
        through the plugin registry (``ml4t-backtest plugins`` lists them); the engine
        resolves them again through its own plugins, so a plugin passed to the engine or
        a blocked one is honoured. Default: no commission.
    slippage : SlippageModel, str or dict, optional
        As ``commission``, for slippage (``fixed``, ``percentage``). Default: none.
    impact : ImpactModel, str or dict, optional
        As ``commission``, for market impact (e.g. ``AlmgrenChrissImpact`` from the
        ``ml4t-backtest-impact`` plugin). Applied after slippage to market and stop fills.
        Default: none.
    fill_timing : {"next_bar_open", "same_bar_close"}
        When market orders fill: the next bar's open (default; Backtrader's convention) or
        the signal bar's close (VectorBT's default).
    fractional : bool, default True
        Allow fractional quantities. With False, sizing helpers floor to whole units and
        a non-integer order is rejected.
    allow_short : bool, default False
        Allow sells beyond the position (short positions; proceeds are credited to cash,
        no margin is modelled yet). With False, such sells are rejected.
    cash_policy : {"reject", "resize"}
        What to do with a buy that costs more than the cash available at fill time:
        reject it (default) or shrink it to what the cash covers, commission included.

    Notes
    -----
    Limit orders fill at the limit or better (the open when it gaps through), without
    slippage. Stop orders trigger when the bar's range reaches the stop (the open when it
    gaps through) and then fill like market orders, with slippage. Every rejection reaches
    the strategy's ``on_order_rejected`` with a reason and is recorded in the result.
    """

    def __init__(
        self,
        initial_cash: float = 100_000.0,
        commission: Any = None,
        slippage: Any = None,
        impact: Any = None,
        fill_timing: str = "next_bar_open",
        fractional: bool = True,
        allow_short: bool = False,
        cash_policy: str = "reject",
    ) -> None:
        initial_cash = float(initial_cash)
        if not math.isfinite(initial_cash) or initial_cash <= 0:
            raise ConfigError(f"initial_cash must be a positive number, got {initial_cash!r}")
        if fill_timing not in FILL_TIMINGS:
            raise ConfigError(f"fill_timing must be one of {FILL_TIMINGS}, got {fill_timing!r}")
        if cash_policy not in CASH_POLICIES:
            raise ConfigError(f"cash_policy must be one of {CASH_POLICIES}, got {cash_policy!r}")
        self.initial_cash = initial_cash
        self.commission_model: CommissionModel = NoCommission()
        self.slippage_model: SlippageModel = NoSlippage()
        self.impact_model: ImpactModel = NoImpact()
        self._specs = {"commission": commission, "slippage": slippage, "impact": impact}
        named = {k: v for k, v in self._specs.items() if v is not None}
        if any(isinstance(v, str | Mapping) for v in named.values()):
            from ..plugins import get_plugin_manager

            self.resolve_models(get_plugin_manager().registry, only_given=True)
        else:
            self.resolve_models(None, only_given=True)
        self.fill_timing = fill_timing
        self.fractional = bool(fractional)
        self.allow_short = bool(allow_short)
        self.cash_policy = cash_policy
        self.has_pending = False
        self._pending: list[Order] = []
        self._next_id = 0
        self._listener: BrokerListener | None = None
        self._clock: Clock | None = None
        self.order_log: list[tuple[Any, ...]] = []
        self.portfolio = Portfolio(initial_cash, [])

    def resolve_models(
        self, registry: PluginRegistry | None, only_given: bool = False, **specs: Any
    ) -> None:
        """Build the cost models from their specs through ``registry``.

        ``specs`` (``commission=``, ``slippage=``, ``impact=``) replace the specs given at
        construction. Model objects are used as given. Names, ``{model, params}`` mappings
        and (unless ``only_given``) the defaults left as ``None`` resolve through the
        registry, so a plugin that registers ``"none"`` replaces the default and a blocked
        builtin is an error. The engine calls this once, at construction, with its own
        registry.
        """
        unknown = set(specs) - set(_MODELS)
        if unknown:
            raise ConfigError(f"unknown cost model kinds {sorted(unknown)}; use {list(_MODELS)}")
        self._specs.update(specs)
        for kind, (attr, default) in _MODELS.items():
            spec = self._specs[kind]
            if spec is None and (only_given or registry is None):
                setattr(self, attr, default())
            elif registry is None or not isinstance(spec, str | Mapping | None):
                if spec is not None:
                    _check_model(spec, kind)
                    setattr(self, attr, spec)
            else:
                setattr(self, attr, registry.create(kind, "none" if spec is None else spec))
        self._impact_on = not isinstance(self.impact_model, NoImpact)

    def settings(self) -> dict[str, Any]:
        """Return the broker settings (recorded in the result's metadata)."""
        return {
            "initial_cash": self.initial_cash,
            "commission": repr(self.commission_model),
            "slippage": repr(self.slippage_model),
            "impact": repr(self.impact_model),
            "fill_timing": self.fill_timing,
            "fractional": self.fractional,
            "allow_short": self.allow_short,
            "cash_policy": self.cash_policy,
        }

    # --- set-up -------------------------------------------------------------------
    def setup(self, asset_ids: Sequence[str], listener: BrokerListener, clock: Clock) -> None:
        """Create the portfolio for a run and reset order state."""
        self.portfolio = Portfolio(self.initial_cash, asset_ids)
        self._listener = listener
        self._clock = clock
        self._pending = []
        self.has_pending = False
        self._next_id = 0
        self.order_log = []

    # --- orders ---------------------------------------------------------------------
    def submit_order(self, order: Order) -> Order:
        """Accept an order placed at the current timestamp, or reject it with a reason."""
        clock = self._clock
        if clock is None or self._listener is None:
            raise RuntimeError("orders can only be submitted while a backtest runs")
        order.order_id = self._next_id
        self._next_id += 1
        order._created_ts = clock.now_ns
        code = self.portfolio.code_of.get(order.asset_id)
        problem = order.validation_error()
        if code is None:
            known = self.portfolio.asset_ids
            shown = ", ".join(map(repr, known[:10])) + (" ..." if len(known) > 10 else "")
            problem = f"unknown asset {order.asset_id!r}; known assets: {shown}"
        elif not self.fractional and order.quantity != math.floor(order.quantity):
            problem = f"fractional quantity {order.quantity:g} while fractional=False"
        self._log(order, "submitted", None)
        if problem is not None:
            self._reject(order, problem)
            return order
        order._code = code  # type: ignore[assignment]
        self._pending.append(order)
        self.has_pending = True
        return order

    def cancel_order(self, order_id: int) -> bool:
        """Cancel a working order; return False if it is not working."""
        for order in self._pending:
            if order.order_id == order_id and order.status is OrderStatus.PENDING:
                order.status = OrderStatus.CANCELLED
                order.reason = "cancelled by the strategy"
                self._log(order, "cancelled", order.reason)
                self._drop_done()
                assert self._listener is not None
                self._listener.order_cancelled(order, order.reason)
                return True
        return False

    def open_orders(self, asset_id: str | None = None) -> list[Order]:
        """Return the working orders, optionally only those of ``asset_id``."""
        return [o for o in self._pending if asset_id is None or o.asset_id == asset_id]

    # --- fill phases --------------------------------------------------------------------
    def process_open(self, chunk: Chunk, i: int) -> None:
        """Match orders from earlier bars against timestamp ``i`` (before the strategy)."""
        ts = chunk.ts[i]
        close_only = self.fill_timing == "same_bar_close"
        todo = []
        for order in self._pending:
            if order._created_ts >= ts or (close_only and order.order_type is OrderType.MARKET):
                continue
            row = row_of(chunk, i, order._code)
            if row >= 0:
                todo.append((order, row))
        self._fill_batch(chunk, todo, at_close=False)

    def process_close(self, chunk: Chunk, i: int) -> None:
        """Fill market orders at this timestamp's close (``same_bar_close`` only)."""
        if self.fill_timing != "same_bar_close":
            return
        todo = []
        for order in self._pending:
            if order.order_type is OrderType.MARKET:
                row = row_of(chunk, i, order._code)
                if row >= 0:
                    todo.append((order, row))
        self._fill_batch(chunk, todo, at_close=True)

    def end_session(self, last_ts_ns: int) -> None:
        """Expire DAY orders when the session whose last bar is ``last_ts_ns`` ends.

        An order placed on that last bar has not had a chance to fill yet (it fills from
        the next bar on) and stays working through the next session.
        """
        expired = [
            o
            for o in self._pending
            if o.time_in_force is TimeInForce.DAY and o._created_ts < last_ts_ns
        ]
        for order in expired:
            order.status = OrderStatus.EXPIRED
            order.reason = "expired: DAY order not filled by the end of its session"
            self._log(order, "expired", order.reason)
            assert self._listener is not None
            self._listener.order_cancelled(order, order.reason)
        if expired:
            self._drop_done()

    # --- internals ----------------------------------------------------------------------
    def _fill_batch(self, chunk: Chunk, todo: list[tuple[Order, int]], at_close: bool) -> None:
        if not todo:
            return
        qty = self.portfolio.qty
        # exits (orders that shrink the position) before entries; otherwise FIFO
        todo.sort(key=lambda t: (qty[t[0]._code] * t[0].side.sign >= 0, t[0].order_id))
        for order, row in todo:
            if order.status is OrderStatus.PENDING:
                self._try_fill(chunk, order, row, at_close)
        self._drop_done()

    def _base_price(self, chunk: Chunk, order: Order, row: int, at_close: bool) -> float | None:
        px = chunk.px
        if at_close:
            return px["close"][row]  # type: ignore[no-any-return]
        o = px["open"][row]
        kind = order.order_type
        if kind is OrderType.MARKET:
            return o  # type: ignore[no-any-return]
        buy = order.side.sign > 0
        if kind is OrderType.LIMIT:
            lim = order.limit_price
            assert lim is not None
            if buy:
                return o if o <= lim else (lim if px["low"][row] <= lim else None)
            return o if o >= lim else (lim if px["high"][row] >= lim else None)
        stop = order.stop_price
        assert stop is not None
        if buy:
            return o if o >= stop else (stop if px["high"][row] >= stop else None)
        return o if o <= stop else (stop if px["low"][row] <= stop else None)

    def _try_fill(self, chunk: Chunk, order: Order, row: int, at_close: bool) -> None:
        base = self._base_price(chunk, order, row, at_close)
        if base is None:
            return
        pf = self.portfolio
        code = order._code
        side = order.side.sign
        quantity = order.remaining_quantity
        impact = 0.0
        if order.order_type is OrderType.LIMIT:
            price = slipped = base
        else:
            price = self.slippage_model.fill_price(base, side, quantity, chunk.px["volume"][row])
            if not (price > 0 and math.isfinite(price)):
                self._reject(order, f"slippage model returned an invalid price {price!r}")
                return
            slipped = price
            if self._impact_on:
                got = self._impact(chunk, row, price, side, quantity)
                if not (isinstance(got, float) and math.isfinite(got) and got >= 0):
                    self._reject(
                        order,
                        f"impact model {self.impact_model!r} returned {got!r}; an impact must "
                        "be a finite number >= 0 (missing inputs such as volatility or ADV?)",
                    )
                    return
                impact = got
                price = slipped + side * impact
                if not price > 0:
                    self._reject(
                        order,
                        f"market impact {impact:g} per unit exceeds the price {slipped:g}",
                    )
                    return
        held = pf.qty[code]
        if side < 0 and not self.allow_short and quantity > held + _EPS * max(1.0, held):
            if held <= 0:
                self._reject(order, f"nothing to sell: no position in {order.asset_id}")
            else:
                self._reject(
                    order,
                    f"insufficient position: hold {held:g} {order.asset_id}, order sells "
                    f"{quantity:g} (short selling is disabled)",
                )
            return
        commission = self.commission_model.calculate(quantity, price)
        reason = None
        if side > 0:
            cost = quantity * price + commission
            if cost > pf.cash + _EPS * max(1.0, abs(pf.cash)):
                if self.cash_policy == "resize":
                    # sized at the price impact implies for the full order: conservative
                    quantity = self._affordable(price, pf.cash)
                    commission = self.commission_model.calculate(quantity, price)
                    reason = f"resized from {order.quantity:g}: insufficient cash"
                if quantity <= 0 or self.cash_policy == "reject":
                    self._reject(
                        order,
                        f"insufficient cash: need {cost:,.2f} to buy {order.remaining_quantity:g} "
                        f"{order.asset_id} at {price:,.4f}, have {pf.cash:,.2f}",
                    )
                    return
        impact_cost = quantity * impact
        slip_cost = quantity * abs(slipped - base)
        clock = self._clock
        assert clock is not None
        ts = clock.now_ns
        pf.apply_fill(
            code,
            side * quantity,
            price,
            commission,
            slip_cost,
            ts,
            clock.now_index,
            order,
            impact_cost,
        )
        order.filled_quantity += quantity
        order.avg_fill_price = price
        order.commission += commission
        order.slippage += slip_cost
        order.status = OrderStatus.FILLED
        order.reason = reason
        self._log(order, "filled", reason)
        fill = FillEvent(
            order.order_id,
            order.asset_id,
            clock.to_datetime(ts),
            order.side.value,
            quantity,
            price,
            commission,
            slip_cost,
            base,
            order.tag,
            impact_cost,
        )
        assert self._listener is not None
        self._listener.order_filled(order, fill)

    def _impact(self, chunk: Chunk, row: int, price: float, side: int, quantity: float) -> Any:
        bar = {c: chunk.px[c][row] for c in PRICE_COLUMNS}
        bar.update({c: chunk.sig[c][row] for c in chunk.sig.keys()})  # noqa: SIM118
        bar.update({c: chunk.ind[c][row] for c in chunk.ind.keys()})  # noqa: SIM118
        value = self.impact_model.price_impact(price, side, quantity, bar)
        try:
            return float(value)
        except (TypeError, ValueError):
            return value

    def _affordable(self, price: float, cash: float) -> float:
        if cash <= 0:
            return 0.0
        q = cash / price
        for _ in range(50):
            cost = q * price + self.commission_model.calculate(q, price)
            if cost <= cash * (1 + 1e-12):
                break
            q *= cash / cost * (1 - 1e-12)
        if not self.fractional:
            q = math.floor(q)
            while q > 0 and q * price + self.commission_model.calculate(q, price) > cash:
                q -= 1
        return max(q, 0.0)

    def _reject(self, order: Order, reason: str) -> None:
        order.status = OrderStatus.REJECTED
        order.reason = reason
        self._log(order, "rejected", reason)
        self._drop_done()
        assert self._listener is not None
        self._listener.order_rejected(order, reason)

    def _drop_done(self) -> None:
        self._pending = [o for o in self._pending if o.status is OrderStatus.PENDING]
        self.has_pending = bool(self._pending)

    def _log(self, order: Order, event: str, reason: str | None) -> None:
        clock = self._clock
        self.order_log.append(
            (
                clock.now_ns if clock else 0,
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

    def __repr__(self) -> str:
        s = self.settings()
        return "SimulationBroker(" + ", ".join(f"{k}={v}" for k, v in s.items()) + ")"


def _check_model(obj: Any, kind: str) -> None:
    method = KINDS[kind][1]
    if isinstance(obj, type) or not callable(getattr(obj, method, None)):
        raise ConfigError(
            f"{kind}: expected a {kind} model object (with {method}()), a registered name or "
            f"{{model: NAME, params: {{...}}}}, got {obj!r} ({type(obj).__name__})"
        )


@hookimpl(trylast=True)
def ml4t_register_brokers() -> Iterable[tuple[str, Callable[..., Any]]]:
    """Register ``simulation``."""
    return [("simulation", SimulationBroker)]


@hookimpl(trylast=True)
def ml4t_make_broker(spec: Mapping[str, Any], registry: PluginRegistry) -> Any:
    """Build the named broker from the registry, resolving its cost models there too.

    For a :class:`SimulationBroker`, named cost models in the parameters are resolved
    through ``registry`` (the engine's plugins), not the default set of plugins.
    """
    params = dict(spec.get("params") or {}) if isinstance(spec, Mapping) else {}
    model = spec.get("model") if isinstance(spec, Mapping) else spec
    provider = registry.lookup("broker", model) if isinstance(model, str) else None
    costs: dict[str, Any] = {}
    if (
        provider is not None
        and isinstance(provider.factory, type)
        and issubclass(provider.factory, SimulationBroker)
    ):
        costs = {k: params.pop(k) for k in list(params) if k in _MODELS}
        spec = {"model": model, "params": params}
    broker = registry.create("broker", spec, where="execution.broker")
    resolve = getattr(broker, "resolve_models", None)
    if resolve is not None:
        resolve(registry, **costs)
    return broker
