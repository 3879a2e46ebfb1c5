"""Performance metrics, computed vectorised from the result frames.

Conventions
-----------
- Returns are simple period returns of equity, the first measured from the initial cash.
- Annualisation uses the observed number of bars per year,
  ``(n_bars - 1) / years`` with ``years = (last - first timestamp) / 365.25 days``, so it
  adapts to daily, minute or 24/7 data without a calendar. The risk-free rate is 0.
- ``max_drawdown`` is a negative fraction (``-0.25`` = 25 % below the running peak).
- Trade statistics use closed records only; a position still open at the end appears in
  ``trades_df`` and ``exit_trades_df`` with ``is_open=True`` and
  ``exit_reason="end_of_data"``, and is left out.
- ``num_trades``, ``win_rate``, ``profit_factor``, ``avg_trade_pnl``, ``avg_holding_period``
  and ``avg_holding_days`` describe round trips (``trades_df``: flat to flat, Backtrader's
  unit). The ``exit_``-prefixed keys (``num_exit_trades``, ``exit_win_rate``,
  ``exit_profit_factor``, ``avg_exit_trade_pnl``, ``avg_exit_trade_return``) describe exit
  trades (``exit_trades_df``: one per reducing fill, VectorBT's default unit), which exist
  for a book that is never flat. A win is ``pnl_net > 0``; the profit factor is gross wins
  over gross losses of ``pnl_net`` (``inf`` without losses, NaN without either).
  See ``docs/results.md``.
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
    *,
    exit_pnl: np.ndarray | None = None,
    exit_returns: np.ndarray | None = None,
) -> dict[str, Any]:
    """Return the metrics dictionary (see module docstring for the conventions).

    ``trade_*`` arrays hold the closed round trips' net P&L, bars held and seconds held;
    ``exit_pnl`` and ``exit_returns`` the closed exit trades' net P&L and return (the
    ``exit_`` keys are NaN, and their count 0, when they are not given).
    """
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
    out["num_trades"] = int(k)
    out["win_rate"], out["profit_factor"] = _win_rate_and_profit_factor(trade_pnl)
    out["avg_trade_pnl"] = float(trade_pnl.mean()) if k else math.nan
    out["avg_holding_period"] = float(trade_bars.mean()) if k else math.nan
    out["avg_holding_days"] = float(trade_seconds.mean()) / 86_400 if k else math.nan
    out["exposure"] = float((num_positions > 0).mean()) if n else 0.0
    mean_equity = float(equity.mean()) if n else initial_cash
    traded = float(np.abs(fill_notional).sum())
    out["turnover"] = traded / (2 * mean_equity) if mean_equity > 0 else math.nan
    x_pnl = np.empty(0) if exit_pnl is None else exit_pnl
    x_ret = np.empty(0) if exit_returns is None else exit_returns
    kx = x_pnl.shape[0]
    out["num_exit_trades"] = int(kx)
    out["exit_win_rate"], out["exit_profit_factor"] = _win_rate_and_profit_factor(x_pnl)
    out["avg_exit_trade_pnl"] = float(x_pnl.mean()) if kx else math.nan
    finite = x_ret[np.isfinite(x_ret)]
    out["avg_exit_trade_return"] = float(finite.mean()) if finite.shape[0] else math.nan
    return out


def _win_rate_and_profit_factor(pnl: np.ndarray) -> tuple[float, float]:
    """Share of ``pnl > 0`` and gross wins over gross losses (inf: no loss; NaN: neither)."""
    k = pnl.shape[0]
    wins = pnl[pnl > 0]
    gross_loss = -float(pnl[pnl < 0].sum())
    win_rate = wins.shape[0] / k if k else math.nan
    if gross_loss > 0:
        return win_rate, float(wins.sum()) / gross_loss
    return win_rate, math.inf if wins.shape[0] else math.nan
