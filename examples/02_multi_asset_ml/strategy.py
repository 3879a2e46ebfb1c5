"""Multi-asset ML rotation with a market-regime filter read from the Context.

- ``add_predictions``: per-asset next-day return predictions from the walk-forward ridge
  model in :mod:`ml4t.backtest.demo` (trained only on data known at each refit date).
- ``market_regime``: a market-wide series built once per timestamp (not per asset): the
  equal-weight index of the universe and a ``risk_on`` flag (index above its trailing
  mean). It goes into a :class:`~ml4t.backtest.Context`, which serves it as-of.
- ``RegimeRotationStrategy``: once per day, after every asset's bar, hold equal weights
  of the assets with a positive prediction while the market is risk-on, and cash
  otherwise, via ``rebalance_to_weights``.
"""

from __future__ import annotations

import math
from datetime import datetime

import polars as pl

from ml4t.backtest import Context, MarketEvent, Strategy, walk_forward_predictions


def add_predictions(bars: pl.DataFrame) -> pl.DataFrame:
    """Return ``bars`` with a ``prediction`` column (expected next-day return).

    Parameters
    ----------
    bars : polars.DataFrame
        Long daily bars with ``timestamp, asset_id, close``.
    """
    preds = walk_forward_predictions(bars).drop("fit_timestamp")
    return bars.join(preds, on=["timestamp", "asset_id"], how="left")


def market_regime(bars: pl.DataFrame, window: int = 100) -> pl.DataFrame:
    """Return one row per timestamp: ``ew_index`` and ``risk_on`` (1.0 or 0.0).

    ``ew_index`` compounds the equal-weight mean of the assets' close-to-close returns;
    ``risk_on`` is 1.0 when the index is above its mean over the last ``window``
    timestamps (NaN until the window is full).

    Timing: the row stamped ``t`` uses closes up to and including ``t`` and nothing
    later, so it is known when the strategy handles the bars of ``t`` (after their
    close); orders placed then fill at the next open. A value published later than the
    bar it describes must be stamped with its publication time instead.

    Parameters
    ----------
    bars : polars.DataFrame
        Long daily bars with ``timestamp, asset_id, close``.
    window : int
        Trailing window of the moving average.
    """
    rets = bars.sort("timestamp").with_columns(
        pl.col("close").pct_change().over("asset_id").alias("ret")
    )
    index = (
        rets.group_by("timestamp")
        .agg(pl.col("ret").mean().fill_null(0.0))
        .sort("timestamp")
        .with_columns((1.0 + pl.col("ret")).cum_prod().alias("ew_index"))
    )
    above = pl.col("ew_index") > pl.col("ew_index").rolling_mean(window)
    risk_on = pl.when(pl.col("ew_index").rolling_mean(window).is_null()).then(None)
    return index.select(
        "timestamp",
        "ew_index",
        risk_on.otherwise(above.cast(pl.Float64)).alias("risk_on"),
    )


class RegimeRotationStrategy(Strategy):
    """Equal-weight the assets with a positive prediction while ``risk_on``, else cash.

    Predictions are collected bar by bar in :meth:`on_market_data`; the decision is made
    once per day in :meth:`after_trading_end`, when every asset's bar of the day has been
    seen. The portfolio is rebalanced only when the set of target assets changes, so
    weights drift between rebalances instead of being traded back every day.

    Parameters
    ----------
    gross : float
        Fraction of equity invested when at least one asset is selected.
    min_prediction : float
        An asset is selected when its prediction is above this.
    """

    def __init__(self, gross: float = 0.95, min_prediction: float = 0.0) -> None:
        self.gross, self.min_prediction = gross, min_prediction
        self.predictions: dict[str, float] = {}
        self.selected: frozenset[str] | None = None
        self.rebalances = 0

    def on_market_data(self, event: MarketEvent, context: Context) -> None:
        """Remember the bar's prediction."""
        self.predictions[event.asset_id] = event.signals["prediction"]

    def after_trading_end(self, timestamp: datetime, context: Context) -> None:
        """Pick the assets for tomorrow and rebalance if the pick changed."""
        risk_on = context["risk_on"]
        if math.isnan(risk_on) or risk_on < 0.5:
            picks: frozenset[str] = frozenset()
        else:
            # A NaN prediction compares False, so an asset without one is never picked.
            picks = frozenset(a for a, p in self.predictions.items() if p > self.min_prediction)
        if picks == self.selected:
            return
        weight = self.gross / len(picks) if picks else 0.0
        self.rebalance_to_weights({a: weight for a in sorted(picks)}, tag="rebalance")
        self.selected = picks
        self.rebalances += 1
