"""ml4t.backtest against Backtrader's default BackBroker on the order types both offer.

Each test runs the same daily bars through ``Cerebro`` (default ``BackBroker``, no commission,
integer sizes) and through ml4t.backtest (default ``next_bar_open`` fills), and compares every
fill (bar, signed quantity, price) and the final cash and equity. Expected fills are also
written out by hand, so a test fails if both engines change together. Where the frameworks
legitimately differ, the test asserts our documented behaviour and the size of the
difference; ``docs/framework_differences.md`` gives the Backtrader source of each.

Orders are placed on bar 1 (after it closes) and first matched on bar 2, in both engines.
"""

from __future__ import annotations

from typing import Any

import pytest

# Backtrader comes with the validation extra; without it this module skips, saying so.
bt = pytest.importorskip(
    "backtrader", reason="backtrader is not installed: install the validation extra"
)

pytestmark = [pytest.mark.crossframework, pytest.mark.validation]

N = (100.0, 101.0, 99.0, 100.0)  # a quiet bar: open, high, low, close
ENTRY = (101.0, 103.0, 100.0, 102.0)  # bar 2: the market entry fills at its open, 101
HOLD = (102.0, 104.0, 101.0, 103.0)  # bar 3: touches neither 99 nor 110
STOP, TARGET = 99.0, 110.0


def _bracket(xf: Any, bar4: tuple[float, float, float, float], **ours: Any) -> tuple[Any, Any, Any]:
    """Run a 10-share bracket (market entry, stop 99, target 110) placed on bar 1."""
    bars = xf.Bars.from_rows([N, N, ENTRY, HOLD, bar4, N])

    def bt_bar(s: Any, i: int) -> None:
        if i == 1:
            s.buy_bracket(size=10, exectype=bt.Order.Market, stopprice=STOP, limitprice=TARGET)

    def our_bar(s: Any, i: int) -> None:
        if i == 1:
            s.buy_bracket("A", 10, stop_loss=STOP, take_profit=TARGET)

    return bars, xf.backtrader(bars, bt_bar), xf.ml4t(bars, our_bar, **ours)


# --- 1-4: brackets ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("bar4", "exit_price", "reason"),
    [
        # stop hit intrabar: open 103 > 99 >= low 97 -> the stop price
        ((103.0, 103.5, 97.0, 98.0), 99.0, "stop_loss"),
        # target hit intrabar: open 103 < 110 <= high 111 -> the limit price
        ((103.0, 111.0, 102.0, 110.0), 110.0, "take_profit"),
        # both touched (low 97, high 111): Backtrader tries the stop child first (created
        # first, pending queue is FIFO); ours intrabar="conservative" assumes the low first
        ((103.0, 111.0, 97.0, 105.0), 99.0, "stop_loss"),
        # gap through the stop: open 96 <= 99 -> both fill at the open
        ((96.0, 97.0, 95.0, 96.5), 96.0, "stop_loss"),
    ],
    ids=["stop", "target", "both_touched", "gap_through_stop"],
)
def test_bracket_market_parent_exit_matches_backtrader(
    xf: Any, bar4: tuple[float, float, float, float], exit_price: float, reason: str
) -> None:
    _, theirs, ours = _bracket(xf, bar4)
    # entry: 10 at bar 2's open 101; exit: 10 at bar 4
    want = [xf.Fill(2, 10.0, 101.0), xf.Fill(4, -10.0, exit_price)]
    xf.same_fills(theirs.fills, want)
    xf.same_fills(ours.fills, want)
    # cash = 10_000 - 10 * 101 + 10 * exit_price; flat at the end, so equity = cash
    cash = 10_000.0 - 1_010.0 + 10.0 * exit_price
    assert ours.cash == pytest.approx(cash, abs=1e-6)
    xf.same_books(ours, theirs)
    assert ours.raw[0].trades_df["exit_reason"].to_list() == [reason]


