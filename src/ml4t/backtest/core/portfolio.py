"""Portfolio state: cash and per-asset arrays indexed by asset code, plus the fill ledger.

Quantities and average costs are ``array('d')`` buffers indexed by asset code: indexing
them from Python is as cheap as a list. Prices are not stored per bar: ``price_of(code)``
(installed by the engine) looks up an asset's latest close at or before now, so the loop
pays nothing for marking; the per-timestamp books are rebuilt vectorised from the fill
ledger (see ``marking``).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Sequence
from typing import Any

from .ledger import Ledger, LedgerRow
from .orders import round_to_lot
from .trades import TradeTracker

__all__ = ["Portfolio"]

_EPS = 1e-12


class Portfolio:
    """Cash, positions and the ledger of fills and account events.

    Parameters
    ----------
    initial_cash : float
        Starting cash (must be positive).
    asset_ids : sequence of str
        Assets, in code order.
    multiplier : sequence of float, optional
        Contract multiplier per asset code (default 1).
    is_future : sequence of bool, optional
        Per asset code: futures are marked to market through cash (variation margin), so
        a fill moves cash only by realized P&L and commission, and a position's value in
        equity is its unrealized P&L. Other assets move cash by the full notional.

    Notes
    -----
    The ledger (``fills``) holds one :class:`~.ledger.LedgerRow` per fill (kind
    ``"fill"``) and per account event (``"split"``, ``"dividend_ex"``,
    ``"dividend_paid"``, ``"borrow_fee"``). Dividends are accrued at the ex-date
    (``accrued``, part of equity) and moved to cash at the pay date.
    """

    def __init__(
        self,
        initial_cash: float,
        asset_ids: Sequence[str],
        multiplier: Sequence[float] | None = None,
        is_future: Sequence[bool] | None = None,
    ) -> None:
        n = len(asset_ids)
        self.initial_cash = float(initial_cash)
        self.cash = float(initial_cash)
        self.accrued = 0.0
        self.asset_ids = list(asset_ids)
        self.code_of = {a: i for i, a in enumerate(self.asset_ids)}
        self.qty = array("d", bytes(8 * n))
        self.avg_cost = array("d", bytes(8 * n))
        self.realized = array("d", bytes(8 * n))
        self.mult = array("d", [1.0] * n if multiplier is None else map(float, multiplier))
        self.is_future = [False] * n if is_future is None else [bool(x) for x in is_future]
        self.any_multiplier = any(m != 1.0 for m in self.mult) or any(self.is_future)
        self.price_of: Callable[[int], float] = _no_price
        self.held: dict[int, None] = {}
        self.position_by_id: dict[str, float] = {}
        self.total_commission = 0.0
        self.total_slippage = 0.0
        self.total_impact = 0.0
        self.income: dict[str, float] = {
            "dividends_earned": 0.0,
            "dividends_paid": 0.0,
            "borrow_fees": 0.0,
            "cash_in_lieu": 0.0,
        }
        self.fills = Ledger()
        self.trades = TradeTracker()

    # --- valuation ----------------------------------------------------------------------
    def position_value(self, code: int, price: float) -> float:
        """Return the value one position adds to equity at ``price``.

        Stocks count their market value; futures their unrealized P&L.
        """
        q = self.qty[code]
        if not self.any_multiplier:
            return q * price
        m = self.mult[code]
        if self.is_future[code]:
            return q * m * (price - self.avg_cost[code])
        return q * m * price

    def mark(self) -> tuple[float, float]:
        """Return ``(net positions value, gross exposure)`` at the last prices.

        Gross exposure is the sum of absolute notionals (``|qty * multiplier * price|``),
        for futures too; net value is what positions add to equity.
        """
        qty, price_of = self.qty, self.price_of
        net = gross = 0.0
        if not self.any_multiplier:
            for c in self.held:
                v = qty[c] * price_of(c)
                net += v
                gross += v if v >= 0 else -v
            return net, gross
        for c in self.held:
            p = price_of(c)
            net += self.position_value(c, p)
            gross += abs(qty[c] * self.mult[c] * p)
        return net, gross

    def equity(self) -> float:
        """Return cash plus accrued dividends plus the net value of all positions."""
        net, _ = self.mark()
        return self.cash + self.accrued + net

    def unrealized_pnl(self, code: int) -> float:
        """Return the unrealized P&L of one asset at its last price."""
        q = self.qty[code]
        if q == 0:
            return 0.0
        return q * self.mult[code] * (self.price_of(code) - self.avg_cost[code])

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
        reason: str | None = None,
    ) -> float:
        """Book a fill; return the realized P&L it produced (before commission).

        ``slippage`` and ``impact`` are the costs (currency) already contained in ``price``;
        they are recorded, not charged again. Cash moves by ``-signed_qty * multiplier *
        price - commission`` (futures: by the realized P&L minus commission). The average
        cost changes only when the position grows; reducing realizes P&L against it;
        crossing zero closes the old position and opens a new one at ``price``.
        """
        old = self.qty[code]
        new = old + signed_qty
        if abs(new) < _EPS * max(1.0, abs(old)):
            new = 0.0
        avg = self.avg_cost[code]
        m = self.mult[code]
        realized = 0.0
        if old == 0 or (old > 0) == (signed_qty > 0):
            self.avg_cost[code] = (avg * old + price * signed_qty) / new if new else 0.0
        else:
            closed = min(abs(signed_qty), abs(old))
            realized = closed * (price - avg) * (1.0 if old > 0 else -1.0) * m
            if new == 0:
                self.avg_cost[code] = 0.0
            elif (new > 0) != (old > 0):
                self.avg_cost[code] = price
        self.realized[code] += realized
        self.qty[code] = new
        if self.is_future[code]:
            self.cash += realized - commission
        else:
            self.cash -= signed_qty * price * m + commission
        self.total_commission += commission
        self.total_slippage += slippage
        self.total_impact += impact
        asset_id = self.asset_ids[code]
        self._set_held(code, asset_id, new)
        # a plain tuple in LedgerRow's field order: building a LedgerRow on every fill
        # costs more than the three appends of the row
        self.fills.append(
            (
                ts_ns,  # timestamp
                ts_index,  # ts_index
                order.order_id,  # order_id
                asset_id,  # asset_id
                signed_qty,  # quantity
                price,  # price
                commission,  # commission
                slippage,  # slippage
                order.tag,  # tag
                realized,  # realized_pnl
                code,  # code
                self.cash,  # cash_after
                new,  # position_after
                impact,  # impact
                "fill",  # kind
                self.avg_cost[code],  # avg_cost_after
                self.accrued,  # accrued_after
                reason,  # reason
                0.0,  # amount
            )
        )
        self.trades.on_fill(
            code, asset_id, old, signed_qty, price, commission, slippage, ts_ns, ts_index, order, m
        )
        return realized

    def _set_held(self, code: int, asset_id: str, new: float) -> None:
        if new == 0:
            self.held.pop(code, None)
            self.position_by_id.pop(asset_id, None)
        else:
            self.held[code] = None
            self.position_by_id[asset_id] = new

    def book_event(
        self,
        kind: str,
        code: int,
        ts_ns: int,
        ts_index: int,
        *,
        cash: float = 0.0,
        accrued: float = 0.0,
        qty_change: float = 0.0,
        price: float = math.nan,
        note: str | None = None,
    ) -> None:
        """Book an account event: cash and accrued-income changes, no trade.

        ``cash`` and ``accrued`` are added to the balances; ``qty_change`` is recorded
        only (the caller has already changed the position, e.g. for a split).
        """
        self.cash += cash
        self.accrued += accrued
        if abs(self.accrued) < 1e-9:
            self.accrued = 0.0
        self.fills.append(
            LedgerRow(
                timestamp=ts_ns,
                ts_index=ts_index,
                order_id=-1,
                asset_id=self.asset_ids[code],
                quantity=qty_change,
                price=price,
                commission=0.0,
                slippage=0.0,
                tag=None,
                realized_pnl=0.0,
                code=code,
                cash_after=self.cash,
                position_after=self.qty[code],
                impact=0.0,
                kind=kind,
                avg_cost_after=self.avg_cost[code],
                accrued_after=self.accrued,
                reason=note,
                amount=cash if cash else accrued,
            )
        )

    def apply_split(
        self, code: int, ratio: float, lot: float, ts_ns: int, ts_index: int, price_before: float
    ) -> tuple[float, float]:
        """Apply a split of ``ratio`` new units per old one; return ``(new qty, cash)``.

        The quantity becomes ``qty * ratio`` rounded toward zero to a multiple of ``lot``
        (``lot`` NaN or 0: no rounding); the average cost is divided by ``ratio``; the
        fractional remainder is settled in cash at the adjusted price
        ``price_before / ratio`` (a short pays it).
        """
        old = self.qty[code]
        exact = old * ratio
        new = round_to_lot(exact, lot) if lot > 0 else exact
        remainder = exact - new
        adj_price = price_before / ratio
        cash = remainder * adj_price * self.mult[code]
        if self.is_future[code]:
            cash = remainder * (adj_price - self.avg_cost[code] / ratio) * self.mult[code]
        self.qty[code] = new
        self.avg_cost[code] = self.avg_cost[code] / ratio if new else 0.0
        self._set_held(code, self.asset_ids[code], new)
        self.income["cash_in_lieu"] += cash
        self.trades.on_split(code, ratio, remainder, adj_price, ts_ns, ts_index)
        self.book_event(
            "split",
            code,
            ts_ns,
            ts_index,
            cash=cash,
            qty_change=new - old,
            price=adj_price,
            note=f"{ratio:g}-for-1 split: {old:g} -> {new:g}"
            + (f", remainder {remainder:g} paid at {adj_price:g}" if remainder else ""),
        )
        return new, cash


def _no_price(code: int) -> float:
    raise RuntimeError("prices are available only while a backtest runs")
