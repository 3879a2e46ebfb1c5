"""A single-asset ML strategy: prediction and confidence in, position sized by confidence.

``SingleAssetML`` reads two signal columns at each daily bar: ``pred`` (a forecast of the
next day's return) and ``confidence`` (in [0, 1]). It

- enters when flat, ``pred`` is above ``entry`` and the trailing volatility is at most
  ``max_vol``, with a position of ``max_percent * scaled confidence`` of equity
  (``size_by_confidence``);
- exits when ``pred`` falls below ``exit`` (``close_position``), or through the broker's
  stop-loss (``set_exits``), which fires inside the bar at the stop price;
- measures volatility with ``history``: the standard deviation of the last ``vol_window``
  daily log returns, from closes up to and including the current bar only.
"""

from __future__ import annotations

import math

import numpy as np

from ml4t.backtest import Context, MarketEvent, Strategy


def trailing_volatility(closes: np.ndarray) -> float:
    """Return the sample standard deviation of the log returns of ``closes``."""
    if closes.shape[0] < 3:
        return math.nan
    return float(np.std(np.diff(np.log(closes)), ddof=1))


class SingleAssetML(Strategy):
    """Trade one asset on an ML forecast, sized by confidence, with a volatility filter.

    Parameters
    ----------
    entry : float
        Enter when the predicted return is above this (and flat).
    exit : float
        Close the position when the predicted return is below this.
    stop_loss : float
        Stop-loss as a fraction below the entry price (0.05 = 5 %).
    vol_window : int
        Daily returns in the volatility filter.
    max_vol : float
        No entry while the trailing daily volatility is above this.
    max_percent : float
        Position at full confidence, as a fraction of equity.
    min_confidence : float
        Confidence that maps to a zero position (linear up to 1.0 = ``max_percent``).
    """

    def __init__(
        self,
        entry: float = 0.0012,
        exit: float = 0.0,
        stop_loss: float = 0.03,
        vol_window: int = 20,
        max_vol: float = 0.02,
        max_percent: float = 0.95,
        min_confidence: float = 0.2,
    ) -> None:
        self.entry, self.exit, self.stop_loss = entry, exit, stop_loss
        self.vol_window, self.max_vol = vol_window, max_vol
        self.max_percent, self.min_confidence = max_percent, min_confidence
        self._exits_for: str | None = None
        self.blocked_by_volatility = 0

    def on_market_data(self, event: MarketEvent, context: Context) -> None:
        """Decide on the bar's prediction (orders fill at the next bar's open)."""
        asset = event.asset_id
        if self._exits_for != asset:
            self.set_exits(asset, stop_loss=self.stop_loss)  # applies to every position
            self._exits_for = asset
        pred, confidence = event.signals["pred"], event.signals["confidence"]
        held = self.get_position(asset)
        if held > 0:
            if pred < self.exit:
                self.close_position(asset, tag="signal_exit")
            return
        if not pred > self.entry:  # NaN compares False: no prediction, no trade
            return
        closes = self.history(asset, "close", self.vol_window + 1)
        if closes.shape[0] <= self.vol_window:
            return  # not enough history for the filter yet
        if not trailing_volatility(closes) <= self.max_vol:
            self.blocked_by_volatility += 1
            return
        self.size_by_confidence(
            asset,
            confidence,
            max_percent=self.max_percent,
            min_confidence=self.min_confidence,
            tag="entry",
        )