def test_bracket_both_touched_high_first_fills_target_unlike_backtrader(xf: Any) -> None:
    # intrabar="high_first" assumes open -> high -> low: the target (110) is reached before
    # the stop (99). Backtrader has no such option: it always fills the stop (FIFO).
    _, theirs, ours = _bracket(xf, (103.0, 111.0, 97.0, 105.0), intrabar="high_first")
    assert theirs.fills[-1].price == 99.0
    assert ours.fills[-1] == xf.Fill(4, -10.0, 110.0)
    # 110 - 99 = 11 per share, x 10 shares = 110 more cash
    assert ours.fills[-1].price - theirs.fills[-1].price == pytest.approx(11.0)
    assert ours.cash - theirs.cash == pytest.approx(110.0)


def test_bracket_gap_above_target_then_through_stop_fills_target_at_open_unlike_backtrader(
    xf: Any,
) -> None:
    # Bar 4 opens at 112, above the 110 target, then trades down to 97, through the 99 stop.
    # Backtrader tries the stop child first (bbroker.next FIFO queue; _try_exec_stop:
    # open 112 > 99, low 97 <= 99 -> fills at 99) and cancels the target. Ours follows the
    # bar's path, which starts at the open: the sell limit at 110 is marketable at 112
    # there, so the target fills at the open before the price reaches the stop.
    _, theirs, ours = _bracket(xf, (112.0, 113.0, 97.0, 100.0))
    xf.same_fills(theirs.fills, [xf.Fill(2, 10.0, 101.0), xf.Fill(4, -10.0, 99.0)])
    xf.same_fills(ours.fills, [xf.Fill(2, 10.0, 101.0), xf.Fill(4, -10.0, 112.0)])
    # 112 - 99 = 13 per share: ours 10_000 - 1_010 + 1_120 = 10_110, theirs ... + 990 = 9_980
    assert ours.fills[-1].price - theirs.fills[-1].price == pytest.approx(13.0)
    assert ours.cash == pytest.approx(10_110.0, abs=1e-6)
    assert theirs.cash == pytest.approx(9_980.0, abs=1e-6)
    assert ours.raw[0].trades_df["exit_reason"].to_list() == ["take_profit"]


def test_bracket_children_do_not_work_on_entry_bar_like_backtrader(xf: Any) -> None:
    # The entry bar (bar 2) trades from 97 to 112, through both children's prices; neither
    # works yet (Backtrader activates children in the broker cycle after the parent fills).
    # Bar 3 touches neither; bar 4 (open 103, low 98.5) hits the stop at 99.
    bars = xf.Bars.from_rows(
        [N, N, (101.0, 112.0, 97.0, 102.0), HOLD, (103.0, 104.0, 98.5, 99.0), N]
    )

    def bt_bar(s: Any, i: int) -> None:
        if i == 1:
            s.buy_bracket(size=10, exectype=bt.Order.Market, stopprice=STOP, limitprice=TARGET)

    def our_bar(s: Any, i: int) -> None:
        if i == 1:
            s.buy_bracket("A", 10, stop_loss=STOP, take_profit=TARGET)

    theirs, ours = xf.backtrader(bars, bt_bar), xf.ml4t(bars, our_bar)
    want = [xf.Fill(2, 10.0, 101.0), xf.Fill(4, -10.0, 99.0)]
    xf.same_fills(theirs.fills, want)
    xf.same_fills(ours.fills, want)
    xf.same_books(ours, theirs)


