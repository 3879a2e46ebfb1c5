"""The simulation broker: fills orders against bars under the fill contract (DESIGN §4).

Per timestamp the engine calls :meth:`SimulationBroker.process_open` before the strategy
sees the bar and :meth:`SimulationBroker.process_close` after it. Orders placed while
handling bar *t* fill against bar *t+1* by default (market orders at its open), or at bar
*t*'s close with ``fill_timing="same_bar_close"``, or at bar *t+1*'s close with
``"next_bar_close"``. Within one phase, orders that reduce a
position are filled before orders that open or grow one, so freed cash can be reused;
among the rest, the order the bar's assumed price path reaches first fills first
(see :mod:`.matching`). Account rules live in :mod:`.accounts`, per-session events in
:mod:`.broker_account`, order links (brackets, OCO, OTO, position exits) in
:mod:`.order_links`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.assets import AssetRegistry
from ..core.broker import BrokerListener, CommissionModel, ImpactModel, SlippageModel
from ..core.clock import Clock
from ..core.data import Chunk, row_of
from ..core.orders import Order, OrderRecord, OrderStatus, OrderType, TimeInForce
from ..core.portfolio import Portfolio
from ..errors import ConfigError
from ..markers import hookimpl
from ..registry import KINDS
from .accounts import ACCOUNT_TYPES, MARGIN_CALL_POLICIES, MarginBook
from .broker_account import AccountEvents
from .commission import NoCommission
from .corporate import CorporateActions
from .fills import FillEngine
from .impact import NoImpact
from .matching import INTRABAR_MODES
from .order_entry import OrderEntry
from .order_links import OrderLinks
from .presets import preset_settings
from .risk import as_exit_rules, as_risk_limits
from .slippage import NoSlippage

if TYPE_CHECKING:
    from ..registry import PluginRegistry

__all__ = ["SimulationBroker", "ml4t_make_broker", "ml4t_register_brokers"]

FILL_TIMINGS = ("next_bar_open", "same_bar_close", "next_bar_close")
CASH_POLICIES = ("reject", "resize", "allow")  # kernel codes 0, 1, 2
EXIT_BASES = ("fill_price", "bar_close")
ORDER_SIZINGS = ("at_fill", "at_order")
TRAIL_REFERENCES = ("high_low", "close")
_EPS = 1e-9
_NO_SLIP = (OrderType.LIMIT, OrderType.STOP_LIMIT)
_AT_OPEN_ONLY = (OrderType.MARKET_ON_OPEN,)
#: cost-model kind -> (attribute, default object factory)
_MODELS: dict[str, tuple[str, Callable[[], Any]]] = {
    "commission": ("commission_model", NoCommission),
    "slippage": ("slippage_model", NoSlippage),
    "impact": ("impact_model", NoImpact),
}


class SimulationBroker(OrderEntry, FillEngine, OrderLinks):
    """Fill orders against historical bars and keep the books.

    Parameters
    ----------
    initial_cash : float, default 100_000
        Starting cash; must be positive.
    commission, slippage, impact : model object, str or dict, optional
        A model object (``PercentageCommission(0.001)``), a registry name (``"per_share"``,
        or the class name) or ``{"model": "per_share", "params": {...}}``; names resolve
        through the plugin registry (``ml4t-backtest plugins`` lists them). Default: none.
    fill_timing : {"next_bar_open", "same_bar_close", "next_bar_close"}
        When market orders fill: the next bar's open (default), the signal bar's close, or
        the next bar's close (filled before the strategy sees that bar, as in Zipline).
    fractional : bool, default True
        Allow fractional quantities. With False, quantities are whole units (or the
        asset's lot size) and sizing helpers round down.
    allow_short : bool, optional
        Allow sells beyond the position. Defaults to True for margin and simple accounts
        and False for a cash account, which cannot short.
    cash_policy : {"reject", "resize", "allow"}
        What to do with an order the account cannot afford at fill time (cash in a cash
        or simple account, initial margin in a margin account): reject it, shrink it to
        what it can afford, commission included, or fill it anyway and let cash go
        negative (no buying-power check at all, as in Zipline).
    account : {"cash", "simple", "margin"}
        Account type (see :mod:`ml4t.backtest.builtin.accounts`).
    initial_margin, maintenance_margin : float
        Margin account fractions of position value (defaults 0.5 and 0.25).
    max_leverage : float, optional
        Margin account gross leverage cap; the effective initial margin is
        ``max(initial_margin, 1 / max_leverage)``.
    borrow_rate : float, default 0.0
        Annual fee on the value of short positions, charged per calendar day held
        overnight (per-asset rates in the asset registry override it).
    margin_call : {"liquidate", "liquidate_all"}
        Margin-call policy (see :class:`~ml4t.backtest.builtin.accounts.MarginBook`).
    volume_limit : float, optional
        At most this fraction of a bar's volume is filled per asset per bar; the rest of
        an order is carried to later bars as partial fills. A slippage model with a
        ``volume_limit`` attribute (``VolumeShareSlippage``) caps it too.
    intrabar : {"conservative", "high_first", "low_first", "nearest", "close_only"}
        Assumed order of a bar's high and low (see :mod:`ml4t.backtest.builtin.matching`).
    trail_reference : {"high_low", "close"}
        How trailing stops follow the price: by each bar's high (low for buy stops),
        VectorBT-style, or by each bar's close, Backtrader-style. Either way the level
        moves after the bar has been matched, never within it.
    assets : AssetRegistry, mapping, frame or path, optional
        Per-asset multiplier, tick size, lot size, minimum quantity, margins, borrow rate.
    corporate_actions : CorporateActions, frame or path, optional
        Splits and cash dividends applied to positions and cash.
    exits : ExitRules or mapping, optional
        Position exits (stop-loss, take-profit, trailing stop, time exit) for every
        position; strategies can set them per asset with ``set_exits``.
    risk_limits : RiskLimits or mapping, optional
        Portfolio limits checked on each fill that adds exposure.
    exit_base : {"fill_price", "bar_close"}
        What the position exits' fractions apply to: the position's average fill price
        (default) or the close of the bar the entry filled on (VectorBT's
        ``stop_entry_price="close"``).
    exit_slippage : bool, default True
        Apply slippage to position-exit fills at a level (stop-loss, trailing stop).
        VectorBT fills its stop exits at the stop price without slippage. Time exits
        and margin-call liquidations are market orders and always slipped.
    one_order_per_bar : bool, default False
        At most one fill per asset per bar: a later strategy order for an asset that
        already traded on the bar is rejected (VectorBT: a stop exit wins over the bar's
        signal). Position exits and liquidations are never rejected by this rule.
    slippage_within_bar : bool, default False
        Cap a slipped price at the bar's high (buys) or low (sells), as Backtrader's
        ``slip_match`` does.
    order_sizing : {"at_fill", "at_order"}
        When the quantity of the strategy's closing, reducing and target orders is
        settled. ``"at_fill"`` (default): ``close_position``/``reduce_position``/
        ``sell_percent`` and bracket exit legs are reduce-only, and the target helpers
        (``order_target_*``, ``rebalance_to_weights``, ``size_by_confidence``) carry their
        target, both resolved against the position at fill time, so a close never
        reverses a position and a target order ends at its target whatever filled before
        it. ``"at_order"``: these orders keep the quantity computed when they are placed,
        as in Backtrader and Zipline: a close and a stop that fill on the same bar reverse
        the position. Position exits and margin-call liquidations are reduce-only either
        way (see ``docs/execution.md``).

    Use :meth:`preset` for the settings that reproduce VectorBT, Backtrader or Zipline.

    Notes
    -----
    Every rejection reaches the strategy's ``on_order_rejected`` with a reason and is
    recorded in ``orders_df``; every resize or partial fill carries its reason in
    ``fills_df["reason"]``.
    """

    def __init__(
        self,
        initial_cash: float = 100_000.0,
        commission: Any = None,
        slippage: Any = None,
        impact: Any = None,
        fill_timing: str = "next_bar_open",
        fractional: bool = True,
        allow_short: bool | None = None,
        cash_policy: str = "reject",
        *,
        account: str = "cash",
        initial_margin: float = 0.5,
        maintenance_margin: float = 0.25,
        max_leverage: float | None = None,
        borrow_rate: float = 0.0,
        margin_call: str = "liquidate",
        volume_limit: float | None = None,
        intrabar: str = "conservative",
        trail_reference: str = "high_low",
        assets: Any = None,
        corporate_actions: Any = None,
        exits: Any = None,
        risk_limits: Any = None,
        exit_base: str = "fill_price",
        exit_slippage: bool = True,
        one_order_per_bar: bool = False,
        slippage_within_bar: bool = False,
        order_sizing: str = "at_fill",
    ) -> None:
        initial_cash = _positive_number("initial_cash", initial_cash)
        _choice("fill_timing", fill_timing, FILL_TIMINGS)
        _choice("cash_policy", cash_policy, CASH_POLICIES)
        _choice("account", account, ACCOUNT_TYPES)
        _choice("margin_call", margin_call, MARGIN_CALL_POLICIES)
        _choice("intrabar", intrabar, INTRABAR_MODES)
        _choice("trail_reference", trail_reference, TRAIL_REFERENCES)
        _choice("exit_base", exit_base, EXIT_BASES)
        _choice("order_sizing", order_sizing, ORDER_SIZINGS)
        if allow_short is None:
            allow_short = account != "cash"
        if allow_short and account == "cash":
            raise ConfigError(
                "allow_short: a cash account cannot sell short; use account='margin' "
                "(initial_margin=1.0 for a margin account without leverage)"
            )
        im = _fraction("initial_margin", initial_margin)
        mm = _fraction("maintenance_margin", maintenance_margin)
        if mm > im:
            raise ConfigError(f"maintenance_margin: {mm:g} must not exceed initial_margin {im:g}")
        if max_leverage is not None:
            lev = _non_negative("max_leverage", max_leverage)
            if not (math.isfinite(lev) and lev >= 1):
                raise ConfigError(f"max_leverage: must be a number >= 1, got {max_leverage!r}")
            im = max(im, 1.0 / lev)
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
        self.account = account
        self.initial_margin = im
        self.maintenance_margin = mm
        self.borrow_rate = _non_negative("borrow_rate", borrow_rate)
        self.margin_call = margin_call
        self.volume_limit = (
            None if volume_limit is None else _fraction("volume_limit", volume_limit)
        )
        self.intrabar = intrabar
        self.trail_reference = trail_reference
        self.assets = assets if isinstance(assets, AssetRegistry) else AssetRegistry(assets)
        self.corporate_actions = (
            None
            if corporate_actions is None
            else corporate_actions
            if isinstance(corporate_actions, CorporateActions)
            else CorporateActions(corporate_actions)
        )
        self.exits = as_exit_rules(exits)
        self.risk_limits = as_risk_limits(risk_limits)
        self.exit_base = exit_base
        self.exit_slippage = bool(exit_slippage)
        self.one_order_per_bar = bool(one_order_per_bar)
        self.slippage_within_bar = bool(slippage_within_bar)
        self.order_sizing = order_sizing
        self.has_pending = False
        self._any_lot = True  # until setup() reads the lot sizes
        self._pending: list[Order] = []
        self._next_id = 0
        self._listener: BrokerListener | None = None
        self._clock: Clock | None = None
        self.order_log: list[OrderRecord] = []
        self.portfolio = Portfolio(initial_cash, [])

    @classmethod
    def preset(
        cls, name: str, initial_cash: float = 100_000.0, **overrides: Any
    ) -> SimulationBroker:
        """Return a broker with the settings of preset ``name``; ``overrides`` win.

        ``"vectorbt"``, ``"backtrader"`` and ``"zipline"`` reproduce those frameworks'
        fill conventions (see :mod:`ml4t.backtest.builtin.presets` and
        ``docs/presets.md``). Cost models are part of a preset only where the framework
        has non-zero defaults (Zipline); pass ``commission=``/``slippage=`` to change them.

        Examples
        --------
        >>> broker = SimulationBroker.preset("vectorbt", initial_cash=10_000, commission=None)
        >>> broker.fill_timing
        'same_bar_close'
        """
        return cls(initial_cash, **preset_settings(name, **overrides))

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
        self._registry = registry  # names the plugin of a model that misbehaves in a run
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
            "account": self.account,
            "initial_margin": self.initial_margin,
            "maintenance_margin": self.maintenance_margin,
            "borrow_rate": self.borrow_rate,
            "margin_call": self.margin_call,
            "volume_limit": self.volume_limit,
            "intrabar": self.intrabar,
            "trail_reference": self.trail_reference,
            "assets": repr(self.assets),
            "corporate_actions": repr(self.corporate_actions),
            "exits": None if self.exits is None else self.exits.to_dict(),
            "risk_limits": None if self.risk_limits is None else self.risk_limits.to_dict(),
            "exit_base": self.exit_base,
            "exit_slippage": self.exit_slippage,
            "one_order_per_bar": self.one_order_per_bar,
            "slippage_within_bar": self.slippage_within_bar,
            "order_sizing": self.order_sizing,
        }

    # --- set-up -------------------------------------------------------------------------
    def setup(self, asset_ids: Sequence[str], listener: BrokerListener, clock: Clock) -> None:
        """Create the portfolio for a run and reset order state."""
        self.assets.check(asset_ids)
        arrays = self.assets.arrays(asset_ids)
        self.portfolio = Portfolio(
            self.initial_cash, asset_ids, arrays.multiplier.tolist(), arrays.is_future.tolist()
        )
        lot = np.where(np.isnan(arrays.lot_size), 0.0 if self.fractional else 1.0, arrays.lot_size)
        self._lot: list[float] = lot.tolist()
        self._any_lot = bool((lot > 0).any())
        self._tick: list[float] = arrays.tick_size.tolist()
        self._min_qty: list[float] = arrays.min_quantity.tolist()
        self._asset_borrow: list[float] = arrays.borrow_rate.tolist()
        self._shortable: list[bool] = np.asarray(arrays.shortable, dtype=bool).tolist()
        self._any_tick = bool(np.isfinite(arrays.tick_size).any())
        self._margin = MarginBook(
            self.portfolio, arrays, self.account, self.initial_margin, self.maintenance_margin
        )
        self._futures = bool(np.asarray(arrays.is_future).any())
        self._margin_watch = self.account == "margin" or self._futures
        self._limits = self.risk_limits
        self._schedule = (
            None
            if self.corporate_actions is None
            else self.corporate_actions.schedule(list(asset_ids))
        )
        self._listener = listener
        self._clock = clock
        self._pending = []
        self._next_id = 0
        self.order_log = []
        self._vol_ts = -1
        self._vol_used: dict[int, float] = {}
        self._traded_at: dict[int, int] = {}
        self._fill_close = math.nan
        cap = getattr(self.slippage_model, "volume_limit", None)
        caps = [x for x in (self.volume_limit, cap) if isinstance(x, int | float)]
        self._cap = min(caps) if caps else None
        self._bar_cols = tuple(getattr(self.slippage_model, "required_columns", ()) or ())
        reset = getattr(self.commission_model, "reset", None)
        if reset is not None:
            reset()
        self._record = getattr(self.commission_model, "record", None)
        self._rebates = bool(getattr(self.commission_model, "rebates", False))
        self._improves = bool(getattr(self.slippage_model, "price_improvement", False))
        self._partial = getattr(self.commission_model, "calculate_partial", None)
        self._notional_kw = self._partial is not None and _takes(self._partial, "notional_before")
        self._when_kw = _takes(self.commission_model.calculate, "when") and (
            self._partial is None or _takes(self._partial, "when")
        )
        self._setup_links(asset_ids)
        self._events = AccountEvents(self)
        self._watch = self._margin_watch or (
            self._limits is not None and self._limits.max_drawdown is not None
        )
        self.has_pending = self._watch
        self._notes: list[str] = []
        self._kernel_settings = self.kernel_settings() if self.kernel_problem() is None else None

    def kernel_problem(self) -> str | None:
        """Return why fills cannot be computed by the Numba kernels, or None if they can.

        The kernels cover cash and simple accounts (no borrow fee on shorts) without volume
        limits, impact, risk limits or per-asset specifications, with cost models that expose
        ``kernel_params()`` (every builtin model except the volume-, spread- and tier-based
        ones). Anything else runs through the Python fill path.
        """
        shorts_cost = self.allow_short and self.borrow_rate > 0
        checks = (
            (self.account == "margin", "account='margin' (kernels: 'cash' or 'simple')"),
            (shorts_cost, "shorts pay a borrow fee (borrow_rate > 0)"),
            (self.volume_limit is not None, "volume_limit is set"),
            (self.risk_limits is not None, "risk_limits are set"),
            (not isinstance(self.impact_model, NoImpact), f"impact model {self.impact_model!r}"),
            (len(self.assets) > 0, "an asset registry is set (multipliers, ticks, lots)"),
        )
        for bad, why in checks:
            if bad:
                return why
        slip = self.slippage_model
        if getattr(slip, "volume_limit", None) is not None:
            return f"slippage model {slip!r} has a volume limit"
        if getattr(slip, "required_columns", ()):
            return f"slippage model {slip!r} reads bar columns"
        if kernel_formula(slip, "fill_price") is None:
            return f"slippage model {slip!r} has no kernel version (kernel_params)"
        if kernel_formula(self.commission_model, "calculate") is None:
            return f"commission model {self.commission_model!r} has no kernel version"
        if getattr(self.commission_model, "record", None) is not None:
            return f"commission model {self.commission_model!r} keeps state across fills"
        return None

    def kernel_settings(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the kernels' settings arrays ``(ip, fp)`` for the costs and cash rules.

        Only valid when :meth:`kernel_problem` returns None.
        """
        from ..kernels import _layout as K

        ck, cparams = kernel_formula(self.commission_model, "calculate")  # type: ignore[misc]
        sk, sparams = kernel_formula(self.slippage_model, "fill_price")  # type: ignore[misc]
        ip = np.zeros(K.IP_SIZE, dtype=np.int64)
        fp = np.full(K.FP_SIZE, np.nan)
        ip[K.IP_CASH_POLICY] = CASH_POLICIES.index(self.cash_policy)
        ip[K.IP_EXIT_SLIP] = int(self.exit_slippage)
        ip[K.IP_SLIP_IN_BAR] = int(self.slippage_within_bar)
        ip[K.IP_COMM] = ck
        ip[K.IP_SLIP] = sk
        ip[K.IP_ALLOW_SHORT] = int(self.allow_short)
        ip[K.IP_ONE_PER_BAR] = int(self.one_order_per_bar)
        fp[K.FP_COMM : K.FP_COMM + 3] = 0.0
        fp[K.FP_COMM : K.FP_COMM + len(cparams)] = cparams
        fp[K.FP_SLIP] = sparams[0] if sparams else 0.0
        fp[K.FP_LOT] = 0.0 if self.fractional else 1.0
        return ip, fp

    def check_columns(self, columns: Iterable[str]) -> None:
        """Raise ConfigError if the slippage model needs a column the data lacks."""
        have = set(columns)
        missing = [c for c in self._bar_cols if c not in have]
        if missing:
            raise ConfigError(
                f"slippage model {self.slippage_model!r} needs column(s) {missing}; add them "
                f"to the feed's signal or indicator columns (have: {sorted(have)})"
            )

    def run_metrics(self) -> dict[str, Any]:
        """Return broker-level figures for the result's metrics."""
        ev = getattr(self, "_events", None)
        return {
            "margin_calls": 0 if ev is None else ev.margin_calls,
            "drawdown_halted": False if ev is None else ev.halted,
        }

    # --- fill phases ----------------------------------------------------------------------
    def process_open(self, chunk: Chunk, i: int) -> None:
        """Match orders from earlier bars against timestamp ``i`` (before the strategy)."""
        ts = chunk.ts[i]
        close_only = self.fill_timing == "same_bar_close"
        todo = []
        expired = []
        trailing = []
        index = self._clock.now_index  # type: ignore[union-attr]
        for order in self._pending:
            if order._created_ts >= ts or not order._active:
                continue
            if order._expire_ns is not None and order._expire_ns < ts:
                expired.append(order)
                continue
            kind = order.order_type
            if kind is OrderType.MARKET_ON_CLOSE or (close_only and kind is OrderType.MARKET):
                continue
            if order._eligible_index > index:
                continue
            row = row_of(chunk, i, order._code)
            if row >= 0:
                todo.append((order, row))
                if kind is OrderType.TRAILING_STOP:
                    trailing.append((order, row))
        for order in expired:
            self._finish(
                order, "expired", f"expired: GTD order past its expire_at {order.expire_at}"
            )
        if todo:
            self._fill_batch(chunk, todo, at_close=False)
        if not trailing:
            return
        ref_close = self.trail_reference == "close"
        px = chunk.px
        for order, row in trailing:
            if order.status.is_open and not order._triggered:
                if order.side.sign < 0:
                    seen = px["close"][row] if ref_close else px["high"][row]
                    order._trail_ref = max(order._trail_ref, seen)
                else:
                    seen = px["close"][row] if ref_close else px["low"][row]
                    order._trail_ref = min(order._trail_ref, seen)

    def process_close(self, chunk: Chunk, i: int) -> None:
        """Fill market orders at the close (``same_bar_close``); run the close checks."""
        ts = chunk.ts[i]
        todo = []
        if self._pending:
            same_close = self.fill_timing == "same_bar_close"
            for order in self._pending:
                kind = order.order_type
                if not order._active:
                    continue
                if kind is OrderType.MARKET_ON_CLOSE:
                    if order._created_ts < ts:
                        row = row_of(chunk, i, order._code)
                        if row >= 0:
                            order._moc_bar = (chunk, row, ts, self._clock.now_index)  # type: ignore[union-attr]
                elif same_close and kind is OrderType.MARKET:
                    if order._eligible_index > self._clock.now_index:  # type: ignore[union-attr]
                        continue
                    row = row_of(chunk, i, order._code)
                    if row >= 0:
                        todo.append((order, row))
            self._fill_batch(chunk, todo, at_close=True)
        if self._watch:
            self._events.check_close()
            self.has_pending = True

    def start_session(self, ts_ns: int, day: int) -> None:
        """Apply borrow fees and corporate actions before the session's first bar."""
        self._events.start_session(ts_ns, day)

    def end_session(self, last_ts_ns: int) -> None:
        """Fill market-on-close orders, then expire DAY orders, at a session's end.

        A DAY order placed on the session's last bar has not had a chance to fill yet (it
        fills from the next bar on) and stays working through the next session.
        """
        moc = [o for o in self._pending if o._moc_bar is not None and o.status.is_open]
        for order in moc:
            chunk, row, ts, index = order._moc_bar
            self._try_fill(chunk, order, row, chunk.px["close"][row], ts, index)
            order._moc_bar = None
        expired = [
            o
            for o in self._pending
            if o.time_in_force is TimeInForce.DAY
            and o._created_ts < last_ts_ns
            and o.status.is_open
        ]
        for order in expired:
            self._finish(
                order, "expired", "expired: DAY order not filled by the end of its session"
            )
        self._drop_done()

    # --- bookkeeping ----------------------------------------------------------------------
    def _reject(self, order: Order, reason: str) -> None:
        order.status = OrderStatus.REJECTED
        order.reason = reason
        self._log(order, "rejected", reason)
        self._unlink(order)
        self._drop_done()
        assert self._listener is not None
        self._listener.order_rejected(order, reason)

    def _finish(self, order: Order, event: str, reason: str, notify: bool = True) -> None:
        """Cancel or expire a working order and tell the strategy."""
        order.status = OrderStatus.EXPIRED if event == "expired" else OrderStatus.CANCELLED
        order.reason = reason
        self._log(order, event, reason)
        self._unlink(order)
        self._drop_done()
        if notify and order._managed is None:
            assert self._listener is not None
            self._listener.order_cancelled(order, reason)

    def _drop_done(self) -> None:
        self._pending = [o for o in self._pending if o.status.is_open]
        self.has_pending = bool(self._pending) or self._watch

    def order_records(self) -> list[OrderRecord]:
        """Return the orders log: every order event and broker note so far, in order."""
        return self.order_log

    @property
    def exact_quantities(self) -> bool:
        """True when quantities trade as given: fractional and no asset has a lot size."""
        return self.fractional and not self._any_lot

    def _note_event(self, text: str) -> None:
        """Record a broker event (margin call, halt) in the orders log."""
        clock = self._clock
        self.order_log.append(
            OrderRecord(
                clock.now_ns if clock else 0,
                -1,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                "account",
                text,
                None,
            )
        )

    def _log(self, order: Order, event: str, reason: str | None, ts: int | None = None) -> None:
        clock = self._clock
        self.order_log.append(
            OrderRecord(
                ts if ts is not None else clock.now_ns if clock else 0,
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


def _takes(func: Any, name: str) -> bool:
    """Return True if ``func`` accepts a keyword argument ``name``."""
    import inspect

    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def _choice(name: str, value: Any, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(f"{name}: must be one of {options}, got {value!r}")


def _positive_number(name: str, value: Any) -> float:
    """Return ``value`` as a positive finite float; booleans and text are errors."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigError(
            f"{name}: must be a positive number, got {value!r} ({type(value).__name__})"
        )
    x = float(value)
    if not math.isfinite(x) or x <= 0:
        raise ConfigError(f"{name}: must be a positive number, got {value!r}")
    return x


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name}: must be a number, got the boolean {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: must be a number, got {value!r}") from None
    if not (math.isfinite(x) and x >= 0):
        raise ConfigError(f"{name}: must be a finite number >= 0, got {value!r}")
    return x


def _fraction(name: str, value: Any) -> float:
    x = _non_negative(name, value)
    if not 0 < x <= 1:
        raise ConfigError(f"{name}: must be in (0, 1], got {value!r}")
    return x


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


def kernel_formula(model: Any, method: str) -> tuple[int, tuple[float, ...]] | None:
    """Return a cost model's kernel formula ``(kind, params)``, or None without one.

    The formula counts only if the class that declares ``kernel_params`` also declares (or
    inherits) ``method``: a subclass that overrides the formula has no kernel version.
    """
    get = getattr(model, "kernel_params", None)
    if get is None:
        return None
    mro = type(model).__mro__
    owner_k = next((c for c in mro if "kernel_params" in c.__dict__), None)
    owner_m = next((c for c in mro if method in c.__dict__), None)
    if owner_k is None or owner_m is None or not issubclass(owner_k, owner_m):
        return None
    kind, params = get()
    return int(kind), tuple(float(p) for p in params)
