"""Position exits (stop-loss, take-profit, trailing), exits meeting an exit signal on one bar,
and limit/stop entry orders."""

from __future__ import annotations

from functools import partial

import numpy as np

from ..data import from_rows, real_daily, synthetic
from ..scenario import BarSet, Costs, Exits, Orders, OrderSpec, Scenario, Sizing
from ._build import crossover, fixed_signals
from ._differences import BT_COC_EXITS, BT_COC_SLIP_CAP, VBT_STOP_BEFORE_OPEN_EXIT

#: entry at bar 1 (100); bar 3 gaps through the 5 % stop; entry at bar 5 (92); bar 6
#: touches both the stop (87.40) and the target (96.60); entry at bar 8 (90); bar 9 gaps
#: over the target (94.50) and opens at 96.
GAPS = [
    (100, 101, 99, 100),
    (100, 101, 99, 100),
    (100, 102, 98, 101),
    (93, 94, 90, 92),
    (92, 93, 91, 92),
    (92, 93, 91, 92),
    (93, 97, 87, 90),
    (90, 91, 89, 90),
    (90, 91, 89, 90),
    (96, 97, 95, 96),
    (96, 97, 95, 96),
    (95, 96, 94, 95),
]


#: Same-bar exits with next-bar-open fills (stop 95 / target 110 on entries at 100; the
#: entry bars open and close at 100, so every preset prices the levels alike). Bar 4 gaps
#: through the stop the bar after an exit signal (bar 3); bar 8 gaps over the target the
#: bar after an exit signal (bar 7); bar 11 trades through the stop and its close gives
#: the exit signal.
SIGNAL_STOP_GAP = [
    (100, 101, 99, 100),
    (100, 101, 99, 100),  # 1 entry signal
    (100, 101, 99, 100),  # 2 entry fills at the open 100
    (100, 101, 98, 99),  # 3 exit signal
    (93, 94, 90, 92),  # 4 opens through the stop: the stop and the close both at 93
    (92, 93, 91, 92),  # 5 entry signal
    (100, 101, 99, 100),  # 6 entry fills at 100
    (101, 103, 100, 102),  # 7 exit signal
    (111, 112, 109, 110),  # 8 opens over the target: the target and the close both at 111
    (110, 111, 109, 110),  # 9 entry signal
    (100, 101, 99, 100),  # 10 entry fills at 100
    (99, 100, 94, 95.5),  # 11 the stop fills at 95; the close gives an exit signal (flat)
    (95, 96, 94, 95),
    (95, 96, 94, 95),
]

#: Next-bar-open fills where the bar after the exit signal opens inside the levels and then
#: trades through one: through the stop (bar 4), through the target (bar 8).
SIGNAL_STOP_INTRABAR = [
    (100, 101, 99, 100),
    (100, 101, 99, 100),  # 1 entry signal
    (100, 101, 99, 100),  # 2 entry fills at 100: stop 95, target 110
    (100, 101, 98, 99),  # 3 exit signal
    (98, 99, 94, 96),  # 4 the close fills at the open 98, then the low 94 passes the stop
    (96, 97, 95, 96),  # 5 entry signal
    (100, 101, 99, 100),  # 6 entry fills at 100
    (101, 103, 100, 102),  # 7 exit signal
    (104, 111, 103, 108),  # 8 the close fills at the open 104, then the high passes 110
    (108, 109, 107, 108),
    (108, 109, 107, 108),
]

#: Same-bar-close fills. Bar 3 trades through the stop and its close gives the exit signal;
#: bar 7's exit signal closes at 99 and bar 8 then gaps through the old stop. The bars
#: after the entry bars (2, 6) touch neither level (Backtrader's cheat-on-close exits start
#: a bar late there, B10).
SIGNAL_STOP_SAME_CLOSE = [
    (100, 101, 99, 100),
    (100, 101, 99, 100),  # 1 entry signal, fills at the close 100: stop 95, target 110
    (100, 101, 99, 100),  # 2
    (99, 100, 94, 95.5),  # 3 the stop fills at 95; the close gives an exit signal (flat)
    (96, 97, 95, 96),  # 4
    (99, 101, 98, 100),  # 5 entry signal, fills at 100
    (100, 101, 99, 100),  # 6
    (100, 101, 98, 99),  # 7 exit signal, fills at the close 99
    (93, 94, 90, 92),  # 8 gaps through the old stop: nothing left to stop
    (92, 93, 91, 92),
    (92, 93, 91, 92),
]

