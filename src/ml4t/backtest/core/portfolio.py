"""Portfolio state: cash and per-asset arrays indexed by asset code, plus the fill ledger.

Quantities, average costs and last prices are ``array('d')`` buffers: indexing them from
the Python loop is as cheap as a list, and :attr:`Portfolio.qty_np` /
:attr:`Portfolio.last_np` are zero-copy numpy views for vectorised marking of large books.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any

import numpy as np

from .trades import TradeTracker

__all__ = ["Portfolio"]

_VECTOR_MARK_THRESHOLD = 16
_EPS = 1e-12


class Portfolio:
    """Cash, positions and the ledger of fills.

    Parameters
    ----------
    initial_cash : float
        Starting cash (must be positive).
    asset_ids : sequence of str
        Assets, in code order.
    """

    def __init__(self, initial_cash: float, asset_ids: Sequence[str]) -> None:
        n = len(asset_ids)
        self.initial_cash = float(initial_cash)
        self.cash = float(initial_cash)
        self.asset_ids = list(asset_ids)
        self.code_of = {a: i for i, a in enumerate(self.asset_ids)}
        self.qty = array("d", bytes(8 * n))
        self.avg_cost = array("d", bytes(8 * n))
        self.realized = array("d", bytes(8 * n))
        self.last_price = array("d", [float("nan")] * n)
        self.qty_np = np.frombuffer(self.qty, dtype=np.float64) if n else np.zeros(0)
        self.last_np = np.frombuffer(self.last_price, dtype=np.float64) if n else np.zeros(0)
        self.held: dict[int, None] = {}
        self.position_by_id: dict[str, float] = {}
        self.total_commission = 0.0
        self.total_slippage = 0.0
        self.fills: list[tuple[Any, ...]] = []
        self.trades = TradeTracker()

    # --- valuation ----------------------------------------------------------------------
    def mark(self) -> tuple[float, float]:
        """Return ``(net positions value, gross exposure)`` at the last prices."""
        held = self.held
        if not held:
            return 0.0, 0.0
        if len(held) <= _VECTOR_MARK_THRESHOLD:
            qty, last = self.qty, self.last_price
            net = gross = 0.0
            for c in held:
                v = qty[c] * last[c]
                net += v
                gross += v if v >= 0 else -v
            return net, gross
        values = self.qty_np * np.nan_to_num(self.last_np)
        return float(values.sum()), float(np.abs(values).sum())

    def positions_value(self) -> float:
        """Return the net market value of all positions."""
        return self.mark()[0]

    def equity(self) -> float:
        """Return cash plus the net market value of all positions."""
        return self.cash + self.mark()[0]

    def unrealized_pnl(self, code: int) -> float:
        """Return the unrealized P&L of one asset at its last price."""
        q = self.qty[code]
        return 0.0 if q == 0 else q * (self.last_price[code] - self.avg_cost[code])

    # --- bookkeeping -------------------------------------------------------------------
    def apply_fill(
        self,
        code: int,
        signed_qty: float,
        price: float,
        commission: float,
        slippage: float,
        ts_ns: int,
        ts_index: int,
        order: Any,
    ) -> float:
        """Book a fill; return the realized P&L it produced (before commission).

        Cash moves by ``-signed_qty * price - commission``. The average cost changes only
        when the position grows; reducing realizes P&L against it; crossing zero closes
        the old position and opens a new one at ``price``.
        """
        old = self.qty[code]
        new = old + signed_qty
        if abs(new) < _EPS * max(1.0, abs(old)):
            new = 0.0
        avg = self.avg_cost[code]
        realized = 0.0
        if old == 0 or (old > 0) == (signed_qty > 0):
            self.avg_cost[code] = (avg * old + price * signed_qty) / new if new else 0.0
        else:
            closed = min(abs(signed_qty), abs(old))
            realized = closed * (price - avg) * (1.0 if old > 0 else -1.0)
            if new == 0:
                self.avg_cost[code] = 0.0
            elif (new > 0) != (old > 0):
                self.avg_cost[code] = price
        self.realized[code] += realized
        self.qty[code] = new
        self.cash -= signed_qty * price + commission
        self.total_commission += commission
        self.total_slippage += slippage
        asset_id = self.asset_ids[code]
        if new == 0:
            self.held.pop(code, None)
            self.position_by_id.pop(asset_id, None)
        else:
            self.held[code] = None
            self.position_by_id[asset_id] = new
        self.fills.append(
            (ts_ns, ts_index, order.order_id, asset_id, signed_qty, price, commission, slippage,
             order.tag, realized)
        )
        self.trades.on_fill(code, asset_id, old, signed_qty, price, commission, slippage,
                            ts_ns, ts_index, order)
        return realized
