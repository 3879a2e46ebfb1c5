"""Top-k by daily prediction, inverse-ATR weights, VIX filter; minute execution.

``Top25VixAtr`` decides once per session, at the first bar at or after 09:45 (when the
day's predictions become available), and trades with ``rebalance_to_weights``:

1. rank the assets by ``pred`` (served as-of from ``signal_data``: only predictions
   whose ``available_at`` has passed are visible) and keep the ``top_k`` best;
2. weight them by inverse risk, ``price / atr`` (ATR as a fraction of the price),
   normalised to the gross exposure and capped at ``max_weight`` per asset (the excess
   stays in cash);
3. use ``gross`` as the gross exposure, or ``high_vix_gross`` when the latest *published*
   VIX (from the context, as-of) is above ``vix_threshold`` or unknown.

Assets that drop out of the top ``top_k`` are sold; sells are submitted before buys and
the orders fill at the next minute bar's open.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time
from typing import Any

import numpy as np

from ml4t.backtest import Context, MarketEvent, Strategy


class Top25VixAtr(Strategy):
    """Hold the ``top_k`` assets by prediction, sized by inverse ATR, with a VIX filter.

    Parameters
    ----------
    top_k : int
        Number of assets held.
    vix_threshold : float
        Above this VIX, the gross exposure is ``high_vix_gross``.
    gross : float
        Gross exposure (fraction of equity) in normal times.
    high_vix_gross : float
        Gross exposure when VIX is above the threshold or unknown.
    max_weight : float
        Cap on one asset's weight; what the cap removes stays in cash.
    decision_time : str
        Decide at the first bar at or after this time of day (``"HH:MM"``); predictions
        must be available by then.
    """

    def __init__(
        self,
        top_k: int = 25,
        vix_threshold: float = 25.0,
        gross: float = 0.95,
        high_vix_gross: float = 0.30,
        max_weight: float = 0.08,
        decision_time: str = "09:45",
    ) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if not 0 < high_vix_gross <= gross <= 1:
            raise ValueError("need 0 < high_vix_gross <= gross <= 1")
        self.top_k, self.vix_threshold = int(top_k), float(vix_threshold)
        self.gross, self.high_vix_gross = float(gross), float(high_vix_gross)
        self.max_weight = float(max_weight)
        self.decision_time = time.fromisoformat(decision_time)
        self.universe: list[str] = []
        self._seen: set[str] = set()
        self._decided: date | None = None
        self.decisions: list[dict[str, Any]] = []

    def on_market_data(self, event: MarketEvent, context: Context) -> None:
        """Collect the universe; at the session's decision bar, rebalance once."""
        asset = event.asset_id
        if asset not in self._seen:
            self._seen.add(asset)
            self.universe = sorted(self._seen)
        ts = event.timestamp
        if ts.time() < self.decision_time or ts.date() == self._decided:
            return
        self._decided = ts.date()
        self.rebalance(ts, context)

    def rebalance(self, now: datetime, context: Context) -> None:
        """Rank, size and trade; every asset's bar of ``now`` has closed already."""
        assets = self.universe
        # Cross-sections of the latest values at this timestamp, one column per asset.
        pred = self.history(assets, "pred", 1)[-1]
        atr = self.history(assets, "atr", 1)[-1]
        close = self.history(assets, "close", 1)[-1]
        ok = np.isfinite(pred) & np.isfinite(atr) & (atr > 0) & np.isfinite(close)
        candidates = np.flatnonzero(ok)
        # best prediction first; ties broken by asset id (the universe is sorted)
        order = candidates[np.argsort(-pred[candidates], kind="stable")][: self.top_k]
        vix = context.get("vix")
        calm = math.isfinite(vix) and vix <= self.vix_threshold
        gross = self.gross if calm else self.high_vix_gross
        inv_risk = close[order] / atr[order]
        raw = gross * inv_risk / inv_risk.sum() if order.size else inv_risk
        capped = np.minimum(raw, self.max_weight)
        weights = {assets[j]: float(w) for j, w in zip(order, capped, strict=True)}
        self.rebalance_to_weights(weights, tag="rebalance")
        self.decisions.append({"timestamp": now, "vix": vix, "gross": gross, "weights": weights})
