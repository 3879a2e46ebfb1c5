"""Compare two runs of one scenario: fills, round-trip trades, equity and cash per bar.

Fills are matched in a canonical order (bar, asset, buys after sells, then size); trades are
derived from each run's fills by one rule (:func:`round_trips`), so both sides are built the
same way. A tolerance (from ``tolerances.toml``) bounds prices and quantities relatively and
money (commission, P&L, equity) absolutely. Cash per bar is measured and reported but not
held to the tolerance: frameworks book a fill's cash at different moments (Backtrader's
cheat-on-close books it one bar late) while the equity curve, fills and trades are what a
user compares.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .scenario import Fill, RunResult

__all__ = ["Comparison", "Tolerance", "Trade", "compare", "round_trips", "tolerance"]

_TOML = Path(__file__).with_name("tolerances.toml")


@dataclass(frozen=True)
class Tolerance:
    """A named tolerance: relative for prices and quantities, absolute for money."""

    name: str
    description: str
    price_rel: float
    qty_rel: float
    money_abs: float


@lru_cache(maxsize=1)
def _tolerances() -> dict[str, Tolerance]:
    raw = tomllib.loads(_TOML.read_text())
    return {name: Tolerance(name=name, **values) for name, values in raw.items()}


def tolerance(name: str) -> Tolerance:
    """Return the tolerance ``name`` from ``tolerances.toml`` (KeyError naming the file)."""
    tols = _tolerances()
    if name not in tols:
        raise KeyError(f"{_TOML}: no tolerance {name!r}; have {sorted(tols)}")
    return tols[name]


@dataclass(frozen=True)
class Trade:
    """A round trip of one asset from flat to flat (or to a reversal)."""

    asset: str
    entry_bar: int
    exit_bar: int
    quantity: float  # signed: + long, - short (the largest size held)
    entry_price: float  # average of the fills that opened or grew it
    exit_price: float  # average of the fills that reduced or closed it
    pnl: float  # net of all commissions of its fills


def round_trips(fills: list[Fill]) -> list[Trade]:
    """Pair each asset's fills into closed round trips (average-price accounting).

    A fill that reverses a position closes the trade with its closing part and opens the
    next with the rest (its commission is split pro rata).
    """
    # asset -> [pos, entry_bar, in_qty, in_value, out_qty, out_value, fees, peak size]
    state: dict[str, list[float]] = {}
    out: list[Trade] = []
    for f in fills:
        s = state.setdefault(f.asset, [0.0, -1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
        qty, fee = f.quantity, f.commission
        while abs(qty) > 1e-12:
            pos = s[0]
            if pos == 0 or (pos > 0) == (qty > 0):  # open or grow
                if pos == 0:
                    s[1:] = [f.bar, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
                s[0] = pos + qty
                s[2] += abs(qty)
                s[3] += abs(qty) * f.price
                s[6] += fee
                s[7] = max(s[7], abs(s[0]))
                break
            part = math.copysign(min(abs(qty), abs(pos)), qty)
            share = fee * abs(part) / abs(qty)
            s[0] = pos + part
            s[4] += abs(part)
            s[5] += abs(part) * f.price
            s[6] += share
            fee -= share
            qty -= part
            if abs(s[0]) <= 1e-12 * max(1.0, s[7]):
                sign = 1.0 if pos > 0 else -1.0
                entry, exit_ = s[3] / s[2], s[5] / s[4]
                pnl = sign * (exit_ - entry) * s[4] - s[6]
                out.append(Trade(f.asset, int(s[1]), f.bar, sign * s[7], entry, exit_, pnl))
                s[0] = 0.0
    return out


def _canonical(fills: list[Fill]) -> list[Fill]:
    return sorted(fills, key=lambda f: (f.bar, f.asset, f.quantity > 0, abs(f.quantity)))


def _trades(fills: list[Fill]) -> list[Trade]:
    return sorted(round_trips(fills), key=lambda t: (t.asset, t.entry_bar, t.exit_bar))


def _rel(a: float, b: float) -> float:
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))


@dataclass
class Comparison:
    """The differences between two runs, and whether they are within the tolerance."""

    tolerance: Tolerance
    fills: tuple[int, int]
    trades: tuple[int, int]
    price_rel: float = 0.0
    qty_rel: float = 0.0
    commission_abs: float = 0.0
    pnl_abs: float = 0.0
    equity_abs: float = 0.0
    cash_abs: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True if everything is within the tolerance."""
        return not self.problems

    def size(self) -> str:
        """A one-line summary of the largest deviations."""
        parts = []
        if self.fills[0] != self.fills[1]:
            parts.append(f"fills {self.fills[0]} vs {self.fills[1]}")
        if self.trades[0] != self.trades[1]:
            parts.append(f"trades {self.trades[0]} vs {self.trades[1]}")
        for label, value in (
            ("price", self.price_rel),
            ("qty", self.qty_rel),
        ):
            if value:
                parts.append(f"{label} {value:.3g} rel")
        for label, value in (
            ("commission", self.commission_abs),
            ("pnl", self.pnl_abs),
            ("equity", self.equity_abs),
            ("cash", self.cash_abs),
        ):
            if value:
                parts.append(f"{label} {value:.6g}")
        return ", ".join(parts) if parts else "identical"


