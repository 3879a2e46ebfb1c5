"""The strategy phase of the signal kernel: the rules and sizers decide, orders are placed.

Per asset row, the exit rules (any holds: close the position) and then the entry rules
(all hold: size an order with the percent, fixed or confidence sizer) decide one market
order (:func:`rules_pass_nb`; the per-row loop itself is written in the kernel's body,
:mod:`.signal_kernel`, where it costs nothing per timestamp); the top-k sizer instead
rebalances to the k assets with the highest signal, equal weight
(:func:`decide_top_k_nb`). Orders go to the pending arrays through :func:`submit_nb`,
which rejects an invalid quantity as the broker does at submission. Layouts:
:mod:`._layout`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._jit import jit, jit_inline
from ._layout import (
    FP_LOT,
    IP_SIZER_COL,
    IP_TOPK,
    R_ABOVE,
    R_BELOW,
    R_IN,
    R_NOT_IN,
    RF_HIGH,
    RF_LOW,
    RI_COLUMN,
    RI_IS_EXIT,
    RI_KIND,
    S_CASH,
    S_HELD,
    S_NEXT_ID,
    S_PENDING,
    S_REJ_INVALID,
    S_REJECTED,
    Account,
    Bars,
    Pending,
    Settings,
)
from .intent import INTENT_TARGET
from .lots import round_lot_nb

__all__ = [
    "TopKScratch",
    "decide_top_k_nb",
    "equity_nb",
    "rules_pass_nb",
    "submit_nb",
    "top_k_scratch_nb",
]


class TopKScratch(NamedTuple):
    """Work arrays of :func:`decide_top_k_nb` (``A`` each), allocated once per call."""

    #: candidate rows and their negated scores
    rows: np.ndarray
    scores: np.ndarray
    #: assets to trade, their target weights and quantity changes; which are listed
    targets: np.ndarray
    weights: np.ndarray
    deltas: np.ndarray
    listed: np.ndarray


@jit_inline
def top_k_scratch_nb(n_assets: int) -> TopKScratch:
    """Allocate the work arrays of :func:`decide_top_k_nb`."""
    return TopKScratch(
        np.empty(n_assets, dtype=np.int64),
        np.empty(n_assets),
        np.empty(n_assets, dtype=np.int64),
        np.empty(n_assets),
        np.empty(n_assets),
        np.zeros(n_assets, dtype=np.int8),
    )


@jit_inline
def equity_nb(account: Account) -> float:
    """Cash plus the value of the held positions at their latest closes."""
    qty, last, held = account.qty, account.last, account.held
    net = 0.0
    for j in range(account.st_i[S_HELD]):
        c = held[j]
        net += qty[c] * last[c]
    return account.st_f[S_CASH] + 0.0 + net


@jit_inline
def rules_pass_nb(
    rules_i: np.ndarray, rules_f: np.ndarray, want_exit: int, sig: np.ndarray, r: int, pos: float
) -> int:
    """Return 1 if all entry rules (``want_exit=0``) / any exit rule (1) hold, -1 if none.

    ``rules_i`` / ``rules_f`` are :attr:`Settings.rules_i` / :attr:`Settings.rules_f`
    (arrays, not the settings: this runs for every row).
    """
    seen = 0
    for j in range(rules_i.shape[0]):
        if rules_i[j, RI_IS_EXIT] != want_exit:
            continue
        seen += 1
        kind = rules_i[j, RI_KIND]
        if kind == R_IN:
            ok = pos != 0
        elif kind == R_NOT_IN:
            ok = pos == 0
        else:
            x = sig[rules_i[j, RI_COLUMN], r]
            if kind == R_ABOVE:
                ok = x > rules_f[j, RF_LOW]
            elif kind == R_BELOW:
                ok = x < rules_f[j, RF_LOW]
            else:
                ok = rules_f[j, RF_LOW] <= x <= rules_f[j, RF_HIGH]
        if want_exit == 1 and ok:
            return 1
        if want_exit == 0 and not ok:
            return 0
    if seen == 0:
        return -1
    return 0 if want_exit == 1 else 1


@jit
def submit_nb(
    st_i: np.ndarray,
    pending: Pending,
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
    pending.code[j], pending.side[j], pending.qty[j] = code, side, quantity
    pending.order_id[j], pending.k[j], pending.row[j] = oid, k, row
    pending.intent[j], pending.target[j] = intent, target
    st_i[S_PENDING] = j + 1


@jit
def decide_top_k_nb(
    k: int,
    r0: int,
    r1: int,
    bars: Bars,
    settings: Settings,
    account: Account,
    pending: Pending,
    row_now: np.ndarray,
    scratch: TopKScratch,
) -> None:
    """The strategy phase of ``TopKSizer``: rebalance to the top k, equal weight."""
    ip = settings.ip
    rules_i, rules_f = settings.rules_i, settings.rules_f
    code, sig = bars.code, bars.signals
    st_i, qty, last, held = account.st_i, account.qty, account.last, account.held
    top_row, top_score = scratch.rows, scratch.scores
    targets, weights, deltas, listed = (
        scratch.targets,
        scratch.weights,
        scratch.deltas,
        scratch.listed,
    )
    scol = ip[IP_SIZER_COL]
    lot = settings.fp[FP_LOT]
    # --- top k by a signal, equal weight, rebalanced every timestamp ---------------------
    n = 0
    for r in range(r0, r1):
        a = code[r]
        score = sig[scol, r]
        if not (score == score and abs(score) < np.inf):
            continue
        if rules_pass_nb(rules_i, rules_f, 0, sig, r, qty[a]) == 0:
            continue
        if rules_pass_nb(rules_i, rules_f, 1, sig, r, qty[a]) == 1:
            continue
        top_row[n] = r
        top_score[n] = -score
        n += 1
    order = np.argsort(top_score[:n], kind="mergesort")
    kk = ip[IP_TOPK]
    w = 1.0 / kk
    m = 0
    for j in range(st_i[S_HELD]):
        targets[m] = held[j]
        weights[m] = 0.0
        listed[held[j]] = 1
        m += 1
    for j in range(min(kk, n)):
        a = code[top_row[order[j]]]
        if listed[a]:
            for q in range(m):
                if targets[q] == a:
                    weights[q] = w
                    break
        else:
            targets[m] = a
            weights[m] = w
            listed[a] = 1
            m += 1
    equity = equity_nb(account)
    for j in range(m):
        a = targets[j]
        listed[a] = 0
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
            submit_nb(st_i, pending, a, side, abs(d), k, row_now[a], lot, INTENT_TARGET, qty[a] + d)
