"""The whole-backtest kernel of a declarative :class:`~ml4t.backtest.SignalStrategy`.

One call runs the per-timestamp phases of the event engine over one block of bars:
match working orders at the open (exits first, then by where the bar's path reaches them,
stops before limits, then order id), evaluate the rules for every asset row, fill market
orders at the close (``same_bar_close``), keeping cash, positions, position exits and the
working orders in arrays that carry over to the next block. Its arithmetic is the event
path's, operation for operation, so both produce the same fills.

Shapes (``T`` timestamps, ``N`` rows, ``A`` assets, ``C`` signal columns, ``P`` pending
capacity, ``F`` fill capacity):

- ``offsets`` int64[T+1], ``code`` int64[N], ``o h l c v`` float64[N], ``sig`` float64[C, N],
  ``ts`` int64[T]
- ``ip`` int64[IP_SIZE] and ``fp`` float64[FP_SIZE]: settings (indices ``IP_*``/``FP_*``)
- ``rules_i`` int64[R, 3] (kind, column, is_exit) and ``rules_f`` float64[R, 2] (lo, hi)
- state: ``st_i`` int64[S_I_SIZE] (``S_*``), ``st_f`` float64[3] (cash, total commission,
  total slippage), ``qty avg last`` float64[A], ``held`` int64[A] (held assets in the order
  they were opened, as the portfolio's dict keeps them), group arrays (``g_*``, per asset;
  ``g_id``/``g_open`` [A, 4] for the stop-loss, take-profit, trailing and time exits),
  pending order arrays ``p_*`` [P] (``p_intent``/``p_target``: the order's fill-time intent,
  :mod:`.intent`), open trades ``tr_i`` int64[A, 7] / ``tr_f`` float64[A, 11]
  (``TI_*``/``TF_*``)
- output: the books after every timestamp ``b_cash b_net b_gross`` float64[T], ``b_npos``
  int64[T]; fills ``f_i`` int64[F, 8] / ``f_f`` float64[F, FF_SIZE] and closed trades ``c_i``
  int64[F, 10] / ``c_f`` float64[F, 10] (``CI_*``; ``c_f`` is ``tr_f`` from entry quantity on)

The kernel returns the index of the first timestamp it did not process: ``T`` when done,
less when the pending or fill arrays might overflow (the caller grows or drains them and
calls again from there).
"""

from __future__ import annotations

import numpy as np

from ._jit import jit, jit_inline
from ._layout import (
    FF_ASKED,
    FF_AVG_AFTER,
    FF_CASH_AFTER,
    FF_QTY_AFTER,
    FF_REALIZED,
    FF_TARGET,
    FP_LOT,
    FP_MIN_CONF,
    FP_SIZE_VALUE,
    FP_SL,
    FP_TP,
    FP_TRAIL_AMT,
    FP_TRAIL_PCT,
    IP_ASSETS,
    IP_EXIT_BASE_CLOSE,
    IP_EXIT_SLIP,
    IP_HAS_EXITS,
    IP_MAX_BARS,
    IP_MODE,
    IP_ONE_PER_BAR,
    IP_SIZER,
    IP_SIZER_COL,
    IP_TIMING,
    IP_TOPK,
    IP_TRAIL_CLOSE,
    R_ABOVE,
    R_BELOW,
    R_IN,
    R_NOT_IN,
    REASON_INTENT,
    REASON_NONE,
    REASON_RESIZED,
    S_CASH,
    S_COMMISSION,
    S_CXL_NOTHING,
    S_FILLS,
    S_HELD,
    S_NEXT_ID,
    S_PENDING,
    S_REJ_CASH,
    S_REJ_INVALID,
    S_REJ_ONE_BAR,
    S_REJ_PRICE,
    S_REJ_SHORT,
    S_REJECTED,
    S_SLIPPAGE,
    S_TRADES,
    SZ_FIXED,
    SZ_PERCENT,
    SZ_TOPK,
    TAG_SIGNAL,
    TAG_STOP,
    TAG_TAKE,
    TAG_TIME,
    TAG_TRAIL,
    TF_HI,
    TF_LO,
    TI_OPEN,
    TI_TRADED_K,
)
from .fills import ST_BAD_PRICE, ST_FILLED, ST_NO_CASH, ST_RESIZED, fill_terms_nb
from .intent import CHANGED, INTENT_NONE, INTENT_REDUCE, INTENT_TARGET, RESOLVED, resolve_intent_nb
from .lots import round_lot_nb
from .matching import path_nb, touch_nb
from .trades import trade_on_fill_nb


