"""ml4t.backtest position exits against VectorBT's ``Portfolio.from_signals`` stops.

VectorBT fills a signal at the signal bar's close and prices ``sl_stop`` / ``tp_stop`` /
``sl_trail`` from the entry bar's close (``stop_entry_price='close'``), exiting at the stop
price (``stop_exit_price='stoplimit'``, no slippage) or at the open on a gap. Ours is
configured to match: ``fill_timing="same_bar_close"`` (the market entry fills at the signal
bar's close, so the average entry fill price that prices our ExitRules *is* that close),
``exits=ExitRules`` and the default ``trail_reference="high_low"``. Each test compares every
fill and trade and the final cash and equity; where the frameworks legitimately differ the
test asserts our documented behaviour and the size of the difference
(``docs/framework_differences.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

# VectorBT is imported by the ``vbt`` fixture, which skips when it is not installed.
pytestmark = [pytest.mark.crossframework, pytest.mark.validation]

# The 8 bars of the shared reference's appendix; the entry signal is on bar 1 (close 103).
APPENDIX = [
    (100.0, 101.0, 99.0, 100.5),
    (101.0, 104.0, 100.0, 103.0),
    (103.0, 105.0, 101.0, 102.0),
    (102.0, 106.0, 100.0, 105.0),
    (108.0, 110.0, 106.0, 109.0),
    (107.0, 109.0, 99.0, 100.0),
    (100.0, 103.0, 97.0, 98.0),
    (99.0, 101.0, 95.0, 97.0),
]
N = (100.0, 101.0, 99.0, 100.0)
SAME_CLOSE = {"fill_timing": "same_bar_close"}


def _signal_on_bar_1(
    xf: Any, vbt_run: Callable[..., Any], rows: list[Any], vbt_kw: Any, exits: Any, **ours_kw: Any
) -> tuple[Any, Any]:
    """Buy 10 on bar 1 in both engines with the given stops; return (theirs, ours)."""
    bars = xf.Bars.from_rows(rows)
    entries = [i == 1 for i in range(len(rows))]

    def our_bar(s: Any, i: int) -> None:
        if entries[i] and s.get_position("A") == 0:
            s.buy("A", 10)

    theirs = vbt_run(bars, entries, 10.0, **vbt_kw)
    ours = xf.ml4t(bars, our_bar, exits=exits, **SAME_CLOSE, **ours_kw)
    return theirs, ours


# --- 8: sl_stop, tp_stop, sl_trail ------------------------------------------------------------
@pytest.mark.parametrize(
    ("vbt_kw", "exits", "exit_bar", "exit_price", "reason"),
    [
        # 103 * 0.95 = 97.85: lows 101, 100, 106, 99 stay above; bar 6 (open 100, low 97)
        ({"sl_stop": 0.05}, {"stop_loss": 0.05}, 6, 97.85, "stop_loss"),
        # 103 * 1.05 = 108.15: bar 4 opens 108 < 108.15 <= high 110 -> the level
        ({"tp_stop": 0.05}, {"take_profit": 0.05}, 4, 108.15, "take_profit"),
        # reference 103 -> highs 105, 106, 110 after bars 2-4 (levels 97.85, 99.75, 100.7
        # never hit); bar 5: level 110 * 0.95 = 104.5, open 107, low 99 -> 104.5
        (
            {"sl_stop": 0.05, "sl_trail": True},
            {"trailing_stop": 0.05},
            5,
            104.5,
            "trailing_stop",
        ),
    ],
    ids=["sl_stop", "tp_stop", "sl_trail"],
)
def test_exit_rules_match_vectorbt_stops(
    xf: Any,
    vbt_run: Callable[..., Any],
    vbt_kw: dict[str, Any],
    exits: dict[str, float],
    exit_bar: int,
    exit_price: float,
    reason: str,
) -> None:
    theirs, ours = _signal_on_bar_1(xf, vbt_run, APPENDIX, vbt_kw, exits)
    want = [xf.Fill(1, 10.0, 103.0), xf.Fill(exit_bar, -10.0, exit_price)]
    xf.same_fills(theirs.fills, want)
    xf.same_fills(ours.fills, want)
    xf.same_trades(ours.trades, theirs.trades)
    # cash = 10_000 - 10 * 103 + 10 * exit price
    assert ours.cash == pytest.approx(10_000.0 - 1_030.0 + 10.0 * exit_price, abs=1e-6)
    xf.same_books(ours, theirs)
    assert ours.raw[0].trades_df["exit_reason"].to_list() == [reason]


def test_exit_levels_from_entry_fill_equal_vectorbt_entry_close(
    xf: Any, vbt_run: Callable[..., Any]
) -> None:
    # With same_bar_close the entry fill price is the signal bar's close (103), so our
    # levels (average entry fill price * (1 -/+ x)) are VectorBT's (entry close * (1 -/+ x)).
    theirs, ours = _signal_on_bar_1(
        xf,
        vbt_run,
        APPENDIX,
        {"sl_stop": 0.05, "tp_stop": 0.10},
        {"stop_loss": 0.05, "take_profit": 0.10},
    )
    orders = ours.raw[0].orders_df.filter(ours.raw[0].orders_df["event"] == "submitted")
    stop = orders.filter(orders["tag"] == "stop_loss")["stop_price"].to_list()
    target = orders.filter(orders["tag"] == "take_profit")["limit_price"].to_list()
    assert ours.fills[0].price == 103.0 == APPENDIX[1][3]
    assert stop == [pytest.approx(103.0 * (1 - 0.05), rel=1e-12)]  # 97.85
    assert target == [pytest.approx(103.0 * (1 + 0.10), rel=1e-12)]  # 113.3
    # the stop is hit on bar 6 in both (target 113.3 never is)
    xf.same_fills(ours.fills, theirs.fills)
    assert ours.fills[-1] == xf.Fill(6, -10.0, pytest.approx(97.85, rel=1e-12))


def test_set_exits_from_strategy_matches_vectorbt_like_broker_exits(
    xf: Any, vbt_run: Callable[..., Any]
) -> None:
    # Strategy.set_exits(...) instead of SimulationBroker(exits=...): same orders, same
    # fills (stop 97.85 on bar 6, as in the sl_stop case above).
    bars = xf.Bars.from_rows(APPENDIX)
    entries = [i == 1 for i in range(len(APPENDIX))]

    def our_bar(s: Any, i: int) -> None:
        if i == 0:
            s.set_exits("A", stop_loss=0.05, take_profit=0.10)
        if entries[i]:
            s.buy("A", 10)

    theirs = vbt_run(bars, entries, 10.0, sl_stop=0.05, tp_stop=0.10)
    ours = xf.ml4t(bars, our_bar, **SAME_CLOSE)
    xf.same_fills(ours.fills, [xf.Fill(1, 10.0, 103.0), xf.Fill(6, -10.0, 97.85)])
    xf.same_fills(ours.fills, theirs.fills)
    xf.same_books(ours, theirs)


# --- 9: gaps and bars touching both levels -------------------------------------------------------
# entry on bar 1 at close 100: stop 95, target 110; bar 2 touches neither
ENTRY_ROWS = [N, N, (100.0, 102.0, 98.0, 101.0)]
BOTH = ({"sl_stop": 0.05, "tp_stop": 0.10}, {"stop_loss": 0.05, "take_profit": 0.10})


@pytest.mark.parametrize(
    ("bar3", "exit_price"),
    [
        # gap through the stop: open 94 <= 95 -> the open
        ((94.0, 95.0, 93.0, 94.5), 94.0),
        # both touched (high 111, low 94): VectorBT checks SL before TP; ours
        # intrabar="conservative" assumes the low first -> the stop at 95
        ((101.0, 111.0, 94.0, 105.0), 95.0),
        # gap above the target, stop untouched: open 112 >= 110 -> the open
        ((112.0, 113.0, 105.0, 110.0), 112.0),
    ],
    ids=["gap_through_stop", "both_touched", "gap_above_target"],
)
def test_gaps_and_double_touch_match_vectorbt(
    xf: Any, vbt_run: Callable[..., Any], bar3: tuple[float, ...], exit_price: float
) -> None:
    theirs, ours = _signal_on_bar_1(xf, vbt_run, [*ENTRY_ROWS, bar3, N], *BOTH)
    want = [xf.Fill(1, 10.0, 100.0), xf.Fill(3, -10.0, exit_price)]
    xf.same_fills(theirs.fills, want)
    xf.same_fills(ours.fills, want)
    # cash = 10_000 - 1_000 + 10 * exit price
    assert ours.cash == pytest.approx(9_000.0 + 10.0 * exit_price, abs=1e-6)
    xf.same_books(ours, theirs)


def test_double_touch_high_first_takes_target_unlike_vectorbt(
    xf: Any, vbt_run: Callable[..., Any]
) -> None:
    # intrabar="high_first" (open -> high -> low) reaches the 110 target before the 95
    # stop; VectorBT always checks SL first.
    bar3 = (101.0, 111.0, 94.0, 105.0)
    theirs, ours = _signal_on_bar_1(
        xf, vbt_run, [*ENTRY_ROWS, bar3, N], *BOTH, intrabar="high_first"
    )
    assert theirs.fills[-1] == xf.Fill(3, -10.0, 95.0)
    assert ours.fills[-1] == xf.Fill(3, -10.0, pytest.approx(110.0, rel=1e-12))
    # 110 - 95 = 15 per share, 150 on 10 shares
    assert ours.cash - theirs.cash == pytest.approx(150.0, abs=1e-6)


def test_gap_above_target_then_through_stop_takes_target_at_open_unlike_vectorbt(
    xf: Any, vbt_run: Callable[..., Any]
) -> None:
    # Bar 3 opens at 112 (above the 110 target) and trades down to 94 (through the 95
    # stop). VectorBT checks SL first (simulate_from_signal_func_nb) and get_stop_price_nb
    # returns the stop price when low <= 95 <= high -> 95. Ours: the take-profit limit is
    # marketable at the open, the first point of the bar's path -> 112.
    bar3 = (112.0, 113.0, 94.0, 100.0)
    theirs, ours = _signal_on_bar_1(xf, vbt_run, [*ENTRY_ROWS, bar3, N], *BOTH)
    xf.same_fills(theirs.fills, [xf.Fill(1, 10.0, 100.0), xf.Fill(3, -10.0, 95.0)])
    xf.same_fills(ours.fills, [xf.Fill(1, 10.0, 100.0), xf.Fill(3, -10.0, 112.0)])
    # 112 - 95 = 17 per share: ours 9_000 + 1_120 = 10_120, theirs 9_000 + 950 = 9_950
    assert ours.fills[-1].price - theirs.fills[-1].price == pytest.approx(17.0)
    assert ours.cash - theirs.cash == pytest.approx(170.0, abs=1e-6)
    assert ours.raw[0].trades_df["exit_reason"].to_list() == ["take_profit"]


def test_stops_do_not_work_on_entry_bar_like_vectorbt(xf: Any, vbt_run: Callable[..., Any]) -> None:
    # The entry bar trades 80..120, through both levels (95, 110): neither engine exits
    # on it; bars 2-4 touch neither, so the position is still open at the end.
    rows = [
        N,
        (100.0, 120.0, 80.0, 100.0),
        (100.0, 102.0, 98.0, 101.0),
        (101.0, 103.0, 99.0, 102.0),
        N,
    ]
    theirs, ours = _signal_on_bar_1(xf, vbt_run, rows, *BOTH)
    xf.same_fills(theirs.fills, [xf.Fill(1, 10.0, 100.0)])
    xf.same_fills(ours.fills, [xf.Fill(1, 10.0, 100.0)])
    # cash 9_000; equity 9_000 + 10 * 100 (last close)
    assert ours.cash == pytest.approx(9_000.0, abs=1e-6)
    assert ours.value == pytest.approx(10_000.0, abs=1e-6)
    xf.same_books(ours, theirs)


# --- 10: real daily files -----------------------------------------------------------------------
REAL = ("nvda", "orcl", "yhoo")  # validation/real_data/<name>_daily_yahoo.csv


def _every_n(
    xf: Any, vbt_run: Callable[..., Any], name: str, n: int, trail: bool, reenter: bool = False
) -> tuple[Any, Any, Any]:
    """Every ``n``-th bar, if flat, buy 100 with stop/trailing 5% and target 10%.

    Unless ``reenter``, our strategy skips an entry on a bar where a position exit has
    just filled, which is what VectorBT's one-order-per-bar rule does (its stop exit
    replaces the entry signal of that bar).
    """
    bars = xf.Bars.from_real(name, "1990-01-01", "2014-12-31")
    entries = [i % n == 0 for i in range(len(bars))]

    def our_bar(s: Any, i: int) -> None:
        exited_now = bool(s.fills) and s.fills[-1].timestamp == bars.dates[i]
        if entries[i] and s.get_position("A") == 0 and (reenter or not exited_now):
            s.buy("A", 100)

    stops = {"trailing_stop": 0.05} if trail else {"stop_loss": 0.05}
    theirs = vbt_run(
        bars, entries, 100.0, init_cash=100_000.0, sl_stop=0.05, tp_stop=0.10, sl_trail=trail
    )
    ours = xf.ml4t(
        bars, our_bar, initial_cash=100_000.0, exits={**stops, "take_profit": 0.10}, **SAME_CLOSE
    )
    return bars, theirs, ours


@pytest.mark.parametrize("trail", [False, True], ids=["sl_tp", "trail_tp"])
@pytest.mark.parametrize("name", REAL)
def test_real_daily_exits_match_vectorbt_trade_for_trade(
    xf: Any, vbt_run: Callable[..., Any], name: str, trail: bool
) -> None:
    bars, theirs, ours = _every_n(xf, vbt_run, name, 20, trail)
    assert len(theirs.trades) > 150
    xf.same_fills(ours.fills, theirs.fills)
    xf.same_trades(ours.trades, theirs.trades)
    xf.same_books(ours, theirs)
    # exits at a gapped open are part of the comparison
    assert sum(t.exit_price == bars.open[t.exit_bar] for t in ours.trades) > 10


def test_real_daily_reentry_on_exit_bar_differs_from_vectorbt(
    xf: Any, vbt_run: Callable[..., Any]
) -> None:
    # With a plain "enter every 20th bar if flat" rule, ours lets the strategy re-enter at
    # the close of a bar whose open phase filled a stop; VectorBT cannot (one order per
    # bar and column: the stop signal replaces the entry signal) and waits 20 bars.
    _, theirs, ours = _every_n(xf, vbt_run, "nvda", 20, trail=False, reenter=True)
    collisions = [f.bar for f in theirs.fills if f.qty < 0 and f.bar % 20 == 0]
    assert collisions, "the data must contain an exit on an entry-signal bar"
    first = collisions[0]
    before = [f for f in theirs.fills if f.bar <= first]
    xf.same_fills(ours.fills[: len(before)], before)  # identical up to that exit
    ours_next, theirs_next = ours.fills[len(before)], theirs.fills[len(before)]
    assert (ours_next.bar, ours_next.qty) == (first, 100.0)  # re-entry on the same bar
    assert (theirs_next.bar, theirs_next.qty) == (first + 20, 100.0)  # next signal bar
    assert len(ours.fills) > len(theirs.fills)


def test_real_daily_trailing_gap_above_target_is_the_only_difference(
    xf: Any, vbt_run: Callable[..., Any]
) -> None:
    # NVDA, entries every 7th bar, trailing stop 5% + target 10%: all 969 fills agree but
    # two exits, on bars that open above the target and then trade through the trailing
    # stop. VectorBT takes the stop price (SL before TP), ours the target at the open.
    bars, theirs, ours = _every_n(xf, vbt_run, "nvda", 7, trail=True)
    assert len(ours.fills) == len(theirs.fills) == 969
    differ = [
        k
        for k, (a, b) in enumerate(zip(ours.fills, theirs.fills, strict=True))
        if a != xf.Fill(b.bar, b.qty, pytest.approx(b.price, rel=1e-9))
    ]
    assert [theirs.fills[k].bar for k in differ] == [234, 1094]  # 1999-12-27, 2003-06-02
    total = 0.0
    for k in differ:
        a, b, entry = ours.fills[k], theirs.fills[k], ours.fills[k - 1]
        i = a.bar
        assert (a.bar, a.qty) == (b.bar, b.qty)
        assert a.price == bars.open[i] >= entry.price * 1.10  # ours: target, at the open
        assert bars.low[i] <= b.price < bars.open[i]  # theirs: the trailing level
        total += (a.price - b.price) * 100
    # 100 * ((3.947917 - 3.68125) + (8.95 - 8.43283365)) = 78.383335
    assert total == pytest.approx(78.383335, abs=1e-6)
    assert ours.value - theirs.value == pytest.approx(total, abs=1e-6)
