"""Multi-asset rebalancing with shared cash, and the real daily and minute files."""

from __future__ import annotations

from ..data import real_daily, real_minute, synthetic
from ..scenario import BarSet, Costs, Scenario, Sizing
from ._build import crossover, momentum_top_k


def _universe() -> BarSet:
    return synthetic(250, n_assets=25, seed=5)


def _real3() -> BarSet:
    return real_daily(["nvda", "orcl", "yhoo"], "2005-01-01", "2014-12-31")


def _minute() -> BarSet:
    return real_minute("2006-01-02", "2006-01-06")


SCENARIOS = [
    Scenario(
        "rebalance_25_same_close",
        "25 assets, shared cash: every 5 bars hold the 5 best 20-bar performers at 19 % "
        "each, fractional, rebalanced at the close.",
        _universe,
        momentum_top_k(5),
        fill_timing="same_bar_close",
        frameworks=("vectorbt", "backtrader"),
        tags=("portfolio",),
    ),
    Scenario(
        "rebalance_25_next_open_integer",
        "The same targets sized at the close in whole shares and filled at the next open, "
        "0.1 % commission.",
        _universe,
        momentum_top_k(5),
        fill_timing="next_bar_open",
        sizing=Sizing(integer=True),
        costs=Costs(commission_rate=0.001),
        frameworks=("vectorbt", "backtrader"),
        tags=("portfolio",),
    ),
    Scenario(
        "rebalance_25_next_close_integer",
        "The same targets in whole shares filled at the next close, 0.005/share commission.",
        _universe,
        momentum_top_k(5),
        fill_timing="next_bar_close",
        sizing=Sizing(integer=True),
        costs=Costs(commission_per_share=0.005),
        tags=("portfolio",),
    ),
    Scenario(
        "real_daily_signals",
        "Real NVDA, ORCL and YHOO daily bars 2005-2014: 10/30 crossovers, 100 shares each, "
        "0.1 % commission, next-bar open.",
        _real3,
        crossover(10, 30),
        fill_timing="next_bar_open",
        sizing=Sizing("fixed", 100),
        costs=Costs(commission_rate=0.001),
        frameworks=("vectorbt", "backtrader"),
        tags=("real",),
    ),
    Scenario(
        "real_daily_rebalance",
        "Real NVDA, ORCL and YHOO: every 21 bars hold the best 60-bar performer at 95 %, "
        "fractional, at the close.",
        _real3,
        momentum_top_k(1, lookback=60, every=21),
        fill_timing="same_bar_close",
        frameworks=("vectorbt", "backtrader"),
        tags=("real", "portfolio"),
    ),
    Scenario(
        "real_minute_signals",
        "Real EURO STOXX 50 futures one-minute bars (5 sessions): 10/30 crossovers, "
        "one contract-sized position of 2 units, same-bar close.",
        _minute,
        crossover(10, 30),
        fill_timing="same_bar_close",
        sizing=Sizing("fixed", 2),
        frameworks=("vectorbt", "backtrader"),
        tags=("real", "minute"),
    ),
    Scenario(
        "real_minute_next_open",
        "The same minute bars and signals filled at the next minute's open with 0.01 % commission.",
        _minute,
        crossover(10, 30),
        fill_timing="next_bar_open",
        sizing=Sizing("fixed", 2),
        costs=Costs(commission_rate=0.0001),
        frameworks=("vectorbt", "backtrader"),
        tags=("real", "minute"),
    ),
]
