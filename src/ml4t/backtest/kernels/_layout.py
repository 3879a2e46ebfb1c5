"""Array layouts shared by the kernels and their Python callers: one place for each index.

Every index into a kernel array is named here, once: the ``ip``/``fp`` settings
(``IP_*``/``FP_*``; slot 14 of ``ip`` is unused), the integer and float state (``S_*``),
the rule rows (``RI_*``/``RF_*``), the fill outputs (``FI_*``/``FF_*``), the open and
closed trades (``TI_*``, ``TF_*``, ``CI_*``), the position-exit slots (``G_*``) and the
match candidates (``KF_*``/``KI_*``); with the codes stored in them (rule and sizer kinds,
fill timings, fill tags and reasons).

The signal kernel's arguments come in the named tuples below (numba passes a named tuple
of arrays as a struct: reading a field costs nothing), so a call site says what it
passes: the block's :class:`Bars`, the :class:`Settings`, and the state that carries
across blocks (:class:`Account`, :class:`Exits`, :class:`Pending`), what it writes for
the caller (:class:`Fills`, :class:`Trades`, :class:`Books`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# --- settings: ip int64[IP_SIZE], fp float64[FP_SIZE] ----------------------------------
IP_ASSETS, IP_TIMING, IP_MODE, IP_TRAIL_CLOSE, IP_CASH_POLICY = 0, 1, 2, 3, 4
IP_EXIT_SLIP, IP_SLIP_IN_BAR, IP_COMM, IP_SLIP, IP_SIZER = 5, 6, 7, 8, 9
IP_SIZER_COL, IP_TOPK, IP_HAS_EXITS, IP_MAX_BARS = 10, 11, 12, 13
IP_ALLOW_SHORT, IP_ONE_PER_BAR, IP_EXIT_BASE_CLOSE = 15, 16, 17
IP_SIZE = 18
# FP_COMM is the first of the commission formula's three parameters (0, 1, 2)
FP_COMM, FP_SLIP, FP_SIZE_VALUE, FP_MIN_CONF = 0, 3, 4, 5
FP_SL, FP_TP, FP_TRAIL_PCT, FP_TRAIL_AMT, FP_LOT = 6, 7, 8, 9, 10
FP_SIZE = 11
# fill timings (ip[IP_TIMING])
TIMING_NEXT_OPEN, TIMING_SAME_CLOSE, TIMING_NEXT_CLOSE = 0, 1, 2

# --- state: st_i int64[S_I_SIZE], st_f float64[S_F_SIZE] -------------------------------
S_HELD, S_PENDING, S_NEXT_ID, S_FILLS, S_REJECTED, S_TRADES, S_NEXT_TRADE = 0, 1, 2, 3, 4, 5, 6
# counts of strategy orders that ended without a fill, by reason: rejected at submission
# (invalid quantity), by one_order_per_bar, for a short sale not allowed, for cash, for a bad
# slipped price; cancelled at fill time with nothing to reduce, at the target, past it (the
# three in the order of the cancel statuses of kernels.intent, from NOTHING_TO_REDUCE on)
S_REJ_INVALID, S_REJ_ONE_BAR, S_REJ_SHORT, S_REJ_CASH, S_REJ_PRICE = 7, 8, 9, 10, 11
S_CXL_NOTHING, S_CXL_AT_TARGET, S_CXL_PAST_TARGET = 12, 13, 14
S_I_SIZE = 15
# float state: cash, total commission, total slippage
S_CASH, S_COMMISSION, S_SLIPPAGE = 0, 1, 2
S_F_SIZE = 3

# --- rules: rules_i int64[R, RI_SIZE], rules_f float64[R, RF_SIZE] ---------------------
RI_KIND, RI_COLUMN, RI_IS_EXIT = 0, 1, 2
RI_SIZE = 3
RF_LOW, RF_HIGH = 0, 1
RF_SIZE = 2
# rule kinds
R_ABOVE, R_BELOW, R_BETWEEN, R_IN, R_NOT_IN = 0, 1, 2, 3, 4
# sizer kinds
SZ_PERCENT, SZ_FIXED, SZ_CONFIDENCE, SZ_TOPK = 0, 1, 2, 3

# --- fills: f_i int64[F, FI_SIZE], f_f float64[F, FF_SIZE] -----------------------------
# timestamp index, row, asset code, order id, tag, reason, the decision's row (-1: not in
# this block, -2: a position exit) and timestamp index
FI_K, FI_ROW, FI_CODE, FI_ORDER_ID, FI_TAG, FI_REASON, FI_DEC_ROW, FI_DEC_K = range(8)
FI_SIZE = 8
# signed quantity, price, commission, slippage cost, base price, quantity requested (after
# its intent was resolved), cost the cash did not cover (a resize), cash before the fill;
# realized P&L, cash, position and average cost after the fill, the order's quantity
# before its intent was resolved, its target (NaN: none)
FF_QTY, FF_PRICE, FF_COMMISSION, FF_SLIPPAGE, FF_BASE, FF_REQUESTED = 0, 1, 2, 3, 4, 5
FF_NEED, FF_CASH_BEFORE, FF_REALIZED, FF_CASH_AFTER, FF_QTY_AFTER = 6, 7, 8, 9, 10
FF_AVG_AFTER, FF_ASKED, FF_TARGET = 11, 12, 13
FF_SIZE = 14
# fill tags (FI_TAG; 0: a strategy order); a position exit's tag is TAG_STOP + its slot
TAG_SIGNAL, TAG_STOP, TAG_TAKE, TAG_TRAIL, TAG_TIME = 0, 1, 2, 3, 4
# fill reasons (FI_REASON, bit flags): resized by the cash policy, changed by its intent
REASON_NONE, REASON_RESIZED, REASON_INTENT = 0, 1, 2

# --- trades: open tr_i int64[A, TI_SIZE] / tr_f float64[A, TF_SIZE]; closed c_i int64[F,
# CI_SIZE] / c_f float64[F, TF_SIZE] (a closed trade's floats are its open trade's) ------
TI_OPEN, TI_ID, TI_DIR, TI_ENTRY_K, TI_ENTRY_TS, TI_ENTRY_OID, TI_TRADED_K = range(7)
TI_SIZE = 7
# open quantity; entry quantity, value, commission, slippage; the same of the exits; the
# highest high and lowest low seen
TF_QTY, TF_ENTRY_QTY, TF_ENTRY_VALUE, TF_ENTRY_COMMISSION, TF_ENTRY_SLIPPAGE = range(5)
TF_EXIT_QTY, TF_EXIT_VALUE, TF_EXIT_COMMISSION, TF_EXIT_SLIPPAGE = 5, 6, 7, 8
TF_HIGH, TF_LOW = 9, 10
TF_SIZE = 11
CI_ID, CI_CODE, CI_DIR, CI_ENTRY_K, CI_EXIT_K, CI_ENTRY_TS, CI_EXIT_TS = range(7)
CI_ENTRY_OID, CI_EXIT_OID, CI_EXIT_TAG = 7, 8, 9
CI_SIZE = 10

# --- position exits: per asset, one slot each (Exits.ids / Exits.open [A, G_SIZE]) ------
G_STOP, G_TAKE, G_TRAIL, G_TIME = 0, 1, 2, 3
G_SIZE = 4

# --- match candidates of one phase: keys_f float64[M, KF_SIZE], keys_i int64[M, KI_SIZE] -
# where on the bar's path it fills (AT_OPEN..AT_CLOSE) and its base price
KF_TIME, KF_PRICE = 0, 1
KF_SIZE = 2
# 1 if it adds to the position (exits rank first), 0 for a stop (stops fill first on a
# tie), order id, source (a pending order or a position exit), reference (pending index,
# or asset * G_SIZE + slot), tag
KI_ADDS, KI_NOT_STOP, KI_ID, KI_SOURCE, KI_REF, KI_TAG = range(6)
KI_SIZE = 6
SOURCE_PENDING, SOURCE_EXIT = 0, 1
# times on a bar's path (kernels.matching.touch): the open, the close (its last point)
AT_OPEN, AT_CLOSE = 0.0, 3.0
# the first point of a bar's path (kernels.matching.path: the open; the close in close_only)
PATH_START = 0


# --- the signal kernel's arguments -----------------------------------------------------
class Bars(NamedTuple):
    """One block of bars: ``T`` timestamps, ``N`` rows (asset rows grouped by timestamp)."""

    #: int64[T + 1]: the rows of timestamp ``t`` are ``offsets[t]:offsets[t + 1]``
    offsets: np.ndarray
    #: int64[N]: the asset code of each row
    code: np.ndarray
    #: float64[N] each
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    #: float64[C, N]: the strategy's signal columns
    signals: np.ndarray
    #: int64[T]: the timestamps (ns)
    ts: np.ndarray


class Settings(NamedTuple):
    """What the run is set to: costs, cash, timing, sizer, exits and the rules."""

    #: int64[IP_SIZE] (``IP_*``)
    ip: np.ndarray
    #: float64[FP_SIZE] (``FP_*``)
    fp: np.ndarray
    #: int64[R, RI_SIZE]: kind, signal column, is an exit rule
    rules_i: np.ndarray
    #: float64[R, RF_SIZE]: thresholds
    rules_f: np.ndarray


class Account(NamedTuple):
    """Cash, positions and counters (``A`` assets)."""

    #: int64[S_I_SIZE] (``S_*``)
    st_i: np.ndarray
    #: float64[S_F_SIZE]: cash, total commission, total slippage
    st_f: np.ndarray
    #: float64[A]: position, average cost, latest close
    qty: np.ndarray
    avg: np.ndarray
    last: np.ndarray
    #: int64[A]: held asset codes in the order they were opened (the first
    #: ``st_i[S_HELD]``), as the portfolio's dict keeps them
    held: np.ndarray


class Exits(NamedTuple):
    """Per asset, the position exits that follow its position (``G_*`` slots)."""

    #: int8[A]: the position has exits
    active: np.ndarray
    #: int64[A, G_SIZE]: order id of each exit (-1: none)
    ids: np.ndarray
    #: int8[A, G_SIZE]: the exit is working
    open: np.ndarray
    #: int64[A]: timestamp index the exits were created at, and the one their time exit
    #: counts from
    created: np.ndarray
    exit_k: np.ndarray
    #: float64[A]: stop-loss and take-profit levels, the trailing stop's reference
    stop: np.ndarray
    take: np.ndarray
    trail_ref: np.ndarray


class Pending(NamedTuple):
    """The working market orders (``P`` capacity; the first ``st_i[S_PENDING]``)."""

    code: np.ndarray
    side: np.ndarray
    #: float64[P]: 0 once filled, rejected or cancelled
    qty: np.ndarray
    order_id: np.ndarray
    #: int64[P]: timestamp index and row of the decision (row -1: not in this block)
    k: np.ndarray
    row: np.ndarray
    #: int64[P] / float64[P]: the fill-time intent and target (:mod:`.intent`)
    intent: np.ndarray
    target: np.ndarray


class Fills(NamedTuple):
    """The fills since the caller last drained them (``st_i[S_FILLS]`` rows)."""

    #: int64[F, FI_SIZE]
    ints: np.ndarray
    #: float64[F, FF_SIZE]
    floats: np.ndarray


class Trades(NamedTuple):
    """Open trades per asset, and the trades closed since the last drain."""

    #: int64[A, TI_SIZE] / float64[A, TF_SIZE]
    open_i: np.ndarray
    open_f: np.ndarray
    #: int64[F, CI_SIZE] / float64[F, TF_SIZE] (``st_i[S_TRADES]`` rows)
    closed_i: np.ndarray
    closed_f: np.ndarray


class Books(NamedTuple):
    """The books after every timestamp of the block (``T`` each)."""

    cash: np.ndarray
    net: np.ndarray
    gross: np.ndarray
    #: int64[T]
    npos: np.ndarray
