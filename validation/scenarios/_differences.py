"""Documented differences, shared by the scenarios that show them.

Each cites the framework's installed source (file and line in the pinned version) and our
``docs/framework_differences.md`` entry, where the arithmetic is worked through.
"""

from __future__ import annotations

from ..scenario import Difference

BT = "backtrader 1.9.78.123"

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
