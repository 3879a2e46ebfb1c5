"""Performance metrics, computed vectorised from the result frames.

Conventions
-----------
- Returns are simple period returns of equity, the first measured from the initial cash.
- Annualisation uses the observed number of bars per year,
  ``(n_bars - 1) / years`` with ``years = (last - first timestamp) / 365.25 days``, so it
  adapts to daily, minute or 24/7 data without a calendar. The risk-free rate is 0.
- ``max_drawdown`` is a negative fraction (``-0.25`` = 25 % below the running peak).
- Trade statistics use closed trades only; a position still open at the end appears in
  ``trades_df`` with ``is_open=True`` and ``exit_reason="end_of_data"``.
- ``turnover`` is traded notional (buys plus sells) divided by twice the mean equity.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["compute_metrics"]

_YEAR_NS = 365.25 * 86_400e9


def compute_metrics(
    ts: np.ndarray,
    equity: np.ndarray,
    initial_cash: float,
    num_positions: np.ndarray,
    trade_pnl: np.ndarray,
    trade_bars: np.ndarray,
    trade_seconds: np.ndarray,
    fill_notional: np.ndarray,
) -> dict[str, Any]:
    """Return the metrics dictionary (see module docstring for the conventions)."""
    n = equity.shape[0]
    out: dict[str, Any] = {}
    final = float(equity[-1]) if n else initial_cash
    out["initial_cash"] = initial_cash
    out["final_equity"] = final
    out["total_return"] = final / initial_cash - 1.0
    years = float(ts[-1] - ts[0]) / _YEAR_NS if n > 1 else 0.0
    out["years"] = years
    ppy = (n - 1) / years if years > 0 else math.nan
    out["periods_per_year"] = ppy
    out["cagr"] = (final / initial_cash) ** (1 / years) - 1 if years > 0 and final > 0 else math.nan
    prev = np.concatenate(([initial_cash], equity[:-1])) if n else np.empty(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rets = equity / prev - 1.0 if n else np.empty(0)
    if n > 1 and math.isfinite(ppy):
        sd = float(rets.std(ddof=1))
        mean = float(rets.mean())
        downside = float(np.sqrt(np.mean(np.minimum(rets, 0.0) ** 2)))
        out["volatility"] = sd * math.sqrt(ppy)
        out["sharpe_ratio"] = mean / sd * math.sqrt(ppy) if sd > 0 else math.nan
        out["sortino_ratio"] = mean / downside * math.sqrt(ppy) if downside > 0 else math.nan
    else:
        out["volatility"] = out["sharpe_ratio"] = out["sortino_ratio"] = math.nan
    if n:
        peak = np.maximum.accumulate(np.concatenate(([initial_cash], equity)))[1:]
        mdd = float((equity / peak - 1.0).min())
    else:
        mdd = 0.0
    out["max_drawdown"] = mdd
    out["calmar_ratio"] = out["cagr"] / -mdd if mdd < 0 and math.isfinite(out["cagr"]) else math.nan
    k = trade_pnl.shape[0]
    wins = trade_pnl[trade_pnl > 0]
    losses = trade_pnl[trade_pnl < 0]
    out["num_trades"] = int(k)
    out["win_rate"] = wins.shape[0] / k if k else math.nan
    gross_loss = -float(losses.sum())
    if gross_loss > 0:
        out["profit_factor"] = float(wins.sum()) / gross_loss
    else:
        out["profit_factor"] = math.inf if wins.shape[0] else math.nan
    out["avg_trade_pnl"] = float(trade_pnl.mean()) if k else math.nan
    out["avg_holding_period"] = float(trade_bars.mean()) if k else math.nan
    out["avg_holding_days"] = float(trade_seconds.mean()) / 86_400 if k else math.nan
    out["exposure"] = float((num_positions > 0).mean()) if n else 0.0
    mean_equity = float(equity.mean()) if n else initial_cash
    traded = float(np.abs(fill_notional).sum())
    out["turnover"] = traded / (2 * mean_equity) if mean_equity > 0 else math.nan
    return out
