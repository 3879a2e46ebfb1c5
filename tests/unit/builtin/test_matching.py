"""Unit tests of the intrabar path model: ``bar_path``, ``touch`` and ``match_order``.

Every expected time is written out as ``segment + fraction of the segment travelled`` on
the path ``(open, first extreme, second extreme, close)``.
"""

from __future__ import annotations

import math

import pytest

from ml4t.backtest import Order, OrderType
from ml4t.backtest.builtin.matching import INTRABAR_MODES, bar_path, match_order, touch

# one bar: open 100, high 106, low 94, close 100
OPEN, HIGH, LOW, CLOSE = 100.0, 106.0, 94.0, 100.0
BUY_PATH = (OPEN, HIGH, LOW, CLOSE)  # conservative buy: the adverse high first
SELL_PATH = (OPEN, LOW, HIGH, CLOSE)  # conservative sell: the adverse low first


def _order(side: str, kind: str, **kw: float) -> Order:
    return Order("A", side, 10, kind, **kw)


def _trailing(side: str, ref: float, **kw: float) -> Order:
    order = _order(side, "trailing_stop", **kw)
    order.trail_reference_price = ref  # the broker sets the reference at submission
    return order


# --- bar_path -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "side", "want"),
    [
        ("conservative", 1, BUY_PATH),
        ("conservative", -1, SELL_PATH),
        ("high_first", 1, BUY_PATH),
        ("high_first", -1, BUY_PATH),
        ("low_first", 1, SELL_PATH),
        ("low_first", -1, SELL_PATH),
    ],
)
def test_bar_path_mode_and_side_order_extremes(
    mode: str, side: int, want: tuple[float, float, float, float]
) -> None:
    assert bar_path(OPEN, HIGH, LOW, CLOSE, side, mode) == want


@pytest.mark.parametrize("side", [1, -1])
def test_bar_path_nearest_visits_closer_extreme_first(side: int) -> None:
    # open 100: high 102 is 2 away, low 95 is 5 away -> high first, whatever the side
    assert bar_path(100.0, 102.0, 95.0, 99.0, side, "nearest") == (100.0, 102.0, 95.0, 99.0)
    # high 106 is 6 away, low 99 is 1 away -> low first
    assert bar_path(100.0, 106.0, 99.0, 101.0, side, "nearest") == (100.0, 99.0, 106.0, 101.0)


def test_bar_path_nearest_tie_falls_back_to_conservative() -> None:
    # high and low both 2 away from the open 100
    assert bar_path(100.0, 102.0, 98.0, 100.0, 1, "nearest") == (100.0, 102.0, 98.0, 100.0)
    assert bar_path(100.0, 102.0, 98.0, 100.0, -1, "nearest") == (100.0, 98.0, 102.0, 100.0)


def test_intrabar_modes_lists_the_five_modes() -> None:
    assert INTRABAR_MODES == ("conservative", "high_first", "low_first", "nearest", "close_only")


@pytest.mark.parametrize("side", [1, -1])
def test_bar_path_close_only_is_the_close_four_times(side: int) -> None:
    assert bar_path(100.0, 106.0, 99.0, 101.0, side, "close_only") == (101.0,) * 4


# --- touch ----------------------------------------------------------------------------------
def test_touch_rising_level_on_first_segment_returns_fraction_and_level() -> None:
    # 100 -> 106 reaches 103 half way: time 0 + (103 - 100) / (106 - 100) = 0.5
    assert touch(BUY_PATH, 0, OPEN, 103.0, up=True) == (0.5, 103.0)


def test_touch_falling_level_on_second_segment_returns_fraction_and_level() -> None:
    # 106 -> 94 reaches 95 after (106 - 95) / (106 - 94) = 11/12 of segment 1
    t, price = touch(BUY_PATH, 0, OPEN, 95.0, up=False)  # type: ignore[misc]
    assert t == pytest.approx(1 + 11 / 12, abs=1e-12)
    assert price == 95.0


def test_touch_start_already_through_level_returns_start_as_gap() -> None:
    # the open 100 is already <= 101: fills at the open, time 0
    assert touch(BUY_PATH, 0, OPEN, 101.0, up=False) == (0.0, 100.0)
    assert touch(BUY_PATH, 0, OPEN, 99.0, up=True) == (0.0, 100.0)


def test_touch_level_beyond_the_bar_returns_none() -> None:
    assert touch(BUY_PATH, 0, OPEN, 106.5, up=True) is None
    assert touch(BUY_PATH, 0, OPEN, 93.5, up=False) is None


