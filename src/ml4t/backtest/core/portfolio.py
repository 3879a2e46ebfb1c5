"""Portfolio state: cash and per-asset arrays indexed by asset code, plus the fill ledger.

Quantities and average costs are ``array('d')`` buffers indexed by asset code: indexing
them from Python is as cheap as a list. Prices are not stored per bar: ``price_of(code)``
(installed by the engine) looks up an asset's latest close at or before now, so the loop
pays nothing for marking; the per-timestamp books are rebuilt vectorised from the fill
ledger (see ``marking``).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from typing import Any

from .trades import TradeTracker

__all__ = ["Portfolio"]

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
        self.price_of: Callable[[int], float] = _no_price
        self.held: dict[int, None] = {}
        self.position_by_id: dict[str, float] = {}
        self.total_commission = 0.0
        self.total_slippage = 0.0
        self.total_impact = 0.0
        self.fills: list[tuple[Any, ...]] = []
        self.trades = TradeTracker()

    # --- valuation ----------------------------------------------------------------------
    def mark(self) -> tuple[float, float]:
        """Return ``(net positions value, gross exposure)`` at the last prices."""
        qty, price_of = self.qty, self.price_of
        net = gross = 0.0
        for c in self.held:
            v = qty[c] * price_of(c)
            net += v
            gross += v if v >= 0 else -v
        return net, gross

    def equity(self) -> float:
        """Return cash plus the net market value of all positions."""
        return self.cash + self.mark()[0]

    def unrealized_pnl(self, code: int) -> float:
        """Return the unrealized P&L of one asset at its last price."""
        q = self.qty[code]
        return 0.0 if q == 0 else q * (self.price_of(code) - self.avg_cost[code])

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
        impact: float = 0.0,
    ) -> float:
        """Book a fill; return the realized P&L it produced (before commission).

        ``slippage`` and ``impact`` are the costs (currency) already contained in ``price``;
        they are recorded, not charged again. Cash moves by ``-signed_qty * price -
        commission``. The average cost changes only
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
        self.total_impact += impact
        asset_id = self.asset_ids[code]
        if new == 0:
            self.held.pop(code, None)
            self.position_by_id.pop(asset_id, None)
        else:
            self.held[code] = None
            self.position_by_id[asset_id] = new
        self.fills.append(
            (
                ts_ns,
                ts_index,
                order.order_id,
                asset_id,
                signed_qty,
                price,
                commission,
                slippage,
                order.tag,
                realized,
                code,
                self.cash,
                new,
                impact,
            )
        )
        self.trades.on_fill(
            code, asset_id, old, signed_qty, price, commission, slippage, ts_ns, ts_index, order
        )
        return realized


def _no_price(code: int) -> float:
    raise RuntimeError("prices are available only while a backtest runs")
