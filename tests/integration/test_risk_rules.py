"""Position exits (ExitRules) and portfolio limits (RiskLimits) end to end.

Exits are given to the broker (``SimulationBroker(exits=...)``) or per asset by the strategy
(``Strategy.set_exits``); both paths must give the same trades. Expected values are computed
by hand from the designed bars.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import polars as pl
import pytest

DAYS = [datetime(2024, 1, d) for d in (2, 3, 4, 5, 8, 9, 10, 11, 12)]
Row = tuple[float, float, float, float]


def _frame(make_bars: Any, rows: list[Row], asset_id: str | None = None) -> pl.DataFrame:
    """Return bars from (open, high, low, close) rows on the business days of ``DAYS``."""
    o, h, lo, c = (list(x) for x in zip(*rows, strict=True))
    return make_bars(c, opens=o, highs=h, lows=lo, timestamps=DAYS[: len(rows)], asset_id=asset_id)


def _flat(make_bars: Any, n: int, asset_id: str | None = None) -> pl.DataFrame:
    return _frame(make_bars, [(100.0, 101.0, 99.0, 100.0)] * n, asset_id)


def _multi(make_bars: Any, assets: list[str], n: int) -> pl.DataFrame:
    return pl.concat([_flat(make_bars, n, a) for a in assets]).sort("timestamp", "asset_id")


def _bar(e: Any) -> int:
    return DAYS.index(e.timestamp)


# --- position exits -------------------------------------------------------------------------
# buy 100 on bar 0, filled at bar 1's open (100); the exits work from bar 2
ENTRY: list[Row] = [(100.0, 101.0, 99.0, 100.0), (100.0, 102.0, 99.0, 101.0)]
EXIT_CASES = [
    # stop 100 * 0.95 = 95: bar 2 low 96 misses, bar 3 (open 97) reaches 95
    (
        {"stop_loss": 0.05},
        [(101.0, 103.0, 96.0, 97.0), (97.0, 98.0, 94.0, 95.0)],
        95.0,
        3,
        "stop_loss",
    ),
    # target 100 * 1.10 = 110: bar 2 high 108 misses, bar 3 reaches 110
    (
        {"take_profit": 0.10},
        [(101.0, 108.0, 100.0, 107.0), (107.0, 111.0, 106.0, 108.0)],
        110.0,
        3,
        "take_profit",
    ),
    # trail 5 % from the entry 100: level 95 on bar 2 (low 100 misses); bar 2's high 110
    # lifts it to 110 * 0.95 = 104.5, which bar 3 (open 108, low 104) reaches
    (
        {"trailing_stop": 0.05},
        [(101.0, 110.0, 100.0, 108.0), (108.0, 109.0, 104.0, 105.0)],
        104.5,
        3,
        "trailing_stop",
    ),
    # trail 3.0: level 97 on bar 2, then 110 - 3 = 107 on bar 3
    (
        {"trailing_amount": 3.0},
        [(101.0, 110.0, 100.0, 108.0), (108.0, 109.0, 104.0, 105.0)],
        107.0,
        3,
        "trailing_stop",
    ),
    # time exit: entry bar 1 + 3 bars -> market order filled at bar 4's open (103)
    (
        {"max_bars": 3},
        [(101.0, 102.0, 100.0, 101.0), (101.0, 102.0, 100.0, 102.0), (103.0, 104.0, 102.0, 103.0)],
        103.0,
        4,
        "time_exit",
    ),
]


@pytest.mark.parametrize("how", ["broker", "strategy"])
@pytest.mark.parametrize(("rules", "rows", "exit_price", "exit_bar", "reason"), EXIT_CASES)
def test_exit_rules_close_position_with_exit_reason(
    how: str,
    rules: dict[str, Any],
    rows: list[Row],
    exit_price: float,
    exit_bar: int,
    reason: str,
    make_bars: Any,
    run_backtest: Any,
) -> None:
    tail: list[Row] = [(exit_price, exit_price + 1, exit_price - 1, exit_price)]
    df = _frame(make_bars, ENTRY + rows + tail)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            if how == "strategy":
                s.set_exits("A", **rules)
            s.buy("A", 100)

    kw = {"exits": rules} if how == "broker" else {}
    result, strat = run_backtest(df, on_bar, **kw)
    fills = result.fills_df.select("timestamp", "side", "quantity", "tag").rows()
    assert fills == [
        (DAYS[1], "buy", 100.0, None),
        (DAYS[exit_bar], "sell", 100.0, reason),
    ]
    # levels are entry * (1 +/- fraction): 100 * 1.1 is 110.00000000000001 in floating point
    assert result.fills_df["price"].to_list() == [100.0, pytest.approx(exit_price, rel=1e-12)]
    trade = result.trades_df.row(0, named=True)
    assert trade["exit_reason"] == reason
    assert trade["exit_price"] == pytest.approx(exit_price, rel=1e-12)
    assert trade["holding_period_bars"] == exit_bar - 1
    assert trade["pnl_gross"] == pytest.approx(100 * (exit_price - 100.0))
    assert strat.rejected == []
    if reason == "time_exit":
        assert trade["holding_period_bars"] == rules["max_bars"]


def test_exit_rules_first_exit_cancels_the_others(make_bars: Any, run_backtest: Any) -> None:
    rows = [*ENTRY, (101.0, 108.0, 100.0, 107.0), (107.0, 111.0, 106.0, 108.0)]
    rows += [(108.0, 109.0, 90.0, 91.0)]  # would reach the stop at 95 if it still worked
    result, _ = run_backtest(
        _frame(make_bars, rows),
        lambda s, e, c: _bar(e) == 0 and s.buy("A", 100),
        exits={"stop_loss": 0.05, "take_profit": 0.10},
    )
    assert result.fills_df["tag"].to_list() == [None, "take_profit"]
    stop = result.orders_df.filter(pl.col("tag") == "stop_loss")
    assert stop["event"].to_list() == ["submitted", "cancelled"]
    assert stop["timestamp"].to_list() == [DAYS[1], DAYS[3]]
    assert stop["stop_price"][0] == 95.0


def test_exit_rules_follow_growing_position_from_new_average(
    make_bars: Any, run_backtest: Any
) -> None:
    # 100 @ 100 (bar 1) + 100 @ 110 (bar 3): average 105 -> stop 105 * 0.95 = 99.75 for 200
    # (the first stop, 95, would not be reached by bar 4's low of 99)
    rows = [
        *ENTRY,
        (101.0, 106.0, 100.0, 105.0),  # 2: add 100
        (110.0, 112.0, 108.0, 110.0),  # 3: filled at 110
        (108.0, 109.0, 99.0, 100.0),  # 4: stop 99.75 reached
        (100.0, 101.0, 99.0, 100.0),
    ]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.set_exits("A", stop_loss=0.05, take_profit=0.2)
        if _bar(e) in (0, 2):
            s.buy("A", 100)

    result, _ = run_backtest(_frame(make_bars, rows), on_bar)
    assert result.fills_df.select("timestamp", "side", "quantity", "price", "tag").rows() == [
        (DAYS[1], "buy", 100.0, 100.0, None),
        (DAYS[3], "buy", 100.0, 110.0, None),
        (DAYS[4], "sell", 200.0, 99.75, "stop_loss"),
    ]
    trade = result.trades_df.row(0, named=True)
    assert (trade["entry_price"], trade["quantity"], trade["exit_reason"]) == (
        105.0,
        200.0,
        "stop_loss",
    )
    # 200 * (99.75 - 105) = -1,050
    assert trade["pnl_gross"] == pytest.approx(-1_050.0)
    # the take-profit followed too: 105 * 1.2 = 126, for 200, then cancelled
    tp = result.orders_df.filter(pl.col("tag") == "take_profit")
    assert tp.select("event", "quantity", "limit_price").rows()[-1] == ("cancelled", 200.0, 126.0)


def test_exit_rules_follow_shrinking_position(make_bars: Any, run_backtest: Any) -> None:
    # 200 @ 100; the strategy sells 50 (bar 3 open 101); the stop at 95 then sells the 150 left
    rows = [
        *ENTRY,
        (101.0, 102.0, 100.0, 101.0),  # 2: sell 50
        (101.0, 102.0, 100.0, 101.0),  # 3: sold at 101
        (97.0, 98.0, 94.0, 95.0),  # 4: stop 95 reached
    ]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.buy("A", 200)
        if _bar(e) == 2:
            s.sell("A", 50)

    result, _ = run_backtest(_frame(make_bars, rows), on_bar, exits={"stop_loss": 0.05})
    assert result.fills_df.select("timestamp", "side", "quantity", "price", "tag").rows() == [
        (DAYS[1], "buy", 200.0, 100.0, None),
        (DAYS[3], "sell", 50.0, 101.0, None),
        (DAYS[4], "sell", 150.0, 95.0, "stop_loss"),
    ]
    assert result.portfolio_df["num_positions"][-1] == 0
    trade = result.trades_df.row(0, named=True)
    # 50 * (101 - 100) + 150 * (95 - 100) = 50 - 750 = -700
    assert trade["pnl_gross"] == pytest.approx(-700.0)
    assert trade["exit_reason"] == "stop_loss"


def test_exit_rules_short_position_levels_mirror(make_bars: Any, run_backtest: Any) -> None:
    # short 100 @ 100: stop (buy) at 105, target (buy limit) at 100 * 0.9 = 90
    rows = [*ENTRY, (99.0, 100.0, 92.0, 93.0), (93.0, 94.0, 89.0, 90.0), (90.0, 91.0, 89.0, 90.0)]
    result, _ = run_backtest(
        _frame(make_bars, rows),
        lambda s, e, c: _bar(e) == 0 and s.sell("A", 100),
        account="margin",
        exits={"stop_loss": 0.05, "take_profit": 0.10},
    )
    sub = result.orders_df.filter(pl.col("event") == "submitted").sort("order_id")
    assert sub.select("side", "tag", "stop_price").rows()[1] == ("buy", "stop_loss", 105.0)
    assert sub["limit_price"][2] == pytest.approx(90.0, rel=1e-12)
    assert result.fills_df.select("timestamp", "side", "tag").rows()[-1] == (
        DAYS[3],
        "buy",
        "take_profit",
    )
    trade = result.trades_df.row(0, named=True)
    assert trade["direction"] == "short"
    assert trade["pnl_gross"] == pytest.approx(100 * (100.0 - 90.0), rel=1e-12)


def test_exit_rules_cancelled_when_strategy_closes_position(
    make_bars: Any, run_backtest: Any
) -> None:
    rows = [
        *ENTRY,
        (101.0, 102.0, 100.0, 101.0),  # 2: strategy sells
        (101.0, 102.0, 100.0, 101.0),  # 3: sold at the open
        (100.0, 120.0, 80.0, 90.0),  # 4: would hit both the stop (95) and target (110)
    ]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.buy("A", 100)
        if _bar(e) == 2:
            s.close_position("A")

    result, _ = run_backtest(
        _frame(make_bars, rows), on_bar, exits={"stop_loss": 0.05, "take_profit": 0.10}
    )
    assert result.fills_df.select("timestamp", "side", "price", "tag").rows() == [
        (DAYS[1], "buy", 100.0, None),
        (DAYS[3], "sell", 101.0, None),
    ]
    assert result.trades_df["exit_reason"].to_list() == ["signal"]
    managed = result.orders_df.filter(pl.col("tag").is_in(["stop_loss", "take_profit"]))
    last = managed.group_by("order_id").agg(pl.col("event").last(), pl.col("reason").last())
    assert last["event"].to_list() == ["cancelled", "cancelled"]
    assert set(last["reason"].to_list()) == {"cancelled: position exit no longer needed"}
    assert result.portfolio_df["num_positions"][-1] == 0


def test_set_exits_none_switches_exits_off(make_bars: Any, run_backtest: Any) -> None:
    rows = [*ENTRY, (101.0, 102.0, 100.0, 101.0), (97.0, 98.0, 90.0, 91.0)]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.buy("A", 100)
        if _bar(e) == 2:
            s.set_exits("A", None)

    result, _ = run_backtest(_frame(make_bars, rows), on_bar, exits={"stop_loss": 0.05})
    assert result.fills_df.height == 1  # the stop at 95 was removed before bar 3
    assert result.trades_df["exit_reason"].to_list() == ["end_of_data"]


def test_exit_levels_rounded_to_tick(make_bars: Any, run_backtest: Any) -> None:
    # entry 100.25: stop 100.25 * 0.95 = 95.2375 -> 95.00 (sell stop down),
    # target 100.25 * 1.10 = 110.275 -> 110.50 (sell limit up)
    rows = [(100.25, 101.0, 99.0, 100.25)] * 3
    result, _ = run_backtest(
        _frame(make_bars, rows),
        lambda s, e, c: _bar(e) == 0 and s.buy("A", 10),
        exits={"stop_loss": 0.05, "take_profit": 0.10},
        assets={"A": {"tick_size": 0.25}},
    )
    sub = result.orders_df.filter(pl.col("event") == "submitted").sort("order_id")
    assert sub.select("tag", "stop_price", "limit_price").rows()[1:] == [
        ("stop_loss", 95.0, None),
        ("take_profit", None, 110.5),
    ]


# --- risk limits ----------------------------------------------------------------------------
GAP_UP: list[Row] = [
    (100.0, 101.0, 99.0, 100.0),
    (125.0, 126.0, 124.0, 125.0),  # gaps up: the order fills at 125
    (125.0, 126.0, 124.0, 125.0),
]


@pytest.mark.parametrize("on_breach", ["reject", "resize"])
def test_max_position_weight_rejects_or_resizes_at_fill_price(
    on_breach: str, make_bars: Any, run_backtest: Any
) -> None:
    # order on bar 0 (close 100) for 300; fills at bar 1's open 125:
    # weight cap 0.2 * 100,000 / 125 = 160 shares
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.buy("A", 300)

    result, strat = run_backtest(
        _frame(make_bars, GAP_UP),
        on_bar,
        fractional=False,
        risk_limits={"max_position_weight": 0.2, "on_breach": on_breach},
    )
    if on_breach == "reject":
        assert [r for _, r in strat.rejected] == ["risk limit: max_position_weight 0.2"]
        assert result.fills_df.height == 0
        return
    assert strat.rejected == []
    fill = result.fills_df.row(0, named=True)
    assert (fill["quantity"], fill["price"]) == (160.0, 125.0)
    assert fill["reason"] == "resized from 300 to 160: risk limit: max_position_weight 0.2"
    # weight after the fill: 160 * 125 / 100,000 = 0.2
    pdf = result.portfolio_df
    assert pdf["positions_value"][1] / pdf["equity"][1] == pytest.approx(0.2)


@pytest.mark.parametrize("on_breach", ["reject", "resize"])
def test_max_gross_leverage_limits_second_asset(
    on_breach: str, make_bars: Any, run_backtest: Any
) -> None:
    # margin allows 2x, the limit 1x: A 600 @ 100 = 60,000; room for B (100,000 - 60,000) / 100
    # = 400 shares, so B 500 is rejected or resized to 400
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0 and e.asset_id == "A":
            s.buy("A", 600)
            s.buy("B", 500)

    result, strat = run_backtest(
        _multi(make_bars, ["A", "B"], 3),
        on_bar,
        account="margin",
        fractional=False,
        risk_limits={"max_gross_leverage": 1.0, "on_breach": on_breach},
    )
    fills = dict(result.fills_df.select("asset_id", "quantity").rows())
    if on_breach == "reject":
        assert fills == {"A": 600.0}
        assert [(o.asset_id, r) for o, r in strat.rejected] == [
            ("B", "risk limit: max_gross_leverage 1")
        ]
    else:
        assert fills == {"A": 600.0, "B": 400.0}
        assert result.portfolio_df["gross_leverage"][1] == pytest.approx(1.0)


def test_max_net_leverage_counts_shorts_against_longs(make_bars: Any, run_backtest: Any) -> None:
    # limit 0.5 on 100,000: long A 500 (net 50,000) fits, 100 more A would make 0.6 -> rejected;
    # short B 800 brings net to -30,000 (gross 1.3 is not limited); then A + 100 fits (-0.2)
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if e.asset_id != "A":
            return
        if _bar(e) == 0:
            s.buy("A", 500)
            s.state["over"] = s.buy("A", 100)
        if _bar(e) == 1:
            s.sell("B", 800)
        if _bar(e) == 2:
            s.buy("A", 100)

    result, strat = run_backtest(
        _multi(make_bars, ["A", "B"], 5),
        on_bar,
        account="margin",
        risk_limits={"max_net_leverage": 0.5},
    )
    assert [(o, r) for o, r in strat.rejected] == [
        (strat.state["over"], "risk limit: max_net_leverage 0.5")
    ]
    assert result.fills_df.select("timestamp", "asset_id", "side", "quantity").rows() == [
        (DAYS[1], "A", "buy", 500.0),
        (DAYS[2], "B", "sell", 800.0),
        (DAYS[3], "A", "buy", 100.0),
    ]
    pdf = result.portfolio_df
    # (60,000 - 80,000) / 100,000 and (60,000 + 80,000) / 100,000
    assert pdf["net_leverage"][-1] == pytest.approx(-0.2)
    assert pdf["gross_leverage"][-1] == pytest.approx(1.4)


def test_max_positions_rejects_new_asset_but_allows_adding(
    make_bars: Any, run_backtest: Any
) -> None:
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.buy(e.asset_id, 10)
        if _bar(e) == 1 and e.asset_id == "A":
            s.buy("A", 10)

    result, strat = run_backtest(
        _multi(make_bars, ["A", "B", "C"], 4), on_bar, risk_limits={"max_positions": 2}
    )
    assert [(o.asset_id, r) for o, r in strat.rejected] == [
        ("C", "risk limit: max_positions 2 reached")
    ]
    assert strat.positions == {"A": 20.0, "B": 10.0}
    assert result.portfolio_df["num_positions"].max() == 2


def test_max_drawdown_halts_new_exposure(make_bars: Any, run_backtest: Any) -> None:
    # 1,000 @ 100 with all the cash; closes 95 (-5 %), 89 (-11 % >= 10 %: halt at bar 3)
    rows: list[Row] = [
        (100.0, 101.0, 99.0, 100.0),
        (100.0, 101.0, 99.0, 100.0),  # 1: bought at 100
        (100.0, 101.0, 94.0, 95.0),
        (95.0, 96.0, 88.0, 89.0),  # 3: equity 89,000 -> halt
        (89.0, 91.0, 88.0, 90.0),  # 4: sell 500 (reduces: allowed)
        (90.0, 92.0, 89.0, 91.0),  # 5: sold at 90; buy 100
        (91.0, 93.0, 90.0, 92.0),  # 6: the buy is rejected
    ]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) == 0:
            s.buy("A", 1000)
        if _bar(e) == 4:
            s.sell("A", 500)
        if _bar(e) == 5:
            s.state["late"] = s.buy("A", 100)

    result, strat = run_backtest(_frame(make_bars, rows), on_bar, risk_limits={"max_drawdown": 0.1})
    account = result.orders_df.filter(pl.col("event") == "account")
    assert account["timestamp"].to_list() == [DAYS[3]]
    assert account["reason"][0] == (
        "drawdown halt: equity 89,000.00 is 11.00% below its peak 100,000.00 "
        "(max_drawdown 0.1); orders that add exposure are rejected from now on"
    )
    assert result.fills_df.select("timestamp", "side", "quantity", "price").rows() == [
        (DAYS[1], "buy", 1000.0, 100.0),
        (DAYS[5], "sell", 500.0, 90.0),
    ]
    assert strat.rejected == [(strat.state["late"], "risk limit: drawdown halt (max_drawdown 0.1)")]
    rejected = result.orders_df.filter(pl.col("event") == "rejected")
    assert rejected["timestamp"].to_list() == [DAYS[6]]
    assert result.metrics["drawdown_halted"] is True


def test_max_drawdown_not_reached_keeps_trading(make_bars: Any, run_backtest: Any) -> None:
    rows: list[Row] = [(100.0, 101.0, 99.0, 100.0)] * 2 + [(100.0, 101.0, 90.0, 91.0)] * 3

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if _bar(e) in (0, 3):
            s.buy("A", 100)

    result, strat = run_backtest(_frame(make_bars, rows), on_bar, risk_limits={"max_drawdown": 0.1})
    # 100 shares losing 9 each = -900 (0.9 %): no halt
    assert strat.rejected == []
    assert result.metrics["drawdown_halted"] is False
    assert result.fills_df.height == 2
