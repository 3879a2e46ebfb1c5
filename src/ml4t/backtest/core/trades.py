"""Round-trip trade tracking.

A trade runs from flat to flat in one asset. Adding to a position averages the entry
price; partial exits average the exit price; a fill that crosses zero closes the trade
and opens a new one in the other direction, with the commission split pro rata.
Excursions (MFE/MAE) are measured over the asset's bars from the entry fill's bar to the
exit fill's bar, inclusive, by a scanner the engine supplies.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = ["ClosedTrades", "OpenTrade", "TradeArrays", "TradeTracker", "closed_columns"]

#: closed-trade columns in frame order; ``_``-prefixed ones hold snapshot mappings
TRADE_COLUMNS = (
    "trade_id",
    "asset_id",
    "direction",
    "entry_timestamp",
    "exit_timestamp",
    "entry_price",
    "exit_price",
    "quantity",
    "entry_commission",
    "exit_commission",
    "commission",
    "slippage",
    "pnl_gross",
    "pnl_net",
    "pnl_percent",
    "holding_period_bars",
    "mfe",
    "mae",
    "mfe_pct",
    "mae_pct",
    "dividends",
    "borrow_fees",
    "exit_reason",
    "is_open",
    "_entry_signals",
    "_exit_signals",
    "_entry_context",
    "_exit_context",
)
_INTS = frozenset(("trade_id", "entry_timestamp", "exit_timestamp", "holding_period_bars"))
_OBJECTS = frozenset(("asset_id", "direction", "exit_reason", "is_open"))


class ClosedTrades:
    """Closed trades stored column by column (numbers in ``array`` buffers).

    One row per :meth:`add`, no dict per trade; :attr:`columns` maps each name of
    :data:`TRADE_COLUMNS` to its column.
    """

    def __init__(self) -> None:
        self.columns: dict[str, Any] = {
            k: array("q") if k in _INTS else [] if k in _OBJECTS or k[0] == "_" else array("d")
            for k in TRADE_COLUMNS
        }
        self._appenders = [self.columns[k].append for k in TRADE_COLUMNS]

    def add(self, *values: Any) -> None:
        """Append one trade: the values of :data:`TRADE_COLUMNS`, in order."""
        for append, value in zip(self._appenders, values, strict=True):
            append(value)

    def __len__(self) -> int:
        return len(self.columns["trade_id"])


Scanner = Callable[[int, int, int], tuple[float, float]]


class OpenTrade:
    """Mutable state of a trade that is still open."""

    __slots__ = (
        "asset_id",
        "borrow_fees",
        "code",
        "direction",
        "dividends",
        "entry_commission",
        "entry_context",
        "entry_index",
        "entry_qty",
        "entry_signals",
        "entry_slippage",
        "entry_ts",
        "entry_value",
        "exit_commission",
        "exit_qty",
        "exit_slippage",
        "exit_value",
        "hi",
        "lo",
        "mult",
        "qty",
        "scan_from",
        "trade_id",
    )

    def __init__(
        self,
        trade_id: int,
        code: int,
        asset_id: str,
        direction: int,
        ts: int,
        ts_index: int,
        order: Any,
        mult: float = 1.0,
    ) -> None:
        self.trade_id = trade_id
        self.mult = mult
        self.dividends = 0.0
        self.borrow_fees = 0.0
        self.code = code
        self.asset_id = asset_id
        self.direction = direction
        self.entry_ts = ts
        self.entry_index = ts_index
        self.qty = 0.0
        self.entry_qty = self.entry_value = self.entry_commission = self.entry_slippage = 0.0
        self.exit_qty = self.exit_value = self.exit_commission = self.exit_slippage = 0.0
        self.entry_signals: dict[str, float] = order._signals_snapshot or {}
        self.entry_context: dict[str, float] = order._context_snapshot or {}
        self.hi = -math.inf
        self.lo = math.inf
        self.scan_from = ts

    @property
    def entry_price(self) -> float:
        """Quantity-weighted average entry price."""
        return self.entry_value / self.entry_qty if self.entry_qty else math.nan


class TradeTracker:
    """Builds round-trip trade records from fills."""

    def __init__(self) -> None:
        self.open: dict[int, OpenTrade] = {}
        self.closed = ClosedTrades()
        #: closed trades added in bulk, column by column (see :meth:`add_closed_columns`);
        #: they come before ``closed`` in the trades frame
        self.bulk: list[dict[str, Any]] = []
        self.scanner: Scanner | None = None
        #: called with ``(trade, closed_row)`` when a trade opens (``closed_row`` None) or
        #: closes (the values of its ``trades_df`` row); None when nobody listens
        self.listener: Callable[[OpenTrade, tuple[Any, ...] | None], None] | None = None
        self._next_id = 0

    def on_fill(
        self,
        code: int,
        asset_id: str,
        old: float,
        signed_qty: float,
        price: float,
        commission: float,
        slippage: float,
        ts: int,
        ts_index: int,
        order: Any,
        mult: float = 1.0,
    ) -> None:
        """Update trades with one fill (called by the portfolio)."""
        qty = abs(signed_qty)
        direction = 1 if signed_qty > 0 else -1
        remaining = qty
        if old != 0 and (old > 0) != (signed_qty > 0):
            trade = self.open[code]
            closing = min(qty, abs(old))
            share = closing / qty
            trade.exit_qty += closing
            trade.exit_value += closing * price
            trade.exit_commission += commission * share
            trade.exit_slippage += slippage * share
            trade.qty -= closing
            remaining = qty - closing
            if remaining <= 1e-12 * max(1.0, qty) and trade.qty > 1e-12 * max(1.0, trade.entry_qty):
                return
            self._close(trade, ts, ts_index, order, is_open=False, mark_price=math.nan)
            if remaining <= 1e-12 * max(1.0, qty):
                return
            commission *= remaining / qty
            slippage *= remaining / qty
        current = self.open.get(code)
        if current is None:
            current = OpenTrade(self._next_id, code, asset_id, direction, ts, ts_index, order, mult)
            self._next_id += 1
            self.open[code] = current
            opened = True
        else:
            opened = False
        current.qty += remaining
        current.entry_qty += remaining
        current.entry_value += remaining * price
        current.entry_commission += commission
        current.entry_slippage += slippage
        if opened and self.listener is not None:
            self.listener(current, None)

    def on_split(
        self, code: int, ratio: float, remainder: float, price: float, ts: int, ts_index: int
    ) -> None:
        """Rescale an open trade for a split; the cash-settled remainder is a partial exit.

        Quantities are multiplied by ``ratio`` and prices divided by it (values unchanged),
        so entry and exit prices of a trade spanning a split are in post-split units.
        """
        trade = self.open.get(code)
        if trade is None:
            return
        self._scan(trade, ts - 1)  # excursions before the split, in pre-split prices
        trade.qty *= ratio
        trade.entry_qty *= ratio
        trade.exit_qty *= ratio
        trade.hi /= ratio
        trade.lo /= ratio
        left = abs(remainder)
        if left:
            trade.exit_qty += left
            trade.exit_value += left * price
            trade.qty -= left
            if trade.qty <= 1e-12 * max(1.0, trade.entry_qty):
                self._close(trade, ts, ts_index, _SPLIT, is_open=False, mark_price=math.nan)

    def on_income(self, code: int, amount: float, kind: str) -> None:
        """Attribute a dividend (``kind="dividends"``) or fee to the asset's open trade."""
        trade = self.open.get(code)
        if trade is not None:
            setattr(trade, kind, getattr(trade, kind) + amount)

    def checkpoint(self, upto_ts: int) -> None:
        """Fold bars up to ``upto_ts`` into open trades' excursions (before data is dropped)."""
        if self.scanner is None:
            return
        for trade in self.open.values():
            self._scan(trade, upto_ts)

    def _scan(self, trade: OpenTrade, upto_ts: int) -> None:
        if self.scanner is None or upto_ts < trade.scan_from:
            return
        hi, lo = self.scanner(trade.code, trade.scan_from, upto_ts)
        trade.hi = max(trade.hi, hi)
        trade.lo = min(trade.lo, lo)
        trade.scan_from = upto_ts + 1

    def _close(
        self,
        trade: OpenTrade,
        ts: int,
        ts_index: int,
        order: Any,
        *,
        is_open: bool,
        mark_price: float,
    ) -> None:
        self._scan(trade, ts)
        del self.open[trade.code]
        if is_open:  # still open at the end: valued at the last price, no exit costs
            exit_qty, exit_value = trade.qty, trade.qty * mark_price
            exit_qty += trade.exit_qty
            exit_value += trade.exit_value
            reason = "end_of_data"
            exit_signals: dict[str, float] = {}
            exit_context: dict[str, float] = {}
        else:
            exit_qty, exit_value = trade.exit_qty, trade.exit_value
            reason = order.tag or "signal"
            exit_signals = order._signals_snapshot or {}
            exit_context = order._context_snapshot or {}
        d = trade.direction
        entry_price = trade.entry_price
        exit_price = exit_value / exit_qty if exit_qty else math.nan
        pnl_gross = d * (exit_value - entry_price * exit_qty) * trade.mult
        commission = trade.entry_commission + trade.exit_commission
        pnl_net = pnl_gross - commission
        cost_basis = entry_price * exit_qty * trade.mult
        hi = trade.hi if trade.hi > -math.inf else entry_price
        lo = trade.lo if trade.lo < math.inf else entry_price
        fav = (hi - entry_price) if d > 0 else (entry_price - lo)
        adv = (lo - entry_price) if d > 0 else (entry_price - hi)
        fav, adv = max(fav, 0.0), min(adv, 0.0)
        row = (
            trade.trade_id,
            trade.asset_id,
            "long" if d > 0 else "short",
            trade.entry_ts,
            ts,
            entry_price,
            exit_price,
            exit_qty,
            trade.entry_commission,
            trade.exit_commission,
            commission,
            trade.entry_slippage + trade.exit_slippage,
            pnl_gross,
            pnl_net,
            pnl_net / cost_basis if cost_basis else math.nan,
            ts_index - trade.entry_index,
            fav * exit_qty * trade.mult,
            adv * exit_qty * trade.mult,
            fav / entry_price,
            adv / entry_price,
            trade.dividends,
            trade.borrow_fees,
            reason,
            is_open,
            trade.entry_signals,
            exit_signals,
            trade.entry_context,
            exit_context,
        )
        self.closed.add(*row)
        if not is_open and self.listener is not None:
            self.listener(trade, row)

    def close_all_open(self, ts: int, ts_index: int, price_of: Callable[[int], float]) -> None:
        """Record still-open trades as ``end_of_data`` at the last prices (no fills)."""
        for trade in sorted(self.open.values(), key=lambda t: t.trade_id):
            self._close(
                trade, ts, ts_index, None, is_open=True, mark_price=float(price_of(trade.code))
            )


