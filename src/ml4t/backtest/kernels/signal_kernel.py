"""The whole-backtest kernel of a declarative :class:`~ml4t.backtest.SignalStrategy`.

One call runs the per-timestamp phases of the event engine over one block of bars: match
working orders and position exits at the open and along the bar (:mod:`.fill_phase`,
:mod:`.exits`), evaluate the rules for every asset row (:mod:`.strategy_phase`), fill
market orders at the close (``same_bar_close``), keeping cash, positions, position exits
and the working orders in arrays that carry over to the next block. Its arithmetic is the
event path's, operation for operation, so both produce the same fills.

Its arguments are the named tuples of :mod:`._layout` (shapes there): the block's
:class:`~._layout.Bars`, the :class:`~._layout.Settings`, the state carried across blocks
(:class:`~._layout.Account`, :class:`~._layout.Exits`, :class:`~._layout.Pending`) and
what it writes: the :class:`~._layout.Fills` and the closed :class:`~._layout.Trades`
(the caller drains both) and the :class:`~._layout.Books` after every timestamp.

The kernel returns the index of the first timestamp it did not process: ``T`` when done,
less when the pending or fill arrays might overflow (the caller grows or drains them and
calls again from there).

The per-row strategy loop is written out in the body, not called: in this kernel an
inlined helper that itself calls another kernel pays a reference count on each of its
array arguments every time it runs, which per timestamp made W1 (1,000,000 timestamps)
several times slower. The helpers it does call per timestamp make no such calls, or run
only when there is something to match; the per-event kernels (a fill, an order) take
only the arrays they use.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit
from ._layout import (
    FP_LOT,
    FP_MIN_CONF,
    FP_SIZE_VALUE,
    FP_TRAIL_AMT,
    FP_TRAIL_PCT,
    G_SIZE,
    IP_ASSETS,
    IP_HAS_EXITS,
    IP_SIZER,
    IP_SIZER_COL,
    IP_TIMING,
    KF_SIZE,
    KI_SIZE,
    S_CASH,
    S_FILLS,
    S_HELD,
    S_PENDING,
    S_TRADES,
    SZ_FIXED,
    SZ_PERCENT,
    SZ_TOPK,
    TF_HIGH,
    TF_LOW,
    TI_OPEN,
    TIMING_NEXT_CLOSE,
    TIMING_SAME_CLOSE,
    Account,
    Bars,
    Books,
    Exits,
    Fills,
    Pending,
    Settings,
    Trades,
)
from .exits import gather_exits_nb, move_trails_nb
from .fill_phase import fill_ranked_nb, gather_pending_nb
from .intent import INTENT_NONE, INTENT_REDUCE, INTENT_TARGET
from .lots import round_lot_nb
from .strategy_phase import decide_top_k_nb, equity_nb, rules_pass_nb, submit_nb, top_k_scratch_nb

__all__ = ["signal_run_nb"]


@jit
def signal_run_nb(
    k0: int,
    t_start: int,
    bars: Bars,
    settings: Settings,
    account: Account,
    exits: Exits,
    pending: Pending,
    fills: Fills,
    trades: Trades,
    books: Books,
) -> int:
    """Run timestamps ``t_start..T-1`` of a block; return where it stopped (see module).

    ``k0`` is the run's index of the block's first timestamp.
    """
    ip, fp = settings.ip, settings.fp
    st_i, qty, last = account.st_i, account.qty, account.last
    offsets, code, h, lo, c = bars.offsets, bars.code, bars.high, bars.low, bars.close
    sig = bars.signals
    st_f = account.st_f
    rules_i, rules_f = settings.rules_i, settings.rules_f
    tr_i, tr_f = trades.open_i, trades.open_f
    n_assets = ip[IP_ASSETS]
    T = offsets.shape[0] - 1
    at_close = ip[IP_TIMING] == TIMING_SAME_CLOSE
    next_close = ip[IP_TIMING] == TIMING_NEXT_CLOSE  # market orders fill at the next close
    has_exits = ip[IP_HAS_EXITS] != 0
    has_trail = fp[FP_TRAIL_PCT] == fp[FP_TRAIL_PCT] or fp[FP_TRAIL_AMT] == fp[FP_TRAIL_AMT]
    sizer = ip[IP_SIZER]
    scol = ip[IP_SIZER_COL]
    size_value = fp[FP_SIZE_VALUE]
    lot = fp[FP_LOT]
    row_now = np.full(n_assets, -1, dtype=np.int64)
    cap_p = pending.code.shape[0]
    cap_f = fills.ints.shape[0]
    cap_t = trades.closed_i.shape[0]
    cand_cap = cap_p + G_SIZE * n_assets
    keys_f = np.empty((cand_cap, KF_SIZE))
    keys_i = np.empty((cand_cap, KI_SIZE), dtype=np.int64)
    scratch = top_k_scratch_nb(n_assets)
    for t in range(t_start, T):
        r0 = offsets[t]
        r1 = offsets[t + 1]
        n_rows = r1 - r0
        n_pend = st_i[S_PENDING]
        if (
            n_pend + n_rows + n_assets > cap_p
            or st_i[S_FILLS] + 2 * (n_pend + n_assets) + n_rows > cap_f
            or st_i[S_TRADES] + 2 * (n_pend + n_assets) + n_rows > cap_t
        ):
            return t
        k = k0 + t
        for r in range(r0, r1):
            row_now[code[r]] = r
            last[code[r]] = c[r]
        for phase in range(2):
            if phase == 1 and not at_close:
                break
            # --- match: the orders and exits due in this phase, in rank order -------------
            fill_at_close = phase == 1 or next_close
            n = gather_pending_nb(
                phase, at_close, fill_at_close, k, bars, account, pending, row_now, keys_f, keys_i
            )
            if has_exits:
                n = gather_exits_nb(
                    n,
                    phase,
                    at_close,
                    fill_at_close,
                    k,
                    bars,
                    settings,
                    account,
                    exits,
                    row_now,
                    keys_f,
                    keys_i,
                )
            if n > 0:
                fill_ranked_nb(
                    n,
                    k,
                    bars.ts[t],
                    keys_f,
                    keys_i,
                    row_now,
                    bars,
                    settings,
                    account,
                    exits,
                    pending,
                    fills,
                    trades,
                )
            if phase == 0 and has_trail:  # trailing references move after the bar is matched
                move_trails_nb(k, bars, settings, account, exits, row_now)
            # --- the strategy (written here, not called: this runs for every timestamp) ----
            if phase == 0 and sizer == SZ_TOPK:
                decide_top_k_nb(k, r0, r1, bars, settings, account, pending, row_now, scratch)
            elif phase == 0:  # per row: at most one order per asset row
                have_equity = False
                equity = 0.0
                for r in range(r0, r1):
                    a = code[r]
                    pos = qty[a]
                    # the order this row places, if any: side, quantity, intent, target
                    if pos != 0 and rules_pass_nb(rules_i, rules_f, 1, sig, r, pos) == 1:
                        side, q, intent, target = (
                            (-1 if pos > 0 else 1),
                            abs(pos),
                            INTENT_REDUCE,
                            0.0,
                        )
                    elif rules_pass_nb(rules_i, rules_f, 0, sig, r, pos) != 1:
                        continue
                    elif sizer == SZ_PERCENT:
                        q = round_lot_nb(size_value * st_f[S_CASH] / (last[a] * 1.0), lot)
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
                            equity = equity_nb(account)
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
                    submit_nb(st_i, pending, a, side, q, k, r, lot, intent, target)
        for r in range(r0, r1):
            a = code[r]
            row_now[a] = -1
            if tr_i[a, TI_OPEN]:  # excursions: every bar of an open trade
                if h[r] > tr_f[a, TF_HIGH]:
                    tr_f[a, TF_HIGH] = h[r]
                if lo[r] < tr_f[a, TF_LOW]:
                    tr_f[a, TF_LOW] = lo[r]
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
        books.cash[t] = st_f[S_CASH]
        books.net[t] = net
        books.gross[t] = gross
        books.npos[t] = npos
    return T
