"""The builtin commission and slippage formulas: the one source of each.

Each formula is a plain function taking the model's parameters in its ``kernel_params()``
layout, then the fill's inputs. The builtin models (``builtin.commission``,
``builtin.slippage``) call them as they are in ``calculate`` / ``fill_price``; the kernels
call them jitted (the ``*_nb`` names) through :func:`commission_nb` and
:func:`slippage_nb`, which pick the formula by the model's kind.

A model exposes ``kernel_params()`` returning ``(kind, params)`` with ``params`` a tuple of
up to three floats. Commission kinds: 0 none; 1 percentage ``max(minimum, rate * q * p)``
with params ``(rate, minimum)``; 2 per share ``max(minimum, cps * q)`` capped at
``max_rate * (q * p)`` (``max_rate`` NaN: no cap) with params ``(cps, minimum,
max_rate)``; 3 fixed ``amount``.

Slippage kinds: 0 none; 1 fixed amount (buys ``p + a``, sells ``max(p - a, min(p, 1e-3))``);
2 fraction of the price ``p * (1 + side * rate)`` (percentage and basis points).
"""

from __future__ import annotations

import numpy as np

from ._jit import jit, jit_inline

__all__ = [
    "PRICE_FLOOR",
    "commission",
    "commission_nb",
    "fixed_commission",
    "fixed_commission_nb",
    "fixed_slippage",
    "fixed_slippage_nb",
    "fraction_slippage",
    "fraction_slippage_nb",
    "no_commission",
    "no_commission_nb",
    "no_slippage",
    "no_slippage_nb",
    "per_share_commission",
    "per_share_commission_nb",
    "percentage_commission",
    "percentage_commission_nb",
    "slippage",
    "slippage_nb",
]

#: Lowest price a fixed-slippage sell is moved down to.
PRICE_FLOOR = 1e-3


# --- commission (kind: formula) ---------------------------------------------------------


def no_commission(quantity: float, price: float) -> float:
    """Kind 0: charge nothing."""
    return 0.0


def percentage_commission(rate: float, minimum: float, quantity: float, price: float) -> float:
    """Kind 1: ``max(minimum, rate * quantity * price)``."""
    amount = rate * quantity * price
    return amount if amount > minimum else minimum


def per_share_commission(
    cost_per_share: float, minimum: float, maximum_rate: float, quantity: float, price: float
) -> float:
    """Kind 2: ``max(minimum, cost_per_share * quantity)``, capped at ``maximum_rate``.

    The cap, ``maximum_rate * (quantity * price)``, wins over the minimum; ``maximum_rate``
    NaN means no cap.
    """
    charge = cost_per_share * quantity
    if not charge > minimum:
        charge = minimum
    if maximum_rate == maximum_rate:
        limit = maximum_rate * (quantity * price)
        if limit < charge:
            return limit
    return charge


def fixed_commission(amount: float, quantity: float, price: float) -> float:
    """Kind 3: ``amount``, whatever the fill."""
    return amount


no_commission_nb = jit_inline(no_commission)
percentage_commission_nb = jit_inline(percentage_commission)
per_share_commission_nb = jit_inline(per_share_commission)
fixed_commission_nb = jit_inline(fixed_commission)


def commission(kind: int, params: np.ndarray, quantity: float, price: float) -> float:
    """Return the commission of one fill of ``quantity`` at ``price`` (``params``: 3 slots)."""
    if kind == 0:
        return no_commission_nb(quantity, price)
    if kind == 1:
        return percentage_commission_nb(params[0], params[1], quantity, price)
    if kind == 2:
        return per_share_commission_nb(params[0], params[1], params[2], quantity, price)
    return fixed_commission_nb(params[0], quantity, price)


commission_nb = jit(commission)


# --- slippage (kind: formula) -----------------------------------------------------------


def no_slippage(price: float, side: int) -> float:
    """Kind 0: the base price."""
    return price


def fixed_slippage(amount: float, price: float, side: int) -> float:
    """Kind 1: buys ``price + amount``; sells ``max(price - amount, min(price, floor))``.

    Written as Python's ``max`` and ``min`` compare (a NaN price stays NaN).
    """
    if side > 0:
        return price + amount
    low = PRICE_FLOOR if price > PRICE_FLOOR else price
    moved = price - amount
    return low if low > moved else moved


def fraction_slippage(rate: float, price: float, side: int) -> float:
    """Kind 2: ``price * (1 + side * rate)`` (percentage and basis-point models)."""
    return price * (1.0 + side * rate)


no_slippage_nb = jit_inline(no_slippage)
fixed_slippage_nb = jit_inline(fixed_slippage)
fraction_slippage_nb = jit_inline(fraction_slippage)


def slippage(kind: int, params: np.ndarray, price: float, side: int) -> float:
    """Return the slipped price of a fill at base ``price`` on ``side`` (+1 buy, -1 sell)."""
    if kind == 0:
        return no_slippage_nb(price, side)
    if kind == 1:
        return fixed_slippage_nb(params[0], price, side)
    return fraction_slippage_nb(params[0], price, side)


slippage_nb = jit(slippage)