class _SplitExit:
    """Stand-in order for a trade closed by a split's cash-settled remainder."""

    tag = "split_cash_in_lieu"
    _signals_snapshot: dict[str, float] | None = None
    _context_snapshot: dict[str, float] | None = None


_SPLIT = _SplitExit()


class TradeArrays(NamedTuple):
    """Closed round trips as arrays, one element per trade (what :func:`closed_columns`
    reads): the running totals :class:`OpenTrade` keeps, at the close."""

    trade_id: np.ndarray
    code: np.ndarray
    #: 1 long, -1 short
    direction: np.ndarray
    #: timestamp indices and timestamps (ns) of the first entry and of the closing exit
    entry_index: np.ndarray
    exit_index: np.ndarray
    entry_ts: np.ndarray
    exit_ts: np.ndarray
    entry_qty: np.ndarray
    entry_value: np.ndarray
    entry_commission: np.ndarray
    entry_slippage: np.ndarray
    exit_qty: np.ndarray
    exit_value: np.ndarray
    exit_commission: np.ndarray
    exit_slippage: np.ndarray
    #: the highest high and lowest low over the trade's bars
    high: np.ndarray
    low: np.ndarray


def closed_columns(
    trades: TradeArrays,
    asset_ids: Sequence[str],
    reasons: Sequence[str],
    mult: float = 1.0,
) -> dict[str, Any]:
    """Return closed trades as columns, computed as :meth:`TradeTracker._close` does.

    ``reasons`` is the exit reason per trade. Element-wise numpy arithmetic in the same
    order as the scalar code gives the same values, bit for bit.
    """
    eq, ev, ec, es = (
        trades.entry_qty,
        trades.entry_value,
        trades.entry_commission,
        trades.entry_slippage,
    )
    xq, xv, xc, xs = (
        trades.exit_qty,
        trades.exit_value,
        trades.exit_commission,
        trades.exit_slippage,
    )
    hi, lo = trades.high, trades.low
    d = trades.direction.astype(np.float64)
    long = trades.direction > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        entry_price = ev / eq
        exit_price = np.where(xq != 0, xv / np.where(xq != 0, xq, 1.0), np.nan)
        pnl_gross = d * (xv - entry_price * xq) * mult
        commission = ec + xc
        pnl_net = pnl_gross - commission
        cost_basis = entry_price * xq * mult
        hi = np.where(hi > -np.inf, hi, entry_price)
        lo = np.where(lo < np.inf, lo, entry_price)
        fav = np.where(long, hi - entry_price, entry_price - lo)
        adv = np.where(long, lo - entry_price, entry_price - hi)
        fav = np.where(fav < 0.0, 0.0, fav)
        adv = np.where(adv > 0.0, 0.0, adv)
        pnl_percent = np.where(cost_basis != 0, pnl_net / cost_basis, np.nan)
        cols: dict[str, Any] = {
            "trade_id": trades.trade_id.copy(),
            "asset_id": [asset_ids[c] for c in trades.code.tolist()],
            "direction": np.where(long, "long", "short").tolist(),
            "entry_timestamp": trades.entry_ts.copy(),
            "exit_timestamp": trades.exit_ts.copy(),
            "entry_price": entry_price,
            "exit_price": exit_price,
            "quantity": xq.copy(),
            "entry_commission": ec.copy(),
            "exit_commission": xc.copy(),
            "commission": commission,
            "slippage": es + xs,
            "pnl_gross": pnl_gross,
            "pnl_net": pnl_net,
            "pnl_percent": pnl_percent,
            "holding_period_bars": trades.exit_index - trades.entry_index,
            "mfe": fav * xq * mult,
            "mae": adv * xq * mult,
            "mfe_pct": fav / entry_price,
            "mae_pct": adv / entry_price,
            "dividends": np.zeros(len(eq)),
            "borrow_fees": np.zeros(len(eq)),
            "exit_reason": list(reasons),
            "is_open": np.zeros(len(eq), dtype=bool),
        }
    return cols