def test_bracket_limit_parent_matches_backtrader_default_bracket(xf: Any) -> None:
    # Backtrader's default bracket parent is a Limit order: buy limit 99.5, stop 97,
    # target 110. Bar 2 (open 100.5, low 99.2) fills the entry at 99.5; bar 5 (open 103,
    # high 112) fills the target at 110. Cash: 10_000 - 995 + 1_100 = 10_105.
    bars = xf.Bars.from_rows(
        [
            N,
            N,
            (100.5, 101.0, 99.2, 100.0),
            (99.8, 100.5, 99.0, 100.0),
            (100.0, 104.0, 99.5, 103.0),
            (103.0, 112.0, 102.0, 111.0),
            N,
        ]
    )

    def bt_bar(s: Any, i: int) -> None:
        if i == 1:
            s.buy_bracket(size=10, price=99.5, stopprice=97.0, limitprice=110.0)

    def our_bar(s: Any, i: int) -> None:
        if i == 1:
            s.buy_bracket("A", 10, limit_price=99.5, stop_loss=97.0, take_profit=110.0)

    theirs, ours = xf.backtrader(bars, bt_bar), xf.ml4t(bars, our_bar)
    want = [xf.Fill(2, 10.0, 99.5), xf.Fill(5, -10.0, 110.0)]
    xf.same_fills(theirs.fills, want)
    xf.same_fills(ours.fills, want)
    assert ours.cash == pytest.approx(10_105.0, abs=1e-6)
    xf.same_books(ours, theirs)


def test_short_bracket_margin_account_matches_backtrader(xf: Any) -> None:
    # sell_bracket: short 10 at bar 2's open 100, buy stop 103, buy limit 90. Bar 3
    # (high 103.5) fills the stop at 103. Backtrader credits short proceeds to cash
    # (shortcash=True); so does our margin account: 10_000 + 1_000 - 1_030 = 9_970.
    bars = xf.Bars.from_rows([N, N, (100.0, 101.0, 99.0, 100.5), (100.0, 103.5, 99.0, 103.0), N])

    def bt_bar(s: Any, i: int) -> None:
        if i == 1:
            s.sell_bracket(size=10, exectype=bt.Order.Market, stopprice=103.0, limitprice=90.0)

    def our_bar(s: Any, i: int) -> None:
        if i == 1:
            s.sell_bracket("A", 10, stop_loss=103.0, take_profit=90.0)

    theirs, ours = xf.backtrader(bars, bt_bar), xf.ml4t(bars, our_bar, account="margin")
    want = [xf.Fill(2, -10.0, 100.0), xf.Fill(3, 10.0, 103.0)]
    xf.same_fills(theirs.fills, want)
    xf.same_fills(ours.fills, want)
    assert ours.cash == pytest.approx(9_970.0, abs=1e-6)
    xf.same_books(ours, theirs)


# --- 5: trailing stops ------------------------------------------------------------------------
# Buy 10 on bar 1 (fills at bar 2's open, 100); on bar 2 (close 101) place a trailing sell.
TRAIL_ROWS = [
    N,
    N,
    (100.0, 102.0, 99.0, 101.0),
    (101.0, 105.0, 100.5, 104.0),
    (104.0, 108.0, 102.5, 106.0),
    (106.0, 107.0, 103.0, 104.0),
    (104.0, 105.0, 100.0, 101.0),
    N,
]


def _trail(xf: Any, bt_kw: dict[str, float], our_kw: dict[str, float], ref: str) -> Any:
    bars = xf.Bars.from_rows(TRAIL_ROWS)

    def bt_bar(s: Any, i: int) -> None:
        if i == 1:
            s.buy(size=10)
        if i == 2:
            s.sell(size=10, exectype=bt.Order.StopTrail, **bt_kw)

    def our_bar(s: Any, i: int) -> None:
        if i == 1:
            s.buy("A", 10)
        if i == 2:
            s.sell("A", 10, **our_kw)

    return xf.backtrader(bars, bt_bar), xf.ml4t(bars, our_bar, trail_reference=ref)


