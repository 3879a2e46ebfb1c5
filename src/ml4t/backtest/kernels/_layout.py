"""Array layouts shared by the kernels and their Python callers: one place for each index.

``ip``/``fp`` settings (``IP_*``/``FP_*``; slot 14 is unused), the integer and float
state (``S_*``), the fill outputs, rule and sizer kinds, fill tags and reasons, and the
open/closed trade columns (``TI_*``, ``TF_*``, ``CI_*``).
"""

from __future__ import annotations

# --- settings layout --------------------------------------------------------------------
IP_ASSETS, IP_TIMING, IP_MODE, IP_TRAIL_CLOSE, IP_CASH_POLICY = 0, 1, 2, 3, 4
IP_EXIT_SLIP, IP_SLIP_IN_BAR, IP_COMM, IP_SLIP, IP_SIZER = 5, 6, 7, 8, 9
IP_SIZER_COL, IP_TOPK, IP_HAS_EXITS, IP_MAX_BARS = 10, 11, 12, 13
IP_ALLOW_SHORT, IP_ONE_PER_BAR, IP_EXIT_BASE_CLOSE = 15, 16, 17
IP_SIZE = 18
FP_COMM, FP_SLIP, FP_SIZE_VALUE, FP_MIN_CONF = 0, 3, 4, 5
FP_SL, FP_TP, FP_TRAIL_PCT, FP_TRAIL_AMT, FP_LOT = 6, 7, 8, 9, 10
FP_SIZE = 11
# state
S_HELD, S_PENDING, S_NEXT_ID, S_FILLS, S_REJECTED, S_TRADES, S_NEXT_TRADE = 0, 1, 2, 3, 4, 5, 6
# counts of strategy orders that ended without a fill, by reason: rejected at submission
# (invalid quantity), by one_order_per_bar, for a short sale not allowed, for cash, for a bad
# slipped price; cancelled at fill time with nothing to reduce, at the target, past it
S_REJ_INVALID, S_REJ_ONE_BAR, S_REJ_SHORT, S_REJ_CASH, S_REJ_PRICE = 7, 8, 9, 10, 11
S_CXL_NOTHING, S_CXL_AT_TARGET, S_CXL_PAST_TARGET = 12, 13, 14
S_I_SIZE = 15
# float state: cash, total commission, total slippage
S_CASH, S_COMMISSION, S_SLIPPAGE = 0, 1, 2

# fill outputs (f_f columns 8..13): realized P&L, cash, position and average cost after the
# fill, the order's quantity before its intent was resolved, its target (NaN: none)
FF_REALIZED, FF_CASH_AFTER, FF_QTY_AFTER, FF_AVG_AFTER, FF_ASKED, FF_TARGET = 8, 9, 10, 11, 12, 13
FF_SIZE = 14
# rule kinds
R_ABOVE, R_BELOW, R_BETWEEN, R_IN, R_NOT_IN = 0, 1, 2, 3, 4
# sizer kinds
SZ_PERCENT, SZ_FIXED, SZ_CONFIDENCE, SZ_TOPK = 0, 1, 2, 3
# fill tags (0: a strategy order) and group slots (tag - 1)
TAG_SIGNAL, TAG_STOP, TAG_TAKE, TAG_TRAIL, TAG_TIME = 0, 1, 2, 3, 4
# fill reasons (bit flags): resized by the cash policy, quantity changed by its intent
REASON_NONE, REASON_RESIZED, REASON_INTENT = 0, 1, 2
# open trade (tr_i / tr_f columns) and closed trade (c_i / c_f columns) layouts
TI_OPEN, TI_ID, TI_DIR, TI_ENTRY_K, TI_ENTRY_TS, TI_ENTRY_OID, TI_TRADED_K = 0, 1, 2, 3, 4, 5, 6
TF_QTY, TF_EQ, TF_EV, TF_EC, TF_ES, TF_XQ, TF_XV, TF_XC, TF_XS, TF_HI, TF_LO = range(11)
CI_ID, CI_CODE, CI_DIR, CI_ENTRY_K, CI_EXIT_K, CI_ENTRY_TS, CI_EXIT_TS = range(7)
CI_ENTRY_OID, CI_EXIT_OID, CI_EXIT_TAG = 7, 8, 9
