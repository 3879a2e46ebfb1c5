"""Mark-to-market after the loop, one vectorised pass per block.

Cash and positions only change on fills, so the per-timestamp books are step functions
of the fill ledger. For each block this module rebuilds, for every timestamp, the cash,
the net and gross value of positions at each asset's latest close and the number of
positions, with numpy over the block's arrays: the per-bar loop records nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .data import Block

if TYPE_CHECKING:
    from .ledger import Ledger

__all__ = ["TimestampBooks"]


class TimestampBooks:
    """The books after every timestamp, built block by block from the fill ledger.

    Per timestamp: cash, accrued dividends, the net and signed value of positions, gross
    exposure and the number of positions (:meth:`arrays`).
    """

    def __init__(
        self,
        initial_cash: float,
        mult: Any = None,
        is_future: Any = None,
    ) -> None:
        self.cash = float(initial_cash)
        self.accrued = 0.0
        self.mult = mult
        self.is_future = is_future
        self.avg: dict[int, float] = {}
        self.qty: dict[int, float] = {}
        self.price: dict[int, float] = {}
        self.fill_pos = 0
        self.k0 = 0
        self.out: dict[str, list[np.ndarray]] = {
            "cash": [],
            "accrued": [],
            "net": [],
            "signed": [],
            "gross": [],
            "npos": [],
        }

    def mark_block(self, block: Block, fills: Ledger, n_done: int) -> None:
        """Append the books of the first ``n_done`` timestamps of ``block``."""
        T = n_done
        if T <= 0:
            return
        k0 = self.k0
        start = self.fill_pos
        at = fills.column("ts_index", start)
        j = start + int(np.searchsorted(at, k0 + T, side="left"))
        self.fill_pos = j
        steps = np.arange(T)
        if j > start:
            f_t = fills.column("ts_index", start, j) - k0
            f_code = fills.column("code", start, j)
            f_cash = fills.column("cash_after", start, j)
            f_qty = fills.column("position_after", start, j)
            f_avg = fills.column("avg_cost_after", start, j)
            f_acc = fills.column("accrued_after", start, j)
            cash = _step(f_t, f_cash, self.cash, steps)
            accrued = _step(f_t, f_acc, self.accrued, steps)
        else:
            f_t = f_code = np.empty(0, np.int64)
            f_cash = f_qty = f_avg = np.empty(0)
            cash = np.full(T, self.cash)
            accrued = np.full(T, self.accrued)
        net = np.zeros(T)
        signed = np.zeros(T)
        gross = np.zeros(T)
        npos = np.zeros(T, dtype=np.int64)
        codes = set(self.qty) | set(f_code.tolist())
        close = block.cols["close"]
        for code in sorted(codes):
            mask = f_code == code
            qty = _step(f_t[mask], f_qty[mask], self.qty.get(code, 0.0), steps)
            rows = block.rows_of(code)
            price = np.full(T, np.nan)
            if rows.shape[0]:
                row_t = np.searchsorted(block.ts, block.ts_of(code))
                keep = row_t < T
                price[row_t[keep]] = close[rows[keep]]
            price = _ffill(price, self.price.get(code, np.nan))
            m = 1.0 if self.mult is None else float(self.mult[code])
            notional = np.where(qty != 0, qty * m * price, 0.0)
            if self.is_future is not None and self.is_future[code]:
                avg = _step(f_t[mask], f_avg[mask], self.avg.get(code, 0.0), steps)
                net += np.where(qty != 0, notional - qty * m * avg, 0.0)
                self.avg[code] = float(avg[-1])
            else:
                net += notional
            signed += notional
            gross += np.abs(notional)
            npos += qty != 0
            if qty[-1] != 0:
                self.qty[code] = float(qty[-1])
            else:
                self.qty.pop(code, None)
            if not np.isnan(price[-1]):
                self.price[code] = float(price[-1])
        self.cash = float(cash[-1])
        self.accrued = float(accrued[-1])
        self.k0 += T
        for key, arr in (
            ("cash", cash),
            ("accrued", accrued),
            ("net", net),
            ("signed", signed),
            ("gross", gross),
            ("npos", npos),
        ):
            self.out[key].append(arr)

    def append_books(
        self, cash: np.ndarray, net: np.ndarray, gross: np.ndarray, npos: np.ndarray
    ) -> None:
        """Append books computed elsewhere (the compiled path: stocks, no accruals)."""
        T = cash.shape[0]
        for key, arr in (
            ("cash", cash),
            ("accrued", np.zeros(T)),
            ("net", net),
            ("signed", net),
            ("gross", gross),
            ("npos", npos),
        ):
            self.out[key].append(arr)
        self.k0 += T

    def arrays(self) -> dict[str, np.ndarray]:
        """Return the concatenated books."""
        return {
            k: (np.concatenate(v) if v else np.empty(0, np.int64 if k == "npos" else np.float64))
            for k, v in self.out.items()
        }


def _step(at: np.ndarray, values: np.ndarray, before: float, steps: np.ndarray) -> np.ndarray:
    """Value after the last event at or before each step (``before`` until the first)."""
    if not at.shape[0]:
        return np.full(steps.shape[0], before)
    pos = np.searchsorted(at, steps, side="right") - 1
    out = values[np.maximum(pos, 0)]
    return np.where(pos >= 0, out, before)


def _ffill(x: np.ndarray, carry: float) -> np.ndarray:
    idx = np.where(np.isnan(x), -1, np.arange(x.shape[0]))
    np.maximum.accumulate(idx, out=idx)
    out = x[np.maximum(idx, 0)]
    return np.where(idx >= 0, out, carry)
