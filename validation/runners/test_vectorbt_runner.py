"""Hand-computed checks of the VectorBT runner on the 8-bar series of framework-semantics.md.

Bars (open, high, low, close) by index: 0 (100, 101, 99, 100.5), 1 (101, 104, 100, 103),
2 (103, 105, 101, 102), 3 (102, 106, 100, 105), 4 (108, 110, 106, 109),
5 (107, 109, 99, 100), 6 (100, 103, 97, 98), 7 (99, 101, 95, 97).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from validation.data import from_rows, sessions
from validation.runners.vectorbt import run
from validation.scenario import (
    BarSet,
    Costs,
    Exits,
    Orders,
    OrderSpec,
    Program,
    Scenario,
    Signals,
    Sizing,
    TargetWeights,
    Unsupported,
)
from validation.scenarios.core import APPENDIX

pytestmark = pytest.mark.validation

ROWS = APPENDIX  # framework-semantics.md, Appendix A


def bars() -> BarSet:
    return from_rows(ROWS)


def signals(
    entries: tuple[int, ...] = (1,),
    exits: tuple[int, ...] = (),
    short_entries: tuple[int, ...] = (),
    short_exits: tuple[int, ...] = (),
) -> Callable[[BarSet], Program]:
    def build(b: BarSet) -> Program:
        arrays = []
        for at in (entries, exits, short_entries, short_exits):
            a = np.zeros((b.n_bars, 1), dtype=bool)
            a[list(at)] = True
            arrays.append(a)
        return Signals(*arrays)

    return build


def scenario(program: Callable[[BarSet], Program] | None = None, **kw: object) -> Scenario:
    return Scenario(
        name="t",
        description="",
        data=bars,
        program=program or signals(),
        **kw,  # type: ignore[arg-type]
    )


def test_all_in_default_cash_fills_at_signal_close() -> None:
    # 100 cash / 103 close of bar 1 = 0.970874 shares; equity at bar 7 = that * 97
    r = run(scenario(sizing=Sizing("all_in"), initial_cash=100.0))
    (f,) = r.fills
    assert (f.bar, f.asset, f.price) == (1, "A", 103.0)
    assert f.quantity == pytest.approx(100 / 103, rel=1e-12)
    assert r.equity[-1] == pytest.approx(100 / 103 * 97, rel=1e-12)
    assert r.cash[0] == 100.0 and r.cash[-1] == pytest.approx(0.0, abs=1e-9)
    assert len(r.equity) == len(r.cash) == 8 and r.rejected == 0


@pytest.mark.parametrize(
    ("exits", "bar", "price"),
    [
        # level 103 * 0.95 = 97.85; first low <= 97.85 is bar 6 (low 97, open 100)
        (Exits(stop_loss=0.05), 6, 97.85),
        # level 103 * 1.05 = 108.15; bar 4 opens 108 < 108.15 and reaches high 110
        (Exits(take_profit=0.05), 4, 108.15),
        # reference 103 -> (check, then raise to the high) 105, 106, 110; bar 5 checks
        # 110 * 0.95 = 104.5: open 107 is above it, low 99 below -> fill at 104.5
        (Exits(trailing_stop=0.05), 5, 104.5),
    ],
)
def test_stop_exits(exits: Exits, bar: int, price: float) -> None:
    r = run(scenario(sizing=Sizing("all_in"), initial_cash=100.0, exits=exits))
    entry, exit_ = r.fills
    assert exit_.bar == bar
    assert exit_.price == pytest.approx(price, rel=1e-12)
    assert exit_.quantity == pytest.approx(-entry.quantity, rel=1e-12)


def test_fees_all_in_and_whole_shares() -> None:
    # all in, fee-aware: 10000 / 1.001 / 103 = 96.990388 shares, fee 10000 - 10000/1.001
    fees = Costs(commission_rate=0.001)
    r = run(scenario(sizing=Sizing("all_in"), costs=fees, initial_cash=10_000.0))
    (f,) = r.fills
    assert f.quantity == pytest.approx(10_000 / 1.001 / 103, rel=1e-12)
    assert f.quantity == pytest.approx(96.990388, abs=1e-6)
    assert f.commission == pytest.approx(9.99001, abs=1e-5)
    # whole shares: floor(96.99) = 96; fee 96 * 103 * 0.001 = 9.888; cash 10000 - 9888 - 9.888
    r = run(scenario(sizing=Sizing("all_in", integer=True), costs=fees, initial_cash=10_000.0))
    (f,) = r.fills
    assert f.quantity == 96.0
    assert f.commission == pytest.approx(9.888, rel=1e-12)
    assert r.cash[-1] == pytest.approx(102.112, abs=1e-9)


def test_slippage_rate_and_fixed() -> None:
    # 1%: buy 103 * 1.01 = 104.03 at bar 1, sell 109 * 0.99 = 107.91 at bar 4
    r = run(
        scenario(signals((1,), (4,)), sizing=Sizing("fixed", 10), costs=Costs(slippage_rate=0.01))
    )
    assert [(f.bar, f.quantity) for f in r.fills] == [(1, 10.0), (4, -10.0)]
    assert [f.price for f in r.fills] == pytest.approx([104.03, 107.91], rel=1e-12)
    # 0.05 per share, next bar open: buy 103 + 0.05 at bar 2, sell 107 - 0.05 at bar 5
    r = run(
        scenario(
            signals((1,), (4,)),
            sizing=Sizing("fixed", 10),
            costs=Costs(slippage_fixed=0.05),
            fill_timing="next_bar_open",
        )
    )
    assert [f.bar for f in r.fills] == [2, 5]
    assert [f.price for f in r.fills] == pytest.approx([103.05, 106.95], rel=1e-12)
    # default cash: 100000 - 10 * 103.05 + 10 * 106.95 = 100039
    assert r.cash[-1] == pytest.approx(100_039.0, abs=1e-8)


def test_next_bar_open_and_reversal() -> None:
    # long 10 at bar 1 (fills bar 2 open 103); short entry bar 3 reverses with ONE order of
    # -20 at bar 4 open 108; short exit bar 5 covers 10 at bar 6 open 100.
    # cash 10000 - 1030 + 2160 - 1000 = 10130
    r = run(
        scenario(
            signals((1,), (), (3,), (5,)),
            direction="long_short",
            sizing=Sizing("fixed", 10),
            fill_timing="next_bar_open",
            initial_cash=10_000.0,
        )
    )
    assert [(f.bar, f.quantity, f.price) for f in r.fills] == [
        (2, 10.0, 103.0),
        (4, -20.0, 108.0),
        (6, 10.0, 100.0),
    ]
    assert r.cash[-1] == pytest.approx(10_130.0, abs=1e-9)


def test_percent_equity_with_and_without_stop() -> None:
    # 0.5 * 10000 / 103 = 48.543689 shares at bar 1's close
    for exits in (Exits(), Exits(stop_loss=0.05)):
        r = run(
            scenario(
                sizing=Sizing("percent_equity", 0.5),
                initial_cash=10_000.0,
                exits=exits,
                costs=Costs(commission_rate=0.001),
            )
        )
        assert r.fills[0].quantity == pytest.approx(0.5 * 10_000 / 103, rel=1e-12)
        # fee on top of the value: 5000 * 0.001 = 5
        assert r.fills[0].commission == pytest.approx(5.0, rel=1e-12)
    # with the stop, the position leaves at 103 * 0.95 = 97.85 on bar 6
    assert r.fills[1].bar == 6
    assert r.fills[1].price == pytest.approx(97.85, rel=1e-12)


def test_target_weights_shared_cash() -> None:
    # A (the series) and B (flat at 50); weights 0.5/0.5 at bar 1 on 10000 of shared cash:
    # A 5000 / 103 = 48.543689, B 5000 / 50 = 100; equity at bar 7 = 48.543689 * 97 + 5000
    b1 = bars()
    both = BarSet(
        dates=np.array(sessions("2024-01-02", 8), dtype="datetime64[ns]"),
        assets=("A", "B"),
        open=np.column_stack([b1.open[:, 0], np.full(8, 50.0)]),
        high=np.column_stack([b1.high[:, 0], np.full(8, 50.0)]),
        low=np.column_stack([b1.low[:, 0], np.full(8, 50.0)]),
        close=np.column_stack([b1.close[:, 0], np.full(8, 50.0)]),
        volume=np.full((8, 2), 1e6),
    )
    w = np.full((8, 2), np.nan)
    w[1] = 0.5
    s = Scenario(
        name="w",
        description="",
        data=lambda: both,
        program=lambda _: TargetWeights(w),
        initial_cash=10_000.0,
    )
    r = run(s)
    assert {(f.bar, f.asset): f.quantity for f in r.fills} == {
        (1, "A"): pytest.approx(5000 / 103, rel=1e-12),
        (1, "B"): pytest.approx(100.0, rel=1e-12),
    }
    assert r.equity[-1] == pytest.approx(5000 / 103 * 97 + 5000, rel=1e-12)
    assert r.cash[-1] == pytest.approx(0.0, abs=1e-8)
    # one bar later at the open, sized at bar 1's close: 1.0 * 10000 / 103 = 97.087379 of A,
    # bought at bar 2's open 103
    w1 = np.full((8, 1), np.nan)
    w1[1] = 1.0
    r = run(
        scenario(lambda _: TargetWeights(w1), fill_timing="next_bar_open", initial_cash=10_000.0)
    )
    (f,) = r.fills
    assert (f.bar, f.price) == (2, 103.0)
    assert f.quantity == pytest.approx(97.087379, abs=1e-6)


def test_orders_next_bar_close_and_rejection() -> None:
    # buy 10 after bar 1 -> bar 2 close 102; sell 10 after bar 4 -> bar 5 close 100;
    # cash 100000 - 1020 + 1000 = 99980
    orders = Orders((OrderSpec(1, "A", 10.0), OrderSpec(4, "A", -10.0)))
    r = run(scenario(lambda _: orders, fill_timing="next_bar_close"))
    assert [(f.bar, f.quantity, f.price) for f in r.fills] == [(2, 10.0, 102.0), (5, -10.0, 100.0)]
    assert r.cash[-1] == pytest.approx(99_980.0, abs=1e-9)
    # 100 cash: the first buy is resized to 100 / 103 shares, the second has no cash left
    orders = Orders((OrderSpec(1, "A", 1.0), OrderSpec(2, "A", 5.0)))
    r = run(scenario(lambda _: orders, initial_cash=100.0))
    assert len(r.fills) == 1 and r.rejected == 1


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(costs=Costs(commission_per_share=0.005)), "commission_per_share"),
        (dict(costs=Costs(commission_minimum=1.0)), "commission_minimum"),
        (
            dict(program=lambda _: Orders((OrderSpec(1, "A", 1.0, "limit", 102.0),))),
            "#659",
        ),
        (dict(exits=Exits(stop_loss=0.05, trailing_stop=0.05)), "one stop-loss"),
    ],
)
def test_unsupported(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(Unsupported, match=match):
        run(scenario(**kw))
