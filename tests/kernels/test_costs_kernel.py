"""The cost kernels equal the builtin cost models, exactly.

``kernels.costs.commission_nb`` and ``slippage_nb`` are evaluated with the parameters a
model reports through ``kernel_params()`` (padded the way the signal kernel's settings
vector pads them: three commission slots, one slippage slot) and compared with ``==`` to
the model's own ``calculate`` / ``fill_price``, which are the pure-Python reference.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ml4t.backtest import (
    BasisPointsSlippage,
    FixedCommission,
    FixedSlippage,
    IBKRFixedCommission,
    NoCommission,
    NoSlippage,
    PercentageCommission,
    PercentageSlippage,
    PerShareCommission,
)
from ml4t.backtest.kernels.costs import PRICE_FLOOR, commission_nb, slippage_nb

SETTINGS = settings(max_examples=300, deadline=None)

quantities = st.one_of(
    st.floats(1e-6, 1e7, allow_nan=False),
    st.integers(1, 100_000).map(float),
)
prices = st.one_of(
    st.floats(1e-4, 1e5, allow_nan=False),
    st.integers(1, 4000).map(lambda k: k / 4.0),
)
rates = st.one_of(st.just(0.0), st.floats(0.0, 0.05, allow_nan=False))
amounts = st.one_of(st.just(0.0), st.floats(0.0, 50.0, allow_nan=False))
sides = st.sampled_from([1, -1])

commissions = st.one_of(
    st.just(NoCommission()),
    st.builds(PercentageCommission, rates, amounts),
    st.builds(PerShareCommission, rates, amounts, st.none() | rates),
    st.builds(IBKRFixedCommission, rates, amounts, st.none() | rates),
    st.builds(IBKRFixedCommission),
    st.builds(FixedCommission, amounts),
)
slippages = st.one_of(
    st.just(NoSlippage()),
    st.builds(FixedSlippage, amounts),
    st.builds(PercentageSlippage, st.floats(0.0, 0.5, allow_nan=False)),
    st.builds(BasisPointsSlippage, st.floats(0.0, 9999.0, allow_nan=False)),
)


def _commission_params(model: Any) -> tuple[int, np.ndarray]:
    kind, params = model.kernel_params()
    padded = np.zeros(3)
    padded[: len(params)] = params
    return int(kind), padded


def _slippage_params(model: Any) -> tuple[int, np.ndarray]:
    kind, params = model.kernel_params()
    assert len(params) <= 1
    return int(kind), np.array([params[0] if params else 0.0])


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@SETTINGS
@given(commissions, quantities, prices)
# the cap binds (0.05 < minimum 1.0) and the minimum binds (no cap)
@example(PerShareCommission(0.01, 1.0, 0.005), 10.0, 1.0)
@example(PerShareCommission(0.01, 1.0), 10.0, 1.0)
@example(IBKRFixedCommission(), 100.0, 0.5)
@example(PercentageCommission(0.001, 5.0), 100.0, 10.0)
def test_commission_kernel_equals_model(model: Any, quantity: float, price: float) -> None:
    kind, params = _commission_params(model)
    got = commission_nb(kind, params, quantity, price)
    want = model.calculate(quantity, price)
    assert _same(got, want), (model, quantity, price, got, want)


@SETTINGS
@given(slippages, prices, sides)
def test_slippage_kernel_equals_model(model: Any, price: float, side: int) -> None:
    kind, params = _slippage_params(model)
    got = slippage_nb(kind, params, price, side)
    want = model.fill_price(price, side, 1.0, 1000.0)
    assert _same(got, want), (model, price, side, got, want)


near_floor = st.one_of(
    st.floats(0.0, 3 * PRICE_FLOOR, allow_nan=False),
    st.sampled_from([PRICE_FLOOR, PRICE_FLOOR / 2, 2 * PRICE_FLOOR, 0.0]),
)


@SETTINGS
@given(near_floor, near_floor, sides)
@example(PRICE_FLOOR, PRICE_FLOOR, -1)
@example(PRICE_FLOOR / 2, 1.0, -1)
@example(1.5 * PRICE_FLOOR, PRICE_FLOOR, -1)
def test_fixed_slippage_near_price_floor(price: float, amount: float, side: int) -> None:
    model = FixedSlippage(amount)
    kind, params = _slippage_params(model)
    got = slippage_nb(kind, params, price, side)
    assert got == model.fill_price(price, side, 1.0, 1000.0)
    # the documented rule, computed by hand: buys add, sells stop at min(price, floor)
    want = price + amount if side > 0 else max(price - amount, min(price, 1e-3))
    assert got == want


def test_kernel_kinds_are_the_documented_formulas() -> None:
    # one hand-computed value per kind (kernels.costs module docstring)
    p3 = np.array([0.002, 1.0, np.nan])
    assert commission_nb(0, np.zeros(3), 10.0, 5.0) == 0.0
    assert commission_nb(1, np.array([0.01, 0.0, 0.0]), 10.0, 5.0) == 0.01 * 10.0 * 5.0
    assert commission_nb(1, np.array([0.01, 2.0, 0.0]), 10.0, 5.0) == 2.0
    assert commission_nb(2, p3, 1000.0, 5.0) == 2.0  # 0.002 * 1000 > minimum 1
    assert commission_nb(2, p3, 10.0, 5.0) == 1.0  # the minimum
    assert commission_nb(2, np.array([0.002, 1.0, 0.01]), 10.0, 5.0) == 0.01 * 50.0  # cap
    assert commission_nb(3, np.array([7.5, 0.0, 0.0]), 10.0, 5.0) == 7.5
    assert slippage_nb(0, np.zeros(1), 10.0, 1) == 10.0
    assert slippage_nb(1, np.array([0.25]), 10.0, 1) == 10.25
    assert slippage_nb(1, np.array([0.25]), 10.0, -1) == 9.75
    assert slippage_nb(2, np.array([0.5]), 10.0, -1) == 5.0
    assert slippage_nb(2, np.array([0.5]), 10.0, 1) == 15.0