@jit_inline
def _equity(cash: float, qty: np.ndarray, last: np.ndarray, held: np.ndarray, n: int) -> float:
    net = 0.0
    for j in range(n):
        c = held[j]
        net += qty[c] * last[c]
    return cash + 0.0 + net


@jit_inline
def _rules_pass(
    rules_i: np.ndarray, rules_f: np.ndarray, want_exit: int, sig: np.ndarray, r: int, pos: float
) -> int:
    """Return 1 if all entry rules (``want_exit=0``) / any exit rule (1) hold, -1 if none."""
    seen = 0
    for j in range(rules_i.shape[0]):
        if rules_i[j, 2] != want_exit:
            continue
        seen += 1
        kind = rules_i[j, 0]
        if kind == R_IN:
            ok = pos != 0
        elif kind == R_NOT_IN:
            ok = pos == 0
        else:
            x = sig[rules_i[j, 1], r]
            if kind == R_ABOVE:
                ok = x > rules_f[j, 0]
            elif kind == R_BELOW:
                ok = x < rules_f[j, 0]
            else:
                ok = rules_f[j, 0] <= x <= rules_f[j, 1]
        if want_exit == 1 and ok:
            return 1
        if want_exit == 0 and not ok:
            return 0
    if seen == 0:
        return -1
    return 0 if want_exit == 1 else 1


@jit
def _submit(
    st_i: np.ndarray,
    p_code: np.ndarray,
    p_side: np.ndarray,
    p_qty: np.ndarray,
    p_id: np.ndarray,
    p_k: np.ndarray,
    p_row: np.ndarray,
    p_intent: np.ndarray,
    p_target: np.ndarray,
    code: int,
    side: int,
    quantity: float,
    k: int,
    row: int,
    lot: float,
    intent: int,
    target: float,
) -> None:
    """Accept a market order, or reject it at submission (it still takes an order id)."""
    oid = st_i[S_NEXT_ID]
    st_i[S_NEXT_ID] = oid + 1
    bad = not (quantity > 0 and quantity < np.inf)  # zero, negative, NaN or infinite
    if not bad and lot > 0:
        units = quantity / lot
        bad = abs(units - np.round(units)) > 1e-9 * max(1.0, units)
    if bad:
        st_i[S_REJECTED] += 1
        st_i[S_REJ_INVALID] += 1
        return
    j = st_i[S_PENDING]
    p_code[j], p_side[j], p_qty[j], p_id[j], p_k[j], p_row[j] = code, side, quantity, oid, k, row
    p_intent[j], p_target[j] = intent, target
    st_i[S_PENDING] = j + 1


