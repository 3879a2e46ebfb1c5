"""Exit trades partition round-trip P&L on random fill sequences.

Random signed fills (scale in and out, full closes, flips, two assets, commissions, a
futures multiplier) are booked straight into a ``Portfolio``; the round trips come from its
trade tracker and the exit trades from the ledger. Per round trip, the exit trades' gross
and net P&L, commission and quantity must add up to the round trip's; per fill, an exit
trade's ``pnl_gross`` is the ledger's realized P&L. The vectorised commission pool is also
checked against its scalar reference, including a position reduced 3,000 times.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml4t.backtest.core.exit_trades import _pool, _pool_loop, exit_trade_columns
from ml4t.backtest.core.portfolio import Portfolio
from ml4t.backtest.core.results import _exit_trades_frame, _trades_frame

EXAMPLES = int(os.environ.get("ML4T_PROPERTY_EXAMPLES", "60"))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


class _Order:
    """What the portfolio reads of an order."""

    def __init__(self, order_id: int, tag: str | None) -> None:
        self.order_id = order_id
        self.tag = tag
        self._signals_snapshot: dict[str, float] | None = None
        self._context_snapshot: dict[str, float] | None = None


fill = st.tuples(
    st.integers(0, 1),  # asset code
    st.one_of(
        st.integers(-6, 6).filter(bool).map(float),  # whole units: exact flats and flips
        st.floats(-7.5, 7.5).filter(lambda q: abs(q) > 0.01),
    ),
    st.floats(1.0, 200.0),  # price
    st.floats(0.0, 3.0),  # commission
    st.sampled_from([None, "stop_loss", "take_profit"]),
)


def _book(
    fills: list[tuple[int, float, float, float, str | None]],
    mult: list[float],
    future: list[bool],
    marks: list[float],
) -> tuple[pl.DataFrame, pl.DataFrame, Portfolio]:
    pf = Portfolio(1e9, ["A", "B"], multiplier=mult, is_future=future)
    pf.price_of = lambda c: marks[c]
    for i, (code, q, price, commission, tag) in enumerate(fills):
        pf.apply_fill(code, q, price, commission, 0.0, i, i, _Order(i, tag))
    end = len(fills)
    open_codes = sorted(pf.trades.open)
    pf.trades.close_all_open(end, end, pf.price_of)
    is_fill = np.asarray([k == "fill" for k in pf.fills.column("kind")], dtype=bool)
    cols = exit_trade_columns(
        pf.fills,
        is_fill,
        pf.asset_ids,
        pf.mult,
        pf.is_future,
        {c: marks[c] for c in open_codes},
        (end, end),
    )
    exits = _exit_trades_frame(cols, None)
    trades = _trades_frame(pf.trades.closed, (), [], None, pf.trades.bulk)
    return exits, trades, pf


@SETTINGS
@given(
    fills=st.lists(fill, min_size=1, max_size=40),
    mult=st.sampled_from([[1.0, 1.0], [50.0, 1.0], [1.0, 20.0]]),
    future=st.sampled_from([[False, False], [True, False]]),
    marks=st.tuples(st.floats(1.0, 200.0), st.floats(1.0, 200.0)),
)
def test_exit_trades_partition_round_trips(
    fills: list[Any], mult: list[float], future: list[bool], marks: tuple[float, float]
) -> None:
    exits, trades, pf = _book(fills, mult, future, list(marks))
    sums = exits.group_by("trade_id").agg(
        pl.col("pnl_gross", "pnl_net", "commission", "quantity").sum(),
        pl.col("entry_timestamp", "asset_id", "direction").first(),
        pl.col("is_open").any(),
    )
    both = trades.join(sums, on="trade_id", how="full", suffix="_x", coalesce=True)
    assert both.height == trades.height == sums.height
    for col in ("pnl_gross", "pnl_net", "commission", "quantity"):
        got, want = both[f"{col}_x"].to_numpy(), both[col].to_numpy()
        scale = np.maximum(1.0, np.abs(want)) + np.abs(both["quantity"].to_numpy())
        assert np.all(np.abs(got - want) <= 1e-8 * scale * 200.0 * max(mult)), col
    for col in ("entry_timestamp", "asset_id", "direction", "is_open"):
        assert both[col].to_list() == both[f"{col}_x"].to_list(), col
    # each closed exit trade's gross P&L is its fill's realized P&L, bit for bit
    closed = exits.filter(~pl.col("is_open"))
    realized = dict(
        zip(
            pf.fills.column("order_id").tolist(),
            pf.fills.column("realized_pnl").tolist(),
            strict=True,
        )
    )
    assert closed["pnl_gross"].to_list() == [realized[o] for o in closed["exit_order_id"]]
    # total commission is allocated exactly once
    assert exits["commission"].sum() == pytest.approx(sum(f[3] for f in fills), rel=1e-9, abs=1e-9)
    assert exits["exit_reason"].is_in(["signal", "stop_loss", "take_profit", "end_of_data"]).all()


@SETTINGS
@given(
    events=st.lists(
        st.tuples(st.booleans(), st.floats(0.0, 5.0), st.floats(0.0, 1.0)),
        min_size=1,
        max_size=60,
    )
)
def test_exit_trades_pool_matches_scalar_reference(events: list[tuple[bool, float, float]]) -> None:
    # an event adds (even positions) or takes a fraction (odd); a segment starts where the
    # flag is set and always after a full close (nothing reads a closed segment's pool)
    add = np.array([a if i % 2 == 0 else 0.0 for i, (_, a, _) in enumerate(events)])
    frac = np.array([0.0 if i % 2 == 0 else f for i, (_, _, f) in enumerate(events)])
    starts = [True] + [flag or frac[i - 1] >= 1.0 for i, (flag, _, _) in enumerate(events) if i > 0]
    seg = np.cumsum(starts) - 1
    before, after = _pool(seg, frac, add)
    ref_before, ref_after = _pool_loop(seg, frac, add)
    assert before == pytest.approx(ref_before, rel=1e-9, abs=1e-12)
    live = frac < 1.0  # after a full close the segment ends: its pool is not read
    assert after[live] == pytest.approx(ref_after[live], rel=1e-9, abs=1e-12)


def test_exit_trades_pool_stays_finite_after_thousands_of_partial_exits() -> None:
    # one entry then 3,000 exits of half the position each: the running product of the
    # kept fractions (2^-3000) underflows, so this segment takes the scalar path
    n = 3_001
    seg = np.zeros(n, dtype=np.int64)
    add = np.zeros(n)
    add[0] = 1.0
    frac = np.full(n, 0.5)
    frac[0] = 0.0
    add[1_500] = 2.0  # an entry in the middle
    frac[1_500] = 0.0
    before, after = _pool(seg, frac, add)
    ref_before, ref_after = _pool_loop(seg, frac, add)
    assert np.all(np.isfinite(before)) and np.all(np.isfinite(after))
    assert before == pytest.approx(ref_before, rel=1e-12, abs=1e-300)
    assert after == pytest.approx(ref_after, rel=1e-12, abs=1e-300)
