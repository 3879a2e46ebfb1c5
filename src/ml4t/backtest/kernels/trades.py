"""Round-trip bookkeeping of the signal kernel (``core.trades.TradeTracker`` in arrays).

Per asset, ``tr_i`` int64[A, 7] and ``tr_f`` float64[A, 11] hold the open trade (columns
``TI_*`` / ``TF_*``); a trade that closes is written to ``c_i`` int64[F, 10] / ``c_f``
float64[F, 10] (``CI_*``; ``c_f`` is ``tr_f`` from the entry quantity on) and counted in
``st_i[S_TRADES]``. The arithmetic follows ``TradeTracker.on_fill`` step for step, so the
trades built from these arrays equal the event path's.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit
from ._layout import (
    CI_CODE,
    CI_DIR,
    CI_ENTRY_K,
    CI_ENTRY_OID,
    CI_ENTRY_TS,
    CI_EXIT_K,
    CI_EXIT_OID,
    CI_EXIT_TAG,
    CI_EXIT_TS,
    CI_ID,
    S_NEXT_TRADE,
    S_TRADES,
    TF_EC,
    TF_EQ,
    TF_ES,
    TF_EV,
    TF_HI,
    TF_LO,
    TF_QTY,
    TF_XC,
    TF_XQ,
    TF_XS,
    TF_XV,
    TI_DIR,
    TI_ENTRY_K,
    TI_ENTRY_OID,
    TI_ENTRY_TS,
    TI_ID,
    TI_OPEN,
)

__all__ = ["trade_on_fill_nb"]


@jit
def trade_on_fill_nb(
    a: int,
    old: float,
    signed: float,
    price: float,
    commission: float,
    slippage: float,
    k: int,
    now_ts: int,
    oid: int,
    tag: int,
    high: float,
    low: float,
    st_i: np.ndarray,
    tr_i: np.ndarray,
    tr_f: np.ndarray,
    c_i: np.ndarray,
    c_f: np.ndarray,
) -> None:
    """Round-trip bookkeeping of one fill (``core.trades.TradeTracker.on_fill``)."""
    q = abs(signed)
    remaining = q
    if old != 0 and (old > 0) != (signed > 0):
        closing = q if q < abs(old) else abs(old)
        share = closing / q
        tr_f[a, TF_XQ] += closing
        tr_f[a, TF_XV] += closing * price
        tr_f[a, TF_XC] += commission * share
        tr_f[a, TF_XS] += slippage * share
        tr_f[a, TF_QTY] -= closing
        remaining = q - closing
        if remaining <= 1e-12 * max(1.0, q) and tr_f[a, TF_QTY] > 1e-12 * max(1.0, tr_f[a, TF_EQ]):
            return
        if high > tr_f[a, TF_HI]:  # the exit bar is part of the excursion window
            tr_f[a, TF_HI] = high
        if low < tr_f[a, TF_LO]:
            tr_f[a, TF_LO] = low
        n = st_i[S_TRADES]
        c_i[n, CI_ID], c_i[n, CI_CODE], c_i[n, CI_DIR] = tr_i[a, TI_ID], a, tr_i[a, TI_DIR]
        c_i[n, CI_ENTRY_K], c_i[n, CI_EXIT_K] = tr_i[a, TI_ENTRY_K], k
        c_i[n, CI_ENTRY_TS], c_i[n, CI_EXIT_TS] = tr_i[a, TI_ENTRY_TS], now_ts
        c_i[n, CI_ENTRY_OID], c_i[n, CI_EXIT_OID], c_i[n, CI_EXIT_TAG] = (
            tr_i[a, TI_ENTRY_OID],
            oid,
            tag,
        )
        for j in range(10):
            c_f[n, j] = tr_f[a, TF_EQ + j]
        st_i[S_TRADES] = n + 1
        tr_i[a, TI_OPEN] = 0
        if remaining <= 1e-12 * max(1.0, q):
            return
        commission *= remaining / q
        slippage *= remaining / q
    if tr_i[a, TI_OPEN] == 0:
        tr_i[a, TI_OPEN] = 1
        tr_i[a, TI_ID] = st_i[S_NEXT_TRADE]
        st_i[S_NEXT_TRADE] += 1
        tr_i[a, TI_DIR] = 1 if signed > 0 else -1
        tr_i[a, TI_ENTRY_K] = k
        tr_i[a, TI_ENTRY_TS] = now_ts
        tr_i[a, TI_ENTRY_OID] = oid
        for j in range(TF_HI):
            tr_f[a, j] = 0.0
        tr_f[a, TF_HI] = -np.inf
        tr_f[a, TF_LO] = np.inf
    tr_f[a, TF_QTY] += remaining
    tr_f[a, TF_EQ] += remaining
    tr_f[a, TF_EV] += remaining * price
    tr_f[a, TF_EC] += commission
    tr_f[a, TF_ES] += slippage