@jit
def _fill(
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
    c: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    ip: np.ndarray,
    fp: np.ndarray,
    st_i: np.ndarray,
    st_f: np.ndarray,
    qty: np.ndarray,
    avg: np.ndarray,
    held: np.ndarray,
    g_active: np.ndarray,
    g_id: np.ndarray,
    g_open: np.ndarray,
    g_created: np.ndarray,
    g_exitk: np.ndarray,
    g_sl: np.ndarray,
    g_tp: np.ndarray,
    g_ref: np.ndarray,
    f_i: np.ndarray,
    f_f: np.ndarray,
    tr_i: np.ndarray,
    tr_f: np.ndarray,
    c_i: np.ndarray,
    c_f: np.ndarray,
) -> bool:
    """Fill one order on row ``r`` (the broker's ``_try_fill``); False if it did not fill.

    ``asked`` is the order's quantity, resolved against the position first (``intent``
    and ``target``, see :mod:`.intent`): a reduce-only or target order with nothing to
    do is cancelled.
    """
    managed = tag != TAG_SIGNAL
    if ip[IP_ONE_PER_BAR] != 0 and not managed and tr_i[code, TI_TRADED_K] == k:
        st_i[S_REJECTED] += 1  # one_order_per_bar: the asset already traded on this bar
        st_i[S_REJ_ONE_BAR] += 1
        return False
    old = qty[code]
    how, quantity = resolve_intent_nb(intent, side, asked, target, old, fp[FP_LOT])
    if how != RESOLVED and how != CHANGED:
        st_i[S_CXL_NOTHING + how - 2] += 1  # the cancel statuses of kernels.intent: 2, 3, 4
        return False
    if intent != INTENT_TARGET:
        target = np.nan
    cash = st_f[0]
    slip = not (tag == TAG_TAKE or (managed and tag != TAG_TIME and ip[IP_EXIT_SLIP] == 0))
    requested = quantity
    status, quantity, price, slipped, commission, need = fill_terms_nb(
        side, quantity, base, slip, not managed, old, cash, h[r], lo[r], ip, fp
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
    st_f[0] = cash - (signed * price * 1.0 + commission)
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
    f_i[n, 0], f_i[n, 1], f_i[n, 2], f_i[n, 3] = k, r, code, oid
    f_i[n, 4], f_i[n, 5], f_i[n, 6], f_i[n, 7] = tag, reason, dec_row, dec_k
    f_f[n, 0], f_f[n, 1], f_f[n, 2], f_f[n, 3] = signed, price, commission, slip_cost
    f_f[n, 4], f_f[n, 5], f_f[n, 6], f_f[n, 7] = base, requested, need, cash
    f_f[n, FF_REALIZED], f_f[n, FF_CASH_AFTER] = realized, st_f[S_CASH]
    f_f[n, FF_QTY_AFTER], f_f[n, FF_AVG_AFTER] = new, avg[code]
    f_f[n, FF_ASKED], f_f[n, FF_TARGET] = asked, target
    st_i[S_FILLS] = n + 1
    tr_i[code, TI_TRADED_K] = k
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
        h[r],
        lo[r],
        st_i,
        tr_i,
        tr_f,
        c_i,
        c_f,
    )
    if ip[IP_HAS_EXITS] != 0:  # position exits follow the position (order_links._sync_exits)
        flipped = old == 0 or (old > 0) != (new > 0)
        if new == 0 or flipped:
            g_active[code] = 0
            if new != 0:
                g_exitk[code] = k
                g_active[code] = 1
                g_created[code] = k
                base_px = c[r] if ip[IP_EXIT_BASE_CLOSE] != 0 else avg[code]
                d = 1.0 if new > 0 else -1.0
                for slot in range(4):
                    g_open[code, slot] = 0
                    g_id[code, slot] = -1
                if fp[FP_SL] == fp[FP_SL]:
                    g_sl[code] = base_px * (1 - d * fp[FP_SL])
                    g_id[code, 0] = st_i[S_NEXT_ID]
                    g_open[code, 0] = 1
                    st_i[S_NEXT_ID] += 1
                if fp[FP_TP] == fp[FP_TP]:
                    g_tp[code] = base_px * (1 + d * fp[FP_TP])
                    g_id[code, 1] = st_i[S_NEXT_ID]
                    g_open[code, 1] = 1
                    st_i[S_NEXT_ID] += 1
                if fp[FP_TRAIL_PCT] == fp[FP_TRAIL_PCT] or fp[FP_TRAIL_AMT] == fp[FP_TRAIL_AMT]:
                    g_ref[code] = base_px
                    g_id[code, 2] = st_i[S_NEXT_ID]
                    g_open[code, 2] = 1
                    st_i[S_NEXT_ID] += 1
                if ip[IP_MAX_BARS] > 0:
                    g_id[code, 3] = st_i[S_NEXT_ID]
                    g_open[code, 3] = 1
                    st_i[S_NEXT_ID] += 1
        elif abs(new) > abs(old):
            d = 1.0 if new > 0 else -1.0
            if fp[FP_SL] == fp[FP_SL] and g_open[code, 0]:
                grown = c[r] if ip[IP_EXIT_BASE_CLOSE] != 0 else avg[code]
                g_sl[code] = grown * (1 - d * fp[FP_SL])
            if fp[FP_TP] == fp[FP_TP] and g_open[code, 1]:
                grown = c[r] if ip[IP_EXIT_BASE_CLOSE] != 0 else avg[code]
                g_tp[code] = grown * (1 + d * fp[FP_TP])
    return True