def test_touch_level_equal_to_extreme_touches_at_segment_end() -> None:
    # 100 -> 106 reaches 106 at the end of segment 0: time 1.0
    assert touch(BUY_PATH, 0, OPEN, 106.0, up=True) == (1.0, 106.0)


def test_touch_from_mid_path_starts_at_given_segment_and_price() -> None:
    # start on segment 1 (106 -> 94) at price 104: 100 is reached after
    # (104 - 100) / (104 - 94) = 0.4 of the rest of segment 1 -> time 1.4
    t, price = touch(BUY_PATH, 1, 104.0, 100.0, up=False)  # type: ignore[misc]
    assert t == pytest.approx(1.4, abs=1e-12)
    assert price == 100.0


def test_touch_from_mid_path_ignores_earlier_segments() -> None:
    # from the low (end of segment 1, start price 94) the high 106 is already behind us;
    # segment 2 (94 -> 100) never reaches 103
    assert touch(BUY_PATH, 2, 94.0, 103.0, up=True) is None


# --- match_order: limit and stop ------------------------------------------------------------
def test_match_order_buy_limit_touched_fills_at_limit() -> None:
    got = match_order(_order("buy", "limit", limit_price=95.0), BUY_PATH)
    assert got is not None
    t, price, triggered = got
    assert t == pytest.approx(1 + 11 / 12, abs=1e-12)  # (106 - 95) / (106 - 94)
    assert (price, triggered) == (95.0, False)


def test_match_order_buy_limit_above_open_fills_at_better_open() -> None:
    assert match_order(_order("buy", "limit", limit_price=101.0), BUY_PATH) == (0.0, 100.0, False)


def test_match_order_sell_limit_touched_fills_at_limit() -> None:
    got = match_order(_order("sell", "limit", limit_price=105.0), SELL_PATH)
    assert got is not None
    # sell path 100 -> 94 -> 106: 105 is reached (105 - 94) / (106 - 94) = 11/12 into seg 1
    assert got[0] == pytest.approx(1 + 11 / 12, abs=1e-12)
    assert got[1:] == (105.0, False)


def test_match_order_limit_not_reached_returns_none() -> None:
    assert match_order(_order("buy", "limit", limit_price=93.0), BUY_PATH) is None
    assert match_order(_order("sell", "limit", limit_price=107.0), SELL_PATH) is None


def test_match_order_buy_stop_intrabar_fills_at_stop() -> None:
    # 100 -> 106 reaches 103 at (103 - 100) / 6 = 0.5
    assert match_order(_order("buy", "stop", stop_price=103.0), BUY_PATH) == (0.5, 103.0, False)


def test_match_order_buy_stop_gapped_through_fills_at_open() -> None:
    assert match_order(_order("buy", "stop", stop_price=99.0), BUY_PATH) == (0.0, 100.0, False)


def test_match_order_sell_stop_intrabar_fills_at_stop() -> None:
    # 100 -> 94 reaches 97 at (97 - 100) / (94 - 100) = 0.5
    assert match_order(_order("sell", "stop", stop_price=97.0), SELL_PATH) == (0.5, 97.0, False)


def test_match_order_sell_stop_gapped_through_fills_at_open() -> None:
    assert match_order(_order("sell", "stop", stop_price=101.0), SELL_PATH) == (0.0, 100.0, False)


def test_match_order_stop_not_reached_returns_none() -> None:
    assert match_order(_order("buy", "stop", stop_price=107.0), BUY_PATH) is None
    assert match_order(_order("sell", "stop", stop_price=93.0), SELL_PATH) is None


def test_match_order_conservative_sell_stop_precedes_sell_limit_on_bar_touching_both() -> None:
    stop = match_order(_order("sell", "stop", stop_price=95.0), SELL_PATH)
    limit = match_order(_order("sell", "limit", limit_price=105.0), SELL_PATH)
    assert stop is not None and limit is not None
    # stop: (95 - 100) / (94 - 100) = 5/6 on segment 0; limit: 1 + 11/12 on segment 1
    assert stop[0] == pytest.approx(5 / 6, abs=1e-12)
    assert stop[0] < limit[0]


# --- match_order: stop-limit ----------------------------------------------------------------
def test_match_order_stop_limit_with_limit_above_trigger_fills_at_stop() -> None:
    # buy stop 103 triggers at 0.5 (price 103); 103 <= limit 104 so the limit fills at once
    order = _order("buy", "stop_limit", stop_price=103.0, limit_price=104.0)
    assert match_order(order, BUY_PATH) == (0.5, 103.0, True)


