"""The broker contract and the cost-model contracts.

The engine talks to a broker only through :class:`Broker`, and a strategy only through
its :class:`OrderPort` part. Cost models are plain objects
the broker calls directly for every fill (never through a plugin hook in the loop).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .clock import Clock
    from .data import Chunk
    from .orders import Order
    from .portfolio import Portfolio

__all__ = [
    "Broker",
    "BrokerListener",
    "CommissionModel",
    "ImpactModel",
    "OrderPort",
    "SlippageModel",
]


@runtime_checkable
class CommissionModel(Protocol):
    """Commission charged on a fill.

    ``calculate`` is called once per fill, after the fill price (including slippage) is
    known. ``quantity`` is positive; ``price`` is the execution price. Return a finite,
    non-negative amount in the account currency; a model that pays rebates declares the
    class attribute ``rebates = True`` and may return negative amounts. Anything else
    (NaN, infinity, an unexpected negative) stops the run with a ``PluginError`` naming the
    model, the order, the timestamp and the asset. To reject the order being priced,
    raise :class:`~ml4t.backtest.RejectOrder` with the reason.
    """

    def calculate(self, quantity: float, price: float) -> float:
        """Return the commission for filling ``quantity`` units at ``price``."""
        ...


@runtime_checkable
class SlippageModel(Protocol):
    """Price adjustment applied to market and stop fills.

    ``fill_price`` receives the base price (open, close or stop level), the side sign
    (+1 buy, -1 sell), the positive quantity and the bar's volume. It returns the
    execution price, which must be finite and worse or equal for the trader: ``>= price``
    for buys, ``<= price`` for sells (a model that can improve on the market declares
    ``price_improvement = True``). A NaN or infinite price, or an undeclared improvement,
    stops the run with a ``PluginError``; a finite price ``<= 0`` rejects the order. To
    reject the order being priced (no quote on the bar, say), raise
    :class:`~ml4t.backtest.RejectOrder` with the reason.
    """

    def fill_price(self, price: float, side: int, quantity: float, volume: float) -> float:
        """Return the execution price after slippage."""
        ...


@runtime_checkable
class ImpactModel(Protocol):
    """Market impact of a fill: the adverse price move the order itself causes.

    ``price_impact`` is called once per market or stop fill, after slippage, with the
    slipped price, the side sign (+1 buy, -1 sell), the positive quantity and ``bar``: a
    mapping of the fill bar's columns for that asset (``open``, ``high``, ``low``,
    ``close``, ``volume`` and the feed's signal and indicator columns). It returns the
    impact per unit in price units, finite and ``>= 0`` (anything else stops the run with a
    ``PluginError``; raise :class:`~ml4t.backtest.RejectOrder` to reject the order, e.g.
    when an input is missing on the bar); the execution price becomes
    ``price + side * impact``. Limit fills are not charged impact (they add liquidity).

    Estimates such as volatility or average daily volume should come from columns
    computed point-in-time (from data before the fill bar).
    """

    def price_impact(
        self, price: float, side: int, quantity: float, bar: Mapping[str, float]
    ) -> float:
        """Return the impact per unit (currency per unit, ``>= 0``)."""
        ...


class BrokerListener(Protocol):
    """Receives what the broker does to orders (implemented by the engine)."""

    def order_filled(self, order: Order, fill: object) -> None:
        """Report a fill (a :class:`~ml4t.backtest.FillEvent`)."""
        ...

    def order_rejected(self, order: Order, reason: str) -> None:
        """Report a rejection; ``order.status`` is already ``REJECTED``."""
        ...

    def order_cancelled(self, order: Order, reason: str) -> None:
        """Report a cancellation or expiry."""
        ...


@runtime_checkable
class OrderPort(Protocol):
    """What a strategy uses of a broker: placing, changing and reading orders.

    :class:`~ml4t.backtest.Strategy` reaches the broker only through these members. A
    broker that does not support an order kind (brackets, say) raises
    ``NotImplementedError`` naming it, or rejects the order with a reason.
    """

    @property
    def fractional(self) -> bool:
        """Whether quantities may have a fractional part."""
        ...

    @property
    def exact_quantities(self) -> bool:
        """True when any quantity trades as given (fractional, no lot sizes): sizing
        helpers may then skip :meth:`round_quantity`."""
        ...

    @property
    def order_sizing(self) -> str:
        """``"at_fill"`` or ``"at_order"``.

        ``"at_fill"``: the broker resolves reduce-only and target orders against the
        position when they fill, so closing and target helpers place those;
        ``"at_order"``: the helpers place plain orders sized now.
        """
        ...

    def submit_order(self, order: Order) -> Order:
        """Accept (or reject, with a reason) an order placed at the current timestamp."""
        ...

    def cancel_order(self, order_id: int) -> bool:
        """Cancel a working order; return False if it is not working."""
        ...

    def replace_order(self, order_id: int, **changes: Any) -> Order:
        """Change a working order's quantity, prices or time in force (same id)."""
        ...

    def open_orders(self, asset_id: str | None = None) -> list[Order]:
        """Return the working orders, optionally of one asset."""
        ...

    def submit_bracket(
        self, entry: Order, stop_loss: float | None = None, take_profit: float | None = None
    ) -> tuple[Order, Order | None, Order | None]:
        """Submit ``entry`` with a stop-loss and/or take-profit exit at these prices.

        The exits work once the entry fills, and the first to fill cancels the other.
        Returns ``(entry, stop order or None, take-profit order or None)``.
        """
        ...

    def submit_oco(self, *orders: Order) -> list[Order]:
        """Submit orders of which the first to fill cancels the others."""
        ...

    def submit_oto(self, parent: Order, child: Order) -> tuple[Order, Order]:
        """Submit ``parent`` and ``child``, the child working once the parent fills."""
        ...

    def set_exits(self, asset_id: str, rules: Any) -> None:
        """Install position exits (stop loss, take profit, trailing) for an asset."""
        ...

    def round_quantity(self, asset_id: str, quantity: float) -> float:
        """Round a positive quantity down to what the asset trades in (lots, whole units)."""
        ...


