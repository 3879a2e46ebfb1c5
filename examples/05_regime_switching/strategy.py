"""Regime switching across an equity index, bonds and gold, driven by context values.

The market-wide values live in a :class:`~ml4t.backtest.Context`, not in the asset rows:
``risk_off`` (a regime flag), ``vix`` and ``rate_change`` (the change of the 10-year
yield over 60 sessions). ``RegimeSwitching`` reads them once per session in
``after_trading_end`` — as-of, so only values already published are seen — maps them to
one of four regimes and, when the regime changes, rebalances to that regime's weights
with ``rebalance_to_weights`` (orders fill at the next session's open).
"""

from __future__ import annotations

import math
from datetime import datetime

from ml4t.backtest import Context, MarketEvent, Strategy

#: target weights per regime (the rest is cash)
ALLOCATIONS: dict[str, dict[str, float]] = {
    "risk_on": {"EQUITY": 0.55, "BONDS": 0.30, "GOLD": 0.10},
    "risk_on_rising_rates": {"EQUITY": 0.55, "BONDS": 0.10, "GOLD": 0.25},
    "risk_off": {"BONDS": 0.65, "GOLD": 0.30},
    "risk_off_rising_rates": {"BONDS": 0.20, "GOLD": 0.60},
}


def regime_of(risk_off: float, rate_change: float, rising: float = 0.25) -> str | None:
    """Return the regime name, or ``None`` while the risk flag is unknown (NaN).

    Rates count as rising when ``rate_change`` (percentage points over 60 sessions) is
    above ``rising``; an unknown change counts as not rising.
    """
    if math.isnan(risk_off):
        return None
    base = "risk_off" if risk_off >= 0.5 else "risk_on"
    return f"{base}_rising_rates" if rate_change > rising else base


class RegimeSwitching(Strategy):
    """Hold the weights of the current regime; rebalance only when the regime changes.

    Parameters
    ----------
    rising : float
        Rate change (percentage points over 60 sessions) above which rates are rising.
    allocations : dict, optional
        Weights per regime name; defaults to :data:`ALLOCATIONS`.
    """

    def __init__(
        self, rising: float = 0.25, allocations: dict[str, dict[str, float]] | None = None
    ) -> None:
        self.rising = rising
        self.allocations = allocations or ALLOCATIONS
        self.regime: str | None = None
        self.switches: list[tuple[datetime, str, float]] = []

    def on_market_data(self, event: MarketEvent, context: Context) -> None:
        """Nothing per bar: the decision is made once per session, after its bars."""

    def after_trading_end(self, timestamp: datetime, context: Context) -> None:
        """Read the regime inputs as of the session's end and switch if it changed."""
        regime = regime_of(context["risk_off"], context["rate_change"], self.rising)
        if regime is None or regime == self.regime:
            return
        self.rebalance_to_weights(self.allocations[regime], tag=regime)
        self.regime = regime
        self.switches.append((timestamp, regime, context["vix"]))