#: Next-bar-close fills (entries fill at a close of 100: stop 95, target 110). After an exit
#: signal: bar 4 trades through the stop and closes beyond it (94); bar 9 touches the stop
#: and closes above it (96); bar 16 touches the target and closes below it (106). Bar 12
#: trades through the stop, closes beyond it and gives the exit signal itself.
SIGNAL_STOP_NEXT_CLOSE = [
    (100, 101, 99, 100),
    (100, 101, 99, 100),  # 1 entry signal
    (100, 101, 99, 100),  # 2 entry fills at the close 100
    (100, 101, 98, 99),  # 3 exit signal
    (98, 99, 93, 94),  # 4 through the stop intrabar, closes beyond it
    (94, 95, 93, 94),  # 5
    (96, 99, 95.5, 98),  # 6 entry signal
    (99, 101, 98, 100),  # 7 entry fills at 100
    (100, 101, 98, 99),  # 8 exit signal
    (98, 99, 94, 96),  # 9 touches the stop intrabar, closes above it
    (96, 97, 95.5, 96),  # 10 entry signal
    (99, 101, 98, 100),  # 11 entry fills at 100
    (99, 100, 93, 94),  # 12 through the stop, closes beyond it; exit signal
    (94, 95, 93, 94),  # 13 entry signal
    (99, 101, 98, 100),  # 14 entry fills at 100
    (101, 103, 100, 102),  # 15 exit signal
    (104, 111, 103, 106),  # 16 touches the target intrabar, closes below it
    (106, 107, 105, 106),
    (106, 107, 105, 106),
]


def _gaps() -> BarSet:
    return from_rows(GAPS)


def _walk() -> BarSet:
    return synthetic(300, seed=23, vol=0.025, gap=0.015)


def _nvda() -> BarSet:
    return real_daily(["nvda"], "2004-01-01", "2009-12-31")


def _entry_orders(bars: BarSet) -> Orders:
    """Every 15 bars: a buy limit 1 % below the close or a buy stop 1 % above it, and a
    market sell of the same 10 shares seven bars later."""
    specs = []
    close = bars.close[:, 0]
    for k, t in enumerate(range(10, bars.n_bars - 10, 15)):
        if k % 2 == 0:
            specs.append(OrderSpec(t, "A", 10.0, "limit", float(np.round(close[t] * 0.99, 2))))
        else:
            specs.append(OrderSpec(t, "A", 10.0, "stop", float(np.round(close[t] * 1.01, 2))))
        specs.append(OrderSpec(t + 7, "A", -10.0, "market", None))
    return Orders(tuple(specs))


