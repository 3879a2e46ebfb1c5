"""The broker contract and the cost-model contracts.

The engine talks to a broker only through :class:`Broker`. Cost models are plain objects
the broker calls directly for every fill (never through a plugin hook in the loop).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .clock import Clock
    from .data import Chunk
    from .orders import Order
    from .portfolio import Portfolio

__all__ = ["Broker", "BrokerListener", "CommissionModel", "ImpactModel", "SlippageModel"]


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
class Broker(Protocol):
    """What the engine needs from a broker.

    Call order per timestamp: ``process_open`` (orders from earlier bars against this
    bar), strategy callbacks (which call ``submit_order``/``cancel_order``),
    ``process_close`` (orders that fill at this bar's close); ``end_session`` after
    the last bar of each session. ``has_pending`` lets the engine skip the phases when no order
    is working, which keeps the loop cheap.
    """

    portfolio: Portfolio
    has_pending: bool

    def setup(self, asset_ids: Sequence[str], listener: BrokerListener, clock: Clock) -> None:
        """Create the portfolio for these assets and remember the listener and clock."""
        ...

    def submit_order(self, order: Order) -> Order:
        """Accept (or reject) an order placed at the current timestamp."""
        ...

    def cancel_order(self, order_id: int) -> bool:
        """Cancel a working order; return False if it is not working."""
        ...

    def open_orders(self, asset_id: str | None = None) -> list[Order]:
        """Return the working orders, optionally of one asset."""
        ...

    def process_open(self, chunk: Chunk, i: int) -> None:
        """Match working orders against timestamp ``i`` of ``chunk`` before the strategy."""
        ...

    def process_close(self, chunk: Chunk, i: int) -> None:
        """Fill orders that execute at this timestamp's close."""
        ...

    def end_session(self, last_ts_ns: int) -> None:
        """Expire orders whose time in force ends with the session ending at ``last_ts_ns``."""
        ...
