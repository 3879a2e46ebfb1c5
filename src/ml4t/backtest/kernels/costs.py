"""Kernel versions of the builtin commission and slippage models.

A model exposes ``kernel_params()`` returning ``(kind, params)`` with ``params`` a tuple of
up to three floats; the formulas below must equal the model's ``calculate`` /
``fill_price`` for the same inputs (tested against the model classes).

Commission kinds: 0 none; 1 percentage ``max(minimum, rate * q * p)`` with params
``(rate, minimum)``; 2 per share ``max(minimum, cps * q)`` capped at ``max_rate * (q * p)``
(``max_rate`` NaN: no cap) with params ``(cps, minimum, max_rate)``; 3 fixed ``amount``.

Slippage kinds: 0 none; 1 fixed amount (buys ``p + a``, sells ``max(p - a, min(p, 1e-3))``);
2 fraction of the price ``p * (1 + side * rate)`` (percentage and basis points).
"""

from __future__ import annotations

import numpy as np

from ._jit import jit

__all__ = ["commission_nb", "slippage_nb"]

PRICE_FLOOR = 1e-3


@jit
def commission_nb(kind: int, params: np.ndarray, quantity: float, price: float) -> float:
    """Return the commission of one fill of ``quantity`` at ``price``."""
    if kind == 0:
        return 0.0
    if kind == 1:
        amount = params[0] * quantity * price
        return amount if amount > params[1] else params[1]
    if kind == 2:
        charge = params[0] * quantity
        if not charge > params[1]:
            charge = params[1]
        cap = params[2]
        if cap == cap:
            limit = cap * (quantity * price)
            if limit < charge:
                return limit
        return charge
    return params[0]


@jit
def slippage_nb(kind: int, params: np.ndarray, price: float, side: int) -> float:
    """Return the slipped price of a fill at base ``price`` on ``side`` (+1 buy, -1 sell)."""
    if kind == 0:
        return price
    if kind == 1:
        if side > 0:
            return price + params[0]
        low = price if price < PRICE_FLOOR else PRICE_FLOOR
        moved = price - params[0]
        return moved if moved > low else low
    return price * (1.0 + side * params[0])
