"""Fill arithmetic of one order, and the filler of a batch of market orders.

``fill_terms_nb`` is the broker's ``_try_fill`` arithmetic for a cash account without
volume limits, impact, ticks or risk limits: slippage (and the bar cap), the short check,
commission and the cash check with its reject/resize policy. ``market_batch_nb`` applies it
to a batch of market orders, already ranked (exits first, then order id), with the cash and
positions each fill leaves for the next: the orders a batch strategy submits in one
callback are matched together this way.

Settings ``ip`` int64[IP_SIZE] / ``fp`` float64[FP_SIZE] use the layout of
:mod:`ml4t.backtest.kernels._layout` (``IP_COMM``, ``IP_SLIP``, ``IP_CASH_POLICY``,
``IP_SLIP_IN_BAR``; ``FP_COMM`` (3), ``FP_SLIP``, ``FP_LOT``).

Batch shapes (``M`` orders in fill order, ``A`` assets): ``code`` int64[M], ``side``
int64[M], ``quantity base high low`` float64[M], ``intent`` int64[M] and ``target``
float64[M] (fill-time intents, :mod:`.intent`), ``position`` float64[A] (updated), ``cash``
float64[1] (updated); outputs ``status`` int64[M] (``ST_*``) and ``out`` float64[M, 6]
(filled quantity, price, commission, slippage cost, cost that did not fit for a resize or
the intent status of a cancelled order, quantity after resolving the intent).
"""

from __future__ import annotations

import numpy as np

from ._jit import jit
from ._layout import (
    FP_COMM,
    FP_LOT,
    FP_SLIP,
    IP_ALLOW_SHORT,
    IP_CASH_POLICY,
    IP_COMM,
    IP_SLIP,
    IP_SLIP_IN_BAR,
)
from .costs import commission_nb, slippage_nb
from .intent import CHANGED, RESOLVED, resolve_intent_nb
from .lots import round_lot_nb

__all__ = ["fill_terms_nb", "market_batch_nb", "round_lot_nb"]

ST_FILLED, ST_BAD_PRICE, ST_SHORT, ST_NO_CASH, ST_RESIZED, ST_CANCELLED = 0, 1, 2, 3, 4, 5

_EPS = 1e-9
_DUST = 1e-9


@jit
def affordable_nb(unit: float, cash: float, lot: float, ck: int, cp: np.ndarray) -> float:
    """Largest quantity whose cost plus commission fits in ``cash`` (``_affordable``)."""
    if cash <= 0:
        return 0.0
    q = cash / unit
    for _ in range(50):
        cost = q * unit + commission_nb(ck, cp, q, unit)
        if cost <= cash * (1 + 1e-12):
            break
        q *= cash / cost * (1 - 1e-12)
    if lot > 0:
        q = round_lot_nb(q, lot)
        while q > 0 and q * unit + commission_nb(ck, cp, q, unit) > cash:
            q -= lot
    return q if q > 0.0 else 0.0


@jit
def fill_terms_nb(
    side: int,
    quantity: float,
    base: float,
    slip: bool,
    check_cash: bool,
    held: float,
    cash: float,
    high: float,
    low: float,
    ip: np.ndarray,
    fp: np.ndarray,
) -> tuple[int, float, float, float, float, float]:
    """Return ``(status, quantity, price, slipped price, commission, cost not afforded)``."""
    ck = ip[IP_COMM]
    cp = fp[FP_COMM : FP_COMM + 3]
    lot = fp[FP_LOT]
    price = base
    slipped = base
    if slip:
        price = slippage_nb(ip[IP_SLIP], fp[FP_SLIP : FP_SLIP + 1], base, side)
        if not (price > 0 and price < np.inf):
            return ST_BAD_PRICE, quantity, price, price, 0.0, 0.0
        if ip[IP_SLIP_IN_BAR] != 0:
            if side > 0:  # noqa: SIM108 (kept as statements for numba)
                price = price if price < high else high
            else:
                price = price if price > low else low
        slipped = price
    if side < 0 and ip[IP_ALLOW_SHORT] == 0 and quantity > held + _EPS * max(1.0, abs(held)):
        return ST_SHORT, quantity, price, slipped, 0.0, 0.0
    commission = commission_nb(ck, cp, quantity, price)
    adds = held * side >= 0 or quantity > abs(held) + _EPS
    if adds and check_cash and ip[IP_CASH_POLICY] != 2 and side > 0:
        cost = quantity * price * 1.0 + commission
        if cost > cash + _EPS * max(1.0, abs(cash)):
            allowed = affordable_nb(price * 1.0, cash, lot, ck, cp)
            if allowed + _EPS * max(1.0, quantity) >= quantity:  # within tolerance: in full
                return ST_FILLED, quantity, price, slipped, commission, 0.0
            new_q = round_lot_nb(allowed if allowed > 0.0 else 0.0, lot)
            if new_q <= _DUST * quantity:
                new_q = 0.0
            if ip[IP_CASH_POLICY] == 1 and new_q > 0:
                return ST_RESIZED, new_q, price, slipped, commission_nb(ck, cp, new_q, price), cost
            return ST_NO_CASH, quantity, price, slipped, commission, cost
    return ST_FILLED, quantity, price, slipped, commission, 0.0


@jit
def market_batch_nb(
    code: np.ndarray,
    side: np.ndarray,
    quantity: np.ndarray,
    base: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    intent: np.ndarray,
    target: np.ndarray,
    position: np.ndarray,
    cash: np.ndarray,
    ip: np.ndarray,
    fp: np.ndarray,
    status: np.ndarray,
    out: np.ndarray,
) -> None:
    """Fill ranked market orders one after another (see the module docstring)."""
    for m in range(code.shape[0]):
        a = code[m]
        held = position[a]
        how, resolved = resolve_intent_nb(
            intent[m], side[m], quantity[m], target[m], held, fp[FP_LOT]
        )
        out[m, 5] = resolved
        if how != RESOLVED and how != CHANGED:
            status[m] = ST_CANCELLED
            out[m, 0] = 0.0
            out[m, 1] = np.nan
            out[m, 2] = 0.0
            out[m, 3] = 0.0
            out[m, 4] = how
            continue
        st, q, price, slipped, commission, need = fill_terms_nb(
            side[m], resolved, base[m], True, True, held, cash[0], high[m], low[m], ip, fp
        )
        status[m] = st
        out[m, 0] = q
        out[m, 1] = price
        out[m, 2] = commission
        out[m, 3] = q * abs(slipped - base[m])
        out[m, 4] = need
        if st == ST_FILLED or st == ST_RESIZED:  # noqa: SIM109
            signed = side[m] * q
            new = held + signed
            if abs(new) < 1e-12 * max(1.0, abs(held)):
                new = 0.0
            position[a] = new
            cash[0] = cash[0] - (signed * price * 1.0 + commission)