def compare(ours: RunResult, theirs: RunResult, tol: Tolerance) -> Comparison:
    """Compare ``ours`` with ``theirs`` under ``tol``."""
    a, b = _canonical(ours.fills), _canonical(theirs.fills)
    ta, tb = _trades(ours.fills), _trades(theirs.fills)
    cmp = Comparison(tol, (len(a), len(b)), (len(ta), len(tb)))
    if len(a) != len(b):
        cmp.problems.append(f"{len(a)} fills vs {len(b)}")
    for k, (x, y) in enumerate(zip(a, b, strict=False)):
        if (x.bar, x.asset) != (y.bar, y.asset) or (x.quantity > 0) != (y.quantity > 0):
            cmp.problems.append(f"fill {k}: {x} vs {y}")
            break
        pr, qr = _rel(x.price, y.price), _rel(x.quantity, y.quantity)
        ca = abs(x.commission - y.commission)
        cmp.price_rel, cmp.qty_rel = max(cmp.price_rel, pr), max(cmp.qty_rel, qr)
        cmp.commission_abs = max(cmp.commission_abs, ca)
        beyond = pr > tol.price_rel or qr > tol.qty_rel or ca > tol.money_abs
        if beyond and not any(p.startswith("fill ") for p in cmp.problems):
            cmp.problems.append(f"fill {k}: {x} vs {y}")
    if len(ta) != len(tb):
        cmp.problems.append(f"{len(ta)} round trips vs {len(tb)}")
    for k, (x, y) in enumerate(zip(ta, tb, strict=False)):
        if (x.asset, x.entry_bar, x.exit_bar) != (y.asset, y.entry_bar, y.exit_bar):
            cmp.problems.append(f"trade {k}: {x} vs {y}")
            break
        cmp.pnl_abs = max(cmp.pnl_abs, abs(x.pnl - y.pnl))
        cmp.price_rel = max(cmp.price_rel, _rel(x.entry_price, y.entry_price))
        cmp.price_rel = max(cmp.price_rel, _rel(x.exit_price, y.exit_price))
    if cmp.pnl_abs > tol.money_abs:
        cmp.problems.append(f"round-trip P&L differs by up to {cmp.pnl_abs:.6g}")
    for label, x_arr, y_arr in (
        ("equity", ours.equity, theirs.equity),
        ("cash", ours.cash, theirs.cash),
    ):
        if len(x_arr) != len(y_arr):
            cmp.problems.append(f"{label}: {len(x_arr)} bars vs {len(y_arr)}")
            continue
        diff = np.abs(np.asarray(x_arr, dtype=float) - np.asarray(y_arr, dtype=float))
        worst = float(np.nanmax(diff)) if len(diff) else 0.0
        if np.isnan(diff).any():
            worst = math.inf
        setattr(cmp, f"{label}_abs", worst)
        if worst > tol.money_abs and label == "equity":
            bar = int(np.nanargmax(diff)) if np.isfinite(worst) else -1
            cmp.problems.append(f"{label} differs by up to {worst:.6g} (bar {bar})")
    return cmp
