"""Every Strategy helper, with expected quantities computed from the data by hand.

Three assets with distinct price paths; orders placed on day ``k`` fill at day ``k+1``'s
open, which is the previous close by construction of the frames (``bars`` default).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import polars as pl
import pytest

from ml4t.backtest import OrderSide

CLOSES = {
    "A": [100.0, 110.0, 120.0, 130.0, 125.0, 140.0],
    "B": [50.0, 55.0, 52.0, 58.0, 60.0, 61.0],
    "C": [20.0, 21.0, 19.0, 22.0, 23.0, 24.0],
}
INITIAL = 100_000.0


def _opens(a: str) -> list[float]:
    c = CLOSES[a]
    return [c[0], *c[:-1]]


@pytest.fixture
def frame(make_bars: Any) -> pl.DataFrame:
    parts = [make_bars(c, asset_id=a) for a, c in CLOSES.items()]
    return pl.concat(parts).sort("timestamp", "asset_id")


@pytest.fixture
def go(frame: pl.DataFrame, run_backtest: Any, at_day: Any) -> Any:
    """Run ``{day: action(strategy)}`` (actions run on asset A's bar) and return results."""

    def _go(actions: dict[int, Any], **broker_kw: Any) -> tuple[Any, Any]:
        def on_bar(s: Any, e: Any, c: Any) -> None:
            if e.asset_id != "A":
                return
            for day, act in actions.items():
                if at_day(e, day):
                    act(s)

        return run_backtest(frame, on_bar, **broker_kw)

    return _go


def _rec(key: str, fn: Any) -> Any:
    def act(s: Any) -> None:
        s.state[key] = fn(s)

    return act


def test_buy_percent_uses_fraction_of_cash_at_latest_close(go: Any) -> None:
    result, s = go({0: _rec("o", lambda s: s.buy_percent("A", 0.5))})
    assert s.state["o"].quantity == pytest.approx(0.5 * INITIAL / 100.0, rel=1e-12)
    assert result.fills_df["quantity"][0] == pytest.approx(500.0, rel=1e-12)


def test_buy_percent_floors_when_not_fractional(go: Any) -> None:
    _, s = go({1: _rec("o", lambda s: s.buy_percent("A", 0.5))}, fractional=False)
    assert s.state["o"].quantity == math.floor(0.5 * INITIAL / 110.0)  # 454


def test_sell_percent_sells_fraction_of_position(go: Any) -> None:
    _result, s = go(
        {0: lambda s: s.buy("A", 400), 2: _rec("o", lambda s: s.sell_percent("A", 0.3))}
    )
    assert s.state["o"].side is OrderSide.SELL
    assert s.state["o"].quantity == pytest.approx(120.0, rel=1e-12)
    assert s.get_position("A") == pytest.approx(280.0, rel=1e-12)


def test_close_position_long_and_flat(go: Any) -> None:
    result, s = go(
        {
            0: _rec("flat", lambda s: s.close_position("A")),
            1: lambda s: s.buy("A", 300),
            3: _rec("o", lambda s: s.close_position("A", tag="exit_now")),
        }
    )
    assert s.state["flat"] is None
    assert (s.state["o"].side, s.state["o"].quantity) == (OrderSide.SELL, 300.0)
    assert s.positions == {}
    assert result.trades_df["exit_reason"].to_list() == ["exit_now"]


def test_close_position_and_reduce_position_on_short(go: Any) -> None:
    result, s = go(
        {
            0: lambda s: s.sell("B", 400),
            2: _rec("r", lambda s: s.reduce_position("B", 0.25)),
            3: _rec("c", lambda s: s.close_position("B")),
        },
        account="margin",
        initial_margin=1.0,
    )
    assert (s.state["r"].side, s.state["r"].quantity) == (OrderSide.BUY, 100.0)
    assert (s.state["c"].side, s.state["c"].quantity) == (OrderSide.BUY, 300.0)
    assert s.get_position("B") == 0.0
    assert result.trades_df["direction"].to_list() == ["short"]


def test_reduce_position_long(go: Any) -> None:
    _, s = go({0: lambda s: s.buy("C", 1000), 2: _rec("o", lambda s: s.reduce_position("C", 0.25))})
    assert (s.state["o"].side, s.state["o"].quantity) == (OrderSide.SELL, 250.0)
    assert s.get_position("C") == pytest.approx(750.0)


def test_order_target_quantity_value_percent(go: Any) -> None:
    def day2(s: Any) -> None:  # holding 500 A, bought at 100 (day 1 open)
        s.state["same"] = s.order_target_quantity("A", 500)
        s.state["q"] = s.order_target_quantity("A", 300)
        s.state["v"] = s.order_target_value("B", 20_000.0)
        s.state["p"] = s.order_target_percent("C", 0.3)

    _, s = go({0: lambda s: s.buy("A", 500), 2: day2})
    assert s.state["same"] is None
    assert (s.state["q"].side, s.state["q"].quantity) == (OrderSide.SELL, 200.0)
    assert s.state["v"].quantity == pytest.approx(20_000.0 / CLOSES["B"][2], rel=1e-12)
    equity = INITIAL - 500 * 100.0 + 500 * CLOSES["A"][2]
    assert s.state["p"].quantity == pytest.approx(0.3 * equity / CLOSES["C"][2], rel=1e-12)
    assert s.state["p"].side is OrderSide.BUY


def test_order_target_quantity_negative_goes_short(go: Any) -> None:
    _, s = go(
        {0: lambda s: s.buy("A", 50), 2: _rec("o", lambda s: s.order_target_quantity("A", -100))},
        account="margin",
        initial_margin=1.0,
    )
    assert (s.state["o"].side, s.state["o"].quantity) == (OrderSide.SELL, 150.0)
    assert s.get_position("A") == -100.0


def test_rebalance_to_weights_sells_first_and_closes_unlisted(go: Any) -> None:
    def day0(s: Any) -> None:
        s.buy("A", 200)
        s.buy("B", 100)
        s.buy("C", 2000)

    _result, s = go(
        {0: day0, 2: _rec("o", lambda s: s.rebalance_to_weights({"B": 0.6, "C": 0.05}))}
    )
    orders = s.state["o"]
    # books on day 2, by hand: bought at day-1 opens (= day-0 closes)
    cash = INITIAL - 200 * 100.0 - 100 * 50.0 - 2000 * 20.0
    equity = cash + 200 * CLOSES["A"][2] + 100 * CLOSES["B"][2] + 2000 * CLOSES["C"][2]
    want = {
        "A": -200.0,
        "B": 0.6 * equity / CLOSES["B"][2] - 100.0,
        "C": 0.05 * equity / CLOSES["C"][2] - 2000.0,
    }
    got = {o.asset_id: o.signed_quantity for o in orders}
    assert got == pytest.approx(want, rel=1e-12)
    sides = [o.side for o in orders]
    assert sides == sorted(sides, key=lambda x: x is OrderSide.BUY)  # sells, then buys
    assert sides.count(OrderSide.SELL) == 2 and sides[-1] is OrderSide.BUY
    ids = [o.order_id for o in orders]
    assert ids == sorted(ids)
    assert s.rejected == []
    assert set(s.positions) == {"B", "C"}
    assert s.positions["B"] == pytest.approx(0.6 * equity / CLOSES["B"][2], rel=1e-12)


@pytest.mark.parametrize(
    ("conf", "max_pct", "min_conf", "want_pct"),
    [(0.75, 0.8, 0.5, 0.4), (1.2, 0.8, 0.5, 0.8), (0.9, 1.0, 0.0, 0.9)],
)
def test_size_by_confidence_scales_target_percent(
    conf: float, max_pct: float, min_conf: float, want_pct: float, go: Any
) -> None:
    _, s = go({1: _rec("o", lambda s: s.size_by_confidence("A", conf, max_pct, min_conf))})
    assert s.state["o"].quantity == pytest.approx(want_pct * INITIAL / 110.0, rel=1e-12)


@pytest.mark.parametrize("conf", [float("nan"), 0.3])
def test_size_by_confidence_nan_or_below_min_places_nothing(conf: float, go: Any) -> None:
    result, s = go({1: _rec("o", lambda s: s.size_by_confidence("A", conf, 1.0, 0.5))})
    assert s.state["o"] is None
    assert result.orders_df.height == 0


def test_position_value_pnl_cash_equity_positions(go: Any) -> None:
    def look(s: Any) -> None:
        s.state["look"] = {
            "value_a": s.get_position_value("A"),
            "value_c": s.get_position_value("C"),
            "pnl_a": s.get_unrealized_pnl_pct("A"),
            "pnl_b": s.get_unrealized_pnl_pct("B"),
            "pnl_c": s.get_unrealized_pnl_pct("C"),
            "cash": s.get_cash(),
            "equity": s.get_equity(),
            "positions": s.positions,
        }
        s.positions["A"] = 0.0  # a copy: must not change the books

    def day0(s: Any) -> None:
        s.buy("A", 100)
        s.sell("B", 200)

    _, s = go({0: day0, 3: look}, account="margin", initial_margin=1.0)
    got = s.state["look"]
    a3, b3 = CLOSES["A"][3], CLOSES["B"][3]
    assert got["value_a"] == pytest.approx(100 * a3, rel=1e-12)
    assert got["value_c"] == 0.0
    assert got["pnl_a"] == pytest.approx(a3 / 100.0 - 1, rel=1e-12)
    # short from 50 while the price rose to 58: a loss, so negative
    assert got["pnl_b"] == pytest.approx(-(b3 / 50.0 - 1), rel=1e-12)
    assert got["pnl_b"] < 0
    assert got["pnl_c"] == 0.0
    cash = INITIAL - 100 * 100.0 + 200 * 50.0
    assert got["cash"] == pytest.approx(cash, rel=1e-12)
    assert got["equity"] == pytest.approx(cash + 100 * a3 - 200 * b3, rel=1e-12)
    assert got["positions"] == {"A": 100.0, "B": -200.0}
    assert s.get_position("A") == 100.0


def test_short_unrealized_pnl_positive_when_price_falls(go: Any) -> None:
    # C: short at the day-1 open (20), day 2 closes at 19
    _, s = go(
        {0: lambda s: s.sell("C", 10), 2: _rec("p", lambda s: s.get_unrealized_pnl_pct("C"))},
        account="margin",
        initial_margin=1.0,
    )
    assert s.state["p"] == pytest.approx(1 - 19.0 / 20.0, rel=1e-12)


def test_open_orders_current_time_and_history(go: Any) -> None:
    def day1(s: Any) -> None:
        s.state["la"] = s.buy("A", 1, limit_price=1.0)
        s.state["lb"] = s.buy("B", 1, limit_price=1.0)
        s.state["open_a"] = s.get_open_orders("A")
        s.state["open_all"] = s.get_open_orders()
        s.state["now"] = s.current_time
        s.state["hist"] = s.history("A", "close", 100).tolist()
        s.state["hist_b"] = s.history("B", "open", 2).tolist()

    _, s = go({1: day1})
    assert s.state["open_a"] == [s.state["la"]]
    assert s.state["open_all"] == [s.state["la"], s.state["lb"]]
    assert s.state["now"] == datetime(2024, 1, 3)
    assert s.state["hist"] == CLOSES["A"][:2]  # fewer than n: all that exists so far
    assert s.state["hist_b"] == _opens("B")[:2]