@pytest.mark.parametrize(
    ("bt_kw", "our_kw", "exit_price"),
    [
        # closes 101, 104, 106 -> levels 99, 102, 104: bar 3 low 100.5 > 99, bar 4 low
        # 102.5 > 102, bar 5 (open 106, low 103) <= 104 -> fills at 104
        ({"trailamount": 2.0}, {"trail_amount": 2.0}, 104.0),
        # levels 101*0.98 = 98.98, 104*0.98 = 101.92, 106*0.98 = 103.88 -> bar 5 at 103.88
        ({"trailpercent": 0.02}, {"trail_percent": 0.02}, 103.88),
    ],
    ids=["amount", "percent"],
)
def test_trailing_stop_close_reference_matches_backtrader(
    xf: Any, bt_kw: dict[str, float], our_kw: dict[str, float], exit_price: float
) -> None:
    theirs, ours = _trail(xf, bt_kw, our_kw, "close")
    want = [xf.Fill(2, 10.0, 100.0), xf.Fill(5, -10.0, exit_price)]
    xf.same_fills(theirs.fills, want)
    xf.same_fills(ours.fills, want)
    xf.same_books(ours, theirs)


@pytest.mark.parametrize(
    ("bt_kw", "our_kw", "ours_exit", "theirs_exit"),
    [
        # high_low: reference 101 -> bar 3 high 105 -> level 103; bar 4 low 102.5 <= 103
        # -> fills at 103 on bar 4; Backtrader (closes) fills at 104 on bar 5
        ({"trailamount": 2.0}, {"trail_amount": 2.0}, 103.0, 104.0),
        # high_low: 105 * 0.98 = 102.9 on bar 4; Backtrader 106 * 0.98 = 103.88 on bar 5
        ({"trailpercent": 0.02}, {"trail_percent": 0.02}, 102.9, 103.88),
    ],
    ids=["amount", "percent"],
)
def test_trailing_stop_high_low_reference_exits_earlier_than_backtrader(
    xf: Any,
    bt_kw: dict[str, float],
    our_kw: dict[str, float],
    ours_exit: float,
    theirs_exit: float,
) -> None:
    theirs, ours = _trail(xf, bt_kw, our_kw, "high_low")
    xf.same_fills(theirs.fills, [xf.Fill(2, 10.0, 100.0), xf.Fill(5, -10.0, theirs_exit)])
    xf.same_fills(ours.fills, [xf.Fill(2, 10.0, 100.0), xf.Fill(4, -10.0, ours_exit)])
    # one bar earlier and 1.00 (amount) / 0.98 (percent) lower per share
    assert ours.fills[-1].price - theirs.fills[-1].price == pytest.approx(ours_exit - theirs_exit)
    assert ours.cash - theirs.cash == pytest.approx(10 * (ours_exit - theirs_exit))


# --- 6: limit, stop and stop-limit orders -----------------------------------------------------
def _priced(
    xf: Any,
    side: str,
    kind: str,
    bar2: tuple[float, float, float, float],
    price: float,
    limit: float | None = None,
    bar3: tuple[float, float, float, float] = N,
) -> tuple[Any, Any]:
    """Place one priced 10-share order on bar 1 (a sell exits a long bought on bar 0)."""
    bars = xf.Bars.from_rows([N, N, bar2, bar3, N])
    exectype = {"limit": bt.Order.Limit, "stop": bt.Order.Stop, "stop_limit": bt.Order.StopLimit}

    def bt_bar(s: Any, i: int) -> None:
        if i == 0 and side == "sell":
            s.buy(size=10)
        if i == 1:
            kw: dict[str, Any] = {"size": 10, "exectype": exectype[kind], "price": price}
            if limit is not None:
                kw["plimit"] = limit
            getattr(s, side)(**kw)

    def our_bar(s: Any, i: int) -> None:
        if i == 0 and side == "sell":
            s.buy("A", 10)
        if i == 1:
            if kind == "limit":
                kw = {"limit_price": price}
            elif kind == "stop":
                kw = {"stop_price": price}
            else:
                kw = {"stop_price": price, "limit_price": limit}
            getattr(s, side)("A", 10, **kw)

    return xf.backtrader(bars, bt_bar), xf.ml4t(bars, our_bar)


