"""The fill phase of the signal kernel: match working orders and exits, book their fills.

Each phase of a timestamp gathers its candidates, the pending market orders due
(:func:`gather_pending_nb`) and the position exits the bar reaches (``exits``), ranks
them as the broker does (exits first, then by where the bar's path reaches them, stops
before limits, then order id: :func:`rank_nb`) and fills them in that order
(:func:`fill_ranked_nb`), each with the cash and positions the earlier ones left
(:func:`fill_nb`, the broker's ``_try_fill`` and the portfolio's ``apply_fill``).
Layouts: :mod:`._layout`.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit, jit_inline
from ._layout import (
    AT_CLOSE,
    AT_OPEN,
    FF_ASKED,
    FF_AVG_AFTER,
    FF_BASE,
    FF_CASH_AFTER,
    FF_CASH_BEFORE,
    FF_COMMISSION,
    FF_NEED,
    FF_PRICE,
    FF_QTY,
    FF_QTY_AFTER,
    FF_REALIZED,
    FF_REQUESTED,
    FF_SLIPPAGE,
    FF_TARGET,
    FI_CODE,
    FI_DEC_K,
    FI_DEC_ROW,
    FI_K,
    FI_ORDER_ID,
    FI_REASON,
    FI_ROW,
    FI_TAG,
    FP_LOT,
    G_SIZE,
    IP_EXIT_SLIP,
    IP_HAS_EXITS,
    IP_ONE_PER_BAR,
    KF_PRICE,
    KF_TIME,
    KI_ADDS,
    KI_ID,
    KI_NOT_STOP,
    KI_REF,
    KI_SOURCE,
    KI_TAG,
    REASON_INTENT,
    REASON_NONE,
    REASON_RESIZED,
    S_CASH,
    S_COMMISSION,
    S_CXL_NOTHING,
    S_FILLS,
    S_HELD,
    S_PENDING,
    S_REJ_CASH,
    S_REJ_ONE_BAR,
    S_REJ_PRICE,
    S_REJ_SHORT,
    S_REJECTED,
    S_SLIPPAGE,
    SOURCE_PENDING,
    TAG_SIGNAL,
    TAG_TAKE,
    TAG_TIME,
    TI_TRADED_K,
    Account,
    Bars,
    Exits,
    Fills,
    Pending,
    Settings,
    Trades,
)
from .exits import exits_after_fill_nb
from .fills import ST_BAD_PRICE, ST_FILLED, ST_NO_CASH, ST_RESIZED, fill_terms_nb
from .intent import (
    CHANGED,
    INTENT_REDUCE,
    INTENT_TARGET,
    NOTHING_TO_REDUCE,
    RESOLVED,
    resolve_intent_nb,
)
from .trades import trade_on_fill_nb

__all__ = ["fill_nb", "fill_ranked_nb", "gather_pending_nb", "rank_nb"]


@jit
def fill_nb(
    code: int,
    side: int,
    asked: float,
    intent: int,
    target: float,
    base: float,
    tag: int,
    oid: int,
    dec_row: int,
    dec_k: int,
    r: int,
    k: int,
    now_ts: int,
    high: float,
    low: float,
    close: float,
    ip: np.ndarray,
    fp: np.ndarray,
    account: Account,
    exits: Exits,
    fills: Fills,
    trades: Trades,
) -> bool:
    """Fill one order on row ``r`` (the broker's ``_try_fill``); False if it did not fill.

    ``high``, ``low`` and ``close`` are the row's prices; ``ip``/``fp`` the settings
    arrays (:attr:`Settings.ip`, :attr:`Settings.fp`: a call pays for every array it is
    passed, so it gets these, not the block's bars and rules). ``asked`` is the order's
    quantity, resolved against the position first (``intent`` and ``target``, see
    :mod:`.intent`): a reduce-only or target order with nothing to do is cancelled.
    """
    st_i, st_f, qty, avg, held = account.st_i, account.st_f, account.qty, account.avg, account.held
    managed = tag != TAG_SIGNAL
    if ip[IP_ONE_PER_BAR] != 0 and not managed and trades.open_i[code, TI_TRADED_K] == k:
        st_i[S_REJECTED] += 1  # one_order_per_bar: the asset already traded on this bar
        st_i[S_REJ_ONE_BAR] += 1
        return False
    old = qty[code]
    how, quantity = resolve_intent_nb(intent, side, asked, target, old, fp[FP_LOT])
    if how != RESOLVED and how != CHANGED:
        st_i[S_CXL_NOTHING + how - NOTHING_TO_REDUCE] += 1  # S_CXL_* follow the statuses
        return False
    if intent != INTENT_TARGET:
        target = np.nan
    cash = st_f[S_CASH]
    slip = not (tag == TAG_TAKE or (managed and tag != TAG_TIME and ip[IP_EXIT_SLIP] == 0))
    requested = quantity
    status, quantity, price, slipped, commission, need = fill_terms_nb(
        side, quantity, base, slip, not managed, old, cash, high, low, ip, fp
    )
    if status != ST_FILLED and status != ST_RESIZED:
        st_i[S_REJECTED] += 1
        if status == ST_NO_CASH:
            st_i[S_REJ_CASH] += 1
        elif status == ST_BAD_PRICE:
            st_i[S_REJ_PRICE] += 1
        else:
            st_i[S_REJ_SHORT] += 1
        return False
    reason = REASON_RESIZED if status == ST_RESIZED else REASON_NONE
    if asked != requested:
        reason |= REASON_INTENT
    slip_cost = quantity * abs(slipped - base)
    signed = side * quantity
    new = old + signed
    if abs(new) < 1e-12 * max(1.0, abs(old)):
        new = 0.0
    a = avg[code]
    realized = 0.0
    if old == 0 or (old > 0) == (signed > 0):
        avg[code] = (a * old + price * signed) / new if new else 0.0
    else:
        closed = abs(signed) if abs(signed) < abs(old) else abs(old)
        realized = closed * (price - a) * (1.0 if old > 0 else -1.0) * 1.0
        if new == 0:
            avg[code] = 0.0
        elif (new > 0) != (old > 0):
            avg[code] = price
    qty[code] = new
    st_f[S_CASH] = cash - (signed * price * 1.0 + commission)
    n_held = st_i[S_HELD]
    if new == 0:
        for j in range(n_held):
            if held[j] == code:
                for m in range(j, n_held - 1):
                    held[m] = held[m + 1]
                st_i[S_HELD] = n_held - 1
                break
    elif old == 0:
        held[n_held] = code
        st_i[S_HELD] = n_held + 1
    n = st_i[S_FILLS]
    f_i, f_f = fills.ints, fills.floats
    f_i[n, FI_K], f_i[n, FI_ROW], f_i[n, FI_CODE], f_i[n, FI_ORDER_ID] = k, r, code, oid
    f_i[n, FI_TAG], f_i[n, FI_REASON] = tag, reason
    f_i[n, FI_DEC_ROW], f_i[n, FI_DEC_K] = dec_row, dec_k
    f_f[n, FF_QTY], f_f[n, FF_PRICE] = signed, price
    f_f[n, FF_COMMISSION], f_f[n, FF_SLIPPAGE] = commission, slip_cost
    f_f[n, FF_BASE], f_f[n, FF_REQUESTED] = base, requested
    f_f[n, FF_NEED], f_f[n, FF_CASH_BEFORE] = need, cash
    f_f[n, FF_REALIZED], f_f[n, FF_CASH_AFTER] = realized, st_f[S_CASH]
    f_f[n, FF_QTY_AFTER], f_f[n, FF_AVG_AFTER] = new, avg[code]
    f_f[n, FF_ASKED], f_f[n, FF_TARGET] = asked, target
    st_i[S_FILLS] = n + 1
    trades.open_i[code, TI_TRADED_K] = k
    st_f[S_COMMISSION] += commission
    st_f[S_SLIPPAGE] += slip_cost
    trade_on_fill_nb(
        code,
        old,
        signed,
        price,
        commission,
        slip_cost,
        k,
        now_ts,
        oid,
        tag,
        high,
        low,
        st_i,
        trades,
    )
    if ip[IP_HAS_EXITS] != 0:  # position exits follow the position (order_links._sync_exits)
        exits_after_fill_nb(code, close, k, old, new, ip, fp, account, exits)
    return True


@jit
def rank_nb(keys_f: np.ndarray, keys_i: np.ndarray, n: int) -> np.ndarray:
    """Order candidates by (adds, time, not_stop, order id) with an insertion sort."""
    idx = np.arange(n)
    for a in range(1, n):
        j = idx[a]
        b = a - 1
        while b >= 0:
            m = idx[b]
            if keys_i[m, KI_ADDS] != keys_i[j, KI_ADDS]:
                later = keys_i[m, KI_ADDS] > keys_i[j, KI_ADDS]
            elif keys_f[m, KF_TIME] != keys_f[j, KF_TIME]:
                later = keys_f[m, KF_TIME] > keys_f[j, KF_TIME]
            elif keys_i[m, KI_NOT_STOP] != keys_i[j, KI_NOT_STOP]:
                later = keys_i[m, KI_NOT_STOP] > keys_i[j, KI_NOT_STOP]
            else:
                later = keys_i[m, KI_ID] > keys_i[j, KI_ID]
            if not later:
                break
            idx[b + 1] = m
            b -= 1
        idx[b + 1] = j
    return idx


@jit_inline
def gather_pending_nb(
    phase: int,
    at_close: bool,
    fill_at_close: bool,
    k: int,
    bars: Bars,
    account: Account,
    pending: Pending,
    row_now: np.ndarray,
    keys_f: np.ndarray,
    keys_i: np.ndarray,
) -> int:
    """Write the pending orders due in this phase as candidates; return how many.

    In phase 0 (the open) orders placed on an earlier timestamp fill at the open, or at
    the close with ``next_bar_close`` (``fill_at_close``); in phase 1 (``at_close``:
    ``same_bar_close`` timing) every working order fills at the close.
    """
    o, c = bars.open, bars.close
    qty = account.qty
    n = 0
    for j in range(account.st_i[S_PENDING]):
        a = pending.code[j]
        r = row_now[a]
        if r < 0:
            continue
        if phase == 0 and (at_close or pending.k[j] >= k):
            continue
        keys_f[n, KF_TIME] = AT_CLOSE if fill_at_close else AT_OPEN
        keys_f[n, KF_PRICE] = c[r] if fill_at_close else o[r]
        keys_i[n, KI_ADDS] = 1 if qty[a] * pending.side[j] >= 0 else 0
        keys_i[n, KI_NOT_STOP] = 1
        keys_i[n, KI_ID] = pending.order_id[j]
        keys_i[n, KI_SOURCE] = SOURCE_PENDING
        keys_i[n, KI_REF] = j
        keys_i[n, KI_TAG] = TAG_SIGNAL
        n += 1
    return n


@jit_inline
def fill_ranked_nb(
    n: int,
    k: int,
    now_ts: int,
    keys_f: np.ndarray,
    keys_i: np.ndarray,
    row_now: np.ndarray,
    bars: Bars,
    settings: Settings,
    account: Account,
    exits: Exits,
    pending: Pending,
    fills: Fills,
    trades: Trades,
) -> None:
    """Fill the ``n`` candidates in rank order, then drop the orders that are done."""
    qty = account.qty
    high, low, close = bars.high, bars.low, bars.close
    order = rank_nb(keys_f, keys_i, n)
    for m in range(n):
        x = order[m]
        tag = keys_i[x, KI_TAG]
        if keys_i[x, KI_SOURCE] == SOURCE_PENDING:
            j = keys_i[x, KI_REF]
            if pending.qty[j] <= 0:  # done already
                continue
            a = pending.code[j]
            side = pending.side[j]
            asked = pending.qty[j]
            intent = pending.intent[j]
            target = pending.target[j]
            dec = pending.row[j]
            dec_k = pending.k[j]
            pending.qty[j] = 0.0  # filled, rejected or cancelled: no longer working
        else:
            a = keys_i[x, KI_REF] // G_SIZE
            slot = keys_i[x, KI_REF] % G_SIZE
            if (
                exits.active[a] == 0
                or exits.open[a, slot] == 0
                or exits.ids[a, slot] != keys_i[x, KI_ID]
            ):
                continue  # filled, cancelled, or replaced by a new position's exit
            side = -1 if qty[a] > 0 else 1
            asked = abs(qty[a])
            intent = INTENT_REDUCE
            target = 0.0
            dec = -2
            dec_k = -1
            exits.open[a, slot] = 0
        fill_nb(
            a,
            side,
            asked,
            intent,
            target,
            keys_f[x, KF_PRICE],
            tag,
            keys_i[x, KI_ID],
            dec,
            dec_k,
            row_now[a],
            k,
            now_ts,
            high[row_now[a]],
            low[row_now[a]],
            close[row_now[a]],
            settings.ip,
            settings.fp,
            account,
            exits,
            fills,
            trades,
        )
    # compact the pending orders
    w = 0
    for j in range(account.st_i[S_PENDING]):
        if pending.qty[j] > 0:
            if w != j:
                pending.code[w], pending.side[w] = pending.code[j], pending.side[j]
                pending.qty[w], pending.order_id[w] = pending.qty[j], pending.order_id[j]
                pending.k[w], pending.row[w] = pending.k[j], pending.row[j]
                pending.intent[w], pending.target[w] = pending.intent[j], pending.target[j]
            w += 1
    account.st_i[S_PENDING] = w
