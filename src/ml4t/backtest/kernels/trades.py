"""Round-trip bookkeeping of the signal kernel (``core.trades.TradeTracker`` in arrays).

Per asset, ``trades.open_i`` / ``trades.open_f`` hold the open trade (columns ``TI_*`` /
``TF_*``); a trade that closes is written to ``trades.closed_i`` (``CI_*``) /
``trades.closed_f`` (its open trade's floats, ``TF_*``) and counted in
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
    TF_ENTRY_COMMISSION,
    TF_ENTRY_QTY,
    TF_ENTRY_SLIPPAGE,
    TF_ENTRY_VALUE,
    TF_EXIT_COMMISSION,
    TF_EXIT_QTY,
    TF_EXIT_SLIPPAGE,
    TF_EXIT_VALUE,
    TF_HIGH,
    TF_LOW,
    TF_QTY,
    TF_SIZE,
    TI_DIR,
    TI_ENTRY_K,
    TI_ENTRY_OID,
    TI_ENTRY_TS,
    TI_ID,
    TI_OPEN,
    Trades,
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
    trades: Trades,
) -> None:
    """Round-trip bookkeeping of one fill (``core.trades.TradeTracker.on_fill``)."""
    tr_i, tr_f = trades.open_i, trades.open_f
    c_i, c_f = trades.closed_i, trades.closed_f
    q = abs(signed)
    remaining = q
    if old != 0 and (old > 0) != (signed > 0):
        closing = q if q < abs(old) else abs(old)
        share = closing / q
        tr_f[a, TF_EXIT_QTY] += closing
        tr_f[a, TF_EXIT_VALUE] += closing * price
        tr_f[a, TF_EXIT_COMMISSION] += commission * share
        tr_f[a, TF_EXIT_SLIPPAGE] += slippage * share
        tr_f[a, TF_QTY] -= closing
        remaining = q - closing
        if remaining <= 1e-12 * max(1.0, q) and tr_f[a, TF_QTY] > 1e-12 * max(
            1.0, tr_f[a, TF_ENTRY_QTY]
        ):
            return
        if high > tr_f[a, TF_HIGH]:  # the exit bar is part of the excursion window
            tr_f[a, TF_HIGH] = high
        if low < tr_f[a, TF_LOW]:
            tr_f[a, TF_LOW] = low
        n = st_i[S_TRADES]
        c_i[n, CI_ID], c_i[n, CI_CODE], c_i[n, CI_DIR] = tr_i[a, TI_ID], a, tr_i[a, TI_DIR]
        c_i[n, CI_ENTRY_K], c_i[n, CI_EXIT_K] = tr_i[a, TI_ENTRY_K], k
        c_i[n, CI_ENTRY_TS], c_i[n, CI_EXIT_TS] = tr_i[a, TI_ENTRY_TS], now_ts
        c_i[n, CI_ENTRY_OID], c_i[n, CI_EXIT_OID], c_i[n, CI_EXIT_TAG] = (
            tr_i[a, TI_ENTRY_OID],
            oid,
            tag,
        )
        for j in range(TF_SIZE):
            c_f[n, j] = tr_f[a, j]
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
        for j in range(TF_SIZE):
            tr_f[a, j] = 0.0
        tr_f[a, TF_HIGH] = -np.inf
        tr_f[a, TF_LOW] = np.inf
    tr_f[a, TF_QTY] += remaining
    tr_f[a, TF_ENTRY_QTY] += remaining
    tr_f[a, TF_ENTRY_VALUE] += remaining * price
    tr_f[a, TF_ENTRY_COMMISSION] += commission
    tr_f[a, TF_ENTRY_SLIPPAGE] += slippage
