"""Quick start: a signal computed in polars and a strategy that trades it.

``add_signal`` stands in for a model: it adds ``ml_pred``, a score in (0, 1) that a
classifier's probability would usually fill. ``MLStrategy`` is the strategy from the
design document: buy when the score is high, close when it is low.
"""

from __future__ import annotations

import math

import polars as pl

from ml4t.backtest import Context, MarketEvent, Strategy


def add_signal(bars: pl.DataFrame, window: int = 20) -> pl.DataFrame:
    """Add ``ml_pred``: a trend score in (0, 1) from this and earlier closes only.

    The score is the logistic function of the ``window``-day log return divided by its
    volatility (the daily log-return standard deviation over the same window, scaled to
    ``window`` days). The first ``window`` bars have no score (null).

    Parameters
    ----------
    bars : polars.DataFrame
        Bars of one asset, sorted by ``timestamp``, with a ``close`` column.
    window : int
        Look-back in bars.

    Returns
    -------
    polars.DataFrame
        ``bars`` with an ``ml_pred`` column.
    """
    log_close = pl.col("close").log()
    momentum = log_close - log_close.shift(window)
    volatility = log_close.diff().rolling_std(window) * math.sqrt(window)
    score = 1.0 / (1.0 + (-momentum / volatility).exp())
    return bars.with_columns(score.alias("ml_pred"))


class MLStrategy(Strategy):
    """Buy with most of the cash on a strong signal; close the position on a weak one.

    Parameters
    ----------
    entry : float
        Buy when ``ml_pred`` is above this and the strategy is flat.
    exit : float
        Close the position when ``ml_pred`` is below this.
    percent : float
        Fraction of the available cash to spend on an entry.
    """

    def __init__(self, entry: float = 0.8, exit: float = 0.4, percent: float = 0.95) -> None:
        self.entry, self.exit, self.percent = entry, exit, percent

    def on_market_data(self, event: MarketEvent, context: Context) -> None:
        """Trade on the bar's ``ml_pred`` (a missing score is NaN and never triggers)."""
        pred = event.signals["ml_pred"]
        if pred > self.entry and self.get_position(event.asset_id) == 0:
            self.buy_percent(event.asset_id, self.percent)
        elif pred < self.exit and self.get_position(event.asset_id) > 0:
            self.close_position(event.asset_id)