PRICED = [
    # side, kind, level, bar 2 (o, h, l, c), fill price on bar 2
    ("buy", "limit", 99.0, (100.0, 101.0, 98.5, 100.0), 99.0),  # low 98.5 <= 99: the limit
    ("buy", "limit", 99.0, (98.0, 99.5, 97.0, 99.0), 98.0),  # open 98 <= 99: the open
    ("buy", "stop", 102.0, (100.0, 103.0, 99.5, 102.5), 102.0),  # high 103 >= 102: the stop
    ("buy", "stop", 102.0, (103.0, 104.0, 102.5, 103.5), 103.0),  # gap: the open
    ("sell", "limit", 101.0, (100.0, 102.0, 99.0, 101.5), 101.0),  # high 102 >= 101: limit
    ("sell", "limit", 101.0, (102.0, 103.0, 101.5, 102.0), 102.0),  # open 102 >= 101: open
    ("sell", "stop", 99.0, (100.0, 101.0, 98.0, 98.5), 99.0),  # low 98 <= 99: the stop
    ("sell", "stop", 99.0, (98.0, 99.0, 97.0, 98.0), 98.0),  # gap: the open
]


@pytest.mark.parametrize(("side", "kind", "level", "bar2", "fill"), PRICED)
def test_limit_and_stop_orders_match_backtrader(
    xf: Any,
    side: str,
    kind: str,
    level: float,
    bar2: tuple[float, float, float, float],
    fill: float,
) -> None:
    theirs, ours = _priced(xf, side, kind, bar2, level)
    sign = 1.0 if side == "buy" else -1.0
    # a sell exits the long bought at bar 1's open (100)
    want = ([xf.Fill(1, 10.0, 100.0)] if side == "sell" else []) + [xf.Fill(2, sign * 10.0, fill)]
    xf.same_fills(theirs.fills, want)
    xf.same_fills(ours.fills, want)
    xf.same_books(ours, theirs)


STOP_LIMIT_SAME = [
    # side, stop, limit, bar 2, fill price on bar 2
    # limit on the near side of the stop, triggered intrabar: fills at the stop
    ("buy", 102.0, 102.5, (100.0, 103.0, 99.5, 102.8), 102.0),
    ("sell", 99.0, 98.5, (100.0, 100.5, 98.0, 99.0), 99.0),
    # gap through the stop (open 103), then a limit: low 102.2 <= 102.5 -> the limit
    ("buy", 102.0, 102.5, (103.0, 104.0, 102.2, 103.5), 102.5),
    # limit on the far side, and the bar's close confirms it (Backtrader's condition):
    # buy: open 101 > close 100.5 <= limit 101.5; sell: open 100 <= close 100 >= limit 99.5
    ("buy", 102.0, 101.5, (101.0, 103.0, 99.5, 100.5), 101.5),
    ("sell", 99.0, 99.5, (100.0, 101.0, 97.0, 100.0), 99.5),
]


@pytest.mark.parametrize(("side", "stop", "limit", "bar2", "fill"), STOP_LIMIT_SAME)
def test_stop_limit_matches_backtrader_when_close_confirms_limit(
    xf: Any,
    side: str,
    stop: float,
    limit: float,
    bar2: tuple[float, float, float, float],
    fill: float,
) -> None:
    theirs, ours = _priced(xf, side, "stop_limit", bar2, stop, limit)
    sign = 1.0 if side == "buy" else -1.0
    want = ([xf.Fill(1, 10.0, 100.0)] if side == "sell" else []) + [xf.Fill(2, sign * 10.0, fill)]
    xf.same_fills(theirs.fills, want)
    xf.same_fills(ours.fills, want)
    xf.same_books(ours, theirs)