@jit
def _rank(keys_f: np.ndarray, keys_i: np.ndarray, n: int) -> np.ndarray:
    """Order candidates by (adds, time, not_stop, order id) with an insertion sort."""
    idx = np.arange(n)
    for a in range(1, n):
        j = idx[a]
        b = a - 1
        while b >= 0:
            m = idx[b]
            if keys_i[m, 0] != keys_i[j, 0]:
                later = keys_i[m, 0] > keys_i[j, 0]
            elif keys_f[m, 0] != keys_f[j, 0]:
                later = keys_f[m, 0] > keys_f[j, 0]
            elif keys_i[m, 1] != keys_i[j, 1]:
                later = keys_i[m, 1] > keys_i[j, 1]
            else:
                later = keys_i[m, 2] > keys_i[j, 2]
            if not later:
                break
            idx[b + 1] = m
            b -= 1
        idx[b + 1] = j
    return idx


@jit
def signal_run_nb(
    k0: int,
    t_start: int,
    offsets: np.ndarray,
    code: np.ndarray,
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    v: np.ndarray,
    sig: np.ndarray,
    ts: np.ndarray,
    ip: np.ndarray,
    fp: np.ndarray,
    rules_i: np.ndarray,
    rules_f: np.ndarray,
    st_i: np.ndarray,
    st_f: np.ndarray,
    qty: np.ndarray,
    avg: np.ndarray,
    last: np.ndarray,
    held: np.ndarray,
    g_active: np.ndarray,
    g_id: np.ndarray,
    g_open: np.ndarray,
    g_created: np.ndarray,
    g_exitk: np.ndarray,
    g_sl: np.ndarray,
    g_tp: np.ndarray,
    g_ref: np.ndarray,
    p_code: np.ndarray,
    p_side: np.ndarray,
    p_qty: np.ndarray,
    p_id: np.ndarray,
    p_k: np.ndarray,
    p_row: np.ndarray,
    p_intent: np.ndarray,
    p_target: np.ndarray,
    f_i: np.ndarray,
    f_f: np.ndarray,
    tr_i: np.ndarray,
    tr_f: np.ndarray,
    c_i: np.ndarray,
    c_f: np.ndarray,
    b_cash: np.ndarray,
    b_net: np.ndarray,
    b_gross: np.ndarray,
    b_npos: np.ndarray,
) -> int:
    """Run timestamps ``t_start..T-1`` of a block; return where it stopped (see module)."""
    n_assets = ip[IP_ASSETS]
    T = offsets.shape[0] - 1
    at_close = ip[IP_TIMING] == 1
    next_close = ip[IP_TIMING] == 2  # market orders fill at the next bar's close, before it
    mode = ip[IP_MODE]
    lot = fp[FP_LOT]
    has_trail = fp[FP_TRAIL_PCT] == fp[FP_TRAIL_PCT] or fp[FP_TRAIL_AMT] == fp[FP_TRAIL_AMT]
    max_bars = ip[IP_MAX_BARS]
    sizer = ip[IP_SIZER]
    scol = ip[IP_SIZER_COL]
    size_value = fp[FP_SIZE_VALUE]
    row_now = np.full(n_assets, -1, dtype=np.int64)
    cap_p = p_code.shape[0]
    cap_f = f_i.shape[0]
    cand_cap = cap_p + 4 * n_assets
    keys_f = np.empty((cand_cap, 2))  # time, base price
    keys_i = np.empty((cand_cap, 6), dtype=np.int64)  # adds, not_stop, id, source, ref, tag
    top_code = np.empty(n_assets, dtype=np.int64)
    top_score = np.empty(n_assets)
    targets = np.empty(n_assets, dtype=np.int64)
    weights = np.empty(n_assets)
    in_targets = np.zeros(n_assets, dtype=np.int8)
    deltas = np.empty(n_assets)
    for t in range(t_start, T):
        r0 = offsets[t]
        r1 = offsets[t + 1]
        n_rows = r1 - r0
        n_pend = st_i[S_PENDING]
        if (
            n_pend + n_rows + n_assets > cap_p
            or st_i[S_FILLS] + 2 * (n_pend + n_assets) + n_rows > cap_f
            or st_i[S_TRADES] + 2 * (n_pend + n_assets) + n_rows > cap_f
        ):
            return t
        k = k0 + t
        for r in range(r0, r1):
            row_now[code[r]] = r
            last[code[r]] = c[r]
        for phase in range(2):
            if phase == 1 and not at_close:
                break
            # --- gather the orders to match in this phase -------------------------------
            n = 0
            n_pend = st_i[S_PENDING]
            for j in range(n_pend):
                a = p_code[j]
                r = row_now[a]
                if r < 0:
                    continue
                if phase == 0 and (at_close or p_k[j] >= k):
                    continue
                keys_f[n, 0] = 3.0 if (phase == 1 or next_close) else 0.0
                keys_f[n, 1] = c[r] if (phase == 1 or next_close) else o[r]
                keys_i[n, 0] = 1 if qty[a] * p_side[j] >= 0 else 0
                keys_i[n, 1] = 1
                keys_i[n, 2] = p_id[j]
                keys_i[n, 3] = 0
                keys_i[n, 4] = j
                keys_i[n, 5] = TAG_SIGNAL
                n += 1
            if ip[IP_HAS_EXITS] != 0:
                for j in range(st_i[S_HELD]):
                    a = held[j]
                    r = row_now[a]
                    if r < 0 or g_active[a] == 0:
                        continue
                    side = -1 if qty[a] > 0 else 1
                    adds = 1 if qty[a] * side >= 0 else 0
                    for slot in range(4):
                        if g_open[a, slot] == 0:
                            continue
                        tag = slot + 1
                        if tag == TAG_TIME:
                            if phase == 0 and at_close:
                                continue
                            if phase == 0 and g_created[a] >= k:
                                continue
                            if g_exitk[a] + max_bars > k:
                                continue
                            tm = 3.0 if (phase == 1 or next_close) else 0.0
                            px = c[r] if (phase == 1 or next_close) else o[r]
                        else:
                            if phase == 1 or g_created[a] >= k:
                                continue
                            path = path_nb(o[r], h[r], lo[r], c[r], side, mode)
                            if tag == TAG_STOP:
                                tm, px = touch_nb(path, 0, path[0], g_sl[a], side > 0)
                            elif tag == TAG_TAKE:
                                tm, px = touch_nb(path, 0, path[0], g_tp[a], side < 0)
                            else:
                                if fp[FP_TRAIL_AMT] == fp[FP_TRAIL_AMT]:
                                    level = g_ref[a] + side * fp[FP_TRAIL_AMT]
                                else:
                                    level = g_ref[a] * (1.0 + side * fp[FP_TRAIL_PCT])
                                tm, px = touch_nb(path, 0, path[0], level, side > 0)
                            if tm < 0:
                                continue
                        keys_f[n, 0] = tm
                        keys_f[n, 1] = px
                        keys_i[n, 0] = adds
                        keys_i[n, 1] = 0 if tag in (TAG_STOP, TAG_TRAIL) else 1
                        keys_i[n, 2] = g_id[a, slot]
                        keys_i[n, 3] = 1
                        keys_i[n, 4] = a * 4 + slot
                        keys_i[n, 5] = tag
                        n += 1
            # --- fill them in rank order ---------------------------------------------------
            if n > 0:
                order = _rank(keys_f, keys_i, n)
                for m in range(n):
                    x = order[m]
                    tag = keys_i[x, 5]
                    if keys_i[x, 3] == 0:
                        j = keys_i[x, 4]
                        if p_qty[j] <= 0:  # done already
                            continue
                        a = p_code[j]
                        side = p_side[j]
                        asked = p_qty[j]
                        intent = p_intent[j]
                        target = p_target[j]
                        dec = p_row[j]
                        dec_k = p_k[j]
                        p_qty[j] = 0.0  # filled, rejected or cancelled: no longer working
                    else:
                        a = keys_i[x, 4] // 4
                        slot = keys_i[x, 4] % 4
                        if (
                            g_active[a] == 0
                            or g_open[a, slot] == 0
                            or g_id[a, slot] != keys_i[x, 2]
                        ):
                            continue  # filled, cancelled, or replaced by a new position's exit
                        side = -1 if qty[a] > 0 else 1
                        asked = abs(qty[a])
                        intent = INTENT_REDUCE
                        target = 0.0
                        dec = -2
                        dec_k = -1
                        g_open[a, slot] = 0
                    _fill(
                        a,
                        side,
                        asked,
                        intent,
                        target,
                        keys_f[x, 1],
                        tag,
                        keys_i[x, 2],
                        dec,
                        dec_k,
                        row_now[a],
                        k,
                        ts[t],
                        c,
                        h,
                        lo,
                        ip,
                        fp,
                        st_i,
                        st_f,
                        qty,
                        avg,
                        held,
                        g_active,
                        g_id,
                        g_open,
                        g_created,
                        g_exitk,
                        g_sl,
                        g_tp,
                        g_ref,
                        f_i,
                        f_f,
                        tr_i,
                        tr_f,
                        c_i,
                        c_f,
                    )
                # compact the pending orders
                w = 0
                for j in range(st_i[S_PENDING]):
                    if p_qty[j] > 0:
                        if w != j:
                            p_code[w], p_side[w], p_qty[w] = p_code[j], p_side[j], p_qty[j]
                            p_id[w], p_k[w], p_row[w] = p_id[j], p_k[j], p_row[j]
                            p_intent[w], p_target[w] = p_intent[j], p_target[j]
                        w += 1
                st_i[S_PENDING] = w
            if phase == 0 and has_trail:  # trailing references move after the bar is matched
                for j in range(st_i[S_HELD]):
                    a = held[j]
                    r = row_now[a]
                    if r < 0 or g_active[a] == 0 or g_open[a, 2] == 0 or g_created[a] >= k:
                        continue
                    if qty[a] > 0:
                        seen = c[r] if ip[IP_TRAIL_CLOSE] != 0 else h[r]
                        if seen > g_ref[a]:
                            g_ref[a] = seen
                    else:
                        seen = c[r] if ip[IP_TRAIL_CLOSE] != 0 else lo[r]
                        if seen < g_ref[a]:
                            g_ref[a] = seen
            if phase == 0 and sizer == SZ_TOPK:
                _decide_top_k(
                    k,
                    r0,
                    r1,
                    code,
                    sig,
                    ip,
                    st_i,
                    st_f,
                    qty,
                    last,
                    held,
                    row_now,
                    p_code,
                    p_side,
                    p_qty,
                    p_id,
                    p_k,
                    p_row,
                    p_intent,
                    p_target,
                    lot,
                    scol,
                    rules_i,
                    rules_f,
                    top_code,
                    top_score,
                    targets,
                    weights,
                    in_targets,
                    deltas,
                )
            elif phase == 0:  # the strategy phase, per row (inline: this runs for every bar)
                have_equity = False
                equity = 0.0
                for r in range(r0, r1):
                    a = code[r]
                    pos = qty[a]
                    # the order this row places, if any: side, quantity, intent, target
                    if pos != 0 and _rules_pass(rules_i, rules_f, 1, sig, r, pos) == 1:
                        side, q, intent, target = (
                            (-1 if pos > 0 else 1),
                            abs(pos),
                            INTENT_REDUCE,
                            0.0,
                        )
                    elif _rules_pass(rules_i, rules_f, 0, sig, r, pos) != 1:
                        continue
                    elif sizer == SZ_PERCENT:
                        q = round_lot_nb(size_value * st_f[0] / (last[a] * 1.0), lot)
                        side, intent, target = 1, INTENT_NONE, 0.0
                    elif sizer == SZ_FIXED:
                        side, q, intent, target = 1, size_value, INTENT_NONE, 0.0
                    else:
                        conf = sig[scol, r]
                        if not (conf == conf and abs(conf) < np.inf):
                            continue
                        minc = fp[FP_MIN_CONF]
                        scaled = (conf - minc) / (1 - minc)
                        if not scaled > 0.0:
                            scaled = 0.0
                        if scaled > 1.0:
                            scaled = 1.0
                        if not have_equity:
                            equity = _equity(st_f[0], qty, last, held, st_i[S_HELD])
                            have_equity = True
                        goal = size_value * scaled * equity / (last[a] * 1.0)
                        delta = goal - pos
                        if abs(delta) < 1e-12:
                            continue
                        q = round_lot_nb(abs(delta), lot)
                        if q == 0:
                            continue
                        side = 1 if delta > 0 else -1
                        intent, target = INTENT_TARGET, pos + side * q
                    _submit(
                        st_i,
                        p_code,
                        p_side,
                        p_qty,
                        p_id,
                        p_k,
                        p_row,
                        p_intent,
                        p_target,
                        a,
                        side,
                        q,
                        k,
                        r,
                        lot,
                        intent,
                        target,
                    )
        for r in range(r0, r1):
            a = code[r]
            row_now[a] = -1
            if tr_i[a, TI_OPEN]:  # excursions: every bar of an open trade
                if h[r] > tr_f[a, TF_HI]:
                    tr_f[a, TF_HI] = h[r]
                if lo[r] < tr_f[a, TF_LO]:
                    tr_f[a, TF_LO] = lo[r]
        # the books after this timestamp, summed in asset order as core.marking does
        net = 0.0
        gross = 0.0
        npos = 0
        if st_i[S_HELD] > 0:
            for a in range(n_assets):
                q = qty[a]
                if q != 0:
                    value = q * 1.0 * last[a]
                    net += value
                    gross += abs(value)
                    npos += 1
        b_cash[t] = st_f[S_CASH]
        b_net[t] = net
        b_gross[t] = gross
        b_npos[t] = npos
    return T


