"""The simulation broker: fills orders against bars under the fill contract (DESIGN §4).

Per timestamp the engine calls :meth:`SimulationBroker.process_open` before the strategy
sees the bar and :meth:`SimulationBroker.process_close` after it. Orders placed while
handling bar *t* fill against bar *t+1* by default (market orders at its open), or at bar
*t*'s close with ``fill_timing="same_bar_close"``, or at bar *t+1*'s close with
``"next_bar_close"``. Within one phase, orders that reduce a
position are filled before orders that open or grow one, so freed cash can be reused;
among the rest, the order the bar's assumed price path reaches first fills first
(see :mod:`.matching`). The broker is assembled from parts: its settings
(:mod:`.broker_settings`) and cost models (:mod:`.model_specs`), order entry and the orders
log (:mod:`.order_entry`), the fill path (:mod:`.fills`, :mod:`.fill_terms`), order links
(brackets, OCO, OTO, position exits: :mod:`.order_links`), account rules
(:mod:`.accounts`) and per-session events (:mod:`.broker_account`). Its working state of
each accepted order is a :class:`~.working.Working` record in its pending book.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.assets import AssetRegistry
from ..core.broker import BrokerListener
from ..core.clock import Clock
from ..core.data import Chunk, row_of
from ..core.orders import OrderType, TimeInForce
from ..core.portfolio import Portfolio
from ..errors import ConfigError
from ..markers import hookimpl
from .accounts import MarginBook
from .broker_account import AccountEvents
from .broker_settings import SETTING_NAMES, BrokerSettings, settings_attributes
from .corporate import CorporateActions
from .fill_terms import FillTermsMixin
from .fills import FillMixin
from .impact import NoImpact
from .kernel_terms import kernel_problem, kernel_settings
from .matching import mode_code
from .model_specs import COST_MODELS, build_model
from .order_entry import OrderEntry
from .order_links import OrderLinks
from .presets import preset_settings
from .risk import as_exit_rules, as_risk_limits
from .working import Working

if TYPE_CHECKING:
    from ..kernels.matching import IntrabarMode
    from ..registry import PluginRegistry
    from .accounts import AccountType, MarginCallPolicy
    from .broker_settings import CashPolicy, ExitBase, FillTiming, OrderSizing, TrailReference

__all__ = ["SimulationBroker", "ml4t_make_broker", "ml4t_register_brokers"]


@settings_attributes
class SimulationBroker(OrderEntry, FillMixin, FillTermsMixin, OrderLinks):
    """Fill orders against historical bars and keep the books.

    Parameters
    ----------
    initial_cash : float, default 100_000
        Starting cash; must be positive.
    commission, slippage, impact : model object, str or dict, optional
        A model object (``PercentageCommission(0.001)``), a registry name (``"per_share"``,
        or the class name) or ``{"model": "per_share", "params": {...}}``; names resolve
        through the plugin registry (``ml4t-backtest plugins`` lists them): builtin names
        at once, a plugin's names when the engine resolves the broker's models through its
        plugins (see :meth:`resolve_models`). Default: none.
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

    Attributes
    ----------
    config : BrokerSettings
        The settings above other than the cost models and objects, validated and frozen
        (:class:`~ml4t.backtest.builtin.broker_settings.BrokerSettings`). Each is also a
        read-only attribute: ``broker.fill_timing`` is ``broker.config.fill_timing``.
    commission_model, slippage_model, impact_model : model objects
        The cost models built from ``commission``, ``slippage`` and ``impact``.
    assets, corporate_actions, exits, risk_limits
        The objects built from the arguments of the same names.

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
        given = locals()  # every keyword named like a setting is validated by the settings
        self.config = BrokerSettings(**{name: given[name] for name in SETTING_NAMES})
        self._specs = {"commission": commission, "slippage": slippage, "impact": impact}
        self._unresolved: dict[str, Any] = {}
        self.resolve_models(None, only_given=True)
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
        self.has_pending = False
        self._any_lot = True  # until setup() reads the lot sizes
        self._pending: dict[int, Working] = {}
        self._next_id = 0
        self._listener: BrokerListener | None = None
        self._clock: Clock | None = None
        self.order_log: list[tuple[Any, ...]] = []
        self.portfolio = Portfolio(self.config.initial_cash, [])

    if TYPE_CHECKING:
        # the settings' read-only attributes, installed by settings_attributes from
        # BrokerSettings (a test checks this list against the settings' fields)
        initial_cash: float
        fill_timing: FillTiming
        fractional: bool
        allow_short: bool
        cash_policy: CashPolicy
        account: AccountType
        initial_margin: float
        maintenance_margin: float
        max_leverage: float | None
        borrow_rate: float
        margin_call: MarginCallPolicy
        volume_limit: float | None
        intrabar: IntrabarMode
        trail_reference: TrailReference
        exit_base: ExitBase
        exit_slippage: bool
        one_order_per_bar: bool
        slippage_within_bar: bool
        order_sizing: OrderSizing

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
        construction. Model objects are used as given. With a registry, names,
        ``{model, params}`` mappings and (unless ``only_given``) the defaults left as
        ``None`` resolve through it, so a plugin that registers ``"none"`` replaces the
        default and a blocked builtin is an error. The engine calls this once, at
        construction, with its own registry. Without one (as the constructor calls it),
        builtin names and import paths are built from the builtin modules alone and any
        other name waits for the engine's registry; a run with such a name unresolved is
        an error.
        """
        unknown = set(specs) - set(COST_MODELS)
        if unknown:
            raise ConfigError(
                f"unknown cost model kinds {sorted(unknown)}; use {list(COST_MODELS)}"
            )
        self._registry = registry  # names the plugin of a model that misbehaves in a run
        self._specs.update(specs)
        self._unresolved = {}
        for kind, (attr, default) in COST_MODELS.items():
            spec = self._specs[kind]
            model = build_model(kind, spec, registry, defaults=not only_given)
            if model is None:  # a plugin's name: the engine resolves it
                self._unresolved[kind] = spec
                model = default()
            setattr(self, attr, model)
        self._impact_on = not isinstance(self.impact_model, NoImpact)

    def settings(self) -> dict[str, Any]:
        """Return the broker settings (recorded in the result's metadata)."""
        return {
            "initial_cash": self.config.initial_cash,
            "commission": repr(self.commission_model),
            "slippage": repr(self.slippage_model),
            "impact": repr(self.impact_model),
            **self.config.reported(),
            "assets": repr(self.assets),
            "corporate_actions": repr(self.corporate_actions),
            "exits": None if self.exits is None else self.exits.to_dict(),
            "risk_limits": None if self.risk_limits is None else self.risk_limits.to_dict(),
        }

    # --- set-up -------------------------------------------------------------------------
    def setup(self, asset_ids: Sequence[str], listener: BrokerListener, clock: Clock) -> None:
        """Create the portfolio for a run and reset order state."""
        for kind, spec in self._unresolved.items():
            raise ConfigError(
                f"{kind}: {spec!r} is not a builtin {kind} model and no plugin registry has "
                "resolved it; pass the broker to BacktestEngine, which resolves its models "
                "through the engine's plugins, or call resolve_models(registry)"
            )
        s = self.config
        self.assets.check(asset_ids)
        arrays = self.assets.arrays(asset_ids)
        self.portfolio = Portfolio(
            s.initial_cash, asset_ids, arrays.multiplier.tolist(), arrays.is_future.tolist()
        )
        lot = np.where(np.isnan(arrays.lot_size), 0.0 if s.fractional else 1.0, arrays.lot_size)
        self._lot: list[float] = lot.tolist()
        self._any_lot = bool((lot > 0).any())
        self._tick: list[float] = arrays.tick_size.tolist()
        self._min_qty: list[float] = arrays.min_quantity.tolist()
        self._asset_borrow: list[float] = arrays.borrow_rate.tolist()
        self._shortable: list[bool] = np.asarray(arrays.shortable, dtype=bool).tolist()
        self._any_tick = bool(np.isfinite(arrays.tick_size).any())
        self._margin = MarginBook(
            self.portfolio, arrays, s.account, s.initial_margin, s.maintenance_margin
        )
        self._futures = bool(np.asarray(arrays.is_future).any())
        self._margin_watch = s.account == "margin" or self._futures
        self._limits = self.risk_limits
        self._schedule = (
            None
            if self.corporate_actions is None
            else self.corporate_actions.schedule(list(asset_ids))
        )
        self._listener = listener
        self._clock = clock
        self._pending = {}
        self._next_id = 0
        self.order_log = []
        self._vol_ts = -1
        self._vol_used: dict[int, float] = {}
        self._traded_at: dict[int, int] = {}
        self._fill_close = math.nan
        self._mode = mode_code(s.intrabar)  # the kernels' code, resolved once per run
        self._same_close = s.fill_timing == "same_bar_close"
        self._next_close = s.fill_timing == "next_bar_close"
        cap = getattr(self.slippage_model, "volume_limit", None)
        caps = [x for x in (s.volume_limit, cap) if isinstance(x, int | float)]
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
        self._kernel_settings = self.kernel_settings() if self.kernel_problem() is None else None

    def kernel_problem(self) -> str | None:
        """Return why fills cannot be computed by the Numba kernels, or None if they can.

        See :func:`~ml4t.backtest.builtin.kernel_terms.kernel_problem`.
        """
        return kernel_problem(self)

    def kernel_settings(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the kernels' settings arrays ``(ip, fp)`` for the costs and cash rules.

        Only valid when :meth:`kernel_problem` returns None.
        """
        return kernel_settings(self)

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

    @property
    def exact_quantities(self) -> bool:
        """True when quantities trade as given: fractional and no asset has a lot size."""
        return self.config.fractional and not self._any_lot

    # --- fill phases ----------------------------------------------------------------------
    def process_open(self, chunk: Chunk, i: int) -> None:
        """Match orders from earlier bars against timestamp ``i`` (before the strategy)."""
        ts = chunk.ts[i]
        close_only = self._same_close
        todo = []
        expired = []
        trailing = []
        index = self._clock.now_index  # type: ignore[union-attr]
        for working in self._pending.values():
            if working.created_ts >= ts or not working.active:
                continue
            if working.expire_ns is not None and working.expire_ns < ts:
                expired.append(working.order)
                continue
            kind = working.kind
            if kind is OrderType.MARKET_ON_CLOSE or (close_only and kind is OrderType.MARKET):
                continue
            if working.eligible_index > index:
                continue
            row = row_of(chunk, i, working.code)
            if row >= 0:
                todo.append((working, row))
                if kind is OrderType.TRAILING_STOP:
                    trailing.append((working, row))
        for order in expired:
            self._finish(
                order, "expired", f"expired: GTD order past its expire_at {order.expire_at}"
            )
        if todo:
            self._fill_batch(chunk, todo, at_close=False)
        if trailing:
            self._move_trails(chunk, trailing)

    def _move_trails(self, chunk: Chunk, trailing: list[tuple[Working, int]]) -> None:
        """Move the reference of the trailing stops matched on this bar (after matching,
        so the level never moves within the bar it is matched on)."""
        ref_close = self.config.trail_reference == "close"
        px = chunk.px
        for working, row in trailing:
            order = working.order
            if order.status.is_open and not working.triggered:
                if working.sign < 0:
                    seen = px["close"][row] if ref_close else px["high"][row]
                    order.trail_reference_price = max(order.trail_reference_price, seen)
                else:
                    seen = px["close"][row] if ref_close else px["low"][row]
                    order.trail_reference_price = min(order.trail_reference_price, seen)

    def process_close(self, chunk: Chunk, i: int) -> None:
        """Fill market orders at the close (``same_bar_close``); run the close checks."""
        ts = chunk.ts[i]
        todo = []
        if self._pending:
            same_close = self._same_close
            index = self._clock.now_index  # type: ignore[union-attr]
            for working in self._pending.values():
                if not working.active:
                    continue
                kind = working.kind
                if kind is OrderType.MARKET_ON_CLOSE:
                    if working.created_ts < ts:
                        row = row_of(chunk, i, working.code)
                        if row >= 0:
                            working.moc_bar = (chunk, row, ts, index)
                elif same_close and kind is OrderType.MARKET:
                    if working.eligible_index > index:
                        continue
                    row = row_of(chunk, i, working.code)
                    if row >= 0:
                        todo.append((working, row))
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
        moc = [
            w for w in self._pending.values() if w.moc_bar is not None and w.order.status.is_open
        ]
        for working in moc:
            assert working.moc_bar is not None
            chunk, row, ts, index = working.moc_bar
            self._try_fill(chunk, working, row, chunk.px["close"][row], ts, index)
            working.moc_bar = None
        expired = [
            w.order
            for w in self._pending.values()
            if w.order.time_in_force is TimeInForce.DAY
            and w.created_ts < last_ts_ns
            and w.order.status.is_open
        ]
        for order in expired:
            self._finish(
                order, "expired", "expired: DAY order not filled by the end of its session"
            )

    def __repr__(self) -> str:
        s = self.settings()
        return "SimulationBroker(" + ", ".join(f"{k}={v}" for k, v in s.items()) + ")"


def _takes(func: Any, name: str) -> bool:
    """Return True if ``func`` accepts a keyword argument ``name``."""
    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


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
        costs = {k: params.pop(k) for k in list(params) if k in COST_MODELS}
        spec = {"model": model, "params": params}
    broker = registry.create("broker", spec, where="execution.broker")
    resolve = getattr(broker, "resolve_models", None)
    if resolve is not None:
        resolve(registry, **costs)
    return broker