STOP_LIMIT_DIFF = [
    # side, stop, limit, bar 2 (trigger bar), bar 3, Backtrader's fill on bar 3
    # buy stop 102 / limit 101.5: bar 2 rises through 102 then falls to 99.5 but closes
    # 101 >= open 100; Backtrader (open <= close branch) does not fill; bar 3 opens at 101
    # <= 101.5 -> fills at the open 101
    ("buy", 102.0, 101.5, (100.0, 103.0, 99.5, 101.0), (101.0, 102.0, 100.8, 101.8), 101.0),
    # sell stop 99 / limit 99.5, bar 2 closes down (open 100 > close 99.5): no fill in
    # Backtrader; bar 3 (open 99 < 99.5, high 99.8) fills at the limit 99.5
    ("sell", 99.0, 99.5, (100.0, 101.0, 97.0, 99.5), (99.0, 99.8, 98.5, 99.0), 99.5),
    # sell, bar 2 closes up (99.2 -> 99.3) but below the limit 99.5: no fill in Backtrader
    ("sell", 99.0, 99.5, (99.2, 101.0, 97.0, 99.3), (99.0, 99.8, 98.5, 99.0), 99.5),
]


@pytest.mark.parametrize(("side", "stop", "limit", "bar2", "bar3", "theirs_fill"), STOP_LIMIT_DIFF)
def test_stop_limit_far_side_limit_fills_on_trigger_bar_unlike_backtrader(
    xf: Any,
    side: str,
    stop: float,
    limit: float,
    bar2: tuple[float, float, float, float],
    bar3: tuple[float, float, float, float],
    theirs_fill: float,
) -> None:
    # Ours: after the stop triggers, the order is a limit from that point of the bar's
    # assumed path on (buys: open -> high -> low; sells: open -> low -> high), so the limit
    # fills on bar 2 when the bar's other extreme reaches it. Backtrader
    # (_try_exec_stoplimit) decides from the close instead and otherwise leaves a
    # triggered limit for the next bar.
    theirs, ours = _priced(xf, side, "stop_limit", bar2, stop, limit, bar3)
    sign = 1.0 if side == "buy" else -1.0
    held = [xf.Fill(1, 10.0, 100.0)] if side == "sell" else []
    xf.same_fills(ours.fills, [*held, xf.Fill(2, sign * 10.0, limit)])
    xf.same_fills(theirs.fills, [*held, xf.Fill(3, sign * 10.0, theirs_fill)])
    # ours fills one bar earlier; buy: 0.5 per share dearer (101.5 vs 101); sells: same price
    assert ours.fills[-1].price - theirs.fills[-1].price == pytest.approx(limit - theirs_fill)


# --- 7: partial fills -------------------------------------------------------------------------
PARTIAL_ROWS = [
    N,
    (100.0, 101.0, 99.0, 100.5),
    (101.0, 103.0, 100.0, 102.0),
    (102.0, 104.0, 101.0, 103.0),
    (103.0, 105.0, 102.0, 104.0),
    (104.0, 106.0, 103.0, 105.0),
    (105.0, 106.0, 104.0, 105.0),
]
PARTIAL_VOLUME = [1_000.0, 1_000.0, 1_000.0, 1_000.0, 1_005.0, 1_000.0, 1_000.0]


def _partial(xf: Any, sizes: list[float], bar: int = 1, **ours_kw: Any) -> tuple[Any, Any]:
    bars = xf.Bars.from_rows(PARTIAL_ROWS, volume=PARTIAL_VOLUME)

    def bt_bar(s: Any, i: int) -> None:
        if i == bar:
            s.placed = [s.buy(size=q) for q in sizes]

    def our_bar(s: Any, i: int) -> None:
        if i == bar:
            s.placed = [s.buy("A", q) for q in sizes]

    theirs = xf.backtrader(bars, bt_bar, cash=100_000.0, filler=bt.fillers.FixedBarPerc(perc=10.0))
    ours = xf.ml4t(bars, our_bar, initial_cash=100_000.0, volume_limit=0.1, **ours_kw)
    return theirs, ours