@jit
def _decide_top_k(
    k: int,
    r0: int,
    r1: int,
    code: np.ndarray,
    sig: np.ndarray,
    ip: np.ndarray,
    st_i: np.ndarray,
    st_f: np.ndarray,
    qty: np.ndarray,
    last: np.ndarray,
    held: np.ndarray,
    row_now: np.ndarray,
    p_code: np.ndarray,
    p_side: np.ndarray,
    p_qty: np.ndarray,
    p_id: np.ndarray,
    p_k: np.ndarray,
    p_row: np.ndarray,
    p_intent: np.ndarray,
    p_target: np.ndarray,
    lot: float,
    scol: int,
    rules_i: np.ndarray,
    rules_f: np.ndarray,
    top_code: np.ndarray,
    top_score: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray,
    in_targets: np.ndarray,
    deltas: np.ndarray,
) -> None:
    """The strategy phase of ``TopKSizer``: rebalance to the top k, equal weight."""
    # --- top k by a signal, equal weight, rebalanced every timestamp ---------------------
    n = 0
    for r in range(r0, r1):
        a = code[r]
        score = sig[scol, r]
        if not (score == score and abs(score) < np.inf):
            continue
        if _rules_pass(rules_i, rules_f, 0, sig, r, qty[a]) == 0:
            continue
        if _rules_pass(rules_i, rules_f, 1, sig, r, qty[a]) == 1:
            continue
        top_code[n] = r
        top_score[n] = -score
        n += 1
    order = np.argsort(top_score[:n], kind="mergesort")
    kk = ip[IP_TOPK]
    w = 1.0 / kk
    m = 0
    for j in range(st_i[S_HELD]):
        targets[m] = held[j]
        weights[m] = 0.0
        in_targets[held[j]] = 1
        m += 1
    for j in range(min(kk, n)):
        a = code[top_code[order[j]]]
        if in_targets[a]:
            for q in range(m):
                if targets[q] == a:
                    weights[q] = w
                    break
        else:
            targets[m] = a
            weights[m] = w
            in_targets[a] = 1
            m += 1
    equity = _equity(st_f[0], qty, last, held, st_i[S_HELD])
    for j in range(m):
        a = targets[j]
        in_targets[a] = 0
        wt = weights[j]
        target = wt * equity / (last[a] * 1.0) if wt else 0.0
        delta = target - qty[a]
        if abs(delta) < 1e-12:
            delta = 0.0
        elif lot > 0:
            mag = round_lot_nb(abs(delta), lot)
            delta = mag if delta > 0 else -mag
        deltas[j] = delta
    for sells in (True, False):
        for j in range(m):
            d = deltas[j]
            if d == 0 or (d < 0) != sells:
                continue
            a = targets[j]
            side = 1 if d > 0 else -1
            _submit(
                st_i,
                p_code,
                p_side,
                p_qty,
                p_id,
                p_k,
                p_row,
                p_intent,
                p_target,
                a,
                side,
                abs(d),
                k,
                row_now[a],
                lot,
                INTENT_TARGET,
                qty[a] + d,
            )
