"""Immutable events delivered to strategies.

:class:`MarketEvent` is created once per bar in the hot loop, so it is a tuple subclass
with C-level field getters: creating one costs about as much as creating a tuple, and it
cannot be mutated. Its mappings (``signals``, ``indicators``, ``context``) are read-only
views onto the feed's column data at one row, never dicts built per bar.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .data import Chunk

__all__ = ["FillEvent", "MarketEvent", "OrderEvent", "RowView", "TradeEvent"]

try:  # CPython's fast field descriptor used by namedtuple
    from collections import _tuplegetter  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - other interpreters

    def _tuplegetter(index: int, doc: str) -> Any:
        return property(itemgetter(index), doc=doc)


_new_tuple = tuple.__new__


class RowView(tuple, Mapping[str, float]):  # type: ignore[type-arg,misc]
    """Read-only mapping view of named columns at one row.

    Looking up a name reads the column at the row; nothing is copied. ``NaN`` values are
    returned as they are (a missing prediction is ``nan``, never silently ``0``). It is a
    tuple of ``(columns, row)`` underneath so that creating one costs no Python call.
    """

    __slots__ = ()

    _cols: Mapping[str, Any] = _tuplegetter(0, "Column name -> values.")
    _row: int = _tuplegetter(1, "Row index.")

    def __new__(cls, cols: Mapping[str, Any], row: int) -> RowView:
        return tuple.__new__(cls, (cols, row))

    def __getitem__(self, key: str) -> float:  # type: ignore[override]
        return self._cols[key][self._row]  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        return iter(self._cols.keys())

    def __len__(self) -> int:
        return len(self._cols.keys())

    def __contains__(self, key: object) -> bool:
        return key in self._cols.keys()  # noqa: SIM118 - LazyColumns.keys() lists every name

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self.items()))

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k!r}: {self[k]!r}" for k in self) + "}"


class MarketEvent(tuple):  # type: ignore[type-arg]
    """One bar of one asset, as the strategy sees it after the bar has closed.

    Attributes
    ----------
    timestamp : datetime
        Bar timestamp (timezone-aware when the data is).
    asset_id : str
        Asset identifier; ``symbol`` is an alias.
    open, high, low, close, volume : float
        Bar prices and volume.
    signals : Mapping[str, float]
        Read-only view of the signal columns at this bar (``NaN`` when missing).
    indicators : Mapping[str, float]
        Read-only view of the indicator columns at this bar.
    context : Mapping[str, float]
        Market-wide values (as-of this timestamp), the same mapping ``Context`` serves.

    Notes
    -----
    Events are immutable tuples; build them with :meth:`create` in tests.
    """

    __slots__ = ()

    timestamp_ns: int = _tuplegetter(0, "Timestamp as integer nanoseconds since the epoch (UTC).")
    asset_id: str = _tuplegetter(1, "Asset identifier.")
    close: float = _tuplegetter(2, "Close price of the bar.")
    _chunk: Chunk = _tuplegetter(3, "Column chunk the bar lives in.")
    _row: int = _tuplegetter(4, "Row of the bar inside its chunk.")

    @property
    def symbol(self) -> str:
        """Alias of :attr:`asset_id`."""
        return self[1]  # type: ignore[no-any-return]

    @property
    def timestamp(self) -> datetime:
        """Return the bar timestamp as a ``datetime`` (converted on access)."""
        return self[3].to_datetime(self[0])  # type: ignore[no-any-return]

    @property
    def open(self) -> float:
        """Open price of the bar."""
        return self[3].px["open"][self[4]]  # type: ignore[no-any-return]

    @property
    def high(self) -> float:
        """High price of the bar."""
        return self[3].px["high"][self[4]]  # type: ignore[no-any-return]

    @property
    def low(self) -> float:
        """Low price of the bar."""
        return self[3].px["low"][self[4]]  # type: ignore[no-any-return]

    @property
    def volume(self) -> float:
        """Volume of the bar."""
        return self[3].px["volume"][self[4]]  # type: ignore[no-any-return]

    @property
    def signals(self) -> RowView:
        """Read-only view of the signal columns at this bar."""
        return _new_tuple(RowView, (self[3].sig, self[4]))

    @property
    def indicators(self) -> RowView:
        """Read-only view of the indicator columns at this bar."""
        return _new_tuple(RowView, (self[3].ind, self[4]))

    @property
    def context(self) -> Mapping[str, float]:
        """Market-wide values as of this bar's timestamp."""
        return self[3].context_at(self[0])  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return (
            f"MarketEvent({self.timestamp.isoformat()}, {self.asset_id}, o={self.open:g} "
            f"h={self.high:g} l={self.low:g} c={self.close:g} v={self.volume:g}, "
            f"signals={self.signals!r})"
        )

    def __reduce__(self) -> Any:
        raise TypeError("MarketEvent cannot be pickled; copy the fields you need")


