"""Time in force end to end: DAY, IOC, FOK and GTD against hand-built bars.

Intraday tests use two sessions of 30-minute bars (Mon 4 and Tue 5 March 2024, 13 bars
each, 09:30 to 15:30); the others use daily bars from 2024-01-02. Bars are
``(open, high, low, close)``; volume is 1000 per bar unless stated.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from ml4t.backtest import Order, OrderStatus, TimeInForce
from ml4t.backtest.testing import check_order_reports

Bar = tuple[float, float, float, float]
NEUTRAL: Bar = (100.0, 101.0, 99.0, 100.0)
DIP: Bar = (100.0, 101.0, 94.0, 96.0)  # reaches a buy limit at 95
START = datetime(2024, 1, 2)
DAYS = (4, 5)  # March 2024
PER_DAY = 13


def _bars(rows: list[Bar], make_bars: Any, **kw: Any) -> pl.DataFrame:
    o, h, lo, c = (list(x) for x in zip(*rows, strict=True))
    return make_bars(c, opens=o, highs=h, lows=lo, **kw)


def _day(k: int) -> datetime:
    return START + timedelta(days=k)


def _ts(day: int, k: int) -> datetime:
    """Return the timestamp of the ``k``-th 30-minute bar of 4 or 5 March."""
    return datetime(2024, 3, day, 9, 30) + timedelta(minutes=30 * k)


def _intraday(make_bars: Any, special: dict[tuple[int, int], Bar], **kw: Any) -> pl.DataFrame:
    keys = [(d, k) for d in DAYS for k in range(PER_DAY)]
    rows = [special.get(key, NEUTRAL) for key in keys]
    return _bars(rows, make_bars, timestamps=[_ts(d, k) for d, k in keys], **kw)


def _fills(result: Any) -> list[tuple[Any, ...]]:
    return result.fills_df.select("timestamp", "side", "quantity", "price").rows()


def _events(result: Any, order: Order) -> list[tuple[datetime, str]]:
    log = result.orders_df.filter(pl.col("order_id") == order.order_id)
    return log.select("timestamp", "event").rows()


# --- DAY ------------------------------------------------------------------------------------
def test_day_limit_unfilled_expires_at_end_of_session(make_bars: Any, run_backtest: Any) -> None:
    # buy limit 95 DAY at 10:00 on day 1; day 1 never trades below 99; day 2's 10:00 bar
    # dips to 94, but the order expired at day 1's last bar (15:30)
    df = _intraday(make_bars, {(5, 1): DIP})

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if e.timestamp == _ts(4, 1):
            s.state["o"] = s.buy("A", 10, limit_price=95.0, time_in_force="day")

    result, strat = run_backtest(df, on_bar)
    order = strat.state["o"]
    assert result.fills_df.height == 0
    assert order.status is OrderStatus.EXPIRED
    assert strat.cancelled == [(order, "expired: DAY order not filled by the end of its session")]
    assert _events(result, order) == [(_ts(4, 1), "submitted"), (_ts(4, 12), "expired")]
    check_order_reports(result, strat)


def test_day_limit_reached_in_session_fills(make_bars: Any, run_backtest: Any) -> None:
    # the 12:30 bar (k = 6) of day 1 dips to 94 -> fills at 95, nothing expires
    df = _intraday(make_bars, {(4, 6): DIP})

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if e.timestamp == _ts(4, 1):
            s.state["o"] = s.buy("A", 10, limit_price=95.0, time_in_force=TimeInForce.DAY)

    result, strat = run_backtest(df, on_bar)
    assert _fills(result) == [(_ts(4, 6), "buy", 10.0, 95.0)]
    assert strat.state["o"].status is OrderStatus.FILLED
    assert strat.cancelled == []


def test_day_order_partially_filled_remainder_expires_at_session_end(
    make_bars: Any, run_backtest: Any
) -> None:
    # volume_limit 0.1 x volume 1000 = 100 per bar. A DAY market buy of 250 placed at 14:30
    # (k = 10) fills 100 at 15:00 and 100 at 15:30 (both opens 100); the last 50 expire
    df = _intraday(make_bars, {})

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if e.timestamp == _ts(4, 10):
            s.state["o"] = s.buy("A", 250, time_in_force="day")

    result, strat = run_backtest(df, on_bar, volume_limit=0.1)
    order = strat.state["o"]
    assert _fills(result) == [(_ts(4, 11), "buy", 100.0, 100.0), (_ts(4, 12), "buy", 100.0, 100.0)]
    assert order.status is OrderStatus.EXPIRED
    assert order.filled_quantity == 200.0
    assert [e for _, e in _events(result, order)] == [
        "submitted",
        "partially_filled",
        "partially_filled",
        "expired",
    ]
    assert result.portfolio_df["num_positions"][-1] == 1
    assert strat.cancelled == [(order, "expired: DAY order not filled by the end of its session")]
    check_order_reports(result, strat)


def test_day_order_on_daily_bars_works_for_next_bar_only(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # placed on bar 0: bar 1 (low 96) misses the limit 95, the order expires at the end of
    # bar 1's session, bar 2's dip to 94 finds nothing working
    rows = [NEUTRAL, (100.0, 101.0, 96.0, 97.0), DIP, NEUTRAL]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["o"] = s.buy("A", 10, limit_price=95.0, time_in_force="day")

    result, strat = run_backtest(_bars(rows, make_bars), on_bar)
    assert result.fills_df.height == 0
    assert _events(result, strat.state["o"]) == [(_day(0), "submitted"), (_day(1), "expired")]
    check_order_reports(result, strat)


# --- IOC ------------------------------------------------------------------------------------
def test_ioc_partial_under_volume_limit_cancels_remainder(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # 0.1 x 1000 = 100 of the 250 fill at bar 1's open 100; the other 150 are cancelled
    rows = [NEUTRAL] * 4

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["o"] = s.buy("A", 250, time_in_force="ioc")

    result, strat = run_backtest(_bars(rows, make_bars), on_bar, volume_limit=0.1)
    order = strat.state["o"]
    assert _fills(result) == [(_day(1), "buy", 100.0, 100.0)]
    assert order.status is OrderStatus.CANCELLED
    assert (order.filled_quantity, order.remaining_quantity) == (100.0, 150.0)
    assert strat.cancelled == [
        (order, "cancelled: IOC remainder 150 not filled on its first bar"),
    ]
    assert _events(result, order) == [
        (_day(0), "submitted"),
        (_day(1), "partially_filled"),
        (_day(1), "cancelled"),
    ]
    assert result.trades_df["quantity"].to_list() == [100.0]
    check_order_reports(result, strat)


def test_ioc_limit_not_marketable_is_cancelled_on_first_bar(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # buy limit 95 IOC: bar 1 low 96 misses -> cancelled; bar 2 dips to 94, nothing fills
    rows = [NEUTRAL, (100.0, 101.0, 96.0, 97.0), DIP, NEUTRAL]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["o"] = s.buy("A", 10, limit_price=95.0, time_in_force="ioc")

    result, strat = run_backtest(_bars(rows, make_bars), on_bar)
    order = strat.state["o"]
    assert result.fills_df.height == 0
    assert order.status is OrderStatus.CANCELLED
    assert strat.cancelled == [(order, "cancelled: IOC order not marketable on its first bar")]
    assert _events(result, order) == [(_day(0), "submitted"), (_day(1), "cancelled")]
    check_order_reports(result, strat)


def test_ioc_limit_marketable_fills_completely(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    rows = [NEUTRAL, DIP, NEUTRAL]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["o"] = s.buy("A", 10, limit_price=95.0, time_in_force="ioc")

    result, strat = run_backtest(_bars(rows, make_bars), on_bar)
    assert _fills(result) == [(_day(1), "buy", 10.0, 95.0)]
    assert strat.state["o"].status is OrderStatus.FILLED
    assert strat.cancelled == []


# --- FOK ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("quantity", "want_fills"),
    [
        (150.0, []),  # 150 > 0.1 x 1000 = 100: cancelled, nothing fills
        (100.0, [(_day(1), "buy", 100.0, 100.0)]),  # exactly the cap: all at bar 1's open
    ],
)
def test_fok_under_volume_limit_fills_all_or_is_cancelled(
    quantity: float,
    want_fills: list[tuple[Any, ...]],
    make_bars: Any,
    run_backtest: Any,
    at_day: Any,
) -> None:
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["o"] = s.buy("A", quantity, time_in_force="fok")

    result, strat = run_backtest(_bars([NEUTRAL] * 4, make_bars), on_bar, volume_limit=0.1)
    order = strat.state["o"]
    assert _fills(result) == want_fills
    if want_fills:
        assert order.status is OrderStatus.FILLED
        assert strat.cancelled == []
    else:
        assert order.status is OrderStatus.CANCELLED and order.filled_quantity == 0.0
        assert strat.cancelled == [
            (order, "cancelled: FOK order for 150 but the volume limit allows 100 on this bar")
        ]
        assert _events(result, order) == [(_day(0), "submitted"), (_day(1), "cancelled")]
    check_order_reports(result, strat)


def test_fok_limit_not_marketable_is_cancelled(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    rows = [NEUTRAL, (100.0, 101.0, 96.0, 97.0), DIP]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["o"] = s.buy("A", 10, limit_price=95.0, time_in_force="fok")

    result, strat = run_backtest(_bars(rows, make_bars), on_bar)
    assert result.fills_df.height == 0
    assert strat.cancelled == [
        (strat.state["o"], "cancelled: FOK order not marketable on its first bar")
    ]
    check_order_reports(result, strat)


def test_fok_is_rejected_not_resized_when_cash_is_short(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # cash 1000 buys 10 at 100; a FOK for 20 must not be shrunk by cash_policy="resize"
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["o"] = s.buy("A", 20, time_in_force="fok")

    result, strat = run_backtest(
        _bars([NEUTRAL] * 3, make_bars), on_bar, initial_cash=1_000.0, cash_policy="resize"
    )
    assert result.fills_df.height == 0
    assert strat.state["o"].status is OrderStatus.REJECTED
    assert "insufficient cash" in strat.rejected[0][1]
    check_order_reports(result, strat)


# --- GTD ------------------------------------------------------------------------------------
@pytest.mark.parametrize("expire_at", [date(2024, 1, 4), "2024-01-04"], ids=["date", "iso"])
@pytest.mark.parametrize(
    ("dip_day", "filled"),
    [(2, True), (3, False)],  # 4 Jan is bar 2 (still working), 5 Jan is bar 3 (expired)
)
def test_gtd_date_works_through_that_day_and_expires_the_bar_after(
    expire_at: Any,
    dip_day: int,
    filled: bool,
    make_bars: Any,
    run_backtest: Any,
    at_day: Any,
) -> None:
    rows = [NEUTRAL] * 5
    rows[dip_day] = DIP

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["o"] = s.buy("A", 10, limit_price=95.0, expire_at=expire_at)

    result, strat = run_backtest(_bars(rows, make_bars), on_bar)
    order = strat.state["o"]
    assert order.time_in_force is TimeInForce.GTD
    if filled:
        assert _fills(result) == [(_day(2), "buy", 10.0, 95.0)]
        assert order.status is OrderStatus.FILLED
        assert strat.cancelled == []
    else:
        assert result.fills_df.height == 0
        assert order.status is OrderStatus.EXPIRED
        assert strat.cancelled == [
            (order, f"expired: GTD order past its expire_at {expire_at}"),
        ]
        assert _events(result, order) == [(_day(0), "submitted"), (_day(3), "expired")]
    check_order_reports(result, strat)


@pytest.mark.parametrize(
    ("expire_at", "dip", "filled", "expired_at"),
    [
        # works through the 11:00 bar (k = 3) itself
        (datetime(2024, 3, 4, 11, 0), (4, 3), True, None),
        # the 11:30 bar (k = 4) is after expire_at: expired there, no fill
        (datetime(2024, 3, 4, 11, 0), (4, 4), False, _ts(4, 4)),
        # an expiry on the next morning carries the order over the night
        (datetime(2024, 3, 5, 10, 0), (5, 1), True, None),
        (datetime(2024, 3, 5, 10, 0), (5, 2), False, _ts(5, 2)),
    ],
)
def test_gtd_datetime_works_through_that_time_and_expires_the_bar_after(
    expire_at: datetime,
    dip: tuple[int, int],
    filled: bool,
    expired_at: datetime | None,
    make_bars: Any,
    run_backtest: Any,
) -> None:
    df = _intraday(make_bars, {dip: DIP})

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if e.timestamp == _ts(4, 0):
            s.state["o"] = s.buy(
                "A", 10, limit_price=95.0, time_in_force="gtd", expire_at=expire_at
            )

    result, strat = run_backtest(df, on_bar)
    order = strat.state["o"]
    if filled:
        assert _fills(result) == [(_ts(*dip), "buy", 10.0, 95.0)]
        assert strat.cancelled == []
    else:
        assert result.fills_df.height == 0
        assert order.status is OrderStatus.EXPIRED
        assert _events(result, order) == [(_ts(4, 0), "submitted"), (expired_at, "expired")]
        assert len(strat.cancelled) == 1 and "expired: GTD" in strat.cancelled[0][1]
    check_order_reports(result, strat)


def test_gtd_expired_parent_cancels_its_oto_child(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # parent buy limit 95 good through 3 Jan (bar 1); expired at bar 2 (4 Jan) unfilled, so
    # its child is cancelled too; bar 3's dip fills nothing
    rows = [NEUTRAL, NEUTRAL, NEUTRAL, DIP, NEUTRAL]

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["p"] = s.submit_oto(
                Order("A", "buy", 10, "limit", 95.0, None, "gtd", expire_at=date(2024, 1, 3)),
                Order("A", "sell", 10, "limit", limit_price=105.0),
            )

    result, strat = run_backtest(_bars(rows, make_bars), on_bar)
    parent, child = strat.state["p"]
    assert result.fills_df.height == 0
    assert parent.status is OrderStatus.EXPIRED
    assert child.status is OrderStatus.CANCELLED
    got = sorted(((o.order_id, r) for o, r in strat.cancelled), key=lambda x: x[0])
    assert got == [
        (parent.order_id, "expired: GTD order past its expire_at 2024-01-03"),
        (child.order_id, f"cancelled: parent order {parent.order_id} ended unfilled (expired)"),
    ]
    assert _events(result, child)[-1] == (_day(2), "cancelled")
    check_order_reports(result, strat)


def test_gtd_order_replaced_to_gtc_no_longer_expires(
    make_bars: Any, run_backtest: Any, at_day: Any
) -> None:
    # good through 3 Jan (bar 1), replaced on bar 1 by a GTC order: still working on 5 Jan
    # (bar 3), where the dip fills it
    rows = [NEUTRAL] * 5
    rows[3] = DIP

    def on_bar(s: Any, e: Any, c: Any) -> None:
        if at_day(e, 0):
            s.state["o"] = s.buy("A", 10, limit_price=95.0, expire_at=date(2024, 1, 3))
        if at_day(e, 1):
            s.replace_order(s.state["o"], time_in_force="gtc", expire_at=None)

    result, strat = run_backtest(_bars(rows, make_bars), on_bar)
    order = strat.state["o"]
    assert order.time_in_force is TimeInForce.GTC
    assert _fills(result) == [(_day(3), "buy", 10.0, 95.0)]
    assert order.status is OrderStatus.FILLED
    assert strat.cancelled == []
    check_order_reports(result, strat)