SCENARIOS = [
    Scenario(
        "exits_gap_and_double_touch",
        "5 % stop-loss and take-profit on hand-built bars: a gap through the stop, a bar "
        "touching both (the stop wins), a gap over the target.",
        _gaps,
        fixed_signals([1, 5, 8], []),
        fill_timing="same_bar_close",
        sizing=Sizing("fixed", 10),
        exits=Exits(stop_loss=0.05, take_profit=0.05),
        frameworks=("vectorbt", "backtrader"),
        differences={"backtrader": BT_COC_EXITS},
        tags=("exits",),
    ),
    Scenario(
        "stop_loss_take_profit",
        "4 % stop-loss and 6 % take-profit on crossover entries, same-bar close fills.",
        _walk,
        crossover(),
        fill_timing="same_bar_close",
        sizing=Sizing("fixed", 100),
        exits=Exits(stop_loss=0.04, take_profit=0.06),
        frameworks=("vectorbt", "backtrader"),
        differences={"backtrader": BT_COC_EXITS},
        tags=("exits",),
    ),
    Scenario(
        "stop_loss_take_profit_next_open",
        "4 % stop-loss and 6 % take-profit, entries at the next open, 0.1 % commission.",
        _walk,
        crossover(),
        fill_timing="next_bar_open",
        sizing=Sizing("fixed", 100),
        costs=Costs(commission_rate=0.001),
        exits=Exits(stop_loss=0.04, take_profit=0.06),
        frameworks=("vectorbt", "backtrader"),
        tags=("exits",),
    ),
    Scenario(
        "trailing_stop",
        "5 % trailing stop on crossover entries, same-bar close fills.",
        _walk,
        crossover(),
        fill_timing="same_bar_close",
        sizing=Sizing("fixed", 100),
        exits=Exits(trailing_stop=0.05),
        frameworks=("vectorbt", "backtrader"),
        differences={"backtrader": BT_COC_EXITS},
        tags=("exits",),
    ),
    Scenario(
        "trailing_stop_next_open",
        "5 % trailing stop, entries at the next open.",
        _walk,
        crossover(),
        fill_timing="next_bar_open",
        sizing=Sizing("fixed", 100),
        exits=Exits(trailing_stop=0.05),
        frameworks=("vectorbt", "backtrader"),
        tags=("exits",),
    ),
    Scenario(
        "stop_loss_slippage",
        "5 % stop-loss with 0.2 % slippage: where does the stop level come from, and is "
        "the stop fill slipped?",
        _walk,
        crossover(),
        fill_timing="same_bar_close",
        sizing=Sizing("fixed", 100),
        costs=Costs(slippage_rate=0.002),
        exits=Exits(stop_loss=0.05),
        frameworks=("vectorbt", "backtrader"),
        differences={"backtrader": BT_COC_EXITS + BT_COC_SLIP_CAP},
        tags=("exits", "costs"),
    ),
    Scenario(
        "real_nvda_exits",
        "Real NVDA daily bars 2004-2009: crossover entries, 8 % stop-loss, 15 % target.",
        _nvda,
        crossover(10, 30),
        fill_timing="next_bar_open",
        sizing=Sizing("fixed", 100),
        exits=Exits(stop_loss=0.08, take_profit=0.15),
        frameworks=("vectorbt", "backtrader"),
        tags=("exits", "real"),
    ),
    Scenario(
        "signal_and_stop_gap_next_open",
        "An exit signal and a stop-loss or take-profit on the same bar, next-open fills: the "
        "bar after the signal opens through the stop (and, later, over the target), so the "
        "exit and the signal's close both fill at that open; and a stop hit on the bar "
        "whose close gives the exit signal. The position closes once.",
        partial(from_rows, SIGNAL_STOP_GAP),
        fixed_signals([1, 5, 9], [3, 7, 11]),
        fill_timing="next_bar_open",
        sizing=Sizing("fixed", 10),
        exits=Exits(stop_loss=0.05, take_profit=0.10),
        frameworks=("vectorbt", "backtrader"),
        tags=("exits", "same_bar_exit"),
    ),
    Scenario(
        "signal_and_stop_intrabar_next_open",
        "An exit signal, then a bar that opens inside the stop and target and trades "
        "through one of them: the signal's close fills first, at the open, and the exit is "
        "cancelled.",
        partial(from_rows, SIGNAL_STOP_INTRABAR),
        fixed_signals([1, 5], [3, 7]),
        fill_timing="next_bar_open",
        sizing=Sizing("fixed", 10),
        exits=Exits(stop_loss=0.05, take_profit=0.10),
        frameworks=("vectorbt", "backtrader"),
        differences={"vectorbt": VBT_STOP_BEFORE_OPEN_EXIT},
        tags=("exits", "same_bar_exit"),
    ),
    Scenario(
        "signal_and_stop_same_bar_close",
        "Same-bar-close fills: a stop hit intrabar on the bar whose close gives the exit "
        "signal (the stop fills, the signal finds the position flat); an exit signal filled "
        "at its close before the next bar gaps through the old stop.",
        partial(from_rows, SIGNAL_STOP_SAME_CLOSE),
        fixed_signals([1, 5], [3, 7]),
        fill_timing="same_bar_close",
        sizing=Sizing("fixed", 10),
        exits=Exits(stop_loss=0.05, take_profit=0.10),
        frameworks=("vectorbt", "backtrader"),
        tags=("exits", "same_bar_exit"),
    ),
    Scenario(
        "signal_and_stop_next_close",
        "Next-close fills: after an exit signal, a bar through the stop that closes beyond "
        "it, a bar touching the stop (and one touching the target) that closes inside, and a "
        "stop hit on the exit signal's own bar. Intrabar exits fill at their level before "
        "the close; Zipline's exits trigger on the close only, so there the close fills.",
        partial(from_rows, SIGNAL_STOP_NEXT_CLOSE),
        fixed_signals([1, 6, 10, 13], [3, 8, 12, 15]),
        fill_timing="next_bar_close",
        sizing=Sizing("fixed", 10, integer=True),
        exits=Exits(stop_loss=0.05, take_profit=0.10),
        tags=("exits", "same_bar_exit"),
    ),
    Scenario(
        "limit_stop_entries",
        "Buy limits 1 % below and buy stops 1 % above the close, market exits, next open.",
        _walk,
        _entry_orders,
        fill_timing="next_bar_open",
        frameworks=("vectorbt", "backtrader"),
        tags=("orders",),
    ),
    Scenario(
        "limit_stop_entries_next_close",
        "The same limit and stop entries with market exits at the next close.",
        _walk,
        _entry_orders,
        fill_timing="next_bar_close",
        tags=("orders",),
    ),
]
