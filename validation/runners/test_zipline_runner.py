"""The Zipline runner reproduces the verified Zipline outputs of the reference appendix.

Bars: the 8-bar series of ``framework-semantics.md`` Appendix A on NYSE sessions
2024-01-02 … 2024-01-11 (bar k = the k-th session), volume 1000. Closes by bar:
100.5, 103, 102, 105, 109, 100, 98, 97. Zipline fills a market order placed after bar t's
close at bar t+1's close.

Runs in the Zipline venv (``ML4T_ZIPLINE_VENV``, created on demand by ``ensure_venv``)::

    ML4T_ZIPLINE_VENV=/tmp/zlvenv /tmp/venv/bin/python -m pytest \
        validation/runners/test_zipline_runner.py -q -p no:cacheprovider
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from validation.data import from_rows, synthetic
from validation.runners import zipline as zl
from validation.scenario import (
    Costs,
    Exits,
    Fill,
    Orders,
    OrderSpec,
    RunResult,
    Scenario,
    Signals,
    Sizing,
    TargetWeights,
    Unsupported,
)
from validation.scenarios.core import APPENDIX

pytestmark = [pytest.mark.validation, pytest.mark.zipline]

ROWS = APPENDIX  # framework-semantics.md, Appendix A
CLOSE = np.array([r[3] for r in ROWS])
CASH = 10_000.0
TEN = Sizing("fixed", 10, integer=True)


def signals(entries: tuple[int, ...] = (), exits: tuple[int, ...] = (), **short: tuple[int, ...]):
    """A program with signals on the given bars (``short_entries`` / ``short_exits``)."""

    def build(bars):
        n = bars.n_bars
        arrs = {}
        for name, at in (("entries", entries), ("exits", exits), *short.items()):
            a = np.zeros((n, 1), dtype=bool)
            a[list(at)] = True
            arrs[name] = a
        return Signals(**arrs)

    return build


def orders(*specs: OrderSpec):
    return lambda bars: Orders(tuple(specs))


def scenario(name: str, program, **kw) -> Scenario:
    kw.setdefault("fill_timing", "next_bar_close")
    kw.setdefault("initial_cash", CASH)
    return Scenario(name, name, lambda: from_rows(ROWS, volume=1000.0), program, **kw)


@cache
def python() -> Path:
    return zl.ensure_venv()


def run(s: Scenario) -> RunResult:
    result = zl.run(s, python=python())
    assert result.framework == "zipline"
    assert len(result.equity) == len(result.cash) == s.bars.n_bars
    replay(s, result)
    return result


def replay(s: Scenario, r: RunResult) -> None:
    """Cash and equity follow from the fills: cash −= qty·price + commission; equity = cash +
    Σ position · close (Zipline marks positions at the session close)."""
    b = s.bars
    pos = np.zeros(len(b.assets))
    cash = s.initial_cash
    fills = iter(r.fills)
    f = next(fills, None)
    for t in range(b.n_bars):
        while f is not None and f.bar == t:
            pos[b.column(f.asset)] += f.quantity
            cash -= f.quantity * f.price + f.commission
            f = next(fills, None)
        assert r.cash[t] == pytest.approx(cash, abs=1e-6)
        assert r.equity[t] == pytest.approx(cash + pos @ b.close[t], abs=1e-6)
    assert f is None, "fills out of bar order"


# --- "Selected verified outputs" (Zipline) ------------------------------------------------
def test_signal_fills_at_next_close_no_slippage_no_commission() -> None:
    # Buy 10 on the bar-1 signal, sell on the bar-4 signal: filled at the closes of bars 2
    # and 5 (102.00, 100.00) — reference §2.4 "Zipline, NoSlippage + zero commission".
    r = run(scenario("basic", signals((1,), (4,)), sizing=TEN))
    assert r.fills == [Fill(2, "A", 10.0, 102.0, 0.0), Fill(5, "A", -10.0, 100.0, 0.0)]
    # cash: 10000 − 10·102 = 8980 from bar 2; + 10·100 = 9980 from bar 5.
    np.testing.assert_allclose(r.cash, [CASH, CASH, 8980, 8980, 8980, 9980, 9980, 9980])
    # equity at bar 3 = 8980 + 10·105 = 10030; bar 4 = 8980 + 10·109 = 10070.
    np.testing.assert_allclose(r.equity, [CASH, CASH, CASH, 10030, 10070, 9980, 9980, 9980])
    assert r.rejected == 0


def test_first_session_handle_data_places_orders() -> None:
    # handle_data runs on the first session too: a bar-0 signal fills at bar 1's close 103.
    r = run(scenario("bar0", signals((0,), (4,)), sizing=TEN))
    assert r.fills == [Fill(1, "A", 10.0, 103.0, 0.0), Fill(5, "A", -10.0, 100.0, 0.0)]


def test_no_cash_check_cash_goes_negative() -> None:
    # 200 sh with $10k: filled at 102 → cash 10000 − 200·102 = −10400. (The reference's
    # −10,410.40 is with the default models: 200·102.051 + 200·0.001 = 20410.40.)
    r = run(scenario("200sh", signals((1,)), sizing=Sizing("fixed", 200, integer=True)))
    assert r.fills == [Fill(2, "A", 200.0, 102.0, 0.0)]
    assert r.cash[-1] == pytest.approx(-10_400.0)
    assert r.rejected == 0


def test_default_models_expressed_explicitly() -> None:
    # Zipline's defaults = FixedBasisPointsSlippage(5 bp) + PerShare(0.001): buy at
    # 102·1.0005 = 102.051, sell at 100·0.9995 = 99.95, commission 10·0.001 = 0.01 each.
    costs = Costs(commission_per_share=0.001, slippage_rate=0.0005)
    r = run(scenario("defaults", signals((1,), (4,)), sizing=TEN, costs=costs))
    assert [(f.bar, f.quantity) for f in r.fills] == [(2, 10.0), (5, -10.0)]
    assert r.fills[0].price == pytest.approx(102.051, abs=1e-9)
    assert r.fills[1].price == pytest.approx(99.95, abs=1e-9)
    assert [f.commission for f in r.fills] == pytest.approx([0.01, 0.01])


def test_buy_limit_fills_at_the_close() -> None:
    # Buy limit 102.5 placed after bar 1: bar 2's close 102 ≤ 102.5 triggers it and it
    # fills at that close, 102.0 (not at the limit, not at the open 103).
    r = run(scenario("limit", orders(OrderSpec(1, "A", 10, "limit", 102.5))))
    assert r.fills == [Fill(2, "A", 10.0, 102.0, 0.0)]


def test_sell_stop_triggers_on_close_only() -> None:
    # Sell stop 104.5 (placed after bar 1, long 10 from bar 1): bar 2 close 102 ≤ 104.5 →
    # filled @102.0, the trigger bar's close.
    r = run(
        scenario(
            "stop",
            orders(OrderSpec(0, "A", 10), OrderSpec(1, "A", -10, "stop", 104.5)),
        )
    )
    assert r.fills == [Fill(1, "A", 10.0, 103.0, 0.0), Fill(2, "A", -10.0, 102.0, 0.0)]
    # Sell stop 99.5 placed after bar 4: bar 5 low 99 < 99.5 but close 100 > 99.5 → no
    # trigger; bar 6 close 98 → filled @98.0.
    r = run(
        scenario(
            "stop-close",
            orders(OrderSpec(0, "A", 10), OrderSpec(4, "A", -10, "stop", 99.5)),
        )
    )
    assert r.fills == [Fill(1, "A", 10.0, 103.0, 0.0), Fill(6, "A", -10.0, 98.0, 0.0)]


def test_per_dollar_commission() -> None:
    # PerDollar(0.001): 10·102·0.001 = 1.02 on the buy, 10·100·0.001 = 1.00 on the sell.
    costs = Costs(commission_rate=0.001)
    r = run(scenario("perdollar", signals((1,), (4,)), sizing=TEN, costs=costs))
    assert [f.commission for f in r.fills] == pytest.approx([1.02, 1.00])
    # cash: 10000 − 1020 − 1.02 = 8978.98; + 1000 − 1.00 = 9977.98.
    assert r.cash[2] == pytest.approx(8978.98) and r.cash[-1] == pytest.approx(9977.98)


def test_per_share_commission_with_minimum() -> None:
    # PerShare(0.005, min 1.0): 10·0.005 = 0.05 < 1.0 → 1.0 per order.
    costs = Costs(commission_per_share=0.005, commission_minimum=1.0)
    r = run(scenario("pershare", signals((1,), (4,)), sizing=TEN, costs=costs))
    assert [f.commission for f in r.fills] == pytest.approx([1.0, 1.0])


def test_percent_equity_and_truncation() -> None:
    # 100% of equity at bar 1: 10000 / 103 = 97.09 → 97 sh, filled at 102 (reference:
    # order_target_percent(1.0) → 97 sh).
    r = run(scenario("pct", signals((1,)), sizing=Sizing("percent_equity", 1.0, True)))
    assert r.fills == [Fill(2, "A", 97.0, 102.0, 0.0)]
    # An explicit 10.7-share order with integer sizing → 10 (round_order truncates).
    r = run(scenario("10.7", orders(OrderSpec(1, "A", 10.7)), sizing=Sizing(integer=True)))
    assert r.fills == [Fill(2, "A", 10.0, 102.0, 0.0)]


def test_short_and_reverse() -> None:
    # Short 200 at 102 with $10k: cash 10000 + 20400 = 30400; cover at 100 → 10400.
    r = run(
        scenario(
            "short",
            signals(short_entries=(1,), short_exits=(4,)),
            sizing=Sizing("fixed", 200, integer=True),
            direction="long_short",
        )
    )
    assert r.fills == [Fill(2, "A", -200.0, 102.0, 0.0), Fill(5, "A", 200.0, 100.0, 0.0)]
    assert r.cash[2] == pytest.approx(30_400.0) and r.cash[-1] == pytest.approx(10_400.0)
    # Long 10 from bar 2, short entry at bar 3 reverses with one order of −20 @109.
    r = run(
        scenario(
            "reverse",
            signals((1,), short_entries=(3,)),
            sizing=TEN,
            direction="long_short",
        )
    )
    assert r.fills == [Fill(2, "A", 10.0, 102.0, 0.0), Fill(4, "A", -20.0, 109.0, 0.0)]


def test_stop_loss_and_take_profit_orders() -> None:
    # Entry 10 @103 (bar 1). SL 3% → sell stop 99.91, TP 5% → sell limit 108.15, both placed
    # after bar 1. Bar 4 close 109 ≥ 108.15 → TP fills @109; the stop is cancelled, so bar
    # 6's close 98 < 99.91 does nothing. With 1% commission the entry level still comes
    # from the fill price (cost basis 104.03 − 10.3 / 10 = 103).
    exits = Exits(stop_loss=0.03, take_profit=0.05)
    r = run(
        scenario("sltp", signals((0,)), sizing=TEN, exits=exits, costs=Costs(commission_rate=0.01))
    )
    assert [(f.bar, f.quantity, f.price) for f in r.fills] == [(1, 10, 103.0), (4, -10, 109.0)]
    assert [f.commission for f in r.fills] == pytest.approx([10.3, 10.9])
    # SL only: bar 5 close 100 > 99.91 (low 99 is ignored); bar 6 close 98 → @98.
    r = run(scenario("sl", signals((0,)), sizing=TEN, exits=Exits(stop_loss=0.03)))
    assert r.fills == [Fill(1, "A", 10.0, 103.0, 0.0), Fill(6, "A", -10.0, 98.0, 0.0)]


def test_target_weights_multi_asset_consistent() -> None:
    # Three synthetic assets, rebalanced every 5th bar with 5 bp slippage and 0.1% fees:
    # every fill is whole, and cash/equity replay exactly from the fills (in ``run``).
    def weights(bars):
        rng = np.random.default_rng(1)
        w = rng.dirichlet(np.ones(3), size=bars.n_bars)
        w[np.arange(bars.n_bars) % 5 != 0] = np.nan
        return TargetWeights(w)

    s = Scenario(
        "tw",
        "tw",
        lambda: synthetic(60, 3),
        weights,
        fill_timing="next_bar_close",
        sizing=Sizing(integer=True),
        costs=Costs(commission_rate=0.001, slippage_rate=0.0005),
    )
    r = run(s)
    assert r.fills and all(f.quantity == int(f.quantity) for f in r.fills)
    assert {f.bar % 5 for f in r.fills} == {1}  # placed at bars 0, 5, … → filled a bar later


# --- what Zipline cannot express -----------------------------------------------------------
@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"fill_timing": "same_bar_close"}, "fill_timing"),
        ({"fill_timing": "next_bar_open"}, "fill_timing"),
        ({"exits": Exits(trailing_stop=0.05)}, "trailing"),
        ({"sizing": Sizing("percent_equity", 0.5)}, "fractional"),
        (
            {"sizing": Sizing("all_in", integer=True), "costs": Costs(commission_rate=1e-3)},
            "all_in",
        ),
        ({"costs": Costs(commission_rate=1e-3, commission_minimum=1.0)}, "commission_rate"),
    ],
)
def test_unsupported_raised_before_running(kw: dict, match: str) -> None:
    kw.setdefault("sizing", TEN)
    s = scenario("unsupported", signals((1,)), **kw)
    with pytest.raises(Unsupported, match=match):
        zl.run(s, python=Path("/nonexistent/python"))  # never started


def test_failing_command_is_reported() -> None:
    cmd = [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]
    with pytest.raises(RuntimeError, match=r"(?s)doing it failed \(exit 3\).*boom"):
        zl._call(cmd, "doing it", 60, quiet=True)