def test_volume_limit_matches_fixed_bar_perc_for_one_order(xf: Any) -> None:
    # 250 shares, 10% of 1_000 = 100 per bar: 100 @101 (bar 2 open), 100 @102, 50 @103
    theirs, ours = _partial(xf, [250.0], fractional=False)
    want = [xf.Fill(2, 100.0, 101.0), xf.Fill(3, 100.0, 102.0), xf.Fill(4, 50.0, 103.0)]
    xf.same_fills(theirs.fills, want)
    xf.same_fills(ours.fills, want)
    # average (100*101 + 100*102 + 50*103) / 250 = 25_450 / 250 = 101.8
    bt_order = theirs.raw.last[theirs.raw.placed[0].ref]
    assert bt_order.executed.price == pytest.approx(101.8, rel=1e-12)
    assert ours.raw[1].placed[0].avg_fill_price == pytest.approx(101.8, rel=1e-12)
    # cash 100_000 - 25_450 = 74_550; equity + 250 * 105 = 100_800
    assert ours.cash == pytest.approx(74_550.0, abs=1e-6)
    assert ours.value == pytest.approx(100_800.0, abs=1e-6)
    xf.same_books(ours, theirs)


def test_volume_limit_is_shared_per_asset_unlike_fixed_bar_perc_per_order(xf: Any) -> None:
    # Two 150-share orders on one bar. FixedBarPerc caps each order at 100 per bar:
    # bar 2: 100 + 100 @101, bar 3: 50 + 50 @102. Our volume_limit caps the asset at 100 a
    # bar across orders: bar 2: 100 @101 (first order), bar 3: 50 + 50 @102, bar 4: 100 @103.
    theirs, ours = _partial(xf, [150.0, 150.0], fractional=False)
    xf.same_fills(
        theirs.fills,
        [
            xf.Fill(2, 100.0, 101.0),
            xf.Fill(2, 100.0, 101.0),
            xf.Fill(3, 50.0, 102.0),
            xf.Fill(3, 50.0, 102.0),
        ],
    )
    xf.same_fills(
        ours.fills,
        [
            xf.Fill(2, 100.0, 101.0),
            xf.Fill(3, 50.0, 102.0),
            xf.Fill(3, 50.0, 102.0),
            xf.Fill(4, 100.0, 103.0),
        ],
    )
    # theirs: 200*101 + 100*102 = 30_400; ours: 100*101 + 100*102 + 100*103 = 30_600
    assert theirs.cash == pytest.approx(69_600.0, abs=1e-6)
    assert ours.cash - theirs.cash == pytest.approx(-200.0, abs=1e-6)


def test_fractional_volume_limit_does_not_floor_like_fixed_bar_perc(xf: Any) -> None:
    # Order on bar 3, bar 4 volume 1_005: FixedBarPerc floors (1_005 * 10) // 100 = 100;
    # ours with the default fractional=True fills 100.5, then 100, then the last 49.5.
    theirs, ours = _partial(xf, [250.0], bar=3)
    xf.same_fills(
        theirs.fills,
        [xf.Fill(4, 100.0, 103.0), xf.Fill(5, 100.0, 104.0), xf.Fill(6, 50.0, 105.0)],
    )
    xf.same_fills(
        ours.fills, [xf.Fill(4, 100.5, 103.0), xf.Fill(5, 100.0, 104.0), xf.Fill(6, 49.5, 105.0)]
    )
    # 0.5 shares moved from the 105 fill to the 103 fill: ours pays 0.5 * 2 = 1.00 less
    assert ours.cash - theirs.cash == pytest.approx(1.0, abs=1e-6)
    # with fractional=False ours floors too and matches
    _, whole = _partial(xf, [250.0], bar=3, fractional=False)
    xf.same_fills(whole.fills, theirs.fills)


# --- real data -------------------------------------------------------------------------------
REAL = ("nvda", "orcl", "yhoo")  # validation/real_data/<name>_daily_yahoo.csv


