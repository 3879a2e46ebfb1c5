"""Documented differences, shared by the scenarios that show them.

Each cites the framework's installed source (file and line in the pinned version) and our
``docs/framework_differences.md`` entry, where the arithmetic is worked through.
"""

from __future__ import annotations

from ..scenario import Difference

BT = "backtrader 1.9.78.123"
VBT = "vectorbt 1.2.0"

BT_COC_COMMISSION = Difference(
    "Backtrader's cheat-on-close executes the order in the next bar's broker cycle: the fill "
    "is stamped at the signal bar at its close, but cash and commission reach the broker "
    "value one bar later, so equity at each fill bar differs by that fill's commission "
    "(fills and trades are identical).",
    f"{BT} brokers/bbroker.py L853-870 (_try_exec_market, coc branch); "
    "docs/framework_differences.md B8",
)

BT_COC_SLIP_CAP = Difference(
    "With cheat-on-close, Backtrader slips the signal bar's close but caps it "
    "(slip_match=True) at the high/low of the *next* bar, the one being processed; ours "
    "(slippage_within_bar) caps at the signal bar's own range. Fills whose slipped price "
    "lies outside the next bar's range differ.",
    f"{BT} brokers/bbroker.py L853-868 (_try_exec_market passes phigh/plow of the current "
    "bar), L994-1015 (_slip_up); docs/framework_differences.md B9",
)

BT_COC_EXITS = Difference(
    "With cheat-on-close the entry executes during the next bar's broker cycle, so exit "
    "orders submitted on the entry's fill notification are first matched one bar later "
    "than ours: the range of the bar after the signal bar is never checked for the stop "
    "or target.",
    f"{BT} brokers/bbroker.py L853-870 and L1176-1237 (next: orders submitted during "
    "notification wait for the next cycle); docs/framework_differences.md B10",
)

VBT_STOP_BEFORE_OPEN_EXIT = Difference(
    "VectorBT checks a position's stop-loss, then its take-profit, against the whole bar "
    "(open, low, high) before it reads the bar's signals, and a hit takes the bar's one "
    "order. Next-open fills are the signals shifted one bar with price=open, so when the "
    "bar after an exit signal opens inside the levels and then trades through one, "
    "VectorBT exits at that level and drops the signal; ours fills the signal's close at "
    "the open, which comes first in the bar, and the exit then has nothing left to close.",
    f"{VBT} portfolio/nb.py L2097-2117 (simulate_from_signals_nb: stop and target over "
    "open/low/high), L2132-2149 ('Stop signal comes first': the signal arrays are read "
    "only when no stop hit, L2150), L1861-1890 (get_stop_price_nb); portfolio/base.py "
    "L2308-2310 (from_signals docstring: stop signal has priority, one order per bar); "
    "docs/framework_differences.md V4",
)
