"""Accounting invariants under random prices, random orders and random cost settings.

Every expected quantity is recomputed here from ``fills_df`` and the input data with plain
Python/numpy, never with the engine's own helpers.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml4t.backtest import (
    BacktestEngine,
    FixedSlippage,
    PercentageCommission,
    PercentageSlippage,
    PerShareCommission,
    PolarsDataFeed,
    SimulationBroker,
    Strategy,
)

INITIAL = 100_000.0
START = datetime(2024, 1, 1)
# ML4T_PROPERTY_EXAMPLES raises the example count for a longer local search
EXAMPLES = int(os.environ.get("ML4T_PROPERTY_EXAMPLES", "40"))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
ASSETS = ("A", "B")
KINDS = ["buy", "sell", "close", "buy_limit", "sell_limit", "buy_stop", "sell_stop"]
Action = tuple[str, float, float, str]  # kind, quantity, price factor (x close), tif


@dataclass
class Scenario:
    frame: pl.DataFrame
    actions: dict[tuple[int, str], list[Action]]
    broker: dict[str, Any]
    n: int


@st.composite
def price_frames(
    draw: Any, n: int, constant: bool = False, full_tail: bool = False
) -> pl.DataFrame:
    parts = []
    for a in ASSETS:
        p0 = draw(st.floats(5.0, 200.0))
        if constant:
            o = h = lo = c = np.full(n, round(p0, 2))
        else:
            r = np.array(draw(st.lists(st.floats(-0.1, 0.1), min_size=n, max_size=n)))
            e = np.array(draw(st.lists(st.floats(-0.03, 0.03), min_size=n, max_size=n)))
            u = np.array(draw(st.lists(st.floats(0.0, 0.05), min_size=2 * n, max_size=2 * n)))
            c = p0 * np.exp(np.cumsum(r))
            o = c * np.exp(e)
            h = np.maximum(o, c) * (1 + u[:n])
            lo = np.minimum(o, c) * (1 - u[n:])
        keep = np.ones(n, dtype=bool)
        if a == "B":  # B may miss bars (but not the first)
            keep[1:] = draw(st.lists(st.booleans(), min_size=n - 1, max_size=n - 1))
            if full_tail:  # so a position can always be closed on the last two bars
                keep[-2:] = True
        idx = np.flatnonzero(keep)
        parts.append(
            pl.DataFrame(
                {
                    "timestamp": [START + timedelta(days=int(i)) for i in idx],
                    "asset_id": [a] * len(idx),
                    "open": o[idx],
                    "high": h[idx],
                    "low": lo[idx],
                    "close": c[idx],
                    "volume": np.full(len(idx), 1e6),
                }
            )
        )
    return pl.concat(parts).sort("timestamp", "asset_id")


def action_lists(n: int) -> Any:
    one = st.tuples(
        st.integers(0, n - 1),
        st.sampled_from(ASSETS),
        st.sampled_from(KINDS),
        st.one_of(st.integers(1, 300).map(float), st.floats(0.5, 300.0)),
        st.floats(0.9, 1.1),
        st.sampled_from(["gtc", "day"]),
    )
    return st.lists(one, max_size=12)


COMMISSIONS = st.one_of(
    st.none(),
    st.floats(0.0, 0.01).map(PercentageCommission),
    st.tuples(st.floats(0.0, 0.05), st.floats(0.0, 2.0)).map(lambda t: PerShareCommission(*t)),
)
SLIPPAGES = st.one_of(
    st.none(),
    st.floats(0.0, 0.5).map(FixedSlippage),
    st.floats(0.0, 0.01).map(PercentageSlippage),
)


@st.composite
def scenarios(
    draw: Any, costs: bool = True, constant: bool = False, full_tail: bool = False
) -> Scenario:
    n = draw(st.integers(3, 25))
    frame = draw(price_frames(n, constant, full_tail))
    actions: dict[tuple[int, str], list[Action]] = {}
    for bar, asset, *action in draw(action_lists(n)):
        actions.setdefault((bar, asset), []).append(tuple(action))  # type: ignore[arg-type]
    broker: dict[str, Any] = {
        "fill_timing": draw(st.sampled_from(["next_bar_open", "same_bar_close"])),
        "account": draw(st.sampled_from(["cash", "margin"])),
        "cash_policy": draw(st.sampled_from(["reject", "resize"])),
    }
    if costs:
        broker["commission"] = draw(COMMISSIONS)
        broker["slippage"] = draw(SLIPPAGES)
    return Scenario(frame, actions, broker, n)


class Random(Strategy):
    def __init__(self, actions: dict[tuple[int, str], list[Action]], flat_at: int):
        self.actions = actions
        self.flat_at = flat_at  # bar from which every position is closed (-1: never)

    def on_market_data(self, event: Any, context: Any) -> None:
        i = (event.timestamp - START).days
        a = event.asset_id
        if 0 <= self.flat_at <= i:
            for o in self.get_open_orders(a):
                self.cancel_order(o)
            self.close_position(a)
            return
        for kind, qty, factor, tif in self.actions.get((i, a), []):
            if kind == "close":
                self.close_position(a)
                continue
            side, _, how = kind.partition("_")
            level = {how + "_price": event.close * factor} if how else {}
            getattr(self, side)(a, qty, time_in_force=tif, **level)


def _run(sc: Scenario, flat_at: int = -1, chunk: str | None = None) -> Any:
    feed = PolarsDataFeed(sc.frame.lazy(), chunk_size=chunk) if chunk else PolarsDataFeed(sc.frame)
    broker = SimulationBroker(initial_cash=INITIAL, **sc.broker)
    return BacktestEngine(feed, Random(sc.actions, flat_at), broker).run()


def _close(x: float, y: float, rel: float = 1e-9, abs_: float = 1e-6) -> bool:
    return math.isclose(x, y, rel_tol=rel, abs_tol=abs_)


@SETTINGS
@given(scenarios())
def test_books_equal_cash_plus_positions_recomputed_from_fills(sc: Scenario) -> None:
    result = _run(sc)
    pf = result.portfolio_df.to_dicts()
    fills = result.fills_df.to_dicts()
    bars = sc.frame.to_dicts()
    cash, qty, last = INITIAL, dict.fromkeys(ASSETS, 0.0), dict.fromkeys(ASSETS, math.nan)
    for row in pf:
        t = row["timestamp"]
        for f in fills:
            if f["timestamp"] == t:
                sign = 1 if f["side"] == "buy" else -1
                cash -= sign * f["quantity"] * f["price"] + f["commission"]
                qty[f["asset_id"]] += sign * f["quantity"]
        for b in bars:
            if b["timestamp"] == t:
                last[b["asset_id"]] = b["close"]
        value = sum(q * last[a] for a, q in qty.items() if abs(q) > 1e-9)
        assert _close(row["equity"], row["cash"] + row["positions_value"])
        assert _close(row["cash"], cash), (t, row["cash"], cash)
        assert _close(row["positions_value"], value), (t, row["positions_value"], value)
    assert _close(result.final_equity, pf[-1]["equity"])


@SETTINGS
@given(scenarios())
def test_trade_pnl_sums_to_equity_change(sc: Scenario) -> None:
    result = _run(sc)
    total = float(result.trades_df["pnl_net"].sum()) if result.trades_df.height else 0.0
    assert _close(total, result.final_equity - INITIAL), (total, result.final_equity - INITIAL)
    closed = result.trades_df.filter(~pl.col("is_open"))
    # every closed trade's net P&L is gross minus both commissions
    for t in closed.to_dicts():
        assert _close(t["pnl_net"], t["pnl_gross"] - t["entry_commission"] - t["exit_commission"])


@SETTINGS
@given(scenarios(costs=False, full_tail=True))
def test_zero_cost_round_trips_create_no_money(sc: Scenario) -> None:
    # flatten early enough that the closing orders fill under either timing
    flat_at = sc.n - 2
    result = _run(sc, flat_at=flat_at)
    trades = result.trades_df
    assert trades.filter(pl.col("is_open")).height == 0
    assert float(result.fills_df["commission"].sum()) == 0.0
    assert float(result.fills_df["slippage"].sum()) == 0.0
    sign = np.where(trades["direction"].to_numpy() == "long", 1.0, -1.0)
    moved = float(
        (sign * trades["quantity"].to_numpy()
         * (trades["exit_price"].to_numpy() - trades["entry_price"].to_numpy())).sum()
    )  # fmt: skip
    final_cash = result.portfolio_df["cash"][-1]
    assert _close(final_cash, INITIAL + moved), (final_cash, INITIAL + moved)
    assert _close(result.final_equity, final_cash)


@SETTINGS
@given(scenarios(costs=False, constant=True))
def test_constant_prices_without_costs_keep_equity_constant(sc: Scenario) -> None:
    result = _run(sc)
    eq = result.portfolio_df["equity"].to_numpy()
    assert np.allclose(eq, INITIAL, rtol=0, atol=1e-6), eq


@settings(max_examples=15, deadline=None)
@given(scenarios())
def test_same_input_gives_identical_results(sc: Scenario) -> None:
    a, b = _run(sc), _run(sc)
    for name in ("trades_df", "fills_df", "orders_df", "portfolio_df"):
        assert getattr(a, name).equals(getattr(b, name)), name


@SETTINGS
@given(scenarios(), st.sampled_from(["1d", "2d", "1w"]))
def test_lazy_windowed_feed_matches_in_memory_feed(sc: Scenario, chunk: str) -> None:
    a, b = _run(sc), _run(sc, chunk=chunk)
    for name in ("trades_df", "fills_df", "orders_df", "portfolio_df"):
        assert getattr(a, name).equals(getattr(b, name)), (name, getattr(a, name), getattr(b, name))