def test_match_order_stop_limit_triggered_then_limit_later_in_bar() -> None:
    # buy stop 103 triggers at 0.5; then 106 -> 94 reaches the limit 98 after
    # (106 - 98) / (106 - 94) = 2/3 of segment 1 -> time 1 + 2/3
    order = _order("buy", "stop_limit", stop_price=103.0, limit_price=98.0)
    got = match_order(order, BUY_PATH)
    assert got is not None
    assert got[0] == pytest.approx(1 + 2 / 3, abs=1e-12)
    assert got[1:] == (98.0, True)


def test_match_order_stop_limit_triggered_but_limit_missed_rests() -> None:
    # buy stop 103 triggers; the bar never trades at or below 90 afterwards
    order = _order("buy", "stop_limit", stop_price=103.0, limit_price=90.0)
    got = match_order(order, BUY_PATH)
    assert got is not None
    t, price, triggered = got
    assert t == math.inf and math.isnan(price) and triggered is True


def test_match_order_stop_limit_gap_trigger_then_limit_on_path() -> None:
    # buy stop 99: the open 100 is through it (trigger at time 0, price 100); limit 99.5
    # is then reached on 106 -> 94 after (106 - 99.5) / 12 = 6.5/12 -> time 1 + 6.5/12
    order = _order("buy", "stop_limit", stop_price=99.0, limit_price=99.5)
    got = match_order(order, BUY_PATH)
    assert got is not None
    assert got[0] == pytest.approx(1 + 6.5 / 12, abs=1e-12)
    assert got[1:] == (99.5, True)


def test_match_order_stop_limit_not_triggered_returns_none() -> None:
    order = _order("buy", "stop_limit", stop_price=107.0, limit_price=108.0)
    assert match_order(order, BUY_PATH) is None


def test_match_order_sell_stop_limit_triggered_then_rises_to_limit() -> None:
    # sell path 100 -> 94 -> 106: stop 97 triggers at 0.5; from 97 the price falls to 94
    # then rises through the limit 98 after (98 - 94) / (106 - 94) = 1/3 of segment 1
    order = _order("sell", "stop_limit", stop_price=97.0, limit_price=98.0)
    got = match_order(order, SELL_PATH)
    assert got is not None
    assert got[0] == pytest.approx(1 + 1 / 3, abs=1e-12)
    assert got[1:] == (98.0, True)


def test_match_order_triggered_stop_limit_works_as_plain_limit() -> None:
    # path 100 -> 101 -> 97 -> 99 never reaches the stop 103, but a triggered order is a
    # limit at 98: reached (101 - 98) / (101 - 97) = 0.75 into segment 1
    order = _order("buy", "stop_limit", stop_price=103.0, limit_price=98.0)
    got = match_order(order, (100.0, 101.0, 97.0, 99.0), triggered=True)
    assert got is not None
    assert got[0] == pytest.approx(1.75, abs=1e-12)
    assert got[1:] == (98.0, False)


# --- match_order: trailing stop, market -----------------------------------------------------
def test_match_order_sell_trailing_amount_fills_at_ref_minus_amount() -> None:
    # level = 104 - 2 = 102; sell path 103 -> 101.5: reached (103 - 102) / 1.5 = 2/3
    order = _trailing("sell", 104.0, trail_amount=2.0)
    got = match_order(order, (103.0, 101.5, 103.5, 102.0))
    assert got is not None
    assert got[0] == pytest.approx(2 / 3, abs=1e-12)
    assert got[1:] == (102.0, False)


def test_match_order_buy_trailing_percent_fills_at_ref_times_one_plus_pct() -> None:
    # level = 100 * 1.1 = 110; buy path 100 -> 112 reaches it at 10/12
    order = _trailing("buy", 100.0, trail_percent=0.1)
    got = match_order(order, (100.0, 112.0, 95.0, 100.0))
    assert got is not None
    assert got[0] == pytest.approx(10 / 12, abs=1e-12)
    assert got[1] == pytest.approx(110.0, abs=1e-12)


def test_match_order_trailing_gapped_through_fills_at_open() -> None:
    # level 104 - 2 = 102 but the bar opens at 101
    order = _trailing("sell", 104.0, trail_amount=2.0)
    assert match_order(order, (101.0, 100.0, 103.0, 102.0)) == (0.0, 101.0, False)


def test_match_order_trailing_not_reached_returns_none() -> None:
    order = _trailing("sell", 104.0, trail_amount=2.0)
    assert match_order(order, (103.0, 102.5, 105.0, 104.0)) is None


@pytest.mark.parametrize("kind", [OrderType.MARKET, OrderType.MARKET_ON_OPEN])
def test_match_order_market_like_fills_at_open(kind: OrderType) -> None:
    assert match_order(_order("buy", kind.value), BUY_PATH) == (0.0, 100.0, False)
