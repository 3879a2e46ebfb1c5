"""The Backtrader runner reproduces the reference's verified Backtrader outputs.

The 8-bar series is Appendix A of the project's framework-semantics reference (see
``docs/framework_differences.md``), placed on NYSE sessions from 2024-01-02 by
:func:`validation.data.from_rows`; $10,000 cash unless noted. Bar k below is row k of that
table.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

# the runner imports Backtrader (the validation extra); without it this module skips
pytest.importorskip(
    "backtrader", reason="backtrader is not installed: install the validation extra"
)

from validation.data import from_rows, real_daily, real_minute
from validation.runners.backtrader import run
from validation.scenario import (
    BarSet,
    Costs,
    Exits,
    Orders,
    OrderSpec,
    Program,
    RunResult,
    Scenario,
    Signals,
    Sizing,
    TargetWeights,
    Unsupported,
)
from validation.scenarios.core import APPENDIX

pytestmark = pytest.mark.validation

ROWS = APPENDIX  # framework-semantics.md, Appendix A: (open, high, low, close)
BARS = from_rows(ROWS)
CASH = 10_000.0


def flags(*bars: int, n: int = 8) -> np.ndarray:
    """A one-asset boolean column that is True on ``bars``."""
    out = np.zeros((n, 1), dtype=bool)
    out[list(bars), 0] = True
    return out


def go(program: Callable[[BarSet], Program], bars: BarSet = BARS, **kw: object) -> RunResult:
    """Run a scenario on ``bars`` (the 8-bar series, $10k) through the runner."""
    kw.setdefault("initial_cash", CASH)
    return run(Scenario("t", "", lambda: bars, program, **kw))  # type: ignore[arg-type]


def trade(entry: int, exit_: int) -> Callable[[BarSet], Program]:
    """Signals: enter after bar ``entry``, exit after bar ``exit_``."""
    return lambda b: Signals(flags(entry), flags(exit_))


def orders(*specs: OrderSpec) -> Callable[[BarSet], Program]:
    return lambda b: Orders(tuple(specs))


def fills(result: RunResult) -> list[tuple[int, float, float]]:
    return [(f.bar, f.quantity, round(f.price, 9)) for f in result.fills]


def ten() -> Sizing:
    return Sizing("fixed", 10)


# --- fill timing ------------------------------------------------------------------------------
def test_default_market_orders_fill_at_the_next_open() -> None:
    r = go(trade(1, 4), fill_timing="next_bar_open", sizing=ten())
    # signal bar 1 -> bar 2 open 103; signal bar 4 -> bar 5 open 107
    assert fills(r) == [(2, 10, 103.0), (5, -10, 107.0)]
    # cash after the buy: 10000 - 10*103 = 8970; after the sell: 8970 + 10*107 = 10040
    assert r.cash.tolist() == [CASH, CASH, 8970, 8970, 8970, 10040, 10040, 10040]
    # equity at bar 3: 8970 + 10*105 = 10020; bar 4: 8970 + 10*109 = 10060
    assert r.equity[3] == 10020 and r.equity[4] == 10060
    assert r.rejected == 0


def test_cheat_on_close_stamps_the_signal_bar_and_books_one_bar_later() -> None:
    r = go(trade(1, 4), fill_timing="same_bar_close", sizing=ten())
    # bar 1 close 103 (stamped bar 1); bar 4 close 109 (stamped bar 4)
    assert fills(r) == [(1, 10, 103.0), (4, -10, 109.0)]
    # Backtrader books the bar-1 execution in bar 2's broker cycle: cash at bar 1 is still
    # 10000, at bar 2 it is 10000 - 1030 = 8970; the sale shows at bar 5: 8970 + 1090
    assert r.cash[1] == CASH and r.cash[2] == 8970 and r.cash[4] == 8970 and r.cash[5] == 10060
    assert any("one bar later" in n for n in r.notes)


def test_close_exectype_fills_at_the_next_bars_close() -> None:
    r = go(trade(1, 4), fill_timing="next_bar_close", sizing=ten())
    # created bar 1 -> bar 2 close 102; created bar 4 -> bar 5 close 100
    assert fills(r) == [(2, 10, 102.0), (5, -10, 100.0)]
    # final cash 10000 - 1020 + 1000 = 9980
    assert r.cash[-1] == 9980


# --- target weights ---------------------------------------------------------------------------
def weights(*rows: tuple[int, float]) -> Callable[[BarSet], Program]:
    w = np.full((8, 1), np.nan)
    for bar, x in rows:
        w[bar, 0] = x
    return lambda b: TargetWeights(w)


def test_order_target_percent_floors_to_97_shares() -> None:
    r = go(weights((1, 1.0)), fill_timing="next_bar_open", sizing=Sizing(integer=True))
    # int(10000 // 103) = 97 shares, filled at bar 2 open 103; cash 10000 - 9991 = 9
    assert fills(r) == [(2, 97, 103.0)]
    assert r.cash[2] == pytest.approx(9.0)


def test_fractional_target_weights_use_order_target_size() -> None:
    r = go(weights((1, 1.0)), fill_timing="same_bar_close", sizing=Sizing(integer=False))
    # 1.0 * 10000 / 103 = 97.087378... shares at bar 1 close 103, cash 0
    assert r.fills[0].quantity == pytest.approx(10_000 / 103, rel=1e-12)
    assert r.cash[2] == pytest.approx(0.0, abs=1e-9)


def test_target_percent_sized_at_close_is_rejected_on_a_gap_up() -> None:
    r = go(weights((3, 1.0)), fill_timing="next_bar_open", sizing=Sizing(integer=True))
    # int(10000 // 105) = 95 shares; at bar 4 open 108: 95*108 = 10260 > 10000 -> Margin
    assert r.fills == [] and r.rejected == 1


def test_target_weights_reduce_and_flip() -> None:
    program = weights((1, 1.0), (3, 0.5), (5, -0.5))
    r = go(program, fill_timing="next_bar_open", sizing=Sizing(integer=True))
    # bar 1: 97 sh @103, cash 9. bar 3: value 9 + 97*105 = 10194, target 5097, holding
    # 10185 -> sell int(5088 // 105) = 48 @108 (bar 4 open). bar 5: value 5193 + 49*100 =
    # 10093, target -5046.5, holding 4900 -> sell int(9946.5 // 100) = 99 @100 (bar 6 open)
    assert fills(r) == [(2, 97, 103.0), (4, -48, 108.0), (6, -99, 100.0)]


# --- explicit orders --------------------------------------------------------------------------
def test_short_sale_raises_cash() -> None:
    r = go(orders(OrderSpec(1, "A", -200)), fill_timing="next_bar_open")
    # 200 sh sold short at bar 2 open 103: cash 10000 + 20600 = 30600
    assert fills(r) == [(2, -200, 103.0)]
    assert r.cash[2] == 30_600
    # equity at bar 2: 30600 - 200*102 = 10200
    assert r.equity[2] == 10_200


def test_sell_stop_fills_at_the_stop_price_intrabar() -> None:
    r = go(orders(OrderSpec(3, "A", -10, "stop", 104.0)), fill_timing="next_bar_open")
    # bar 4 low 106 > 104: no trigger; bar 5 open 107 > 104, low 99 <= 104 -> fill @104
    assert fills(r) == [(5, -10, 104.0)]


def test_buy_limit_fills_at_a_better_open() -> None:
    r = go(orders(OrderSpec(0, "A", 10, "limit", 102.5)), fill_timing="next_bar_open")
    # bar 1 open 101 <= limit 102.5 -> fill at the open 101
    assert fills(r) == [(1, 10, 101.0)]


def test_buy_beyond_cash_is_rejected() -> None:
    # 500 sh * 103 = 51500 > 10000 -> Margin (stocklike, default commission and per-share)
    for costs in (Costs(), Costs(commission_per_share=0.01)):
        r = go(orders(OrderSpec(1, "A", 500)), fill_timing="next_bar_open", costs=costs)
        assert r.fills == [] and r.rejected == 1


# --- costs ------------------------------------------------------------------------------------
def test_percent_commission() -> None:
    r = go(trade(1, 4), fill_timing="next_bar_open", sizing=ten(), costs=Costs(0.001))
    # 0.001 * 10 * 103 = 1.03; 0.001 * 10 * 107 = 1.07
    assert [round(f.commission, 9) for f in r.fills] == [1.03, 1.07]
    # final cash 10000 - 1030 - 1.03 + 1070 - 1.07 = 10037.9
    assert r.cash[-1] == pytest.approx(10_037.9)


def test_per_share_commission_minimum() -> None:
    costs = Costs(commission_per_share=0.005, commission_minimum=1.0)
    r = go(trade(1, 4), fill_timing="next_bar_open", sizing=ten(), costs=costs)
    # max(10 * 0.005, 1.0) = 1.0 on each side
    assert [f.commission for f in r.fills] == [1.0, 1.0]


def test_percent_slippage_at_the_open() -> None:
    r = go(trade(1, 4), fill_timing="next_bar_open", sizing=ten(), costs=Costs(slippage_rate=0.01))
    # the setter turns slip_open on: 103 * 1.01 = 104.03; 107 * 0.99 = 105.93
    assert fills(r) == [(2, 10, 104.03), (5, -10, 105.93)]


def test_slippage_rate_and_fixed_together_is_unsupported() -> None:
    with pytest.raises(Unsupported):
        go(trade(1, 4), costs=Costs(slippage_rate=0.01, slippage_fixed=0.1))


# --- sizing -----------------------------------------------------------------------------------
def test_all_in_with_commission() -> None:
    r = go(trade(1, 4), fill_timing="same_bar_close", sizing=Sizing("all_in"), costs=Costs(0.001))
    # 10000 / (103 * 1.001) = 96.990388 shares at bar 1 close; cash ends at 0
    assert r.fills[0].quantity == pytest.approx(10_000 / (103 * 1.001), rel=1e-12)
    assert r.cash[2] == pytest.approx(0.0, abs=1e-9) and r.cash[2] >= 0


def test_all_in_rejected_when_the_next_open_is_higher() -> None:
    r = go(trade(3, 6), fill_timing="next_bar_open", sizing=Sizing("all_in"))
    # 10000 / 105 = 95.238 sh at bar 3 close; 95.238 * 108 (bar 4 open) > 10000 -> Margin
    assert r.fills == [] and r.rejected == 1


def test_percent_equity_integer() -> None:
    sizing = Sizing("percent_equity", 0.5, integer=True)
    r = go(trade(1, 4), fill_timing="same_bar_close", sizing=sizing)
    # floor(0.5 * 10000 / 103) = floor(48.54) = 48
    assert fills(r) == [(1, 48, 103.0), (4, -48, 109.0)]


def test_reversal_is_one_order() -> None:
    def program(b: BarSet) -> Program:
        return Signals(flags(1), flags(), short_entries=flags(3), short_exits=flags())

    r = go(program, fill_timing="next_bar_open", sizing=ten(), direction="long_short")
    # long 10 @103 (bar 2 open); short entry at bar 3 -> sell 10 + 10 = 20 @108 (bar 4 open)
    assert fills(r) == [(2, 10, 103.0), (4, -20, 108.0)]


# --- exits ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("exits", "expected"),
    [
        # stop 103 * 0.95 = 97.85: bar 5 low 99 no; bar 6 low 97 -> 97.85
        (Exits(stop_loss=0.05), (6, -10, 97.85)),
        # limit 103 * 1.05 = 108.15: bar 4 open 108 < 108.15 <= high 110 -> 108.15
        (Exits(take_profit=0.05), (4, -10, 108.15)),
        # trail from the fill: 97.85; raised with closes 105 -> 99.75, 109 -> 103.55;
        # bar 5 low 99 <= 103.55 -> 103.55
        (Exits(trailing_stop=0.05), (5, -10, 103.55)),
    ],
)
def test_exits(exits: Exits, expected: tuple[int, float, float]) -> None:
    r = go(
        lambda b: Signals(flags(1), flags()), fill_timing="next_bar_open", sizing=ten(), exits=exits
    )
    assert fills(r) == [(2, 10, 103.0), expected]


def test_signal_exit_cancels_the_exit_orders() -> None:
    exits = Exits(stop_loss=0.05, take_profit=0.2)
    r = go(trade(1, 3), fill_timing="next_bar_open", sizing=ten(), exits=exits)
    # the exit signal at bar 3 closes at bar 4 open 108; the stop 97.85 (bar 6) never fills
    assert fills(r) == [(2, 10, 103.0), (4, -10, 108.0)]


def test_signal_exit_next_close_stop_touched_first_fills_the_stop_only() -> None:
    exits = Exits(stop_loss=0.05, take_profit=0.2)
    r = go(trade(1, 6), fill_timing="next_bar_close", sizing=ten(), exits=exits)
    # entry at bar 2 close 102, stop 96.9; the exit signal at bar 6 joins the exits' OCO
    # group: bar 7 (open 99, low 95) reaches the stop before its close 97, so the stop fills
    # at 96.9 and cancels the close (no second sale, no short)
    assert fills(r) == [(2, 10, 102.0), (7, -10, 96.9)]


def test_signal_exit_next_close_filled_first_cancels_the_exits() -> None:
    exits = Exits(stop_loss=0.05, take_profit=0.2)
    r = go(trade(1, 4), fill_timing="next_bar_close", sizing=ten(), exits=exits)
    # the close at bar 5 close 100 fills first (bar 5 low 99 > 96.9) and cancels the stop,
    # which bar 7 (low 95) would otherwise hit
    assert fills(r) == [(2, 10, 102.0), (5, -10, 100.0)]


# --- real data --------------------------------------------------------------------------------
def _crossings(close: np.ndarray, fast: int, slow: int) -> tuple[np.ndarray, np.ndarray]:
    """Entries when a fast moving average crosses above a slow one; exits on the reverse."""

    def ma(w: int) -> np.ndarray:
        c = np.cumsum(np.vstack([np.zeros((1, close.shape[1])), close]), axis=0)
        out = np.full(close.shape, np.nan)
        out[w - 1 :] = (c[w:] - c[:-w]) / w
        return out

    above = np.nan_to_num(ma(fast) > ma(slow)).astype(bool)
    prev = np.vstack([above[:1], above[:-1]])
    return above & ~prev, ~above & prev


def _check_books(r: RunResult, bars: BarSet, price: np.ndarray, timing_shift: int) -> None:
    """Every signal fill is at ``price`` of its bar; the last equity = cash + marked holdings."""
    assert len(r.equity) == len(r.cash) == bars.n_bars
    for f in r.fills:
        assert f.price == pytest.approx(price[f.bar, bars.column(f.asset)], rel=1e-12)
    assert [f.bar for f in r.fills] == sorted(f.bar for f in r.fills)
    held = {a: 0.0 for a in bars.assets}
    for f in r.fills:
        held[f.asset] += f.quantity
    marked = sum(q * bars.close[-1, bars.column(a)] for a, q in held.items())
    # the last bar's books include its fills except under coc (booked one bar later)
    if timing_shift == 0:
        assert r.equity[-1] == pytest.approx(r.cash[-1] + marked, rel=1e-12)


@pytest.mark.parametrize("timing", ["next_bar_open", "same_bar_close", "next_bar_close"])
def test_real_daily_moving_average_crossings(timing: str) -> None:
    bars = real_daily(["nvda", "orcl", "yhoo"], "2010-01-01", "2011-12-31")
    entries, exits = _crossings(bars.close, 10, 30)
    r = go(
        lambda b: Signals(entries, exits),
        bars=bars,
        initial_cash=100_000.0,
        fill_timing=timing,
        sizing=Sizing("percent_equity", 0.3, integer=True),
        costs=Costs(commission_rate=0.001),
    )
    price = {"next_bar_open": bars.open, "same_bar_close": bars.close}.get(timing, bars.close)
    _check_books(r, bars, price, timing_shift=int(timing == "same_bar_close"))
    assert len(r.fills) > 20
    shift = 0 if timing == "same_bar_close" else 1
    for f in r.fills:  # each fill answers a signal `shift` bars earlier
        j = bars.column(f.asset)
        assert (entries if f.quantity > 0 else exits)[f.bar - shift, j]
        assert f.commission == pytest.approx(0.001 * abs(f.quantity) * f.price, rel=1e-12)


def test_real_minute_bars() -> None:
    bars = real_minute("2006-01-02", "2006-01-04")
    entries, exits = flags(10, 400, n=bars.n_bars), flags(110, 700, n=bars.n_bars)
    program: Callable[[BarSet], Program] = lambda b: Signals(entries, exits)  # noqa: E731
    r = go(program, bars=bars, fill_timing="next_bar_open", sizing=Sizing("fixed", 2))
    # each order fills at the open of the next minute bar
    assert fills(r) == [
        (11, 2, bars.open[11, 0]),
        (111, -2, bars.open[111, 0]),
        (401, 2, bars.open[401, 0]),
        (701, -2, bars.open[701, 0]),
    ]
    r = go(program, bars=bars, fill_timing="same_bar_close", sizing=Sizing("fixed", 2))
    assert [(f.bar, f.price) for f in r.fills] == [
        (k, bars.close[k, 0]) for k in (10, 110, 400, 700)
    ]
    with pytest.raises(Unsupported, match="minute"):
        go(program, bars=bars, fill_timing="next_bar_close")


def test_real_daily_target_weights_sell_before_buy() -> None:
    bars = real_daily(["nvda", "orcl", "yhoo"], "2010-01-01", "2011-12-31")
    w = np.full((bars.n_bars, 3), np.nan)
    w[20::42] = [0.5, 0.3, 0.15]
    w[41::42] = [0.1, 0.5, 0.35]
    costs = Costs(commission_per_share=0.005, commission_minimum=1.0)
    r = go(
        lambda b: TargetWeights(w),
        bars=bars,
        initial_cash=100_000.0,
        fill_timing="next_bar_open",
        sizing=Sizing(integer=True),
        costs=costs,
    )
    assert len(r.fills) > 20
    for bar in {f.bar for f in r.fills}:
        sides = [f.quantity > 0 for f in r.fills if f.bar == bar]
        assert sides == sorted(sides)  # sells (False) execute before buys (True)
    for f in r.fills:  # whole shares at the open; max(0.005 * shares, 1.0) per execution
        assert f.quantity == int(f.quantity)
        assert f.price == bars.open[f.bar, bars.column(f.asset)]
        assert f.commission == pytest.approx(max(0.005 * abs(f.quantity), 1.0))


def test_reversal_pays_the_minimum_on_both_parts() -> None:
    def program(b: BarSet) -> Program:
        return Signals(flags(1), flags(), short_entries=flags(3), short_exits=flags())

    costs = Costs(commission_per_share=0.005, commission_minimum=1.0)
    r = go(program, fill_timing="same_bar_close", sizing=ten(), direction="long_short", costs=costs)
    # Backtrader charges the closed 10 and the opened 10 separately: 1.0 + 1.0 (the neutral
    # per-order model would charge max(20 * 0.005, 1.0) = 1.0)
    assert [(f.bar, f.quantity, f.commission) for f in r.fills] == [(1, 10, 1.0), (3, -20, 2.0)]
