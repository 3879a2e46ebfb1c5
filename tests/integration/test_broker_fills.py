"""The fill contract (DESIGN §4) end to end: prices, timing, expiry, ordering, rejections."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import polars as pl
import pytest

from ml4t.backtest import FixedSlippage, OrderStatus, PercentageCommission, TimeInForce

NEUTRAL = (100.0, 101.0, 99.0, 100.0)  # open, high, low, close


def _ohlc(rows: list[tuple[float, float, float, float]], make_bars: Any, **kw: Any) -> pl.DataFrame:
    o, h, lo, c = (list(x) for x in zip(*rows, strict=True))
    return make_bars(c, opens=o, highs=h, lows=lo, **kw)


# --- market orders --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("timing", "want_bar", "want_price"),
    [("next_bar_open", 2, 103.0), ("same_bar_close", 1, 102.5)],
)
def test_market_order_fill_timing_uses_next_open_or_signal_close(
    timing: str, want_bar: int, want_price: float, make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    df = _ohlc([NEUTRAL, (101.0, 103.0, 100.0, 102.5), (103.0, 104.0, 102.0, 103.5)], make_bars)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 1):
            s.buy("A", 10)

    result, strat = run_backtest(df, on_bar, fill_timing=timing)
    assert result.fills_df["price"].to_list() == [want_price]
    assert result.fills_df["timestamp"][0] == datetime(2024, 1, 2) + timedelta(days=want_bar)
    assert strat.fills[0].base_price == want_price


# --- limit and stop orders ------------------------------------------------------------------
# each case: side, kind, price, the designed bar (o, h, l, c), expected fill price or None
CASES = [
    ("buy", "limit", 95.0, (94.0, 96.0, 93.0, 95.0), 94.0),  # gaps below: fills at open
    ("buy", "limit", 95.0, (100.0, 101.0, 94.0, 97.0), 95.0),  # touches: at the limit
    ("buy", "limit", 95.0, (100.0, 101.0, 96.0, 97.0), None),  # low above limit
    ("sell", "limit", 105.0, (106.0, 107.0, 105.5, 106.0), 106.0),
    ("sell", "limit", 105.0, (100.0, 106.0, 99.0, 103.0), 105.0),
    ("sell", "limit", 105.0, (100.0, 104.0, 99.0, 103.0), None),
    ("buy", "stop", 105.0, (106.0, 107.0, 105.5, 106.0), 106.0 + 0.5),  # gap: open + slip
    ("buy", "stop", 105.0, (100.0, 106.0, 99.0, 103.0), 105.0 + 0.5),
    ("buy", "stop", 105.0, (100.0, 104.0, 99.0, 103.0), None),
    ("sell", "stop", 95.0, (94.0, 96.0, 93.0, 95.0), 94.0 - 0.5),
    ("sell", "stop", 95.0, (100.0, 101.0, 94.0, 97.0), 95.0 - 0.5),
    ("sell", "stop", 95.0, (100.0, 101.0, 96.0, 97.0), None),
]


@pytest.mark.parametrize(("side", "kind", "level", "bar", "want"), CASES)
def test_limit_and_stop_orders_fill_at_contract_price(
    side: str,
    kind: str,
    level: float,
    bar: tuple[float, float, float, float],
    want: float | None,
    make_bars: Any,
    run_backtest: Any,
    at_day: Any,
) -> None:
    df = _ohlc([NEUTRAL, NEUTRAL, bar], make_bars)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0) and side == "sell":
            s.buy("A", 10)  # fills at bar 1 open (100 + 0.5 slippage)
        if at_day(e, 1):
            kw = {"limit_price": level} if kind == "limit" else {"stop_price": level}
            s.state["order"] = getattr(s, side)("A", 10, **kw)

    result, strat = run_backtest(df, on_bar, slippage=FixedSlippage(0.5))
    fills = result.fills_df.filter(pl.col("timestamp") == datetime(2024, 1, 4))
    order = strat.state["order"]
    if want is None:
        assert fills.height == 0
        assert order.status is OrderStatus.PENDING
        return
    assert fills["price"].to_list() == [pytest.approx(want, abs=1e-12)]
    assert fills["side"].to_list() == [side]
    expected_slip = 0.0 if kind == "limit" else 10 * 0.5
    assert fills["slippage"][0] == pytest.approx(expected_slip, abs=1e-9)
    assert order.status is OrderStatus.FILLED


@pytest.mark.parametrize("timing", ["next_bar_open", "same_bar_close"])
@pytest.mark.parametrize(("kind", "level"), [("limit", 95.0), ("stop", 105.0)])
def test_limit_stop_never_fill_on_the_bar_they_were_placed(
    timing: str, kind: str, level: float, make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # bar 1 (placement bar) spans both levels; bar 2 touches neither
    df = _ohlc([NEUTRAL, (100.0, 110.0, 90.0, 100.0), NEUTRAL], make_bars)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 1):
            kw = {"limit_price": level} if kind == "limit" else {"stop_price": level}
            s.state["order"] = s.buy("A", 1, **kw)

    result, strat = run_backtest(df, on_bar, fill_timing=timing)
    assert result.fills_df.height == 0
    assert strat.state["order"].status is OrderStatus.PENDING


# --- time in force, cancellation (minute bars over two days) --------------------------------
def _minute_frame(make_bars: Any) -> pl.DataFrame:
    stamps = [datetime(2024, 3, d, 9, 30) + timedelta(minutes=m) for d in (4, 5) for m in range(5)]
    rows = [NEUTRAL] * 5 + [(100.25, 101.0, 99.0, 100.0), (100.0, 101.0, 89.0, 95.0)]
    rows += [NEUTRAL] * 3
    return _ohlc(rows, make_bars, timestamps=stamps)


def _at(e: Any, day: int, minute: int) -> bool:
    return e.timestamp == datetime(2024, 3, day, 9, 30 + minute)


def _minute_run(
    make_bars: Any, run_backtest: Any, action: Callable[[Any, Any], None]
) -> tuple[Any, Any]:
    return run_backtest(_minute_frame(make_bars), lambda s, e, c: action(s, e))


def test_day_order_expires_at_end_of_its_day_with_reason(make_bars: Any, run_backtest: Any) -> None:
    def act(s: Any, e: Any) -> None:
        if _at(e, 4, 1):
            s.state["o"] = s.buy("A", 1, limit_price=90.0, time_in_force=TimeInForce.DAY)

    result, strat = _minute_run(make_bars, run_backtest, act)
    assert result.fills_df.height == 0  # day 2 dips to 89 but the order is gone
    assert strat.state["o"].status is OrderStatus.EXPIRED
    assert len(strat.cancelled) == 1
    order, reason = strat.cancelled[0]
    assert order is strat.state["o"]
    assert "expired" in reason
    expired = result.orders_df.filter(pl.col("event") == "expired")
    assert expired["timestamp"].to_list() == [datetime(2024, 3, 4, 9, 34)]
    assert expired["reason"][0] == reason


def test_day_orders_placed_on_last_bar_of_day_work_next_day(
    make_bars: Any, run_backtest: Any
) -> None:
    def act(s: Any, e: Any) -> None:
        if _at(e, 4, 4):
            s.buy("A", 1, time_in_force="day", tag="mkt")
            s.buy("A", 2, limit_price=90.0, time_in_force="day", tag="lmt")

    result, strat = _minute_run(make_bars, run_backtest, act)
    got = result.fills_df.select("timestamp", "tag", "price", "quantity").rows()
    assert got == [
        (datetime(2024, 3, 5, 9, 30), "mkt", 100.25, 1.0),
        (datetime(2024, 3, 5, 9, 31), "lmt", 90.0, 2.0),
    ]
    assert strat.cancelled == []


def test_day_order_placed_on_last_bar_expires_at_end_of_next_day(
    make_bars: Any, run_backtest: Any
) -> None:
    def act(s: Any, e: Any) -> None:
        if _at(e, 4, 4):
            s.state["o"] = s.buy("A", 1, limit_price=80.0, time_in_force="day")

    result, strat = _minute_run(make_bars, run_backtest, act)
    assert strat.state["o"].status is OrderStatus.EXPIRED
    expired = result.orders_df.filter(pl.col("event") == "expired")
    assert expired["timestamp"].to_list() == [datetime(2024, 3, 5, 9, 34)]
    assert [o for o, _ in strat.cancelled] == [strat.state["o"]]


def test_gtc_limit_persists_across_days_until_filled(make_bars: Any, run_backtest: Any) -> None:
    def act(s: Any, e: Any) -> None:
        if _at(e, 4, 1):
            s.buy("A", 1, limit_price=90.0)

    result, strat = _minute_run(make_bars, run_backtest, act)
    assert result.fills_df.select("timestamp", "price").rows() == [
        (datetime(2024, 3, 5, 9, 31), 90.0)
    ]
    assert strat.cancelled == []


def test_cancel_order_stops_fill_and_notifies(make_bars: Any, run_backtest: Any) -> None:
    def act(s: Any, e: Any) -> None:
        if _at(e, 4, 1):
            s.state["o"] = s.buy("A", 1, limit_price=90.0)
            s.state["open_before"] = s.get_open_orders("A")
        if _at(e, 4, 2):
            s.state["first"] = s.cancel_order(s.state["o"])
            s.state["second"] = s.cancel_order(s.state["o"].order_id)
            s.state["open_after"] = s.get_open_orders()

    result, strat = _minute_run(make_bars, run_backtest, act)
    assert strat.state["open_before"] == [strat.state["o"]]
    assert strat.state["first"] is True
    assert strat.state["second"] is False
    assert strat.state["open_after"] == []
    assert strat.state["o"].status is OrderStatus.CANCELLED
    assert [(o.order_id, r) for o, r in strat.cancelled] == [
        (strat.state["o"].order_id, "cancelled by the strategy")
    ]
    assert result.fills_df.height == 0
    assert result.orders_df.filter(pl.col("event") == "cancelled").height == 1


# --- ordering -------------------------------------------------------------------------------
def _two_assets(make_bars: Any) -> pl.DataFrame:
    a = make_bars([100.0] * 5, asset_id="A")
    b = make_bars([100.0] * 5, asset_id="B")
    return pl.concat([a, b]).sort("timestamp", "asset_id")


@pytest.mark.parametrize("sell_too", [True, False])
def test_exits_fill_before_entries_so_freed_cash_is_reused(
    sell_too: bool, make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0) and e.asset_id == "A":
            s.buy("A", 9)  # cash 1000 -> 100
        if at_day(e, 2) and e.asset_id == "A":
            s.buy("B", 9)  # submitted first, needs the cash the sell frees
            if sell_too:
                s.sell("A", 9)

    result, strat = run_backtest(_two_assets(make_bars), on_bar, initial_cash=1_000.0)
    day3 = result.fills_df.filter(pl.col("timestamp") == datetime(2024, 1, 5))
    if sell_too:
        assert strat.rejected == []
        assert day3.select("asset_id", "side").rows() == [("A", "sell"), ("B", "buy")]
        assert result.portfolio_df["cash"][-1] == pytest.approx(100.0, abs=1e-9)
    else:  # control: without the sell there is not enough cash for B
        assert day3.height == 0
        assert "insufficient cash" in strat.rejected[0][1]


# --- rejections -----------------------------------------------------------------------------
REJECTIONS: list[tuple[str, Callable[[Any, Any], None], dict[str, Any], str]] = [
    (
        "cash",
        lambda s, d: d == 0 and s.buy("A", 20),
        {"initial_cash": 1_000.0},
        "insufficient cash",
    ),
    ("nothing", lambda s, d: d == 0 and s.sell("A", 5), {}, "nothing to sell"),
    (
        "position",
        lambda s, d: (d == 0 and s.buy("A", 5)) or (d == 2 and s.sell("A", 10)),
        {},
        "insufficient position",
    ),
    ("unknown", lambda s, d: d == 0 and s.buy("ZZZ", 1), {}, "unknown asset 'ZZZ'"),
    (
        "fractional",
        lambda s, d: d == 0 and s.buy("A", 1.5),
        {"fractional": False},
        "fractional quantity",
    ),
    ("quantity", lambda s, d: d == 0 and s.buy("A", -3), {}, "quantity must be a positive"),
]


@pytest.mark.parametrize(
    ("act", "broker_kw", "reason"),
    [r[1:] for r in REJECTIONS],
    ids=[r[0] for r in REJECTIONS],
)
def test_rejections_reach_strategy_and_orders_df_with_reason(
    act: Callable[[Any, Any], None],
    broker_kw: dict[str, Any],
    reason: str,
    make_bars: Any,
    run_backtest: Any,
) -> None:
    df = make_bars([100.0] * 5)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        act(s, (e.timestamp - datetime(2024, 1, 2)).days)

    result, strat = run_backtest(df, on_bar, **broker_kw)
    assert len(strat.rejected) == 1
    order, got = strat.rejected[0]
    assert reason in got
    assert order.status is OrderStatus.REJECTED and order.reason == got
    rej = result.orders_df.filter(pl.col("event") == "rejected")
    assert rej["reason"].to_list() == [got]
    assert result.metrics["num_rejected_orders"] == 1


# --- cash policy ----------------------------------------------------------------------------
@pytest.mark.parametrize(("fractional", "want_qty"), [(True, 10_000.0 / 101.0), (False, 99.0)])
def test_resize_policy_buys_what_cash_covers_including_commission(
    fractional: bool, want_qty: float, make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    df = make_bars([100.0] * 3)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.buy("A", 200)

    result, strat = run_backtest(
        df,
        on_bar,
        initial_cash=10_000.0,
        commission=PercentageCommission(0.01),
        cash_policy="resize",
        fractional=fractional,
    )
    assert strat.rejected == []
    q = result.fills_df["quantity"][0]
    assert q == pytest.approx(want_qty, rel=1e-9)
    cash_left = 10_000.0 - want_qty * 100.0 * 1.01
    assert result.portfolio_df["cash"][-1] == pytest.approx(cash_left, abs=1e-6)
    assert result.portfolio_df["cash"][-1] >= -1e-9
    filled = result.orders_df.filter(pl.col("event") == "filled")
    assert "resized" in filled["reason"][0] and "insufficient cash" in filled["reason"][0]


def test_reject_policy_rejects_the_same_order(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.buy("A", 200)

    result, strat = run_backtest(
        make_bars([100.0] * 3),
        on_bar,
        initial_cash=10_000.0,
        commission=PercentageCommission(0.01),
    )
    assert result.fills_df.height == 0
    assert "insufficient cash" in strat.rejected[0][1]


# --- short selling --------------------------------------------------------------------------
def test_short_sale_books_proceeds_and_negative_position(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    closes = [100.0, 98.0, 95.0, 97.0, 90.0, 91.0]
    opens = [100.0, 99.0, 96.0, 96.5, 92.0, 90.5]
    df = make_bars(closes, opens=opens)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.sell("A", 10)
        if at_day(e, 3):
            s.state["pos"] = s.get_position("A")
            s.close_position("A")

    result, strat = run_backtest(
        df, on_bar, account="margin", initial_margin=1.0, commission=PercentageCommission(0.001)
    )
    assert strat.rejected == []
    assert strat.state["pos"] == -10.0
    c_in, c_out = 0.001 * 10 * 99.0, 0.001 * 10 * 92.0
    cash_short = 100_000.0 + 10 * 99.0 - c_in
    pf = result.portfolio_df
    for k in (1, 2, 3):
        assert pf["cash"][k] == pytest.approx(cash_short, abs=1e-9)
        assert pf["positions_value"][k] == pytest.approx(-10 * closes[k], abs=1e-9)
        assert pf["equity"][k] == pytest.approx(cash_short - 10 * closes[k], abs=1e-9)
        eq = cash_short - 10 * closes[k]
        assert pf["net_leverage"][k] == pytest.approx(-10 * closes[k] / eq, rel=1e-12)
        assert pf["gross_leverage"][k] == pytest.approx(10 * closes[k] / eq, rel=1e-12)
    final_cash = cash_short - 10 * 92.0 - c_out
    assert pf["cash"][-1] == pytest.approx(final_cash, abs=1e-9)
    assert result.final_equity == pytest.approx(final_cash, abs=1e-9)
    t = result.trades_df.row(0, named=True)
    assert t["direction"] == "short"
    assert t["pnl_gross"] == pytest.approx(10 * (99.0 - 92.0), abs=1e-9)
    assert t["pnl_net"] == pytest.approx(70.0 - c_in - c_out, abs=1e-9)


def test_open_orders_in_on_fill_are_the_working_orders_only(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # three market orders fill on bar 1, one by one: each fill's callback sees only the
    # orders still working, never one that has already filled
    from ml4t.backtest.testing import ScriptedStrategy

    class Watcher(ScriptedStrategy):
        def on_fill(self, fill: Any) -> None:
            super().on_fill(fill)
            working = self.get_open_orders()
            assert all(o.status.is_open for o in working)
            self.seen.append(sorted(o.order_id for o in working))

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            for _ in range(3):
                s.buy("A", 1)

    strat = Watcher(on_bar)
    strat.seen = []
    run_backtest(_ohlc([NEUTRAL] * 3, make_bars), strategy=strat)
    assert strat.seen == [[1, 2], [2], []]