@pytest.mark.parametrize("name", REAL)
def test_real_daily_brackets_match_backtrader_trade_for_trade(xf: Any, name: str) -> None:
    # Every 20th bar, if flat: buy 100 with a bracket, stop 5% below and target 10% above
    # that bar's close (market entry at the next open). Whole file, 1995/96/99 to 2014.
    bars = xf.Bars.from_real(name, "1990-01-01", "2014-12-31")

    def bt_bar(s: Any, i: int) -> None:
        if i % 20 == 0 and s.position.size == 0:
            c = s.data.close[0]
            s.buy_bracket(
                size=100, exectype=bt.Order.Market, stopprice=c * 0.95, limitprice=c * 1.10
            )

    def our_bar(s: Any, i: int) -> None:
        if i % 20 == 0 and s.get_position("A") == 0:
            c = bars.close[i]
            s.buy_bracket("A", 100, stop_loss=c * 0.95, take_profit=c * 1.10)

    theirs = xf.backtrader(bars, bt_bar, cash=100_000.0)
    ours = xf.ml4t(bars, our_bar, initial_cash=100_000.0)
    xf.same_fills(ours.fills, theirs.fills)
    xf.same_trades(ours.trades, xf.backtrader_trades(bars, theirs.fills))
    xf.same_books(ours, theirs)
    # the run exercises stops, targets and exits at a gapped open
    trades = ours.raw[0].trades_df.filter(~ours.raw[0].trades_df["is_open"])
    reasons = trades["exit_reason"].to_list()
    assert reasons.count("stop_loss") > 50
    assert reasons.count("take_profit") > 50
    gapped = [t for t in ours.trades if t.exit_price == bars.open[t.exit_bar]]
    assert len(gapped) > 20


def test_volume_limited_stop_remainder_fills_at_next_open_unlike_backtrader(xf: Any) -> None:
    # A 250-share bracket under a 10%-of-1_000 volume cap: the entry fills 100/100/50 on
    # bars 2-4 at their opens (101, 101.5, 101). Bar 5 (low 98) triggers the 99 stop: 100 at
    # 99. Ours: a triggered stop's remainder is a market order -> 100 at bar 6's open 99.5
    # and 50 at bar 7's open 100.5. Backtrader keeps a stop that must trigger again: bar 6
    # (low 99.2) does not; bar 7 (low 98.5) fills 100 at 99; bar 8 (low 99) the last 50.
    bars = xf.Bars.from_rows(
        [
            N,
            N,
            (101.0, 102.0, 100.0, 101.5),
            (101.5, 102.0, 100.5, 101.0),
            (101.0, 102.0, 100.0, 101.0),
            (101.0, 101.5, 98.0, 98.5),
            (99.5, 101.0, 99.2, 100.5),
            (100.5, 101.0, 98.5, 99.0),
            N,
            N,
        ]
    )

    def bt_bar(s: Any, i: int) -> None:
        if i == 1:
            s.buy_bracket(size=250, exectype=bt.Order.Market, stopprice=STOP, limitprice=TARGET)

    def our_bar(s: Any, i: int) -> None:
        if i == 1:
            s.buy_bracket("A", 250, stop_loss=STOP, take_profit=TARGET)

    theirs = xf.backtrader(bars, bt_bar, cash=100_000.0, filler=bt.fillers.FixedBarPerc(perc=10.0))
    ours = xf.ml4t(bars, our_bar, initial_cash=100_000.0, volume_limit=0.1, fractional=False)
    entry = [xf.Fill(2, 100.0, 101.0), xf.Fill(3, 100.0, 101.5), xf.Fill(4, 50.0, 101.0)]
    first = xf.Fill(5, -100.0, 99.0)
    xf.same_fills(theirs.fills, [*entry, first, xf.Fill(7, -100.0, 99.0), xf.Fill(8, -50.0, 99.0)])
    xf.same_fills(ours.fills, [*entry, first, xf.Fill(6, -100.0, 99.5), xf.Fill(7, -50.0, 100.5)])
    # entry 25_300; theirs sells 250 * 99 = 24_750 -> 99_450; ours 9_900 + 9_950 + 5_025
    # = 24_875 -> 99_575: 125 more, one bar earlier
    assert theirs.cash == pytest.approx(99_450.0, abs=1e-6)
    assert ours.cash - theirs.cash == pytest.approx(125.0, abs=1e-6)