@dataclass(frozen=True, slots=True)
class FillEvent:
    """One execution of (part of) an order.

    Attributes
    ----------
    order_id : int
    asset_id : str
    timestamp : datetime
        Timestamp of the bar the fill happened on.
    side : str
        ``"buy"`` or ``"sell"``.
    quantity : float
        Positive filled quantity.
    price : float
        Execution price including slippage and market impact.
    commission : float
        Commission charged for this fill (currency).
    slippage : float
        Slippage cost of this fill in currency (``quantity * |price - base price|``).
    base_price : float
        Price before slippage (the open, close, limit or stop price).
    tag : str or None
        The order's tag.
    impact : float
        Market-impact cost of this fill in currency (``quantity * impact per unit``),
        already contained in ``price``.
    """

    order_id: int
    asset_id: str
    timestamp: datetime
    side: str
    quantity: float
    price: float
    commission: float
    slippage: float
    base_price: float
    tag: str | None = None
    impact: float = 0.0

    @property
    def signed_quantity(self) -> float:
        """Return the quantity with its sign (+ buy, - sell)."""
        return self.quantity if self.side == "buy" else -self.quantity

    @property
    def value(self) -> float:
        """Return the traded notional ``quantity * price``."""
        return self.quantity * self.price


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """A change in an order's status that is not a fill (rejected, cancelled, expired).

    Attributes
    ----------
    order_id : int
    asset_id : str
    timestamp : datetime
    status : str
        ``"rejected"``, ``"cancelled"`` or ``"expired"``.
    reason : str
        Human-readable reason, e.g. ``"insufficient cash: need 10,250.00, have 9,000.00"``.
    """

    order_id: int
    asset_id: str
    timestamp: datetime
    status: str
    reason: str


@dataclass(frozen=True, slots=True)
class TradeEvent:
    """A round trip opened or closed (delivered to :meth:`Strategy.on_trade`).

    Sent when a fill opens a position from flat (``status="open"``) and when a fill (or a
    split's cash-settled remainder) brings it back to flat or across zero
    (``status="closed"``; a fill that crosses zero sends the close, then the open of the
    new trade). It is the ``trades_df`` row of the trade as of that moment; Backtrader's
    ``notify_trade`` reports the same two moments.

    Attributes
    ----------
    trade_id : int
        The trade's ``trade_id`` in ``trades_df``.
    asset_id : str
    status : str
        ``"open"`` or ``"closed"``.
    direction : str
        ``"long"`` or ``"short"``.
    entry_timestamp : datetime
    exit_timestamp : datetime or None
        ``None`` while open.
    quantity : float
        Positive size: the opening fill's quantity for an open event, the quantity
        closed for a close event.
    entry_price : float
        Quantity-weighted average entry price.
    exit_price : float
        Quantity-weighted average exit price (NaN while open).
    pnl_gross : float
        Realized P&L before commission (0.0 while open).
    pnl_net : float
        ``pnl_gross`` minus the trade's entry and exit commission.
    commission : float
        Commission charged so far.
    """

    trade_id: int
    asset_id: str
    status: str
    direction: str
    entry_timestamp: datetime
    exit_timestamp: datetime | None
    quantity: float
    entry_price: float
    exit_price: float
    pnl_gross: float
    pnl_net: float
    commission: float

    @property
    def is_closed(self) -> bool:
        """Return True for the event that closes the trade."""
        return self.status == "closed"
