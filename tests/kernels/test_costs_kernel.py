"""The cost formulas have one source: the plain functions of ``kernels.costs``.

The builtin models call the plain formula for their kind (``calculate`` / ``fill_price``)
and the kernels call it jitted through ``commission_nb`` and ``slippage_nb``. The tests
check that it is the same function underneath (the jitted kernel's ``py_func``, the name
the model's module calls, the arguments it passes: the ``kernel_params()`` layout), that
the jitted formulas give the same bits as the plain ones, and that ``commission_nb`` /
``slippage_nb`` with the parameters a model reports (padded the way the signal kernel's
settings vector pads them: three commission slots, one slippage slot) equal the model's
own ``calculate`` / ``fill_price``.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
import pytest
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
from ml4t.backtest.builtin import commission as builtin_commission
from ml4t.backtest.builtin import slippage as builtin_slippage
from ml4t.backtest.kernels import costs
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


# --- one source ---------------------------------------------------------------------------

#: kind -> the plain formula (by name in ``kernels.costs``) a model of that kind calls
COMMISSION_FORMULAS = {
    0: "no_commission",
    1: "percentage_commission",
    2: "per_share_commission",
    3: "fixed_commission",
}
SLIPPAGE_FORMULAS = {0: "no_slippage", 1: "fixed_slippage", 2: "fraction_slippage"}
ALL_FORMULAS = [
    "commission",
    "slippage",
    *COMMISSION_FORMULAS.values(),
    *SLIPPAGE_FORMULAS.values(),
]


@pytest.mark.parametrize("name", ALL_FORMULAS)
def test_kernel_is_the_plain_function_jitted(name: str) -> None:
    plain, jitted = getattr(costs, name), getattr(costs, f"{name}_nb")
    if numba.config.DISABLE_JIT:  # type: ignore[attr-defined]
        assert jitted is plain
    else:
        assert jitted.py_func is plain


@pytest.mark.parametrize("name", COMMISSION_FORMULAS.values())
def test_commission_module_calls_the_kernel_formula(name: str) -> None:
    assert getattr(builtin_commission, name) is getattr(costs, name)


@pytest.mark.parametrize("name", SLIPPAGE_FORMULAS.values())
def test_slippage_module_calls_the_kernel_formula(name: str) -> None:
    assert getattr(builtin_slippage, name) is getattr(costs, name)


class _Spy:
    """Stands in for a formula: records its arguments, returns a marker value."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, ...]] = []

    def __call__(self, *args: float) -> float:
        self.calls.append(args)
        return 12345.5


def _same_args(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))


@SETTINGS
@given(commissions, quantities, prices)
def test_commission_model_calls_its_formula_with_kernel_params(
    model: Any, quantity: float, price: float
) -> None:
    kind, params = model.kernel_params()
    spy = _Spy()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(builtin_commission, COMMISSION_FORMULAS[kind], spy)
        assert model.calculate(quantity, price) == 12345.5
    assert len(spy.calls) == 1
    assert _same_args(spy.calls[0], (*params, quantity, price)), (model, spy.calls)


@SETTINGS
@given(slippages, prices, sides)
def test_slippage_model_calls_its_formula_with_kernel_params(
    model: Any, price: float, side: int
) -> None:
    kind, params = model.kernel_params()
    spy = _Spy()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(builtin_slippage, SLIPPAGE_FORMULAS[kind], spy)
        assert model.fill_price(price, side, 1.0, 1000.0) == 12345.5
    assert len(spy.calls) == 1
    assert _same_args(spy.calls[0], (*params, price, side)), (model, spy.calls)


# --- jitted == plain, bit for bit ---------------------------------------------------------

anything = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, PRICE_FLOOR, 1.0]),
)


def _bits(value: float) -> str:
    """Exact representation: tells -0.0 from 0.0, and NaN equals NaN."""
    return float(value).hex()


def _jitted_equals_plain(name: str, *args: Any) -> None:
    plain, jitted = getattr(costs, name), getattr(costs, f"{name}_nb")
    with np.errstate(all="ignore"):  # numpy scalars (the params array) warn on inf * 0
        assert _bits(jitted(*args)) == _bits(plain(*args)), (name, args)


@SETTINGS
@given(anything, anything, anything, anything, anything)
def test_commission_formulas_jitted_equal_plain(
    a: float, b: float, c: float, quantity: float, price: float
) -> None:
    _jitted_equals_plain("no_commission", quantity, price)
    _jitted_equals_plain("percentage_commission", a, b, quantity, price)
    _jitted_equals_plain("per_share_commission", a, b, c, quantity, price)
    _jitted_equals_plain("fixed_commission", a, quantity, price)
    params = np.array([a, b, c])
    for kind in COMMISSION_FORMULAS:
        _jitted_equals_plain("commission", kind, params, quantity, price)


@SETTINGS
@given(anything, anything, sides)
@example(1.0, math.nan, -1)  # a NaN base price stays NaN (the broker rejects it)
def test_slippage_formulas_jitted_equal_plain(a: float, price: float, side: int) -> None:
    _jitted_equals_plain("no_slippage", price, side)
    _jitted_equals_plain("fixed_slippage", a, price, side)
    _jitted_equals_plain("fraction_slippage", a, price, side)
    params = np.array([a])
    for kind in SLIPPAGE_FORMULAS:
        _jitted_equals_plain("slippage", kind, params, price, side)


def test_fixed_slippage_of_a_nan_price_is_nan() -> None:
    # Python's max(price - amount, min(price, floor)) keeps the NaN; so does the kernel
    assert math.isnan(slippage_nb(1, np.array([0.25]), math.nan, -1))
    assert math.isnan(FixedSlippage(0.25).fill_price(math.nan, -1, 1.0, 1000.0))
