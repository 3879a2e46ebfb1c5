"""Exit trades: one record per fill that reduces a position, built from the fill ledger.

A round trip (``trades_df``) runs from flat to flat, so a book that is never flat has no
closed round trips. An *exit trade* (VectorBT's ``Portfolio.exit_trades``) is made by every
fill that reduces a position, so every strategy that sells has them:

- **quantity**: what the fill closed; a fill that flips the position (long 10, sell 15)
  closes 10 (one exit trade) and opens a short of 5 (a new round trip).
- **cost basis** (``entry_price``): the position's average cost just before the fill, the
  broker's running average: entries average in (quantity-weighted), reductions leave it
  unchanged, a flip restarts it at the fill price. This is the price the ledger's
  ``realized_pnl`` is measured against, so ``pnl_gross`` of an exit trade equals the
  ``realized_pnl`` of its fill.
- **entry commission**: the position's unallocated entry commission is a pool; an entry
  adds its commission (a flip: the share of its commission for the new position), and
  each exit takes the fraction ``closed / position before the fill`` of the pool. An
  open position keeps the rest.
- **exit commission**: the fill's commission, pro rata to the closed part for a flip.
- ``entry_timestamp``: the first entry fill of the round trip the exit belongs to
  (``trade_id``), the round trip's ``entry_timestamp`` in ``trades_df``.
- ``pnl_gross = direction × quantity × (exit_price − entry_price) × multiplier``;
  ``pnl_net = pnl_gross − entry_commission − exit_commission``;
  ``return = pnl_net / (quantity × multiplier × entry_price)``.

A position still open at the end is one open exit trade (``is_open``, ``exit_reason
"end_of_data"``) marked at the last price with no exit commission, like the round trip's
open row. The exit trades of a round trip partition its P&L: their ``pnl_gross`` and
``pnl_net`` sum to the round trip's.

Splits restate the position (quantity × ratio, average cost ÷ ratio; the pool is money and
unchanged). A fractional remainder paid in cash is an exit trade at the split-adjusted
price, reason ``split_cash_in_lieu``, with no commission; for futures (whose split cash is
a P&L, not a price) the remainder is not shown. Dividends and borrow fees are not part of
exit-trade P&L (nor of round-trip P&L; ``trades_df`` reports them in their own columns).

Everything is computed vectorised over the ledger columns; only a segment whose position
was reduced by a factor beyond 1e200 (thousands of partial exits) runs its commission pool
through a scalar loop, to stay finite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from .ledger import Ledger

__all__ = ["EXIT_TRADE_SCHEMA", "exit_trade_columns"]

#: column name -> dtype of ``exit_trades_df`` (timestamps are int64 ns here; the result
#: builder converts them to datetimes in the run's time zone and adds ``holding_period``)
EXIT_TRADE_SCHEMA: dict[str, Any] = {
    "exit_trade_id": pl.Int64,
    "trade_id": pl.Int64,
    "asset_id": pl.String,
    "direction": pl.String,
    "entry_timestamp": pl.Int64,
    "exit_timestamp": pl.Int64,
    "quantity": pl.Float64,
    "entry_price": pl.Float64,
    "exit_price": pl.Float64,
    "entry_commission": pl.Float64,
    "exit_commission": pl.Float64,
    "commission": pl.Float64,
    "pnl_gross": pl.Float64,
    "pnl_net": pl.Float64,
    "return": pl.Float64,
    "holding_period_bars": pl.Int64,
    "exit_order_id": pl.Int64,
    "exit_reason": pl.String,
    "is_open": pl.Boolean,
}

_SIDES = pl.Series(["short", "long"], dtype=pl.String)
_MIN_KEEP = 1e-200  # a pool scaled below this by exits goes through the scalar loop


def exit_trade_columns(
    ledger: Ledger,
    is_fill: np.ndarray,
    asset_ids: Sequence[str],
    multiplier: Sequence[float],
    is_future: Sequence[bool],
    marks: Mapping[int, float],
    end: tuple[int, int],
) -> dict[str, Any]:
    """Return the exit trades of a ledger as columns (see :data:`EXIT_TRADE_SCHEMA`).

    Parameters
    ----------
    ledger : Ledger
        The portfolio's ledger of fills and account events.
    is_fill : numpy.ndarray of bool
        Per ledger row: is it a fill (kind ``"fill"``).
    asset_ids : sequence of str
        Asset id per asset code.
    multiplier, is_future : sequences
        Contract multiplier and futures flag per asset code.
    marks : mapping of int to float
        Asset code -> last price for each position to report as an open exit trade; a
        position still open whose code is missing is left out (a partial result).
    end : (int, int)
        Timestamp (ns) and timestamp index of the open exit trades' marks.

    Returns
    -------
    dict
        One numpy array or polars Series per column, rows in exit order (ledger order),
        open exit trades last in ``trade_id`` order.
    """
    kind = ledger.column("kind")
    rows = np.flatnonzero(is_fill)
    others = np.flatnonzero(~is_fill)
    if others.shape[0]:
        splits = others[np.asarray([kind[j] == "split" for j in others.tolist()], dtype=bool)]
        if splits.shape[0]:
            rows = np.sort(np.concatenate([rows, splits]))
    code_all = ledger.column("code")
    keys = code_all[rows]
    if len(asset_ids) <= 1 << 16:
        keys = keys.astype(np.uint16)  # numpy radix-sorts 16-bit keys
    r = rows[np.argsort(keys, kind="stable")]  # per asset, in ledger order
    n = r.shape[0]
    code = code_all[r]
    split = ~is_fill[r]
    fill = is_fill[r]
    signed = ledger.column("quantity")[r]
    comm = ledger.column("commission")[r]
    new = ledger.column("position_after")[r]
    avg_after = ledger.column("avg_cost_after")[r]
    first = np.ones(n, dtype=bool)
    first[1:] = code[1:] != code[:-1]
    old = np.empty(n)
    old[1:] = new[:-1]
    old[first] = 0.0
    old_long = old > 0

    # --- what each row does to its position ---------------------------------------------
    reduce = fill & (old != 0) & (signed != 0) & ((signed > 0) != old_long)
    opens = fill & (new != 0) & ((old == 0) | ((new > 0) != old_long))
    flip = reduce & opens
    ex = np.flatnonzero(reduce)
    rem = np.zeros(0)
    sp = np.flatnonzero(split)
    if sp.shape[0]:
        # a split's cash-settled remainder (post-split units): cash / (price x multiplier)
        mult_sp = np.asarray(multiplier, dtype=np.float64)[code[sp]]
        per_unit = ledger.column("price")[r[sp]] * mult_sp
        fut = np.asarray(is_future, dtype=bool)[code[sp]]
        with np.errstate(divide="ignore", invalid="ignore"):
            cash = np.abs(ledger.column("amount")[r[sp]])
            rem_sp = np.where(~fut & (per_unit != 0), cash / per_unit, 0.0)
        paid = np.isfinite(rem_sp) & (rem_sp > 0)
        ex = np.sort(np.concatenate([ex, sp[paid]]))
        rem = np.zeros(n)
        rem[sp[paid]] = rem_sp[paid]

    # --- closed exit trades (positions ``ex`` in per-asset order) ------------------------
    x_split = split[ex]
    abs_s = np.abs(signed[ex])
    abs_old = np.abs(old[ex])
    prev_avg = np.where(first[ex], 0.0, avg_after[np.maximum(ex - 1, 0)])
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.minimum(abs_s, abs_old)
        basis = prev_avg
        before = abs_old
        if sp.shape[0]:
            x_rem = rem[ex]
            exact = np.abs(new[ex]) + x_rem  # the restated position before the payment
            q = np.where(x_split, x_rem, q)
            before = np.where(x_split, exact, abs_old)
            restated = np.where(new[ex] != 0, avg_after[ex], prev_avg * abs_old / exact)
            basis = np.where(x_split, restated, prev_avg)
        frac = q / before
        x_exit = np.where(x_split, 0.0, comm[ex] * (q / abs_s))

    # --- round trips (segments): numbered per asset here, by first fill for trade ids --
    seg = np.cumsum(opens) - 1
    open_pos = np.flatnonzero(opens)
    n_seg = open_pos.shape[0]
    trade_id = np.empty(n_seg, dtype=np.int64)
    trade_id[np.argsort(r[open_pos])] = np.arange(n_seg, dtype=np.int64)
    ts_all, index_all = ledger.column("timestamp"), ledger.column("ts_index")
    seg_ts = ts_all[r[open_pos]]
    seg_index = index_all[r[open_pos]]
    ex_seg = seg[ex] - flip[ex]  # the closing part of a flip ends the previous round trip

    # --- the entry-commission pool: entries add, exits take their fraction --------------
    en = np.flatnonzero(fill & (comm != 0) & (~reduce | flip))
    x_entry = np.zeros(ex.shape[0])
    left = np.zeros(max(n_seg, 1))
    if en.shape[0]:  # without entry commissions the pool is always empty
        c_en = comm[en]
        f_en = flip[en]
        s_en = np.abs(signed[en][f_en])
        c_en[f_en] = c_en[f_en] * ((s_en - np.abs(old[en][f_en])) / s_en)  # the opening part
        # merge the two sorted position lists; on a flip's row the exit goes first
        at_ex = np.arange(ex.shape[0]) + np.searchsorted(en, ex, side="left")
        at_en = np.arange(en.shape[0]) + np.searchsorted(ex, en, side="right")
        m = ex.shape[0] + en.shape[0]
        ev_seg = np.empty(m, dtype=np.int64)
        ev_frac = np.zeros(m)
        ev_add = np.zeros(m)
        ev_seg[at_ex], ev_seg[at_en] = ex_seg, seg[en]
        ev_frac[at_ex] = frac
        ev_add[at_en] = c_en
        pool_before, pool_after = _pool(ev_seg, ev_frac, ev_add)
        x_entry = frac * pool_before[at_ex]
        last_ev = np.ones(m, dtype=bool)
        last_ev[:-1] = ev_seg[1:] != ev_seg[:-1]
        left[ev_seg[last_ev]] = pool_after[last_ev]

    # --- in ledger order ------------------------------------------------------------------
    by_time = np.argsort(r[ex])  # unique rows
    ex, ex_seg, x_split = ex[by_time], ex_seg[by_time], x_split[by_time]
    q, basis, x_exit, x_entry = q[by_time], basis[by_time], x_exit[by_time], x_entry[by_time]
    direction = np.where(old_long[ex], 1.0, -1.0)
    exit_price = ledger.column("price")[r[ex]]
    tags = ledger.column("tag")
    reasons = (
        pl.Series([tags[row] for row in r[ex].tolist()], dtype=pl.String)
        .fill_null("signal")
        .scatter(np.flatnonzero(x_split), "split_cash_in_lieu")
    )
    order_ids = ledger.column("order_id")[r[ex]]
    x_ts = ts_all[r[ex]]
    x_index = index_all[r[ex]]

    # --- open positions: one open exit trade each, marked at the last price --------------
    last = np.flatnonzero(np.append(first[1:], True)) if n else np.empty(0, np.int64)
    wanted = np.fromiter(marks, np.int64, len(marks))
    held = last[(new[last] != 0) & np.isin(code[last], wanted)]
    held = held[np.argsort(trade_id[seg[held]])]
    end_ts, end_index = end
    k = held.shape[0]
    all_code = np.concatenate([code[ex], code[held]])
    all_seg = np.concatenate([ex_seg, seg[held]])
    direction = np.concatenate([direction, np.where(new[held] > 0, 1.0, -1.0)])
    q = np.concatenate([q, np.abs(new[held])])
    entry_price = np.concatenate([basis, avg_after[held]])
    exit_price = np.concatenate([exit_price, [float(marks[c]) for c in code[held].tolist()]])
    m = np.asarray(multiplier, dtype=np.float64)[all_code]
    reasons = reasons.extend(pl.Series(["end_of_data"] * k, dtype=pl.String))
    no_order = np.flatnonzero(np.concatenate([x_split, np.ones(k, dtype=bool)]))
    order_ids = np.concatenate([order_ids, np.full(k, -1, dtype=np.int64)])
    x_ts = np.concatenate([x_ts, np.full(k, end_ts, dtype=np.int64)])
    x_index = np.concatenate([x_index, np.full(k, end_index, dtype=np.int64)])
    x_entry = np.concatenate([x_entry, left[seg[held]]])
    x_exit = np.concatenate([x_exit, np.zeros(k)])
    is_open = np.concatenate([np.zeros(ex.shape[0], dtype=bool), np.ones(k, dtype=bool)])

    with np.errstate(divide="ignore", invalid="ignore"):
        # the portfolio's realized P&L, in its order of operations
        pnl_gross = q * (exit_price - entry_price) * direction * m
        commission = x_entry + x_exit
        pnl_net = pnl_gross - commission
        cost = q * m * entry_price
        ret = np.where(cost != 0, pnl_net / np.where(cost != 0, cost, 1.0), np.nan)
    return {
        "exit_trade_id": np.arange(q.shape[0], dtype=np.int64),
        "trade_id": trade_id[all_seg],
        "asset_id": pl.Series(list(asset_ids), dtype=pl.String).gather(all_code),
        "direction": _SIDES.gather((direction > 0).astype(np.int64)),
        "entry_timestamp": seg_ts[all_seg],
        "exit_timestamp": x_ts,
        "quantity": q,
        "entry_price": entry_price,
        "exit_price": exit_price,
        "entry_commission": x_entry,
        "exit_commission": x_exit,
        "commission": commission,
        "pnl_gross": pnl_gross,
        "pnl_net": pnl_net,
        "return": ret,
        "holding_period_bars": x_index - seg_index[all_seg],
        "exit_order_id": pl.Series(order_ids, dtype=pl.Int64).scatter(no_order, None),
        "exit_reason": reasons,
        "is_open": is_open,
    }


def _pool(seg: np.ndarray, frac: np.ndarray, add: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the commission pool before and after each event.

    Events are in order within each segment (``seg`` non-decreasing); an event multiplies
    the pool by ``1 - frac`` and then adds ``add``. With ``P`` the running product of the
    factors and ``S`` the running sum of ``add / P``, the pool after an event is ``P × S``
    (a linear recurrence solved with segmented cumulative products and sums). A full
    close (``frac == 1``) ends its segment, so its factor is taken as 1: nothing after it
    reads the pool. Segments whose product falls below ``_MIN_KEEP`` use :func:`_pool_loop`.
    """
    if not seg.shape[0]:
        empty = np.empty(0)
        return empty, empty
    keep = np.where(frac >= 1.0, 1.0, 1.0 - frac)
    frame = pl.DataFrame({"seg": pl.Series(seg).set_sorted(), "keep": keep, "add": add})
    prod_expr = pl.col("keep").cum_prod().over("seg")
    out = frame.select(
        prod_expr.alias("prod"),
        (pl.col("add") / pl.max_horizontal(prod_expr, _MIN_KEEP)).cum_sum().over("seg").alias("s"),
    )
    prod = out["prod"].to_numpy()
    after = prod * out["s"].to_numpy()
    first = np.ones(seg.shape[0], dtype=bool)
    first[1:] = seg[1:] != seg[:-1]
    before = np.where(first, 0.0, np.roll(after, 1))
    tiny = np.unique(seg[prod < _MIN_KEEP])
    if tiny.shape[0]:
        rows = np.flatnonzero(np.isin(seg, tiny))
        b, a = _pool_loop(seg[rows], frac[rows], add[rows])
        before[rows], after[rows] = b, a
    return before, after


def _pool_loop(seg: np.ndarray, frac: np.ndarray, add: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scalar reference of :func:`_pool`: the pool before and after each event."""
    before = np.zeros(seg.shape[0])
    after = np.zeros(seg.shape[0])
    pool, current = 0.0, None
    for j, (s, f, a) in enumerate(zip(seg.tolist(), frac.tolist(), add.tolist(), strict=True)):
        if s != current:
            pool, current = 0.0, s
        before[j] = pool
        pool = pool * (1.0 - f) + a
        after[j] = pool
    return before, after
