"""Portfolio.apply_fill accounting, checked against hand-computed numbers."""

from __future__ import annotations

import pytest

from ml4t.backtest import Order
from ml4t.backtest.core.ledger import LedgerRow
from ml4t.backtest.core.portfolio import Portfolio

A, B = 0, 1


@pytest.fixture
def pf() -> Portfolio:
    return Portfolio(10_000.0, ["A", "B"])


def _fill(pf: Portfolio, qty: float, price: float, commission: float = 0.0, code: int = A) -> float:
    side = "buy" if qty > 0 else "sell"
    order = Order(pf.asset_ids[code], side, abs(qty))
    n = len(pf.fills)
    return pf.apply_fill(code, qty, price, commission, 0.0, n, n, order)


def test_portfolio_buy_sets_position_avg_cost_and_cash(pf: Portfolio) -> None:
    realized = _fill(pf, 10, 100.0, commission=1.0)
    assert realized == 0.0
    assert pf.qty[A] == 10.0
    assert pf.avg_cost[A] == 100.0
    assert pf.cash == 10_000.0 - 1_000.0 - 1.0
    assert pf.position_by_id == {"A": 10.0}
    assert pf.total_commission == 1.0


def test_portfolio_add_averages_cost(pf: Portfolio) -> None:
    _fill(pf, 10, 100.0, commission=1.0)
    _fill(pf, 30, 120.0, commission=2.0)
    assert pf.qty[A] == 40.0
    assert pf.avg_cost[A] == pytest.approx((10 * 100.0 + 30 * 120.0) / 40)  # 115.0
    assert pf.cash == pytest.approx(10_000.0 - 1_000.0 - 1.0 - 3_600.0 - 2.0)
    assert pf.total_commission == 3.0


def test_portfolio_partial_sell_realizes_against_average_cost(pf: Portfolio) -> None:
    _fill(pf, 10, 100.0)
    _fill(pf, 10, 110.0)  # avg 105
    realized = _fill(pf, -5, 120.0, commission=0.5)
    assert realized == pytest.approx(5 * (120.0 - 105.0))  # 75
    assert pf.realized[A] == pytest.approx(75.0)
    assert pf.qty[A] == 15.0
    assert pf.avg_cost[A] == pytest.approx(105.0)  # unchanged by a reduction
    assert pf.cash == pytest.approx(10_000.0 - 1_000.0 - 1_100.0 + 600.0 - 0.5)


def test_portfolio_sell_at_a_loss_realizes_negative(pf: Portfolio) -> None:
    _fill(pf, 20, 50.0)
    assert _fill(pf, -20, 45.0) == pytest.approx(-100.0)
    assert pf.qty[A] == 0.0
    assert pf.avg_cost[A] == 0.0
    assert pf.position_by_id == {}
    assert A not in pf.held
    assert pf.cash == pytest.approx(10_000.0 - 100.0)


def test_portfolio_reversal_through_zero_resets_avg_cost(pf: Portfolio) -> None:
    _fill(pf, 10, 100.0)
    realized = _fill(pf, -25, 90.0, commission=2.0)  # closes 10 long, opens 15 short
    assert realized == pytest.approx(10 * (90.0 - 100.0))  # -100, only on the closed part
    assert pf.qty[A] == -15.0
    assert pf.avg_cost[A] == 90.0
    assert pf.position_by_id == {"A": -15.0}
    assert pf.cash == pytest.approx(10_000.0 - 1_000.0 + 25 * 90.0 - 2.0)


def test_portfolio_short_cover_realizes_inverse(pf: Portfolio) -> None:
    _fill(pf, -10, 50.0)
    _fill(pf, -10, 40.0)  # avg 45 short
    assert pf.avg_cost[A] == pytest.approx(45.0)
    realized = _fill(pf, 5, 42.0)
    assert realized == pytest.approx(5 * (45.0 - 42.0))  # +15, short gains as price falls
    realized = _fill(pf, 20, 47.0)  # covers 15, goes long 5 at 47
    assert realized == pytest.approx(15 * (45.0 - 47.0))  # -30
    assert pf.qty[A] == 5.0
    assert pf.avg_cost[A] == 47.0
    assert pf.realized[A] == pytest.approx(-15.0)
    assert pf.cash == pytest.approx(10_000.0 + 500.0 + 400.0 - 210.0 - 940.0)


def test_portfolio_assets_are_independent(pf: Portfolio) -> None:
    _fill(pf, 10, 100.0, code=A)
    _fill(pf, 4, 25.0, code=B)
    assert (pf.qty[A], pf.qty[B]) == (10.0, 4.0)
    assert (pf.avg_cost[A], pf.avg_cost[B]) == (100.0, 25.0)
    assert pf.position_by_id == {"A": 10.0, "B": 4.0}
    assert pf.cash == 10_000.0 - 1_000.0 - 100.0


def test_portfolio_fill_ledger_records_cash_and_position_after(pf: Portfolio) -> None:
    _fill(pf, 10, 100.0, commission=1.0)
    _fill(pf, -4, 110.0, commission=1.0)
    assert len(pf.fills) == 2
    last = pf.fills[-1]
    assert last.asset_id == "A"
    assert last.quantity == -4  # signed
    assert last.price == 110.0
    assert last.realized_pnl == pytest.approx(40.0)
    assert last.cash_after == pytest.approx(10_000.0 - 1_001.0 + 440.0 - 1.0)
    assert last.position_after == 6.0


def test_portfolio_equity_uses_price_of(pf: Portfolio) -> None:
    _fill(pf, 10, 100.0)
    _fill(pf, -5, 20.0, code=B)  # short 5 B
    prices = {A: 110.0, B: 30.0}
    pf.price_of = prices.__getitem__
    net, gross = pf.mark()
    assert net == pytest.approx(10 * 110.0 - 5 * 30.0)
    assert gross == pytest.approx(10 * 110.0 + 5 * 30.0)
    assert pf.equity() == pytest.approx(pf.cash + net)
    assert pf.unrealized_pnl(A) == pytest.approx(100.0)
    assert pf.unrealized_pnl(B) == pytest.approx(-50.0)


def test_portfolio_fill_row_has_every_field_in_place(pf: Portfolio) -> None:
    # apply_fill writes a plain tuple (speed): each value must land in its LedgerRow field
    order = Order("B", "sell", 5.0, tag="exit")
    pf.apply_fill(B, 10.0, 20.0, 0.0, 0.0, 7, 1, Order("B", "buy", 10.0))
    pf.apply_fill(B, -5.0, 30.0, 1.5, 0.25, 9, 2, order, impact=0.125, reason="why")
    assert pf.fills[-1] == LedgerRow(
        timestamp=9,
        ts_index=2,
        order_id=order.order_id,
        asset_id="B",
        quantity=-5.0,
        price=30.0,
        commission=1.5,
        slippage=0.25,
        tag="exit",
        realized_pnl=50.0,  # 5 x (30 - 20)
        code=B,
        cash_after=10_000.0 - 200.0 + 150.0 - 1.5,
        position_after=5.0,
        impact=0.125,
        kind="fill",
        avg_cost_after=20.0,
        accrued_after=0.0,
        reason="why",
        amount=0.0,
    )
