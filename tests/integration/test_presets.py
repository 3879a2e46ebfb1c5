"""Broker presets and the settings they are made of, end to end against hand-built bars.

Every test writes its bars out as ``(open, high, low, close)`` rows (daily bars from
2024-01-02, volume 1,000 unless stated) and computes the expected fills by hand. Each
setting is run both ways (the default and the new value) on the same bars, so a test fails
if the setting stops changing the outcome. Orders are placed from the strategy while it
handles bar ``k``; "bar k" below always counts from 0.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import polars as pl
import pytest

from ml4t.backtest import (
    BacktestEngine,
    BacktestResult,
    ConfigError,
    Context,
    FixedSlippage,
    MarketEvent,
    PercentageCommission,
    PolarsDataFeed,
    SimulationBroker,
)
from ml4t.backtest.builtin.presets import PRESETS
from ml4t.backtest.testing import ScriptedStrategy, check_order_reports, make_bars

Bar = tuple[float, float, float, float]
OnBar = Callable[[ScriptedStrategy, MarketEvent, Context], None]
Script = dict[int, list[tuple[str, float]]]
FLAT: Bar = (100.0, 101.0, 99.0, 100.0)
START = datetime(2024, 1, 2)


def _day(k: int) -> datetime:
    return START + timedelta(days=k)


def _at(event: MarketEvent, k: int) -> bool:
    return event.timestamp == _day(k)


def _run(
    rows: list[Bar],
    broker: SimulationBroker,
    on_bar: OnBar | None = None,
    *,
    script: Script | None = None,
) -> tuple[BacktestResult, ScriptedStrategy]:
    """Run the bars ``rows`` for asset ``A`` through ``broker``; check the order reports.

    ``script`` places market orders, ``{bar: [(side, quantity), ...]}``; ``on_bar`` is
    called on every bar after it.
    """
    o, h, lo, c = (list(x) for x in zip(*rows, strict=True))
    df = make_bars(c, opens=o, highs=h, lows=lo)
    strategy = ScriptedStrategy(on_bar, script)
    result = BacktestEngine(PolarsDataFeed(df, asset_id="A"), strategy, broker).run()
    check_order_reports(result, strategy)
    return result, strategy


def _fills(result: BacktestResult) -> list[tuple[Any, ...]]:
    cols = ("timestamp", "side", "quantity", "price", "commission", "tag")
    return result.fills_df.select(*cols).rows()


def _cash(result: BacktestResult) -> float:
    return float(result.portfolio_df["cash"][-1])


# =============================================================================================
# The settings, one at a time (the rest at their defaults)
# =============================================================================================


# --- fill_timing="next_bar_close" -------------------------------------------------------------
NBC_ROWS: list[Bar] = [FLAT, (100.0, 103.0, 99.0, 102.0), (103.0, 106.0, 101.0, 105.0), FLAT]


@pytest.mark.parametrize(
    ("timing", "price"),
    [
        ("next_bar_open", 103.0),  # bar 2's open
        ("next_bar_close", 105.0),  # bar 2's close
    ],
)
def test_fill_timing_next_bar_close_fills_at_next_close_before_strategy_sees_it(
    timing: str, price: float
) -> None:
    seen: dict[str, float] = {}

    def on_bar(s: ScriptedStrategy, e: MarketEvent, c: Context) -> None:
        if _at(e, 1):
            s.buy("A", 10)
        if _at(e, 2):
            seen["position"], seen["cash"] = s.get_position("A"), s.get_cash()

    result, _ = _run(NBC_ROWS, SimulationBroker(10_000, fill_timing=timing), on_bar)
    assert _fills(result) == [(_day(2), "buy", 10.0, price, 0.0, None)]
    # the fill is booked before the strategy handles bar 2: 10,000 - 10 x price
    # (next_bar_close: 10,000 - 1,050 = 8,950; next_bar_open: 10,000 - 1,030 = 8,970)
    assert seen == {"position": 10.0, "cash": pytest.approx(10_000 - 10 * price, rel=1e-12)}


def test_fill_timing_next_bar_close_with_slippage_slips_the_close() -> None:
    broker = SimulationBroker(10_000, fill_timing="next_bar_close", slippage=FixedSlippage(0.5))
    result, strat = _run(NBC_ROWS, broker, script={1: [("buy", 10)]})
    # bar 2 close 105 + 0.5; base price 105
    assert _fills(result) == [(_day(2), "buy", 10.0, 105.5, 0.0, None)]
    assert strat.fills[0].base_price == 105.0


# --- intrabar="close_only" --------------------------------------------------------------------
CLOSE_ONLY_CASES = [
    # side, order kwargs, bar 2, fill price with "conservative", with "close_only"
    # buy limit 95: the low 94 touches it, the close 97 does not
    ("buy", {"limit_price": 95.0}, (100.0, 101.0, 94.0, 97.0), 95.0, None),
    # buy limit 95: the close 94.5 is below it -> close_only fills at the close
    ("buy", {"limit_price": 95.0}, (100.0, 101.0, 94.0, 94.5), 95.0, 94.5),
    # sell stop 95: the low 94 passes it, the close 97 does not
    ("sell", {"stop_price": 95.0}, (100.0, 101.0, 94.0, 97.0), 95.0, None),
    # sell stop 95: the close 94 is through it -> close_only fills at the close
    ("sell", {"stop_price": 95.0}, (100.0, 101.0, 93.0, 94.0), 95.0, 94.0),
    # buy stop 105: the high 106 passes it, the close 103 does not
    ("buy", {"stop_price": 105.0}, (100.0, 106.0, 99.0, 103.0), 105.0, None),
]


@pytest.mark.parametrize(("side", "kw", "bar", "conservative", "close_only"), CLOSE_ONLY_CASES)
@pytest.mark.parametrize("intrabar", ["conservative", "close_only"])
def test_intrabar_close_only_triggers_on_close_and_fills_at_close(
    intrabar: str,
    side: str,
    kw: dict[str, float],
    bar: Bar,
    conservative: float,
    close_only: float | None,
) -> None:
    rows = [FLAT, FLAT, bar, FLAT]
    long_first = side == "sell"  # a sell is covered by 10 bought on bar 0 (bar 1 open 100)

    def on_bar(s: ScriptedStrategy, e: MarketEvent, c: Context) -> None:
        if _at(e, 0) and long_first:
            s.buy("A", 10)
        if _at(e, 1):
            (s.buy if side == "buy" else s.sell)("A", 10, **kw)

    result, _ = _run(rows, SimulationBroker(10_000, intrabar=intrabar), on_bar)
    got = result.fills_df.filter(pl.col("timestamp") == _day(2))
    want = conservative if intrabar == "conservative" else close_only
    if want is None:
        assert got.height == 0
        # the working order then fills on bar 3 (100, 101, 99, 100) only if its level is
        # reached there; none of these levels is, so the run ends with it working
        assert result.fills_df.height == int(long_first)
    else:
        assert got.select("side", "quantity", "price").rows() == [(side, 10.0, want)]


# --- cash_policy="allow" ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("policy", "quantity", "cash"),
    [
        ("reject", None, 10_000.0),  # 150 x 100 = 15,000 > 10,000: rejected, cash untouched
        ("resize", 100.0, 0.0),  # 10,000 / 100 = 100 shares, cash 0
        ("allow", 150.0, -5_000.0),  # no check: 10,000 - 15,000 = -5,000
    ],
)
def test_cash_policy_allow_fills_beyond_cash_and_cash_goes_negative(
    policy: str, quantity: float | None, cash: float
) -> None:
    rows = [FLAT, FLAT, (100.0, 111.0, 99.0, 110.0)]
    result, strat = _run(
        rows, SimulationBroker(10_000, cash_policy=policy), script={0: [("buy", 150)]}
    )
    if quantity is None:
        assert result.fills_df.height == 0
        [(_, reason)] = strat.rejected
        assert reason.startswith("insufficient cash: need 15,000.00 to buy 150 A"), reason
    else:
        assert strat.rejected == []
        assert _fills(result) == [(_day(1), "buy", quantity, 100.0, 0.0, None)]
    assert _cash(result) == pytest.approx(cash, abs=1e-9)
    # equity at the last close 110: cash + quantity x 110
    # (allow: -5,000 + 16,500 = 11,500; resize: 0 + 11,000; reject: 10,000)
    assert result.final_equity == pytest.approx(cash + (quantity or 0.0) * 110.0, rel=1e-12)


# --- account="simple" -------------------------------------------------------------------------
# a short of 300 at bar 1's open 100 (30,000 notional on 10,000 of cash), then the price
# runs up to 140: the short loses 300 x 40 = 12,000, more than the account's equity
SHORT_ROWS: list[Bar] = [
    FLAT,
    FLAT,
    (100.0, 121.0, 99.0, 120.0),
    (120.0, 141.0, 119.0, 140.0),
]


@pytest.mark.parametrize(
    ("account", "reason"),
    [
        ("cash", "nothing to sell: no position in A; short selling is disabled (cash account)"),
        # margin: 300 x 100 x 0.5 = 15,000 initial margin > equity 10,000
        ("margin", "insufficient margin: the position would need 15,000.00 initial margin"),
    ],
)
def test_account_cash_or_margin_large_short_is_rejected(account: str, reason: str) -> None:
    broker = SimulationBroker(10_000, account=account)
    result, strat = _run(SHORT_ROWS, broker, script={0: [("sell", 300)]})
    assert result.fills_df.height == 0
    [(_, got)] = strat.rejected
    assert got.startswith(reason), got
    assert _cash(result) == 10_000.0


def test_account_simple_large_short_fills_proceeds_to_cash_and_no_margin_call() -> None:
    broker = SimulationBroker(10_000, account="simple")
    assert broker.allow_short is True  # the simple account's default
    result, strat = _run(SHORT_ROWS, broker, script={0: [("sell", 300)]})
    assert strat.rejected == []
    assert _fills(result) == [(_day(1), "sell", 300.0, 100.0, 0.0, None)]
    # proceeds credited: 10,000 + 300 x 100 = 40,000, unchanged to the end
    assert result.portfolio_df["cash"].to_list() == [10_000.0, 40_000.0, 40_000.0, 40_000.0]
    # equity at the last close: 40,000 - 300 x 140 = -2,000, and still no margin call
    assert result.final_equity == pytest.approx(-2_000.0, rel=1e-12)
    assert result.metrics["margin_calls"] == 0
    assert result.fills_df.height == 1  # nothing liquidated


@pytest.mark.parametrize(
    ("account", "filled"),
    [
        ("simple", False),  # buys are limited by cash: 150 x 100 = 15,000 > 10,000
        ("margin", True),  # 15,000 x 0.5 = 7,500 initial margin <= equity 10,000
    ],
)
def test_account_simple_buy_beyond_cash_is_rejected(account: str, filled: bool) -> None:
    result, strat = _run(
        [FLAT, FLAT, FLAT], SimulationBroker(10_000, account=account), script={0: [("buy", 150)]}
    )
    if filled:
        assert _fills(result) == [(_day(1), "buy", 150.0, 100.0, 0.0, None)]
        assert _cash(result) == -5_000.0  # 10,000 - 15,000 borrowed
    else:
        assert result.fills_df.height == 0
        [(_, reason)] = strat.rejected
        assert reason.startswith("insufficient cash: need 15,000.00"), reason


# --- exit_base="bar_close" --------------------------------------------------------------------
# entry: bought 10 on bar 0, filled at bar 1's open 100; bar 1 closes at 110.
# stop_loss 0.1 -> from the fill price: 100 x 0.9 = 90; from the bar's close: 110 x 0.9 = 99.
# bar 2's low 98 reaches 99 but not 90 (open 105 above both: no gap).
EXIT_BASE_ROWS: list[Bar] = [
    FLAT,
    (100.0, 111.0, 99.5, 110.0),
    (105.0, 106.0, 98.0, 100.0),
    (100.0, 101.0, 99.5, 100.0),
]


@pytest.mark.parametrize(
    ("base", "exits"),
    [
        ("fill_price", []),
        ("bar_close", [(_day(2), "sell", 10.0, 99.0, 0.0, "stop_loss")]),
    ],
)
@pytest.mark.parametrize("how", ["broker", "set_exits"])
def test_exit_base_bar_close_measures_stop_from_entry_bar_close(
    how: str, base: str, exits: list[tuple[Any, ...]]
) -> None:
    # "set_exits": the strategy sets the stop while handling bar 1, after the entry filled:
    # it is measured from the latest close, bar 1's 110, as well
    rules = {"stop_loss": 0.1}

    def on_bar(s: ScriptedStrategy, e: MarketEvent, c: Context) -> None:
        if how == "set_exits" and _at(e, 1):
            s.set_exits("A", **rules)

    broker = SimulationBroker(10_000, exits=rules if how == "broker" else None, exit_base=base)
    result, _ = _run(EXIT_BASE_ROWS, broker, on_bar, script={0: [("buy", 10)]})
    assert _fills(result) == [(_day(1), "buy", 10.0, 100.0, 0.0, None), *exits]
    stops = result.orders_df.filter(
        (pl.col("tag") == "stop_loss") & (pl.col("event") == "submitted")
    )
    assert stops["stop_price"].to_list() == pytest.approx([90.0 if base == "fill_price" else 99.0])


# --- exit_slippage=False ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("exit_slippage", "price"),
    [
        # stop 100.5 x 0.9 = 90.45 (entry at bar 1 open 100 + 0.5), touched on bar 2
        (True, 90.45 - 0.5),  # minus the slippage: 89.95
        (False, 90.45),  # at the stop
    ],
)
def test_exit_slippage_false_fills_stop_exit_at_stop_price(
    exit_slippage: bool, price: float
) -> None:
    broker = SimulationBroker(
        10_000,
        slippage=FixedSlippage(0.5),
        exits={"stop_loss": 0.1},
        exit_slippage=exit_slippage,
    )
    rows = [FLAT, FLAT, (95.0, 96.0, 89.0, 90.0), FLAT]
    result, _ = _run(rows, broker, script={0: [("buy", 10)]})
    fills = _fills(result)
    assert fills[0] == (_day(1), "buy", 10.0, 100.5, 0.0, None)  # the entry slips either way
    assert len(fills) == 2
    assert fills[1][:3] == (_day(2), "sell", 10.0)
    assert fills[1][3] == pytest.approx(price, rel=1e-12)
    assert fills[1][5] == "stop_loss"
    assert result.fills_df["slippage"][1] == pytest.approx(10 * 0.5 if exit_slippage else 0.0)


# a trailing stop of 10 %: entry at bar 1's open 100 + 0.5 = 100.5; bar 2's high 120 moves
# the reference to 120 (level 108) after bar 2 is matched; bar 3 trades down through 108
TRAIL_ROWS: list[Bar] = [
    FLAT,
    FLAT,
    (100.0, 120.0, 99.0, 118.0),
    (115.0, 116.0, 105.0, 106.0),
    FLAT,
]


@pytest.mark.parametrize(
    ("exit_slippage", "price"),
    [
        (True, 120.0 * 0.9 - 0.5),  # 108 - 0.5 = 107.5
        (False, 120.0 * 0.9),  # 108
    ],
)
def test_exit_slippage_false_fills_trailing_stop_at_its_level(
    exit_slippage: bool, price: float
) -> None:
    broker = SimulationBroker(
        10_000,
        slippage=FixedSlippage(0.5),
        exits={"trailing_stop": 0.1},
        exit_slippage=exit_slippage,
    )
    result, _ = _run(TRAIL_ROWS, broker, script={0: [("buy", 10)]})
    fills = _fills(result)
    assert fills[0] == (_day(1), "buy", 10.0, 100.5, 0.0, None)
    assert len(fills) == 2
    assert fills[1][:3] == (_day(3), "sell", 10.0)
    assert fills[1][3] == pytest.approx(price, rel=1e-12)
    assert fills[1][5] == "trailing_stop"


# a short of 100 in a margin account (initial 0.5, maintenance 0.25) at bar 1's open
# 100 - 0.5 = 99.5: cash 10,000 + 9,950 = 19,950. Bar 2 closes at 160: equity
# 19,950 - 16,000 = 3,950 < 0.25 x 16,000 = 4,000 -> margin call; the liquidation buys 100
# at bar 3's open 165.
SQUEEZE_ROWS: list[Bar] = [
    FLAT,
    FLAT,
    (100.0, 161.0, 99.0, 160.0),
    (165.0, 166.0, 164.0, 165.0),
    (165.0, 166.0, 164.0, 165.0),
]


@pytest.mark.parametrize("exit_slippage", [True, False])
def test_exit_slippage_false_still_slips_margin_call_liquidation(exit_slippage: bool) -> None:
    # exit_slippage covers position exits (stop-loss, trailing stop); a margin call is the
    # broker's forced market order and slips like any other: 165 + 0.5 = 165.5 either way
    broker = SimulationBroker(
        10_000, account="margin", slippage=FixedSlippage(0.5), exit_slippage=exit_slippage
    )
    result, _ = _run(SQUEEZE_ROWS, broker, script={0: [("sell", 100)]})
    assert result.metrics["margin_calls"] == 1
    assert _fills(result) == [
        (_day(1), "sell", 100.0, 99.5, 0.0, None),
        (_day(3), "buy", 100.0, 165.5, 0.0, "margin_call"),
    ]
    assert result.fills_df["slippage"].to_list() == pytest.approx([50.0, 50.0])


# --- one_order_per_bar=True -------------------------------------------------------------------
@pytest.mark.parametrize("one", [False, True])
def test_one_order_per_bar_rejects_second_fill_for_asset_on_same_bar(one: bool) -> None:
    broker = SimulationBroker(10_000, one_order_per_bar=one)
    result, strat = _run([FLAT, FLAT, FLAT], broker, script={0: [("buy", 10), ("buy", 5)]})
    # both placed on bar 0; the first (lower order id) fills at bar 1's open 100
    first = (_day(1), "buy", 10.0, 100.0, 0.0, None)
    if one:
        assert _fills(result) == [first]
        [(order, reason)] = strat.rejected
        assert order.quantity == 5.0
        assert reason.startswith("one order per bar"), reason
    else:
        assert _fills(result) == [first, (_day(1), "buy", 5.0, 100.0, 0.0, None)]
        assert strat.rejected == []


def test_one_order_per_bar_allows_same_asset_on_next_bar() -> None:
    broker = SimulationBroker(10_000, one_order_per_bar=True)
    result, strat = _run([FLAT, FLAT, FLAT], broker, script={0: [("buy", 10)], 1: [("buy", 5)]})
    # bar 1 open 100, then bar 2 open 100: different bars, both fill
    assert [f[:3] for f in _fills(result)] == [(_day(1), "buy", 10.0), (_day(2), "buy", 5.0)]
    assert strat.rejected == []


def test_one_order_per_bar_never_drops_protective_stop_of_open_position() -> None:
    # long 10 bought on bar 0 (bar 1 open 100), stop_loss 0.1 -> stop at 90. On bar 1 the
    # strategy places a limit sell of 5 at 105. Bar 2 gaps up to open 106 (the limit fills at
    # the open) and trades down to 89 (through the stop) on the same bar; bar 3 opens at 85.
    # Only one of the two can fill on bar 2, but the position must stay protected: either
    # the stop wins on bar 2 (all 10 at 90) or it stays working and the remaining 5 are
    # stopped out on bar 3 (at its gapped open 85). Never a rejected stop and 5 shares
    # left without one.
    rows = [FLAT, FLAT, (106.0, 107.0, 89.0, 95.0), (85.0, 86.0, 80.0, 82.0), FLAT]

    def on_bar(s: ScriptedStrategy, e: MarketEvent, c: Context) -> None:
        if _at(e, 1):
            s.sell("A", 5, limit_price=105.0)

    broker = SimulationBroker(10_000, exits={"stop_loss": 0.1}, one_order_per_bar=True)
    result, strat = _run(rows, broker, on_bar, script={0: [("buy", 10)]})
    assert [reason for o, reason in strat.rejected if o.tag == "stop_loss"] == []
    fills = _fills(result)
    assert fills[-1][5] == "stop_loss"
    assert fills[-1][3] in (90.0, 85.0)
    sold = result.fills_df.filter(pl.col("side") == "sell")["quantity"].sum()
    assert sold == 10.0  # flat at the end: nothing left unprotected


def test_one_order_per_bar_is_per_asset() -> None:
    rows = [FLAT, FLAT, FLAT]
    o, h, lo, c = (list(x) for x in zip(*rows, strict=True))
    frames = [make_bars(c, opens=o, highs=h, lows=lo, asset_id=a) for a in ("A", "B")]
    df = pl.concat(frames).sort("timestamp", "asset_id")
    strategy = ScriptedStrategy(script={0: [("buy", 10)]})  # 10 of A and 10 of B on bar 0
    broker = SimulationBroker(10_000, one_order_per_bar=True)
    result = BacktestEngine(PolarsDataFeed(df), strategy, broker).run()
    check_order_reports(result, strategy)
    # one fill per asset on bar 1 (open 100): both allowed
    got = result.fills_df.select("timestamp", "asset_id", "quantity", "price").rows()
    assert sorted(got) == [(_day(1), "A", 10.0, 100.0), (_day(1), "B", 10.0, 100.0)]
    assert strategy.rejected == []


# --- slippage_within_bar=True -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("within", "buy", "sell"),
    [
        (False, 102.0, 98.0),  # buy: open 100 + 2; sell: open 100 - 2
        (True, 101.0, 99.0),  # capped at bar 1's high 101 / bar 2's low 99
    ],
)
def test_slippage_within_bar_caps_slipped_price_at_high_and_low(
    within: bool, buy: float, sell: float
) -> None:
    broker = SimulationBroker(10_000, slippage=FixedSlippage(2.0), slippage_within_bar=within)
    script = {0: [("buy", 10)], 1: [("sell", 10)]}
    result, _ = _run([FLAT, FLAT, FLAT, FLAT], broker, script=script)
    assert [f[:4] for f in _fills(result)] == [
        (_day(1), "buy", 10.0, buy),
        (_day(2), "sell", 10.0, sell),
    ]
    # the slippage recorded is what was charged: |price - open 100| x 10
    assert result.fills_df["slippage"].to_list() == pytest.approx(
        [10 * (buy - 100.0), 10 * (100.0 - sell)]
    )


# =============================================================================================
# Presets
# =============================================================================================


# --- vectorbt ---------------------------------------------------------------------------------
def test_preset_vectorbt_market_order_fills_at_signal_bar_close() -> None:
    broker = SimulationBroker.preset("vectorbt", initial_cash=10_000)
    result, _ = _run(NBC_ROWS, broker, script={1: [("buy", 10)]})
    # the signal bar 1's close 102 (not bar 2's open 103)
    assert _fills(result) == [(_day(1), "buy", 10.0, 102.0, 0.0, None)]


@pytest.mark.parametrize(
    ("overrides", "quantity"),
    [
        # resize: q x 100 x (1 + 0.001) = 10,000 -> q = 10,000 / 100.1 = 99.9000999...
        ({}, 10_000 / (100.0 * 1.001)),
        # the same preset with the default cash policy: rejected, nothing bought
        ({"cash_policy": "reject"}, None),
    ],
)
def test_preset_vectorbt_resizes_buy_to_cash_over_price_times_one_plus_fee(
    overrides: dict[str, Any], quantity: float | None
) -> None:
    broker = SimulationBroker.preset(
        "vectorbt", initial_cash=10_000, commission=PercentageCommission(0.001), **overrides
    )
    result, strat = _run([FLAT, FLAT], broker, script={0: [("buy", 200)]})
    if quantity is None:
        assert result.fills_df.height == 0
        [(_, reason)] = strat.rejected
        # 200 x 100 + 0.001 x 20,000 = 20,020
        assert reason.startswith("insufficient cash: need 20,020.00"), reason
        return
    fill = result.fills_df.row(0, named=True)
    assert result.fills_df.height == 1
    assert (fill["timestamp"], fill["price"]) == (_day(0), 100.0)  # bar 0's close
    assert fill["quantity"] == pytest.approx(quantity, rel=1e-9)
    # commission 0.001 x q x 100 = 9.99000999...; all the cash is spent
    assert fill["commission"] == pytest.approx(0.001 * quantity * 100.0, rel=1e-9)
    assert fill["reason"].startswith("resized from 200 to 99.9001: insufficient cash")
    assert _cash(result) == pytest.approx(0.0, abs=1e-6)


# entry: 10 bought on bar 1 at its close 100 plus slippage 0.5 = 100.5; stop_loss 0.1.
# bar 2 opens 95 and trades down to 89.
VBT_STOP_ROWS: list[Bar] = [FLAT, FLAT, (95.0, 96.0, 89.0, 91.0), (91.0, 92.0, 90.0, 91.0)]


@pytest.mark.parametrize(
    ("broker_kwargs", "stop_fill"),
    [
        # vectorbt: stop from bar 1's close 100 -> 90, filled at 90 without slippage
        (None, 90.0),
        # the default broker with the same fill timing: from the fill 100.5 -> 90.45,
        # then slipped: 90.45 - 0.5 = 89.95
        ({"fill_timing": "same_bar_close"}, 89.95),
    ],
)
def test_preset_vectorbt_stop_exit_from_entry_bar_close_without_slippage(
    broker_kwargs: dict[str, Any] | None, stop_fill: float
) -> None:
    common: dict[str, Any] = {"slippage": FixedSlippage(0.5), "exits": {"stop_loss": 0.1}}
    broker = (
        SimulationBroker.preset("vectorbt", initial_cash=10_000, **common)
        if broker_kwargs is None
        else SimulationBroker(10_000, **common, **broker_kwargs)
    )
    result, _ = _run(VBT_STOP_ROWS, broker, script={1: [("buy", 10)]})
    fills = _fills(result)
    assert fills[0] == (_day(1), "buy", 10.0, 100.5, 0.0, None)
    assert len(fills) == 2
    assert fills[1][:3] == (_day(2), "sell", 10.0)
    assert fills[1][3] == pytest.approx(stop_fill, rel=1e-12)
    assert fills[1][5] == "stop_loss"


@pytest.mark.parametrize("one_order_per_bar", [None, False])
def test_preset_vectorbt_entry_on_bar_of_stop_exit_is_rejected(
    one_order_per_bar: bool | None,
) -> None:
    over = {} if one_order_per_bar is None else {"one_order_per_bar": one_order_per_bar}
    broker = SimulationBroker.preset(
        "vectorbt", initial_cash=10_000, exits={"stop_loss": 0.1}, **over
    )
    seen: dict[str, float] = {}

    def on_bar(s: ScriptedStrategy, e: MarketEvent, c: Context) -> None:
        if _at(e, 1):
            s.buy("A", 10)
        if _at(e, 2):
            seen["position"] = s.get_position("A")
            s.buy("A", 10)  # re-entry signal on the bar the stop fired

    result, strat = _run(VBT_STOP_ROWS, broker, on_bar)
    assert seen == {"position": 0.0}  # the stop (at 90) filled before the strategy saw bar 2
    fills = _fills(result)
    assert fills[:2] == [
        (_day(1), "buy", 10.0, 100.0, 0.0, None),
        (_day(2), "sell", 10.0, 90.0, 0.0, "stop_loss"),
    ]
    if one_order_per_bar is None:  # the preset: the stop exit wins over the bar's signal
        assert len(fills) == 2
        [(order, reason)] = strat.rejected
        assert order.quantity == 10.0
        assert reason.startswith("one order per bar"), reason
    else:  # overridden: the re-entry fills at bar 2's close 91
        assert fills[2:] == [(_day(2), "buy", 10.0, 91.0, 0.0, None)]
        assert strat.rejected == []


# --- backtrader -------------------------------------------------------------------------------
def test_preset_backtrader_market_order_fills_at_next_open() -> None:
    broker = SimulationBroker.preset("backtrader", initial_cash=10_000)
    result, _ = _run(NBC_ROWS, broker, script={1: [("buy", 10)]})
    assert _fills(result) == [(_day(2), "buy", 10.0, 103.0, 0.0, None)]  # bar 2's open


# bar 1 closes at 100; bar 2 gaps up to open at 105
GAP_ROWS: list[Bar] = [FLAT, FLAT, (105.0, 106.0, 104.0, 105.0), (105.0, 106.0, 104.0, 105.0)]


@pytest.mark.parametrize(
    ("overrides", "quantity"),
    [
        # 99 x 105 = 10,395 > 10,000 at execution: rejected (Backtrader's Margin status)
        ({}, None),
        # with the resize policy instead: 10,000 / 105 = 95.238...
        ({"cash_policy": "resize"}, 10_000 / 105.0),
    ],
)
def test_preset_backtrader_order_unaffordable_at_gapped_open_is_rejected(
    overrides: dict[str, Any], quantity: float | None
) -> None:
    broker = SimulationBroker.preset("backtrader", initial_cash=10_000, **overrides)
    # 99 x bar 1's close 100 = 9,900 fits the cash when the order is placed
    result, strat = _run(GAP_ROWS, broker, script={1: [("buy", 99)]})
    if quantity is None:
        assert result.fills_df.height == 0
        [(_, reason)] = strat.rejected
        assert reason == (
            "insufficient cash: need 10,395.00 to buy 99 A at 105.0000, have 10,000.00"
        )
        assert _cash(result) == 10_000.0
    else:
        assert strat.rejected == []
        fill = result.fills_df.row(0, named=True)
        assert (fill["timestamp"], fill["price"]) == (_day(2), 105.0)
        assert fill["quantity"] == pytest.approx(quantity, rel=1e-9)


@pytest.mark.parametrize(
    ("overrides", "price"),
    [
        ({}, 104.0),  # open 103 + 2 = 105, capped at bar 2's high 104
        ({"slippage_within_bar": False}, 105.0),
    ],
)
def test_preset_backtrader_slipped_open_price_is_capped_at_high(
    overrides: dict[str, Any], price: float
) -> None:
    broker = SimulationBroker.preset(
        "backtrader", initial_cash=10_000, slippage=FixedSlippage(2.0), **overrides
    )
    rows = [FLAT, FLAT, (103.0, 104.0, 102.0, 103.5), FLAT]
    result, _ = _run(rows, broker, script={1: [("buy", 10)]})
    assert _fills(result) == [(_day(2), "buy", 10.0, price, 0.0, None)]


# --- zipline ----------------------------------------------------------------------------------
# bar 2 closes at 105, bar 3 at 107, bar 4 at 104
ZL_ROWS: list[Bar] = [
    FLAT,
    (100.0, 103.0, 99.0, 102.0),
    (103.0, 106.0, 101.0, 105.0),
    (105.0, 108.0, 104.0, 107.0),
    (107.0, 108.0, 103.0, 104.0),
]


def test_preset_zipline_fills_at_next_close_with_default_costs() -> None:
    broker = SimulationBroker.preset("zipline", initial_cash=100_000)
    seen: dict[str, float] = {}

    def on_bar(s: ScriptedStrategy, e: MarketEvent, c: Context) -> None:
        if _at(e, 1):
            s.buy("A", 100)
        if _at(e, 2):
            seen["position"], seen["cash"] = s.get_position("A"), s.get_cash()

    result, strat = _run(ZL_ROWS, broker, on_bar)
    # bar 2's close 105 x (1 + 5 bp) = 105.0525; commission 100 x 0.001 = 0.10;
    # 100 is exactly the volume limit 0.1 x 1,000
    [fill] = _fills(result)
    assert fill[:3] == (_day(2), "buy", 100.0)
    assert fill[3] == pytest.approx(105.0525, rel=1e-12)
    assert fill[4] == pytest.approx(0.1, rel=1e-12)
    assert strat.fills[0].base_price == 105.0
    # already booked when the strategy sees bar 2: 100,000 - 10,505.25 - 0.10 = 89,494.65
    assert seen["position"] == 100.0
    assert seen["cash"] == pytest.approx(89_494.65, rel=1e-12)


def test_preset_zipline_volume_limit_splits_order_into_partial_fills() -> None:
    broker = SimulationBroker.preset("zipline", initial_cash=100_000)
    result, _ = _run(ZL_ROWS, broker, script={1: [("buy", 250)]})
    got = result.fills_df.select("timestamp", "quantity", "price", "commission", "reason").rows()
    partial = "partial: volume limit 0.1 x bar volume 1000"
    # 0.1 x 1,000 = 100 per bar at each close x 1.0005, 0.001 per share:
    # bar 2: 100 @ 105.0525; bar 3: 100 @ 107 x 1.0005 = 107.0535; bar 4: 50 @ 104.052
    want = [
        (_day(2), 100.0, 105.0525, 0.1, partial),
        (_day(3), 100.0, 107.0535, 0.1, partial),
        (_day(4), 50.0, 104.052, 0.05, None),
    ]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g[:2] == w[:2]
        assert g[2:4] == pytest.approx(w[2:4], rel=1e-12)
        assert g[4] == w[4]


def test_preset_zipline_buy_beyond_cash_fills_and_cash_goes_negative() -> None:
    broker = SimulationBroker.preset("zipline", initial_cash=1_000)
    result, strat = _run(ZL_ROWS, broker, script={1: [("buy", 100)]})
    assert strat.rejected == []
    assert result.fills_df["quantity"].to_list() == [100.0]
    # 1,000 - 100 x 105.0525 - 0.10 = -9,505.35
    assert _cash(result) == pytest.approx(-9_505.35, rel=1e-12)
    # equity at the last close 104: -9,505.35 + 10,400 = 894.65
    assert result.final_equity == pytest.approx(894.65, rel=1e-9)


# limit buy at 100 placed on bar 1: bar 2's low 99 touches it but it closes at 101;
# bar 3 closes at 99, below the limit
ZL_LIMIT_ROWS: list[Bar] = [
    FLAT,
    (100.0, 103.0, 99.5, 102.0),
    (101.0, 102.0, 99.0, 101.0),
    (100.0, 101.0, 98.0, 99.0),
    FLAT,
]


@pytest.mark.parametrize(
    ("overrides", "day", "price"),
    [
        ({}, 3, 99.0),  # close_only: not on bar 2 (close 101); bar 3 at its close 99
        ({"intrabar": "conservative"}, 2, 100.0),  # the low 99 touches: at the limit
    ],
)
def test_preset_zipline_limit_buy_fills_at_close_below_limit_not_on_low_touch(
    overrides: dict[str, Any], day: int, price: float
) -> None:
    broker = SimulationBroker.preset("zipline", initial_cash=100_000, **overrides)

    def on_bar(s: ScriptedStrategy, e: MarketEvent, c: Context) -> None:
        if _at(e, 1):
            s.buy("A", 100, limit_price=100.0)

    result, _ = _run(ZL_LIMIT_ROWS, broker, on_bar)
    # limits never slip; commission 100 x 0.001 = 0.10
    [fill] = _fills(result)
    assert fill[:4] == (_day(day), "buy", 100.0, price)
    assert fill[4] == pytest.approx(0.1, rel=1e-12)
    assert result.fills_df["slippage"][0] == 0.0


@pytest.mark.parametrize(
    ("overrides", "quantities", "rejected"),
    [
        # whole shares: 1,000 / bar 1's close 102 = 9.80 -> 9; an explicit 10.7 is rejected
        ({}, [9.0], True),
        ({"fractional": True}, [1_000 / 102.0, 10.7], False),
    ],
)
def test_preset_zipline_sizes_in_whole_shares(
    overrides: dict[str, Any], quantities: list[float], rejected: bool
) -> None:
    broker = SimulationBroker.preset("zipline", initial_cash=10_000, **overrides)

    def on_bar(s: ScriptedStrategy, e: MarketEvent, c: Context) -> None:
        if _at(e, 1):
            s.order_target_value("A", 1_000)
            s.buy("A", 10.7)

    result, strat = _run(ZL_ROWS, broker, on_bar)
    assert result.fills_df["quantity"].to_list() == pytest.approx(quantities, rel=1e-12)
    assert result.fills_df["timestamp"].to_list() == [_day(2)] * len(quantities)
    if rejected:
        [(order, reason)] = strat.rejected
        assert order.quantity == 10.7
        assert reason.startswith("fractional quantity 10.7 while fractional=False"), reason
    else:
        assert strat.rejected == []


# --- overrides and errors ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "settings"),
    [
        (
            "vectorbt",
            {
                "fill_timing": "same_bar_close",
                "cash_policy": "resize",
                "account": "simple",
                "exit_base": "bar_close",
                "exit_slippage": False,
                "one_order_per_bar": True,
                "slippage_within_bar": False,
                "trail_reference": "high_low",
                "allow_short": True,
            },
        ),
        (
            "backtrader",
            {
                "fill_timing": "next_bar_open",
                "cash_policy": "reject",
                "account": "simple",
                "exit_base": "fill_price",
                "exit_slippage": True,
                "one_order_per_bar": False,
                "slippage_within_bar": True,
                "trail_reference": "close",
                "allow_short": True,
            },
        ),
        (
            "zipline",
            {
                "fill_timing": "next_bar_close",
                "cash_policy": "allow",
                "account": "simple",
                "intrabar": "close_only",
                "fractional": False,
                "volume_limit": 0.1,
                "one_order_per_bar": False,
                "allow_short": True,
            },
        ),
    ],
)
def test_preset_builds_broker_with_preset_settings(name: str, settings: dict[str, Any]) -> None:
    got = SimulationBroker.preset(name, initial_cash=5_000).settings()
    assert got["initial_cash"] == 5_000.0
    assert {k: got[k] for k in settings} == settings


def test_preset_zipline_default_cost_models() -> None:
    broker = SimulationBroker.preset("zipline")
    assert broker.initial_cash == 100_000.0
    assert repr(broker.commission_model).startswith("PerShareCommission(cost_per_share=0.001")
    assert repr(broker.slippage_model).startswith("BasisPointsSlippage(bps=5.0")


def test_preset_overrides_win_over_preset_values() -> None:
    broker = SimulationBroker.preset(
        "zipline",
        initial_cash=10_000,
        fill_timing="next_bar_open",
        commission=None,
        slippage=None,
        volume_limit=None,
    )
    assert (broker.fill_timing, broker.volume_limit) == ("next_bar_open", None)
    assert broker.intrabar == "close_only"  # not overridden: the preset's value
    result, _ = _run(ZL_ROWS, broker, script={1: [("buy", 250)]})
    # bar 2's open 103, no slippage, no commission, no volume limit (250 > 100 in one fill)
    assert _fills(result) == [(_day(2), "buy", 250.0, 103.0, 0.0, None)]
    # 10,000 - 250 x 103 = -15,750: cash_policy "allow" is still the preset's
    assert _cash(result) == -15_750.0
    # the preset itself is unchanged
    assert PRESETS["zipline"]["fill_timing"] == "next_bar_close"
    assert PRESETS["zipline"]["volume_limit"] == 0.1


def test_preset_unknown_name_raises_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"unknown preset 'quantopian'") as info:
        SimulationBroker.preset("quantopian")
    for name in ("backtrader", "vectorbt", "zipline"):
        assert name in str(info.value)


def test_preset_bad_override_value_raises_config_error_naming_setting() -> None:
    with pytest.raises(ConfigError, match=r"^fill_timing: .*'tomorrow'"):
        SimulationBroker.preset("vectorbt", fill_timing="tomorrow")
