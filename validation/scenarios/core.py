"""Market orders, fill timings, directions, costs and sizing."""

from __future__ import annotations

from ..data import from_rows, synthetic
from ..scenario import Costs, Scenario, Sizing
from ._build import crossover, orders, short_crossover
from ._differences import BT_COC_COMMISSION, BT_COC_SLIP_CAP

#: The 8-bar series of framework-semantics.md, Appendix A (verified outputs quoted there).
APPENDIX = [
    (100, 101, 99, 100.5),
    (101, 104, 100, 103),
    (103, 105, 101, 102),
    (102, 106, 100, 105),
    (108, 110, 106, 109),
    (107, 109, 99, 100),
    (100, 103, 97, 98),
    (99, 101, 95, 97),
]


def _walk() -> object:
    return synthetic(300, seed=11)


def _appendix() -> object:
    return from_rows(APPENDIX)


SCENARIOS = [
    Scenario(
        "market_same_bar_close",
        "Crossover signals on one synthetic asset, 100 shares, filled at the signal bar's close.",
        _walk,  # type: ignore[arg-type]
        crossover(),
        fill_timing="same_bar_close",
        sizing=Sizing("fixed", 100),
        frameworks=("vectorbt", "backtrader"),
        tags=("market",),
    ),
    Scenario(
        "market_next_bar_open",
        "The same signals filled at the next bar's open.",
        _walk,  # type: ignore[arg-type]
        crossover(),
        fill_timing="next_bar_open",
        sizing=Sizing("fixed", 100),
        frameworks=("vectorbt", "backtrader"),
        tags=("market",),
    ),
    Scenario(
        "market_next_bar_close",
        "The same signals filled at the next bar's close (Zipline's market-order rule).",
        _walk,  # type: ignore[arg-type]
        crossover(),
        fill_timing="next_bar_close",
        sizing=Sizing("fixed", 100, integer=True),
        tags=("market",),
    ),
    Scenario(
        "long_short_reversal",
        "Long on a cross above, short on a cross below: every signal reverses with one order.",
        _walk,  # type: ignore[arg-type]
        short_crossover(),
        fill_timing="same_bar_close",
        sizing=Sizing("fixed", 100),
        direction="long_short",
        frameworks=("vectorbt", "backtrader"),
        tags=("market", "short"),
    ),
    Scenario(
        "long_short_next_bar_open",
        "Long/short reversals filled at the next bar's open, with a 0.1 % commission.",
        _walk,  # type: ignore[arg-type]
        short_crossover(),
        fill_timing="next_bar_open",
        sizing=Sizing("fixed", 50),
        costs=Costs(commission_rate=0.001),
        direction="long_short",
        frameworks=("vectorbt", "backtrader"),
        tags=("market", "short", "costs"),
    ),
    Scenario(
        "commission_percentage",
        "0.1 % commission on the slipped fill value, next-bar-open fills.",
        _walk,  # type: ignore[arg-type]
        crossover(),
        fill_timing="next_bar_open",
        sizing=Sizing("fixed", 100),
        costs=Costs(commission_rate=0.001),
        frameworks=("vectorbt", "backtrader"),
        tags=("costs",),
    ),
    Scenario(
        "commission_percentage_next_close",
        "0.1 % commission, whole shares, next-bar-close fills.",
        _walk,  # type: ignore[arg-type]
        crossover(),
        fill_timing="next_bar_close",
        sizing=Sizing("fixed", 100, integer=True),
        costs=Costs(commission_rate=0.001),
        tags=("costs",),
    ),
    Scenario(
        "commission_per_share_minimum",
        "0.005 per share with a 1.00 minimum per order on 100-share orders (minimum binds).",
        _walk,  # type: ignore[arg-type]
        crossover(),
        fill_timing="next_bar_close",
        sizing=Sizing("fixed", 100, integer=True),
        costs=Costs(commission_per_share=0.005, commission_minimum=1.0),
        tags=("costs",),
    ),
    Scenario(
        "commission_per_share_next_open",
        "0.01 per share with a 2.00 minimum, 300-share orders, next-bar-open fills.",
        _walk,  # type: ignore[arg-type]
        crossover(),
        fill_timing="next_bar_open",
        sizing=Sizing("fixed", 300, integer=True),
        costs=Costs(commission_per_share=0.01, commission_minimum=2.0),
        tags=("costs",),
    ),
    Scenario(
        "slippage_fixed",
        "0.05 per share adverse slippage on every fill, next-bar-open fills.",
        _walk,  # type: ignore[arg-type]
        crossover(),
        fill_timing="next_bar_open",
        sizing=Sizing("fixed", 100),
        costs=Costs(slippage_fixed=0.05),
        tags=("costs",),
    ),
    Scenario(
        "slippage_percentage",
        "0.1 % adverse slippage and 0.1 % commission on the slipped price, same-bar close.",
        _walk,  # type: ignore[arg-type]
        crossover(),
        fill_timing="same_bar_close",
        sizing=Sizing("fixed", 100),
        costs=Costs(slippage_rate=0.001, commission_rate=0.001),
        frameworks=("vectorbt", "backtrader"),
        differences={"backtrader": BT_COC_SLIP_CAP + BT_COC_COMMISSION},
        tags=("costs",),
    ),
    Scenario(
        "insufficient_cash",
        "A 200-share buy with 10,000 cash at ~103: resized, rejected or filled on credit.",
        _appendix,  # type: ignore[arg-type]
        orders((1, "A", 200.0, "market", None), (4, "A", -50.0, "market", None)),
        fill_timing="same_bar_close",
        initial_cash=10_000.0,
        frameworks=("vectorbt", "backtrader"),
        tags=("sizing", "cash"),
    ),
    Scenario(
        "insufficient_cash_next_close",
        "A 200-share buy with 10,000 cash filled at the next close (Zipline has no cash check).",
        _appendix,  # type: ignore[arg-type]
        orders((1, "A", 200.0, "market", None), (4, "A", -200.0, "market", None)),
        fill_timing="next_bar_close",
        initial_cash=10_000.0,
        tags=("sizing", "cash"),
    ),
    Scenario(
        "all_in_with_fees",
        "All available cash, 0.1 % commission included, fractional shares.",
        _walk,  # type: ignore[arg-type]
        crossover(),
        fill_timing="same_bar_close",
        sizing=Sizing("all_in"),
        costs=Costs(commission_rate=0.001),
        frameworks=("vectorbt", "backtrader"),
        differences={"backtrader": BT_COC_COMMISSION},
        tags=("sizing",),
    ),
    Scenario(
        "all_in_integer",
        "All available cash in whole shares with 0.1 % commission and 0.05 % slippage.",
        _walk,  # type: ignore[arg-type]
        crossover(),
        fill_timing="same_bar_close",
        sizing=Sizing("all_in", integer=True),
        costs=Costs(commission_rate=0.001, slippage_rate=0.0005),
        frameworks=("vectorbt", "backtrader"),
        differences={"backtrader": BT_COC_SLIP_CAP + BT_COC_COMMISSION},
        tags=("sizing",),
    ),
    Scenario(
        "percent_equity_fractional",
        "Each entry buys 50 % of equity at the signal close, fractional, next-bar open.",
        _walk,  # type: ignore[arg-type]
        crossover(),
        fill_timing="next_bar_open",
        sizing=Sizing("percent_equity", 0.5),
        frameworks=("vectorbt", "backtrader"),
        tags=("sizing",),
    ),
    Scenario(
        "percent_equity_integer",
        "Each entry buys 90 % of equity in whole shares, next-bar close.",
        _walk,  # type: ignore[arg-type]
        crossover(),
        fill_timing="next_bar_close",
        sizing=Sizing("percent_equity", 0.9, integer=True),
        tags=("sizing",),
    ),
]
