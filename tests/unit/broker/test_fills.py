"""The fill engine of the simulation broker: which order fills first, at what price, for how
much, and what it costs.

Driven through the broker's public methods during short runs (``drive``, see conftest): bar
``k`` is 2 Jan 2024 + k days, an order submitted on bar ``k`` is first matched against bar
``k + 1``. The rules are those of ``docs/execution.md`` §1 (which order fills first), §2-3
(prices inside a bar), §5 (volume limits) and ``docs/costs.md`` (commission, slippage,
impact). Every expected number is worked out in the test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from ml4t.backtest import FixedSlippage, Order, OrderStatus, PercentageCommission

QUIET = (100.0, 101.0, 99.0, 100.0)  # reaches neither 98 nor 102
RALLY = (100.0, 106.0, 99.0, 104.0)  # high 106: reaches a sell limit at 105
PARTIAL = "partial: volume limit 0.1 x bar volume 1000"


class ZeroFloor:
    """Slippage that lowers a sell by 100 but never below 0 (buys fill unslipped)."""

    def fill_price(self, base: float, side: int, quantity: float, volume: float) -> float:
        return base if side > 0 else max(base - 100.0, 0.0)


class FlatImpact:
    """Impact of 0.25 per unit on every fill it is asked about."""

    def price_impact(
        self, price: float, side: int, quantity: float, bar: Mapping[str, float]
    ) -> float:
        return 0.25


@pytest.mark.parametrize(
    ("intrabar", "first", "second"),
    [
        # buy orders, conservative: open 100 -> high 101 -> low 97 -> close; the stop at
        # 100.5 is reached before the limit at 99
        ("conservative", ("stop", 100.5), ("limit", 99.0)),
        # open 100 -> low 97 -> high 101 -> close: the limit at 99 is reached first
        ("low_first", ("limit", 99.0), ("stop", 100.5)),
    ],
)
def test_entries_competing_for_cash_fill_in_the_order_the_bar_path_reaches_them(
    intrabar: str, first: tuple[str, float], second: tuple[str, float], drive: Any
) -> None:
    # cash 1,010 pays for one of two buys of 10 (1,005 at 100.5 or 990 at 99), not both.
    # Bar 1 (100, 101, 97, 100) reaches both; the first on the path fills at its level,
    # the second is rejected for the cash that is left.
    def submit(b: Any, s: Any) -> None:
        b.submit_order(Order("A", "buy", 10, "limit", limit_price=99.0, tag="limit"))
        b.submit_order(Order("A", "buy", 10, "stop", stop_price=100.5, tag="stop"))

    rows = [QUIET, (100.0, 101.0, 97.0, 100.0), QUIET]
    d = drive(rows, {0: submit}, initial_cash=1_010.0, intrabar=intrabar)
    (tag, price), (other_tag, other_price) = first, second
    assert d.fills() == [(1, "buy", 10.0, price, tag)]
    left = 1_010.0 - 10 * price
    [(order, reason)] = d.strategy.rejected
    assert order.tag == other_tag
    assert reason == (
        f"insufficient cash: need {10 * other_price:,.2f} to buy 10 A at {other_price:.4f}, "
        f"have {left:,.2f}"
    )


@pytest.mark.parametrize(("exit_slippage", "price"), [(True, 89.5), (False, 90.0)])
def test_position_stop_gapped_through_fills_at_the_open(
    exit_slippage: bool, price: float, drive: Any
) -> None:
    # entry 10 at bar 1's open 100 + slippage 0.5 = 100.5; stop_loss 5 % -> 95.475. Bar 3
    # opens at 90, below the stop: it fills at the open, 90, less 0.5 slippage unless
    # exit_slippage=False
    def buy(b: Any, s: Any) -> None:
        b.submit_order(Order("A", "buy", 10))

    rows = [QUIET, QUIET, QUIET, (90.0, 91.0, 88.0, 90.0), QUIET]
    d = drive(
        rows,
        {0: buy},
        slippage=FixedSlippage(0.5),
        exits={"stop_loss": 0.05},
        exit_slippage=exit_slippage,
    )
    assert d.fills("side", "quantity", "price", "tag", "slippage") == [
        (1, "buy", 10.0, 100.5, None, pytest.approx(5.0)),
        (3, "sell", 10.0, price, "stop_loss", pytest.approx(10 * (90.0 - price))),
    ]
    assert d.result.trades_df["exit_reason"].to_list() == ["stop_loss"]


def test_volume_limit_is_counted_per_asset(drive: Any) -> None:
    # 10 % of 1,000 = 100 per asset per bar: A and B each fill 100 on bar 1 and 50 on bar 2
    def submit(b: Any, s: Any) -> None:
        b.submit_order(Order("A", "buy", 150))
        b.submit_order(Order("B", "buy", 150))

    d = drive({"A": [QUIET] * 4, "B": [QUIET] * 4}, {0: submit}, volume_limit=0.1)
    assert d.fills("asset_id", "quantity", "reason") == [
        (1, "A", 100.0, PARTIAL),
        (1, "B", 100.0, PARTIAL),
        (2, "A", 50.0, None),
        (2, "B", 50.0, None),
    ]


def test_volume_limited_fill_is_rounded_down_to_the_lot(drive: Any) -> None:
    # room 100 per bar, lot 30: 90 per bar, so 180 fill as 90 + 90
    def submit(b: Any, s: Any) -> None:
        s.state["o"] = b.submit_order(Order("A", "buy", 180))

    d = drive([QUIET] * 4, {0: submit}, volume_limit=0.1, assets={"A": {"lot_size": 30}})
    assert d.fills("quantity", "reason") == [(1, 90.0, PARTIAL), (2, 90.0, None)]
    assert d.state["o"].status is OrderStatus.FILLED


def test_partial_fills_accumulate_commission_slippage_and_average_price(drive: Any) -> None:
    # 250 under a 10 % volume limit: 100, 100, 50 at opens 100, 102, 104, each + 0.5 slip,
    # so at 100.5, 102.5, 104.5; commission 0.1 % of each fill's value
    def submit(b: Any, s: Any) -> None:
        s.state["o"] = b.submit_order(Order("A", "buy", 250))

    rows = [QUIET, QUIET, (102.0, 103.0, 101.0, 102.0), (104.0, 105.0, 103.0, 104.0), QUIET]
    d = drive(
        rows,
        {0: submit},
        volume_limit=0.1,
        commission=PercentageCommission(0.001),
        slippage=FixedSlippage(0.5),
    )
    order = d.state["o"]
    commissions = [100 * 100.5 * 0.001, 100 * 102.5 * 0.001, 50 * 104.5 * 0.001]  # 10.05 ...
    assert d.fills("quantity", "price", "commission", "slippage") == [
        (1, 100.0, 100.5, pytest.approx(commissions[0]), pytest.approx(50.0)),
        (2, 100.0, 102.5, pytest.approx(commissions[1]), pytest.approx(50.0)),
        (3, 50.0, 104.5, pytest.approx(commissions[2]), pytest.approx(25.0)),
    ]
    notional = 100 * 100.5 + 100 * 102.5 + 50 * 104.5  # 25,525
    assert order.avg_fill_price == pytest.approx(notional / 250)  # 102.1
    assert order.commission == pytest.approx(sum(commissions))  # 25.525
    assert order.slippage == pytest.approx(125.0)
    assert d.cash() == pytest.approx(100_000.0 - notional - sum(commissions))


@pytest.mark.parametrize(("commission", "filled"), [(None, True), (0.001, False)])
def test_commission_counts_in_the_cash_check(
    commission: float | None, filled: bool, drive: Any
) -> None:
    # cash 1,000 buys 10 at 100 exactly; 0.1 % commission makes it 1,001
    def submit(b: Any, s: Any) -> None:
        b.submit_order(Order("A", "buy", 10))

    model = None if commission is None else PercentageCommission(commission)
    d = drive([QUIET] * 3, {0: submit}, initial_cash=1_000.0, commission=model)
    if filled:
        assert d.fills() == [(1, "buy", 10.0, 100.0, None)]
        assert d.cash() == 0.0
    else:
        assert d.result.fills_df.height == 0
        assert [r for _, r in d.strategy.rejected] == [
            "insufficient cash: need 1,001.00 to buy 10 A at 100.0000, have 1,000.00"
        ]


def test_slippage_moving_a_price_to_zero_rejects_the_order_naming_the_model(
    drive: Any,
) -> None:
    # the buy fills unslipped at 100; the sell would be slipped from 100 to 0
    def buy(b: Any, s: Any) -> None:
        b.submit_order(Order("A", "buy", 10))

    def sell(b: Any, s: Any) -> None:
        s.state["sell"] = b.submit_order(Order("A", "sell", 10))

    d = drive([QUIET] * 4, {0: buy, 1: sell}, slippage=ZeroFloor())
    reason = "slippage model ZeroFloor moved the price to 0.0, not a price > 0"
    assert d.strategy.rejected == [(d.state["sell"], reason)]
    assert d.events(d.state["sell"])[-1] == (2, "rejected", reason)
    assert d.fills() == [(1, "buy", 10.0, 100.0, None)]


def test_impact_is_added_after_slippage_on_market_fills_and_never_on_limits(
    drive: Any,
) -> None:
    # market buy 10: open 100 + slippage 0.5 + impact 0.25 = 100.75; the sell limit 105
    # fills at its level on bar 3 (high 106) with neither slippage nor impact
    def buy(b: Any, s: Any) -> None:
        b.submit_order(Order("A", "buy", 10))
        b.submit_order(Order("A", "sell", 10, "limit", limit_price=105.0))

    d = drive(
        [QUIET, QUIET, QUIET, RALLY, QUIET],
        {0: buy},
        slippage=FixedSlippage(0.5),
        impact=FlatImpact(),
    )
    assert d.fills("side", "price", "slippage", "impact") == [
        (1, "buy", 100.75, pytest.approx(5.0), pytest.approx(2.5)),
        (3, "sell", 105.0, 0.0, 0.0),
    ]
    assert d.cash() == pytest.approx(100_000.0 - 10 * 100.75 + 10 * 105.0)