@runtime_checkable
class Broker(OrderPort, Protocol):
    """What the engine drives: the order port plus the run's phases and records.

    Call order per timestamp: ``start_session`` before the first bar of a session,
    ``process_open`` (orders from earlier bars against this bar), strategy callbacks
    (which use the :class:`OrderPort` members), ``process_close`` (orders that fill at
    this bar's close); ``end_session`` after the last bar of each session.
    ``has_pending`` lets the engine skip the phases when the broker has nothing to do (no
    order working and no per-bar check such as a margin account's), which keeps the loop
    cheap. After the run the engine reads :meth:`order_records`,
    :meth:`settings` and :meth:`run_metrics` for the result. A new broker can check
    itself against this contract with :mod:`ml4t.backtest.testing`'s broker contract
    suite.
    """

    portfolio: Portfolio
    has_pending: bool

    def setup(self, asset_ids: Sequence[str], listener: BrokerListener, clock: Clock) -> None:
        """Create the portfolio for these assets and remember the listener and clock."""
        ...

    def check_columns(self, columns: Sequence[str]) -> None:
        """Raise ``ConfigError`` when the broker needs a column the feeds do not have."""
        ...

    def process_open(self, chunk: Chunk, i: int) -> None:
        """Match working orders against timestamp ``i`` of ``chunk`` before the strategy."""
        ...

    def process_close(self, chunk: Chunk, i: int) -> None:
        """Fill orders that execute at this timestamp's close."""
        ...

    def start_session(self, ts_ns: int, day: int) -> None:
        """Book account events of a new session (borrow fees, splits, dividends)."""
        ...

    def end_session(self, last_ts_ns: int) -> None:
        """Expire orders whose time in force ends with the session ending at ``last_ts_ns``."""
        ...

    def order_records(self) -> Sequence[tuple[Any, ...]]:
        """Return every order event so far (submitted, filled, rejected, ...), in order.

        Each row is an :class:`~ml4t.backtest.OrderRecord` or a plain tuple of its fields
        in the same order. Plain tuples suit a long log: Python's garbage collector stops
        tracking a plain tuple of plain values but never a named tuple.
        """
        ...

    def settings(self) -> dict[str, Any]:
        """Return the broker's settings, recorded in the result's metadata."""
        ...

    def run_metrics(self) -> dict[str, Any]:
        """Return metrics the broker adds to the result (may be empty)."""
        ...
