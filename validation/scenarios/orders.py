"""Position exits (stop-loss, take-profit, trailing) and limit/stop entry orders."""

from __future__ import annotations

import numpy as np

from ..data import from_rows, real_daily, synthetic
from ..scenario import BarSet, Costs, Exits, Orders, OrderSpec, Scenario, Sizing
from ._build import crossover, fixed_signals
from ._differences import BT_COC_EXITS, BT_COC_SLIP_CAP

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
