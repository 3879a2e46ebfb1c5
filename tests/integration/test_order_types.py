"""Order types end to end against hand-built bars.

Every test writes its bars out as ``(open, high, low, close)`` rows (daily bars from
2024-01-02 unless stated) and computes the expected fills in the test. An order placed
while the strategy handles bar ``t`` is first matched against bar ``t+1``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import polars as pl
import pytest

from ml4t.backtest import FixedSlippage, Order, OrderStatus, OrderType
from ml4t.backtest.testing import check_order_reports

Bar = tuple[float, float, float, float]
NEUTRAL: Bar = (100.0, 101.0, 99.0, 100.0)
START = datetime(2024, 1, 2)


def _bars(rows: list[Bar], make_bars: Any, **kw: Any) -> pl.DataFrame:
    o, h, lo, c = (list(x) for x in zip(*rows, strict=True))
    return make_bars(c, opens=o, highs=h, lows=lo, **kw)


def _day(k: int) -> datetime:
    return START + timedelta(days=k)


def _fills(result: Any) -> list[tuple[Any, ...]]:
    return result.fills_df.select("timestamp", "side", "quantity", "price", "tag").rows()


def _events(result: Any, order: Order) -> list[tuple[datetime, str]]:
    log = result.orders_df.filter(pl.col("order_id") == order.order_id)
    return log.select("timestamp", "event").rows()


# --- market ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("timing", "want_day", "want_price"),
    [
        ("next_bar_open", 2, 103.0 + 0.5),  # bar 2 open 103 + slippage 0.5
        ("same_bar_close", 1, 102.5 + 0.5),  # signal bar 1 close 102.5 + slippage 0.5
    ],
)
def test_market_order_fill_timing_fills_at_next_open_or_signal_close_plus_slippage(
    timing: str,
    want_day: int,
    want_price: float,
    make_bars: Any,
    run_backtest: Any,
    at_day: Any,
) -> None:
    df = _bars([NEUTRAL, (101.0, 103.0, 100.0, 102.5), (103.0, 104.0, 102.0, 103.5)], make_bars)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 1):
            s.buy("A", 10)

    result, strat = run_backtest(df, on_bar, fill_timing=timing, slippage=FixedSlippage(0.5))
    assert _fills(result) == [(_day(want_day), "buy", 10.0, want_price, None)]
    assert strat.fills[0].base_price == want_price - 0.5
    assert result.fills_df["slippage"][0] == pytest.approx(10 * 0.5, abs=1e-12)


# --- limit ----------------------------------------------------------------------------------
LIMIT_CASES = [
    # side, limit, bar 2 (o, h, l, c), expected price (no slippage on limits) or None
    ("buy", 95.0, (94.0, 96.0, 93.0, 95.0), 94.0),  # gaps below the limit: the better open
    ("buy", 95.0, (100.0, 101.0, 94.0, 97.0), 95.0),  # low 94 <= 95: at the limit
    ("buy", 95.0, (100.0, 101.0, 95.01, 97.0), None),  # low 95.01 > 95: not reached
    ("sell", 105.0, (106.0, 107.0, 105.5, 106.0), 106.0),  # gaps above: the better open
    ("sell", 105.0, (100.0, 106.0, 99.0, 103.0), 105.0),  # high 106 >= 105: at the limit
    ("sell", 105.0, (100.0, 104.99, 99.0, 103.0), None),  # high 104.99 < 105
]


@pytest.mark.parametrize(("side", "limit", "bar", "want"), LIMIT_CASES)
def test_limit_order_fills_at_limit_or_better_open_and_never_slips(
    side: str,
    limit: float,
    bar: Bar,
    want: float | None,
    make_bars: Any,
    run_backtest: Any,
    at_day: Any,
) -> None:
    df = _bars([NEUTRAL, NEUTRAL, bar, NEUTRAL], make_bars)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0) and side == "sell":
            s.buy("A", 10)  # the position to sell: bar 1 open 100 + 0.5
        if at_day(e, 1):
            s.state["o"] = getattr(s, side)("A", 10, limit_price=limit)

    result, strat = run_backtest(df, on_bar, slippage=FixedSlippage(0.5))
    order = strat.state["o"]
    assert order.order_type is OrderType.LIMIT
    got = result.fills_df.filter(pl.col("order_id") == order.order_id)
    if want is None:
        assert got.height == 0
        assert order.status is OrderStatus.PENDING
        assert strat.cancelled == []
        return
    assert got.select("timestamp", "price").rows() == [(_day(2), want)]
    assert got["slippage"][0] == 0.0
    assert order.status is OrderStatus.FILLED
    assert order.avg_fill_price == want


def test_limit_order_rests_until_first_bar_that_reaches_it(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # buy limit 97 placed on bar 0: bar 1 low 98, bar 2 low 97.5 miss; bar 3 low 96 reaches
    rows = [NEUTRAL, (100.0, 101.0, 98.0, 99.0), (99.0, 100.0, 97.5, 98.0)]
    rows += [(98.0, 99.0, 96.0, 96.5), (96.5, 97.0, 95.0, 96.0)]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["o"] = s.buy("A", 10, limit_price=97.0)

    result, strat = run_backtest(_bars(rows, make_bars), on_bar)
    assert _fills(result) == [(_day(3), "buy", 10.0, 97.0, None)]
    assert strat.state["o"].status is OrderStatus.FILLED


# --- stop -----------------------------------------------------------------------------------
STOP_CASES = [
    # side, stop, bar 2, expected price: base +/- slippage 0.5 (buys up, sells down)
    ("buy", 105.0, (106.0, 107.0, 105.5, 106.0), 106.0 + 0.5),  # gap above: open + slip
    ("buy", 105.0, (100.0, 106.0, 99.0, 103.0), 105.0 + 0.5),  # intrabar: stop + slip
    ("buy", 105.0, (100.0, 104.99, 99.0, 103.0), None),
    ("sell", 95.0, (94.0, 96.0, 93.0, 95.0), 94.0 - 0.5),  # gap below: open - slip
    ("sell", 95.0, (100.0, 101.0, 94.0, 97.0), 95.0 - 0.5),  # intrabar: stop - slip
    ("sell", 95.0, (100.0, 101.0, 95.01, 97.0), None),
]


@pytest.mark.parametrize(("side", "stop", "bar", "want"), STOP_CASES)
def test_stop_order_fills_at_stop_or_gap_open_plus_slippage(
    side: str,
    stop: float,
    bar: Bar,
    want: float | None,
    make_bars: Any,
    run_backtest: Any,
    at_day: Any,
) -> None:
    df = _bars([NEUTRAL, NEUTRAL, bar, NEUTRAL], make_bars)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0) and side == "sell":
            s.buy("A", 10)
        if at_day(e, 1):
            s.state["o"] = getattr(s, side)("A", 10, stop_price=stop)

    result, strat = run_backtest(df, on_bar, slippage=FixedSlippage(0.5))
    order = strat.state["o"]
    assert order.order_type is OrderType.STOP
    got = result.fills_df.filter(pl.col("order_id") == order.order_id)
    if want is None:
        assert got.height == 0
        assert order.status is OrderStatus.PENDING
        return
    assert got.select("timestamp", "price").rows() == [(_day(2), pytest.approx(want, abs=1e-12))]
    assert got["slippage"][0] == pytest.approx(10 * 0.5, abs=1e-12)
    base = want - 0.5 if side == "buy" else want + 0.5
    fill = next(f for f in strat.fills if f.order_id == order.order_id)
    assert fill.base_price == pytest.approx(base, abs=1e-12)


def test_slippage_applies_to_stop_not_to_limit_on_same_bar(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # bar 2 (100, 106, 94, 100) reaches both a buy limit 95 and a buy stop 105
    df = _bars([NEUTRAL, NEUTRAL, (100.0, 106.0, 94.0, 100.0), NEUTRAL], make_bars)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 1):
            s.buy("A", 1, limit_price=95.0, tag="limit")
            s.buy("A", 1, stop_price=105.0, tag="stop")

    result, _ = run_backtest(df, on_bar, slippage=FixedSlippage(0.25))
    got = result.fills_df.select("tag", "price", "slippage").sort("tag").rows()
    # limit: exactly 95, no slippage; stop: 105 + 0.25, slippage 1 * 0.25
    assert got == [("limit", 95.0, 0.0), ("stop", 105.25, 0.25)]


# --- stop-limit -----------------------------------------------------------------------------
def test_stop_limit_buy_triggers_then_fills_at_limit_same_bar(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # buy stop 105 limit 103; bar 2 (100, 107, 99, 103), buy path 100 -> 107 -> 99 -> 103:
    # triggers at 105 on the way up, then trades down through 103 -> fills at 103, no slip
    df = _bars([NEUTRAL, NEUTRAL, (100.0, 107.0, 99.0, 103.0), NEUTRAL], make_bars)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 1):
            s.state["o"] = s.buy("A", 10, limit_price=103.0, stop_price=105.0)

    result, strat = run_backtest(df, on_bar, slippage=FixedSlippage(0.5))
    order = strat.state["o"]
    assert order.order_type is OrderType.STOP_LIMIT
    assert _fills(result) == [(_day(2), "buy", 10.0, 103.0, None)]
    assert result.fills_df["slippage"][0] == 0.0
    assert _events(result, order) == [
        (_day(1), "submitted"),
        (_day(2), "triggered"),
        (_day(2), "filled"),
    ]


def test_stop_limit_buy_limit_above_stop_fills_at_trigger_price(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # buy stop 105 limit 106: at the trigger (105) the limit is already marketable
    df = _bars([NEUTRAL, NEUTRAL, (100.0, 107.0, 99.0, 103.0), NEUTRAL], make_bars)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 1):
            s.buy("A", 10, limit_price=106.0, stop_price=105.0)

    result, _ = run_backtest(df, on_bar)
    assert _fills(result) == [(_day(2), "buy", 10.0, 105.0, None)]


def test_stop_limit_triggered_but_limit_missed_rests_and_fills_later(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # buy stop 105 limit 103. Bar 2 (104, 107, 103.5, 106): triggers at 105, low 103.5 > 103.
    # Bar 3 (104, 104.5, 102, 103) never reaches the stop again (high 104.5) but the
    # triggered order is a limit 103: open 104 > 103, low 102 <= 103 -> fills at 103.
    rows = [NEUTRAL, NEUTRAL, (104.0, 107.0, 103.5, 106.0), (104.0, 104.5, 102.0, 103.0)]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 1):
            s.state["o"] = s.buy("A", 10, limit_price=103.0, stop_price=105.0)
        if at_day(e, 2):
            s.state["status_day2"] = s.state["o"].status

    result, strat = run_backtest(_bars(rows, make_bars), on_bar)
    order = strat.state["o"]
    assert strat.state["status_day2"] is OrderStatus.PENDING
    assert _fills(result) == [(_day(3), "buy", 10.0, 103.0, None)]
    assert _events(result, order) == [
        (_day(1), "submitted"),
        (_day(2), "triggered"),
        (_day(3), "filled"),
    ]


def test_stop_limit_gap_through_stop_beyond_limit_rests_as_limit(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # buy stop 105 limit 106. Bar 2 opens 108 (gap through the stop and beyond the limit):
    # triggered at the open, but 108 -> 109 -> 107 -> 108 never trades at <= 106.
    # Bar 3 (107, 107.5, 105.5, 106): open 107 > 106, low 105.5 -> fills at the limit 106.
    rows = [NEUTRAL, NEUTRAL, (108.0, 109.0, 107.0, 108.0), (107.0, 107.5, 105.5, 106.0)]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 1):
            s.state["o"] = s.buy("A", 10, limit_price=106.0, stop_price=105.0)

    result, strat = run_backtest(_bars(rows, make_bars), on_bar, slippage=FixedSlippage(0.5))
    assert _fills(result) == [(_day(3), "buy", 10.0, 106.0, None)]
    assert [e for _, e in _events(result, strat.state["o"])] == ["submitted", "triggered", "filled"]


def test_stop_limit_sell_triggers_then_fills_at_limit_on_the_rebound(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # long 10 from bar 1's open. Sell stop 95 limit 96 on bar 3 (100, 101, 93, 97): sell path
    # 100 -> 93 -> 101 -> 97 triggers at 95 falling, then rises through 96 -> fills at 96
    rows = [NEUTRAL, NEUTRAL, NEUTRAL, (100.0, 101.0, 93.0, 97.0)]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.buy("A", 10)
        if at_day(e, 2):
            s.sell("A", 10, limit_price=96.0, stop_price=95.0)

    result, _ = run_backtest(_bars(rows, make_bars), on_bar)
    assert _fills(result) == [
        (_day(1), "buy", 10.0, 100.0, None),
        (_day(3), "sell", 10.0, 96.0, None),
    ]


# --- trailing stop --------------------------------------------------------------------------
# bar 0: buy 10; bar 1: submit sell trailing stop, trail 2 from the creation close 100.5
TRAIL_ROWS: list[Bar] = [
    NEUTRAL,
    (100.0, 101.0, 99.0, 100.5),
    (101.0, 104.0, 100.0, 103.0),  # bar 2: low 100 > 98.5, no fill
    (103.0, 103.5, 101.5, 102.0),  # bar 3
    (101.8, 102.0, 100.5, 101.0),  # bar 4
    (101.0, 102.0, 100.0, 101.0),
]


@pytest.mark.parametrize(
    ("reference", "intrabar", "level_after_bar2", "want_day", "want_price"),
    [
        # high_low: after bar 2 ref = max(100.5, high 104) = 104 -> level 102; bar 3 opens
        # 103 and trades down to 101.5 -> fills at 102
        ("high_low", "conservative", 104.0 - 2.0, 3, 102.0),
        # high_first path on bar 2 is 101 -> 104 -> 100: had the level moved to 102 at the
        # high, bar 2 would have filled at 102; the level stays 98.5 within the bar
        ("high_low", "high_first", 104.0 - 2.0, 3, 102.0),
        # close: after bar 2 ref = max(100.5, close 103) = 103 -> level 101; bar 3 low 101.5
        # misses; ref stays max(103, 102) = 103; bar 4 (101.8 -> 100.5) fills at 101
        ("close", "conservative", 103.0 - 2.0, 4, 101.0),
    ],
)
def test_trailing_stop_amount_follows_reference_between_bars(
    reference: str,
    intrabar: str,
    level_after_bar2: float,
    want_day: int,
    want_price: float,
    make_bars: Any,
    run_backtest: Any,
    at_day: Any,
) -> None:
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.buy("A", 10)
        if at_day(e, 1):
            s.state["o"] = s.sell("A", 10, trail_amount=2.0)
            s.state["level_1"] = s.state["o"].trail_level
        if at_day(e, 2):
            s.state["level_2"] = s.state["o"].trail_level

    result, strat = run_backtest(
        _bars(TRAIL_ROWS, make_bars), on_bar, trail_reference=reference, intrabar=intrabar
    )
    order = strat.state["o"]
    assert order.order_type is OrderType.TRAILING_STOP
    assert strat.state["level_1"] == 100.5 - 2.0  # from the creation close
    assert strat.state["level_2"] == level_after_bar2
    assert _fills(result)[1:] == [(_day(want_day), "sell", 10.0, want_price, None)]


@pytest.mark.parametrize(
    ("reference", "want_day", "want_price"),
    [
        # ref 100 -> level 95; after bar 2 ref = high 110 -> level 110 * 0.95 = 104.5;
        # bar 3 (108 -> 104) fills at 104.5
        ("high_low", 3, 110.0 * 0.95),
        # after bar 2 ref = close 108 -> level 102.6; bar 3 low 104 misses; ref stays
        # max(108, 105) = 108; bar 4 (104 -> 102) fills at 102.6
        ("close", 4, 108.0 * 0.95),
    ],
)
def test_trailing_stop_percent_follows_reference_between_bars(
    reference: str,
    want_day: int,
    want_price: float,
    make_bars: Any,
    run_backtest: Any,
    at_day: Any,
) -> None:
    rows = [
        NEUTRAL,
        NEUTRAL,  # bar 1: submit, creation close 100 -> level 95
        (100.0, 110.0, 99.0, 108.0),
        (108.0, 109.0, 104.0, 105.0),
        (104.0, 104.5, 102.0, 103.0),
        (103.0, 104.0, 102.0, 103.0),
    ]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.buy("A", 10)
        if at_day(e, 1):
            s.state["o"] = s.sell("A", 10, trail_percent=0.05)
            s.state["level_1"] = s.state["o"].trail_level

    result, strat = run_backtest(_bars(rows, make_bars), on_bar, trail_reference=reference)
    assert strat.state["level_1"] == pytest.approx(100.0 * 0.95, abs=1e-12)
    sells = result.fills_df.filter(pl.col("side") == "sell")
    assert sells["timestamp"].to_list() == [_day(want_day)]
    assert sells["price"][0] == pytest.approx(want_price, abs=1e-9)


def test_trailing_stop_gap_through_fills_at_open_with_slippage(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # trail 3 from close 100 -> 97; bar 2 high 106 -> level 103; bar 3 opens 101 < 103:
    # fills at the open 101 - slippage 0.25 = 100.75
    rows = [NEUTRAL, NEUTRAL, (100.0, 106.0, 99.5, 105.0), (101.0, 102.0, 100.0, 101.0), NEUTRAL]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.buy("A", 10)
        if at_day(e, 1):
            s.sell("A", 10, trail_amount=3.0, tag="trail")

    result, _ = run_backtest(_bars(rows, make_bars), on_bar, slippage=FixedSlippage(0.25))
    sells = result.fills_df.filter(pl.col("side") == "sell")
    assert sells.select("timestamp", "price", "slippage", "tag").rows() == [
        (_day(3), 100.75, 10 * 0.25, "trail")
    ]


def test_trailing_stop_buy_covers_short_trailing_lows(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # short 10 at bar 1's open 100; buy trail 2 from close 100 -> level 102. Bar 2 high 101
    # misses; ref = min(100, low 96) = 96 -> level 98. Bar 3 path 97 -> 99 crosses 98.
    rows = [NEUTRAL, NEUTRAL, (100.0, 101.0, 96.0, 97.0), (97.0, 99.0, 96.5, 98.5), NEUTRAL]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.sell("A", 10)
        if at_day(e, 1):
            s.state["o"] = s.buy("A", 10, trail_amount=2.0)
            s.state["level_1"] = s.state["o"].trail_level
        if at_day(e, 2):
            s.state["level_2"] = s.state["o"].trail_level

    result, strat = run_backtest(_bars(rows, make_bars), on_bar, account="margin")
    assert (strat.state["level_1"], strat.state["level_2"]) == (102.0, 98.0)
    assert _fills(result) == [
        (_day(1), "sell", 10.0, 100.0, None),
        (_day(3), "buy", 10.0, 98.0, None),
    ]
    assert result.trades_df["pnl_gross"].to_list() == [10 * (100.0 - 98.0)]


# --- market-on-open / market-on-close -------------------------------------------------------
@pytest.mark.parametrize("timing", ["next_bar_open", "same_bar_close"])
def test_market_on_open_fills_at_next_open_whatever_fill_timing(
    timing: str, make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    df = _bars([NEUTRAL, (101.0, 103.0, 100.0, 102.5), (103.0, 104.0, 102.0, 103.5)], make_bars)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 1):
            s.buy("A", 5, order_type="market_on_open", tag="moo")

    result, strat = run_backtest(df, on_bar, fill_timing=timing)
    assert _fills(result) == [(_day(2), "buy", 5.0, 103.0, "moo")]  # bar 2 open
    assert strat.fills[0].order_id == result.fills_df["order_id"][0]


def test_market_on_open_and_market_differ_under_same_bar_close(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    df = _bars([NEUTRAL, (101.0, 103.0, 100.0, 102.5), (103.0, 104.0, 102.0, 103.5)], make_bars)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 1):
            s.buy("A", 5, order_type="market_on_open", tag="moo")
            s.buy("A", 5, tag="mkt")

    result, _ = run_backtest(df, on_bar, fill_timing="same_bar_close")
    # market: the signal bar's close 102.5; market-on-open: bar 2's open 103
    assert _fills(result) == [
        (_day(1), "buy", 5.0, 102.5, "mkt"),
        (_day(2), "buy", 5.0, 103.0, "moo"),
    ]


@pytest.mark.parametrize("timing", ["next_bar_open", "same_bar_close"])
def test_market_on_close_daily_bars_fills_at_next_bars_close(
    timing: str, make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    df = _bars([NEUTRAL, (101.0, 103.0, 100.0, 102.5), (103.0, 104.0, 102.0, 103.5)], make_bars)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 1):
            s.buy("A", 5, order_type="market_on_close", tag="moc")

    result, _ = run_backtest(df, on_bar, fill_timing=timing)
    assert _fills(result) == [(_day(2), "buy", 5.0, 103.5, "moc")]  # bar 2 close


def _half_hour_stamps() -> list[datetime]:
    # two sessions (Mon 4 and Tue 5 March 2024) of 13 bars: 09:30, 10:00, ..., 15:30
    return [
        datetime(2024, 3, d, 9, 30) + timedelta(minutes=30 * k) for d in (4, 5) for k in range(13)
    ]


@pytest.mark.parametrize(
    ("place_day", "place_bar", "want_ts", "want_price"),
    [
        # placed at 10:00 on day 1: the close of day 1's last bar (15:30) = 100 + 12 * 0.5
        (4, 1, datetime(2024, 3, 4, 15, 30), 100.0 + 12 * 0.5),
        # placed on day 1's last bar: eligible from day 2 -> day 2's 15:30 close 110 + 12 * 0.25
        (4, 12, datetime(2024, 3, 5, 15, 30), 110.0 + 12 * 0.25),
        (5, 0, datetime(2024, 3, 5, 15, 30), 110.0 + 12 * 0.25),
    ],
)
def test_market_on_close_intraday_fills_at_close_of_sessions_last_bar(
    place_day: int,
    place_bar: int,
    want_ts: datetime,
    want_price: float,
    make_bars: Any,
    run_backtest: Any,
) -> None:
    closes = [100.0 + 0.5 * k for k in range(13)] + [110.0 + 0.25 * k for k in range(13)]
    df = make_bars(closes, timestamps=_half_hour_stamps())
    placed = datetime(2024, 3, place_day, 9, 30) + timedelta(minutes=30 * place_bar)

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if e.timestamp == placed:
            s.buy("A", 5, order_type="market_on_close", tag="moc")

    result, strat = run_backtest(df, on_bar)
    assert _fills(result) == [(want_ts, "buy", 5.0, want_price, "moc")]
    assert strat.cancelled == [] and strat.rejected == []


# --- brackets -------------------------------------------------------------------------------
BOTH: Bar = (100.0, 111.0, 94.0, 100.0)  # touches the stop 95 and the target 110


@pytest.mark.parametrize(
    ("bar2", "intrabar", "want_tag", "want_price"),
    [
        ((100.0, 101.0, 94.0, 96.0), "conservative", "stop_loss", 95.0),
        ((100.0, 111.0, 99.0, 108.0), "conservative", "take_profit", 110.0),
        # sell path 100 -> 94 -> 111: the stop (95) comes first
        (BOTH, "conservative", "stop_loss", 95.0),
        (BOTH, "low_first", "stop_loss", 95.0),
        # 100 -> 111 -> 94: the target (sell limit 110) comes first
        (BOTH, "high_first", "take_profit", 110.0),
    ],
)
def test_bracket_long_child_fills_and_sibling_cancelled(
    bar2: Bar,
    intrabar: str,
    want_tag: str,
    want_price: float,
    make_bars: Any,
    run_backtest: Any,
    at_day: Any,
) -> None:
    # entry market on bar 0 fills at bar 1's open 100; bar 1 spans both children's prices
    rows = [NEUTRAL, BOTH, bar2, NEUTRAL, BOTH]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["b"] = s.buy_bracket("A", 10, stop_loss=95.0, take_profit=110.0)

    result, strat = run_backtest(_bars(rows, make_bars), on_bar, intrabar=intrabar)
    entry, stop, target = strat.state["b"]
    filled, other = (stop, target) if want_tag == "stop_loss" else (target, stop)
    assert _fills(result) == [
        (_day(1), "buy", 10.0, 100.0, None),
        (_day(2), "sell", 10.0, want_price, want_tag),
    ]
    assert entry.status is OrderStatus.FILLED and filled.status is OrderStatus.FILLED
    assert other.status is OrderStatus.CANCELLED
    assert [(o.order_id, r) for o, r in strat.cancelled] == [
        (other.order_id, f"cancelled: OCO sibling order {filled.order_id} filled")
    ]
    trade = result.trades_df.row(0, named=True)
    assert (trade["entry_price"], trade["exit_price"], trade["exit_reason"]) == (
        100.0,
        want_price,
        want_tag,
    )
    check_order_reports(result, strat)


def test_bracket_children_never_fill_on_entry_fill_bar(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # bar 1 fills the entry at its open 100 and trades through 95 and 110; bars 2-3 touch
    # neither, so both children are still working at the end
    rows = [NEUTRAL, BOTH, NEUTRAL, NEUTRAL]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["b"] = s.buy_bracket("A", 10, stop_loss=95.0, take_profit=110.0)

    result, strat = run_backtest(_bars(rows, make_bars), on_bar)
    entry, stop, target = strat.state["b"]
    assert _fills(result) == [(_day(1), "buy", 10.0, 100.0, None)]
    assert entry.status is OrderStatus.FILLED
    assert stop.status is OrderStatus.PENDING and target.status is OrderStatus.PENDING
    assert _events(result, stop) == [(_day(0), "submitted"), (_day(1), "activated")]
    assert stop.quantity == 10.0 and target.quantity == 10.0


def test_bracket_with_limit_entry_protects_from_bar_after_entry(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # entry buy limit 98 fills on bar 2 (low 94); bar 2 also trades through the stop 95,
    # which only works from bar 3: bar 3 (96, 97, 94, 95) fills it at 95
    rows = [NEUTRAL, NEUTRAL, (100.0, 101.0, 94.0, 96.0), (96.0, 97.0, 94.0, 95.0), NEUTRAL]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 1):
            s.buy_bracket("A", 10, stop_loss=95.0, take_profit=110.0, limit_price=98.0)

    result, strat = run_backtest(_bars(rows, make_bars), on_bar)
    assert _fills(result) == [
        (_day(2), "buy", 10.0, 98.0, None),
        (_day(3), "sell", 10.0, 95.0, "stop_loss"),
    ]
    assert result.trades_df["pnl_gross"].to_list() == [10 * (95.0 - 98.0)]
    check_order_reports(result, strat)


def test_bracket_short_conservative_bar_touching_both_fills_stop(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # short 10 at 100; buy stop 105 / buy limit 90. Bar 2 (100, 106, 89, 100): a buy sees
    # the high first under "conservative" -> the stop fills at 105, the target is cancelled
    rows = [NEUTRAL, NEUTRAL, (100.0, 106.0, 89.0, 100.0), NEUTRAL]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["b"] = s.sell_bracket("A", 10, stop_loss=105.0, take_profit=90.0)

    result, strat = run_backtest(_bars(rows, make_bars), on_bar, account="margin")
    _, stop, target = strat.state["b"]
    assert stop.status is OrderStatus.FILLED
    assert _fills(result) == [
        (_day(1), "sell", 10.0, 100.0, None),
        (_day(2), "buy", 10.0, 105.0, "stop_loss"),
    ]
    assert target.status is OrderStatus.CANCELLED
    assert result.trades_df["exit_reason"].to_list() == ["stop_loss"]
    check_order_reports(result, strat)


# --- OCO / OTO ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("bar1", "want_tag", "want_price"),
    [
        # only the dip is reached on bar 1; bar 2 then reaches 105, but the breakout is gone
        ((100.0, 101.0, 94.0, 96.0), "dip", 95.0),
        # bar 1 reaches both; the buy path 100 -> 106 -> 94 meets the stop 105 first
        ((100.0, 106.0, 94.0, 100.0), "breakout", 105.0),
    ],
)
def test_oco_first_fill_cancels_the_other(
    bar1: Bar,
    want_tag: str,
    want_price: float,
    make_bars: Any,
    run_backtest: Any,
    at_day: Any,
) -> None:
    rows = [NEUTRAL, bar1, (96.0, 106.0, 94.0, 105.0), NEUTRAL]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["g"] = s.submit_oco(
                Order("A", "buy", 10, "limit", limit_price=95.0, tag="dip"),
                Order("A", "buy", 10, "stop", stop_price=105.0, tag="breakout"),
            )

    result, strat = run_backtest(_bars(rows, make_bars), on_bar)
    dip, breakout = strat.state["g"]
    filled, other = (dip, breakout) if want_tag == "dip" else (breakout, dip)
    assert _fills(result) == [(_day(1), "buy", 10.0, want_price, want_tag)]
    assert other.status is OrderStatus.CANCELLED
    assert [(o, r) for o, r in strat.cancelled] == [
        (other, f"cancelled: OCO sibling order {filled.order_id} filled")
    ]
    check_order_reports(result, strat)


def test_oco_tie_at_the_open_goes_to_the_stop(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # bar 1 opens 100: a buy limit 101 and a buy stop 99 are both marketable at the open
    # (time 0 on the path); the tie goes to the stop, which fills at 100 + slippage 0.5
    rows = [NEUTRAL, NEUTRAL, NEUTRAL]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["g"] = s.submit_oco(
                Order("A", "buy", 10, "limit", limit_price=101.0, tag="limit"),
                Order("A", "buy", 10, "stop", stop_price=99.0, tag="stop"),
            )

    result, strat = run_backtest(_bars(rows, make_bars), on_bar, slippage=FixedSlippage(0.5))
    limit, _ = strat.state["g"]
    assert _fills(result) == [(_day(1), "buy", 10.0, 100.5, "stop")]
    assert limit.status is OrderStatus.CANCELLED
    check_order_reports(result, strat)


def test_oto_child_works_only_after_parent_filled(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # parent buy limit 95, child sell limit 105. Bar 1 reaches 106 but the parent has not
    # filled (low 99); bar 2 fills the parent at 95; bar 3 reaches 106 -> child at 105
    rows = [NEUTRAL, (100.0, 106.0, 99.0, 104.0), (100.0, 101.0, 94.0, 97.0)]
    rows += [(100.0, 106.0, 99.0, 104.0), NEUTRAL]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["p"] = s.submit_oto(
                Order("A", "buy", 10, "limit", limit_price=95.0, tag="entry"),
                Order("A", "sell", 10, "limit", limit_price=105.0, tag="exit"),
            )

    result, strat = run_backtest(_bars(rows, make_bars), on_bar)
    parent, child = strat.state["p"]
    assert parent.status is OrderStatus.FILLED
    assert _fills(result) == [
        (_day(2), "buy", 10.0, 95.0, "entry"),
        (_day(3), "sell", 10.0, 105.0, "exit"),
    ]
    assert [e for _, e in _events(result, child)] == ["submitted", "activated", "filled"]
    assert strat.rejected == []


def test_oto_parent_cancelled_unfilled_cancels_child(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    rows = [NEUTRAL, NEUTRAL, NEUTRAL, (100.0, 101.0, 85.0, 90.0), NEUTRAL]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["p"] = s.submit_oto(
                Order("A", "buy", 10, "limit", limit_price=90.0),
                Order("A", "sell", 10, "limit", limit_price=105.0),
            )
        if at_day(e, 2):
            s.cancel_order(s.state["p"][0])

    result, strat = run_backtest(_bars(rows, make_bars), on_bar)
    parent, child = strat.state["p"]
    assert result.fills_df.height == 0  # bar 3 reaches 90, but the parent is gone
    assert parent.status is OrderStatus.CANCELLED and child.status is OrderStatus.CANCELLED
    got = sorted(((o.order_id, r) for o, r in strat.cancelled), key=lambda x: x[0])
    assert got == [
        (parent.order_id, "cancelled by the strategy"),
        (child.order_id, f"cancelled: parent order {parent.order_id} ended unfilled (cancelled)"),
    ]
    check_order_reports(result, strat)


# --- cancel / replace -----------------------------------------------------------------------
def test_cancel_order_stops_fill_and_calls_on_order_cancelled(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    rows = [NEUTRAL, NEUTRAL, (100.0, 101.0, 94.0, 96.0), NEUTRAL]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["o"] = s.buy("A", 10, limit_price=95.0)
        if at_day(e, 1):
            s.state["first"] = s.cancel_order(s.state["o"])
            s.state["second"] = s.cancel_order(s.state["o"])

    result, strat = run_backtest(_bars(rows, make_bars), on_bar)
    order = strat.state["o"]
    assert (strat.state["first"], strat.state["second"]) == (True, False)
    assert result.fills_df.height == 0
    assert order.status is OrderStatus.CANCELLED
    assert strat.cancelled == [(order, "cancelled by the strategy")]
    assert _events(result, order) == [(_day(0), "submitted"), (_day(1), "cancelled")]
    check_order_reports(result, strat)


def test_replace_order_keeps_id_and_new_price_applies_from_next_bar(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # buy limit 90 on bar 0. On bar 1 (low 96) it is replaced to 97: bar 1 was already
    # matched at the old price, so the first fill at 97 is on bar 2 (low 96.5 <= 97)
    rows = [NEUTRAL, (100.0, 101.0, 96.0, 99.0), (99.0, 100.0, 96.5, 98.0), NEUTRAL]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["o"] = s.buy("A", 10, limit_price=90.0)
            s.state["id"] = s.state["o"].order_id
        if at_day(e, 1):
            s.state["r"] = s.replace_order(s.state["o"], limit_price=97.0, quantity=4)

    result, strat = run_backtest(_bars(rows, make_bars), on_bar)
    order = strat.state["o"]
    assert strat.state["r"] is order and order.order_id == strat.state["id"]
    assert (order.limit_price, order.quantity) == (97.0, 4.0)
    assert _fills(result) == [(_day(2), "buy", 4.0, 97.0, None)]
    assert result.fills_df["order_id"].to_list() == [strat.state["id"]]
    assert _events(result, order) == [
        (_day(0), "submitted"),
        (_day(1), "replaced"),
        (_day(2), "filled"),
    ]


@pytest.mark.parametrize(
    "changes",
    [
        {"limit_price": -5.0},  # not a positive price
        {"quantity": 0.0},
        {"trail_amount": 1.0},  # not a trailing stop
        {"side": "sell"},  # not a replaceable field
        {"time_in_force": "gtd"},  # GTD without expire_at
        {"stop_price": 95.0},  # a limit order has no stop price
    ],
    ids=["price", "quantity", "trail", "side", "gtd", "stop_on_limit"],
)
def test_replace_order_invalid_raises_and_leaves_order_unchanged(
    changes: dict[str, Any], make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # the unchanged buy limit 90 still fills on bar 3 (low 89)
    rows = [NEUTRAL, NEUTRAL, NEUTRAL, (100.0, 101.0, 89.0, 95.0)]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["o"] = s.buy("A", 10, limit_price=90.0)
        if at_day(e, 1):
            try:
                s.replace_order(s.state["o"], **changes)
            except ValueError as exc:
                s.state["error"] = str(exc)

    result, strat = run_backtest(_bars(rows, make_bars), on_bar)
    order = strat.state["o"]
    assert "replace_order" in strat.state.get("error", "")
    assert (order.limit_price, order.stop_price, order.quantity) == (90.0, None, 10.0)
    assert order.order_type is OrderType.LIMIT and order.trail_amount is None
    assert _fills(result) == [(_day(3), "buy", 10.0, 90.0, None)]
    assert "replaced" not in result.orders_df["event"].to_list()


def test_replace_order_filled_order_raises(make_bars: Any, run_backtest: Any, at_day: Any) -> None:
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["o"] = s.buy("A", 10)
        if at_day(e, 2):
            with pytest.raises(ValueError, match="not working"):
                s.replace_order(s.state["o"], quantity=20)
            s.state["checked"] = True

    result, strat = run_backtest(_bars([NEUTRAL] * 4, make_bars), on_bar)
    assert strat.state["checked"] is True
    assert result.fills_df["quantity"].to_list() == [10.0]


def test_replace_trailing_amount_keeps_reference_and_applies_next_bar(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # sell trail 5 from close 100 (level 95). Bar 2 high 101 -> ref 101, level 96. On bar 2
    # the trail is replaced by 2 -> level 101 - 2 = 99; bar 3 (100 -> 98.5) fills at 99
    rows = [NEUTRAL, NEUTRAL, NEUTRAL, (100.0, 101.0, 98.5, 100.0), NEUTRAL]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.buy("A", 10)
        if at_day(e, 1):
            s.state["o"] = s.sell("A", 10, trail_amount=5.0)
        if at_day(e, 2):
            s.state["before"] = s.state["o"].trail_level
            s.replace_order(s.state["o"], trail_amount=2.0)
            s.state["after"] = s.state["o"].trail_level

    result, strat = run_backtest(_bars(rows, make_bars), on_bar)
    assert (strat.state["before"], strat.state["after"]) == (101.0 - 5.0, 101.0 - 2.0)
    assert _fills(result)[1:] == [(_day(3), "sell", 10.0, 99.0, None)]


# --- ordering within a bar ------------------------------------------------------------------
def test_exit_fills_before_entry_on_same_bar_freeing_cash(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # cash 1000: buy 9 at 100 -> cash 100. On bar 2 (100, 101, 97, 100) a buy limit 100.5
    # (entry, marketable at the open 100, time 0) and a sell stop 98 (exit, reached at
    # time (100 - 98) / 3 on the sell path) both fill. Exit first: cash 100 + 9 * 98 = 982,
    # then buy 9 * 100 = 900 -> cash 82. Entry first would need 900 with 100 in cash.
    rows = [NEUTRAL, NEUTRAL, (100.0, 101.0, 97.0, 100.0), NEUTRAL]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.buy("A", 9)
        if at_day(e, 1):
            s.buy("A", 9, limit_price=100.5, tag="entry")
            s.sell("A", 9, stop_price=98.0, tag="exit")

    result, strat = run_backtest(_bars(rows, make_bars), on_bar, initial_cash=1_000.0)
    assert strat.rejected == []
    assert _fills(result)[1:] == [
        (_day(2), "sell", 9.0, 98.0, "exit"),
        (_day(2), "buy", 9.0, 100.0, "entry"),
    ]
    assert result.portfolio_df["cash"][-1] == pytest.approx(1_000.0 - 900 + 882 - 900, abs=1e-9)


# --- rejections -----------------------------------------------------------------------------
REJECTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("stop_limit_no_limit", {"stop_price": 105.0, "order_type": "stop_limit"}, "limit_price"),
    ("trail_both", {"trail_amount": 1.0, "trail_percent": 0.05}, "exactly one"),
    ("trail_pct_range", {"trail_percent": 1.5}, "trail_percent"),
    ("trail_amount_negative", {"trail_amount": -1.0}, "trail_amount"),
    ("gtd_without_expiry", {"limit_price": 95.0, "time_in_force": "gtd"}, "expire_at"),
    ("bad_expiry", {"limit_price": 95.0, "expire_at": "not a date"}, "expire_at"),
]


@pytest.mark.parametrize(
    ("kwargs", "needle"), [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_invalid_order_rejected_with_reason_in_callback_and_orders_df(
    kwargs: dict[str, Any], needle: str, make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["o"] = s.buy("A", 10, **kwargs)

    result, strat = run_backtest(_bars([NEUTRAL] * 3, make_bars), on_bar)
    order = strat.state["o"]
    assert order.status is OrderStatus.REJECTED
    assert len(strat.rejected) == 1 and strat.rejected[0][0] is order
    assert needle in strat.rejected[0][1]
    assert result.fills_df.height == 0
    check_order_reports(result, strat)


def test_bracket_with_invalid_child_rejects_entry_with_reason(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["b"] = s.buy_bracket("A", 10, stop_loss=-1.0, take_profit=110.0)

    result, strat = run_backtest(_bars([NEUTRAL] * 3, make_bars), on_bar)
    entry, _, _ = strat.state["b"]
    assert entry.status is OrderStatus.REJECTED
    assert [o for o, _ in strat.rejected] == [entry]
    assert "child order invalid" in strat.rejected[0][1]
    assert result.fills_df.height == 0
    check_order_reports(result, strat)


def test_sell_stop_without_position_in_cash_account_rejected_at_fill(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    rows = [NEUTRAL, NEUTRAL, (100.0, 101.0, 94.0, 96.0), NEUTRAL]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 1):
            s.state["o"] = s.sell("A", 10, stop_price=95.0)

    result, strat = run_backtest(_bars(rows, make_bars), on_bar)
    order = strat.state["o"]
    assert order.status is OrderStatus.REJECTED
    assert "nothing to sell" in strat.rejected[0][1]
    rejected = result.orders_df.filter(pl.col("event") == "rejected")
    assert rejected["timestamp"].to_list() == [_day(2)]  # rejected when it would have filled
    check_order_reports(result, strat)
