"""Hand-checked fills, costs, trades and equity on the real NVDA daily file.

The expected numbers are computed here from the CSV read with the ``csv`` module, with
the cost formulas written out, never with the engine's own models.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ml4t.backtest import (
    FixedSlippage,
    PercentageCommission,
    PercentageSlippage,
    PerShareCommission,
    PolarsDataFeed,
    read_ohlcv_csv,
)

NVDA = Path(__file__).resolve().parents[2] / "validation/real_data/nvda_daily_yahoo.csv"
INITIAL = 100_000.0
TOL = {"rel": 1e-9, "abs": 1e-6}

# (signal date, side, quantity): two adds then one exit, a losing round trip, one left open
PLAN: list[tuple[date, str, float]] = [
    (date(2003, 5, 1), "buy", 50.0),
    (date(2003, 5, 7), "buy", 300.0),
    (date(2003, 9, 2), "sell", 350.0),
    (date(2008, 1, 10), "buy", 1000.0),
    (date(2008, 11, 20), "sell", 1000.0),
    (date(2010, 3, 1), "buy", 400.0),
]


@dataclass(frozen=True)
class Csv:
    dates: list[date]
    open: list[float]
    close: list[float]

    def index(self, d: date) -> int:
        return self.dates.index(d)


def _read_csv() -> Csv:
    dates, opens, closes = [], [], []
    with NVDA.open(newline="") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            dates.append(date.fromisoformat(row["Date"]))
            opens.append(float(row["Open"]))
            closes.append(float(row["Close"]))
    return Csv(dates, opens, closes)


CommissionFn = Callable[[float, float], float]
SlipFn = Callable[[float, int], float]

COSTS: dict[str, tuple[Any, Any, CommissionFn, SlipFn]] = {
    "pct_commission": (
        PercentageCommission(0.001),
        None,
        lambda q, p: 0.001 * q * p,
        lambda p, s: p,
    ),
    "per_share_min": (
        PerShareCommission(0.01, minimum=1.0),
        None,
        lambda q, p: max(1.0, 0.01 * q),
        lambda p, s: p,
    ),
    "pct_commission_fixed_slip": (
        PercentageCommission(0.001),
        FixedSlippage(0.05),
        lambda q, p: 0.001 * q * p,
        lambda p, s: p + 0.05 * s,
    ),
    "per_share_pct_slip": (
        PerShareCommission(0.01, minimum=1.0),
        PercentageSlippage(0.002),
        lambda q, p: max(1.0, 0.01 * q),
        lambda p, s: p * (1 + 0.002 * s),
    ),
}


def _expected(data: Csv, timing: str, comm: CommissionFn, slip: SlipFn) -> dict[str, Any]:
    """Replay PLAN by hand: fills, cash path, trades and the equity curve."""
    fills = []
    for d, side, q in PLAN:
        i = data.index(d)
        k, base = (i + 1, data.open[i + 1]) if timing == "next_bar_open" else (i, data.close[i])
        sign = 1 if side == "buy" else -1
        price = slip(base, sign)
        fills.append(
            {
                "bar": k,
                "date": data.dates[k],
                "side": side,
                "quantity": q,
                "price": price,
                "commission": comm(q, price),
                "slippage": q * abs(price - base),
            }
        )
    # books per bar
    cash, qty = INITIAL, 0.0
    by_bar: dict[int, list[dict[str, Any]]] = {}
    for f in fills:
        by_bar.setdefault(f["bar"], []).append(f)
    equity = []
    for k in range(len(data.dates)):
        for f in by_bar.get(k, []):
            sign = 1 if f["side"] == "buy" else -1
            cash -= sign * f["quantity"] * f["price"] + f["commission"]
            qty += sign * f["quantity"]
        equity.append(cash + qty * data.close[k])
    # trades: fills 0-2, 3-4, and 5 still open at the last close
    trades = []
    for group, is_open in ((fills[0:3], False), (fills[3:5], False), (fills[5:6], True)):
        buys = [f for f in group if f["side"] == "buy"]
        sells = [f for f in group if f["side"] == "sell"]
        q_in = sum(f["quantity"] for f in buys)
        entry = sum(f["quantity"] * f["price"] for f in buys) / q_in
        if is_open:
            exit_price = data.close[-1]
            exit_comm = 0.0
        else:
            exit_price = sum(f["quantity"] * f["price"] for f in sells) / q_in
            exit_comm = sum(f["commission"] for f in sells)
        entry_comm = sum(f["commission"] for f in buys)
        gross = q_in * (exit_price - entry)
        trades.append(
            {
                "entry_price": entry,
                "exit_price": exit_price,
                "quantity": q_in,
                "entry_commission": entry_comm,
                "exit_commission": exit_comm,
                "pnl_gross": gross,
                "pnl_net": gross - entry_comm - exit_comm,
                "slippage": sum(f["slippage"] for f in group),
                "is_open": is_open,
                "exit_reason": "end_of_data" if is_open else "signal",
            }
        )
    return {"fills": fills, "cash": cash, "qty": qty, "equity": equity, "trades": trades}


def _run(timing: str, commission: Any, slippage: Any, run_backtest: Any) -> Any:
    plan = {d: (side, q) for d, side, q in PLAN}

    def on_bar(s: Any, event: Any, ctx: Any) -> None:
        todo = plan.get(event.timestamp.date())
        if todo is not None:
            side, q = todo
            (s.buy if side == "buy" else s.sell)("NVDA", q)

    feed = PolarsDataFeed(read_ohlcv_csv(NVDA), asset_id="NVDA")
    result, _ = run_backtest(
        feed, on_bar, commission=commission, slippage=slippage, fill_timing=timing
    )
    return result


@pytest.mark.parametrize("timing", ["next_bar_open", "same_bar_close"])
@pytest.mark.parametrize("costs", sorted(COSTS))
def test_nvda_fills_costs_trades_equity_match_hand_computation(
    costs: str, timing: str, run_backtest: Any
) -> None:
    commission, slippage, comm_fn, slip_fn = COSTS[costs]
    data = _read_csv()
    exp = _expected(data, timing, comm_fn, slip_fn)
    result = _run(timing, commission, slippage, run_backtest)

    fills = result.fills_df.to_dicts()
    assert len(fills) == len(exp["fills"])
    for got, want in zip(fills, exp["fills"], strict=True):
        assert got["timestamp"].date() == want["date"]
        assert got["side"] == want["side"]
        assert got["quantity"] == pytest.approx(want["quantity"], **TOL)
        assert got["price"] == pytest.approx(want["price"], **TOL)
        assert got["commission"] == pytest.approx(want["commission"], **TOL)
        assert got["slippage"] == pytest.approx(want["slippage"], **TOL)

    trades = result.trades_df.sort("trade_id").to_dicts()
    assert len(trades) == 3
    for got, want in zip(trades, exp["trades"], strict=True):
        for key in (
            "entry_price",
            "exit_price",
            "quantity",
            "entry_commission",
            "exit_commission",
            "pnl_gross",
            "pnl_net",
            "slippage",
        ):
            assert got[key] == pytest.approx(want[key], **TOL), key
        assert got["is_open"] is want["is_open"]
        assert got["exit_reason"] == want["exit_reason"]
        assert got["direction"] == "long"

    pf = result.portfolio_df
    assert pf.height == len(data.dates)
    assert pf["equity"].to_list() == pytest.approx(exp["equity"], **TOL)
    assert pf["cash"][-1] == pytest.approx(exp["cash"], **TOL)
    assert result.final_equity == pytest.approx(exp["equity"][-1], **TOL)
    assert result.final_equity == pytest.approx(exp["cash"] + exp["qty"] * data.close[-1], **TOL)
    total_comm = sum(f["commission"] for f in exp["fills"])
    assert result.metrics["total_commission"] == pytest.approx(total_comm, **TOL)


def test_nvda_same_bar_close_fills_at_signal_bar_close(run_backtest: Any) -> None:
    data = _read_csv()
    result = _run("same_bar_close", None, None, run_backtest)
    got = result.fills_df.select("timestamp", "price").to_dicts()
    want = [(d, data.close[data.index(d)]) for d, _, _ in PLAN]
    assert [(g["timestamp"].date(), g["price"]) for g in got] == want


def test_nvda_next_bar_open_fills_at_following_bar_open(run_backtest: Any) -> None:
    data = _read_csv()
    result = _run("next_bar_open", None, None, run_backtest)
    got = result.fills_df.select("timestamp", "price").to_dicts()
    nxt = [data.index(d) + 1 for d, _, _ in PLAN]
    want = [(data.dates[k], data.open[k]) for k in nxt]
    assert [(g["timestamp"].date(), g["price"]) for g in got] == want
    # the feed's frame and the csv agree on the bars used (independent reader check)
    frame = pl.read_csv(NVDA)
    assert frame["Open"].to_list()[nxt[0]] == data.open[nxt[0]]
