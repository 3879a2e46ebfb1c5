"""Unit tests of the impact models: hand-computed values, inputs, missing data, validation."""

from __future__ import annotations

import math
from typing import Any

import pytest
from ml4t.backtest import ConfigError, ImpactModel, RejectOrder

from ml4t_backtest_impact import AlmgrenChrissImpact, SquareRootImpact

BAR: dict[str, float] = {
    "open": 50.0,
    "high": 51.0,
    "low": 49.0,
    "close": 50.5,
    "volume": 1_800_000.0,
    "vol_20": 0.03,
    "adv_20": 2_000_000.0,
}


# --- Almgren–Chriss: hand-computed values ---------------------------------------------


def test_almgren_chriss_linear_beta_matches_hand_computation() -> None:
    model = AlmgrenChrissImpact(0.03, 2_000_000, beta=1.0, horizon=0.5)
    # Q/V = 20_000 / 2_000_000 = 0.01; participation Q/(V*T) = 0.01 / 0.5 = 0.02
    # permanent I = 0.314 * 0.03 * 0.01 = 9.42e-5 -> per unit 50 * 9.42e-5 = 0.00471
    # temporary J = 0.142 * 0.03 * 0.02 = 8.52e-5 -> per unit 50 * 8.52e-5 = 0.00426
    # charged: 0.00471 / 2 + 0.00426 = 0.002355 + 0.00426 = 0.006615
    assert model.permanent_impact(50.0, 20_000) == pytest.approx(0.00471, rel=1e-12)
    assert model.temporary_impact(50.0, 20_000) == pytest.approx(0.00426, rel=1e-12)
    assert model.price_impact(50.0, 1, 20_000, BAR) == pytest.approx(0.006615, rel=1e-12)


def test_almgren_chriss_square_root_beta_matches_hand_computation() -> None:
    model = AlmgrenChrissImpact(0.03, 2_000_000, beta=0.5, horizon=0.5)
    # temporary J = 0.142 * 0.03 * sqrt(0.02) = 0.00426 * 0.14142135624 = 6.0245497758e-4
    # per unit 50 * 6.0245497758e-4 = 0.030122748879; plus permanent half 0.002355
    # charged: 0.002355 + 0.030122748879 = 0.032477748879
    assert model.temporary_impact(50.0, 20_000) == pytest.approx(0.030122748879, rel=1e-10)
    assert model.price_impact(50.0, 1, 20_000, BAR) == pytest.approx(0.032477748879, rel=1e-10)


def test_almgren_chriss_defaults_match_hand_computation() -> None:
    model = AlmgrenChrissImpact(0.02, 1_000_000)
    # Q/V = 1000 / 1e6 = 1e-3; T = 1; beta = 0.6: (1e-3) ** 0.6 = 10 ** -1.8 = 0.0158489319
    # permanent I = 0.314 * 0.02 * 1e-3 = 6.28e-6 -> per unit 100 * 6.28e-6 = 0.000628
    # temporary J = 0.142 * 0.02 * 0.0158489319 = 4.50109667e-5 -> per unit 0.00450109667
    # charged: 0.000628 / 2 + 0.00450109667 = 0.00481509667
    assert model.permanent_impact(100.0, 1000) == pytest.approx(0.000628, rel=1e-12)
    assert model.temporary_impact(100.0, 1000) == pytest.approx(0.00450109667, rel=1e-8)
    assert model.price_impact(100.0, 1, 1000, {}) == pytest.approx(0.00481509667, rel=1e-8)


def test_almgren_chriss_price_impact_equals_half_permanent_plus_temporary() -> None:
    model = AlmgrenChrissImpact(0.025, 3_000_000, eta=0.2, gamma=0.5, beta=0.7, horizon=0.25)
    split = 0.5 * model.permanent_impact(80.0, 150_000) + model.temporary_impact(80.0, 150_000)
    assert model.price_impact(80.0, -1, 150_000, {}) == pytest.approx(split, rel=1e-14)


def test_almgren_chriss_horizon_longer_lowers_temporary_only() -> None:
    fast = AlmgrenChrissImpact(0.02, 1_000_000, beta=1.0, horizon=0.5)
    slow = AlmgrenChrissImpact(0.02, 1_000_000, beta=1.0, horizon=2.0)
    # beta = 1: J is proportional to 1/T, so T 0.5 -> 2 divides it by 4; I does not depend on T
    assert slow.temporary_impact(100.0, 10_000) == pytest.approx(
        fast.temporary_impact(100.0, 10_000) / 4, rel=1e-12
    )
    assert slow.permanent_impact(100.0, 10_000) == fast.permanent_impact(100.0, 10_000)


def test_almgren_chriss_zero_gamma_leaves_temporary_only() -> None:
    model = AlmgrenChrissImpact(0.02, 1_000_000, gamma=0.0, beta=1.0)
    # temporary J = 0.142 * 0.02 * (10_000 / 1e6) = 2.84e-5 -> per unit 100 * 2.84e-5 = 0.00284
    assert model.price_impact(100.0, 1, 10_000, {}) == pytest.approx(0.00284, rel=1e-12)


# --- square-root law: hand-computed values --------------------------------------------


def test_square_root_default_coefficient_matches_hand_computation() -> None:
    model = SquareRootImpact(0.02, 1_000_000)
    # 100 * 1.0 * 0.02 * sqrt(40_000 / 1e6) = 2 * sqrt(0.04) = 2 * 0.2 = 0.4
    assert model.price_impact(100.0, 1, 40_000, {}) == pytest.approx(0.4, rel=1e-12)


def test_square_root_coefficient_scales_impact() -> None:
    model = SquareRootImpact(0.02, 1_000_000, coefficient=0.5)
    # 100 * 0.5 * 0.02 * sqrt(10_000 / 1e6) = 1 * sqrt(0.01) = 0.1
    assert model.price_impact(100.0, 1, 10_000, {}) == pytest.approx(0.1, rel=1e-12)


def test_square_root_quadrupled_quantity_doubles_impact() -> None:
    model = SquareRootImpact(0.03, 500_000)
    small = model.price_impact(40.0, 1, 5_000, {})
    assert model.price_impact(40.0, 1, 20_000, {}) == pytest.approx(2 * small, rel=1e-12)


# --- both sides, protocol ---------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    [AlmgrenChrissImpact(0.03, 2_000_000), SquareRootImpact(0.03, 2_000_000)],
    ids=["almgren_chriss", "square_root"],
)
def test_price_impact_sell_side_same_positive_size_as_buy(model: Any) -> None:
    buy = model.price_impact(50.0, 1, 20_000, BAR)
    sell = model.price_impact(50.0, -1, 20_000, BAR)
    assert buy > 0
    assert sell == buy


@pytest.mark.parametrize(
    "model",
    [AlmgrenChrissImpact(0.03, 2_000_000), SquareRootImpact(0.03, 2_000_000)],
    ids=["almgren_chriss", "square_root"],
)
def test_price_impact_zero_quantity_zero(model: Any) -> None:
    assert model.price_impact(50.0, 1, 0.0, BAR) == 0.0


def test_models_satisfy_impact_model_protocol() -> None:
    assert isinstance(AlmgrenChrissImpact(0.02, 1e6), ImpactModel)
    assert isinstance(SquareRootImpact(0.02, 1e6), ImpactModel)


# --- column inputs ------------------------------------------------------------------------


def test_almgren_chriss_columns_equal_constants() -> None:
    by_column = AlmgrenChrissImpact("vol_20", "adv_20", horizon=0.5)
    constant = AlmgrenChrissImpact(0.03, 2_000_000, horizon=0.5)
    assert by_column.price_impact(50.0, 1, 20_000, BAR) == constant.price_impact(
        50.0, 1, 20_000, BAR
    )
    assert by_column.permanent_impact(50.0, 20_000, BAR) == pytest.approx(0.00471, rel=1e-12)


def test_square_root_columns_read_from_bar() -> None:
    model = SquareRootImpact("vol_20", "adv_20")
    # 50 * 1.0 * 0.03 * sqrt(20_000 / 2e6) = 1.5 * sqrt(0.01) = 0.15
    assert model.price_impact(50.0, 1, 20_000, BAR) == pytest.approx(0.15, rel=1e-12)


def test_square_root_mixed_constant_and_column_inputs() -> None:
    model = SquareRootImpact(0.02, "volume")
    # ADV from the bar's own volume column: 50 * 0.02 * sqrt(18_000 / 1.8e6) = 1 * 0.1 = 0.1
    assert model.price_impact(50.0, 1, 18_000, BAR) == pytest.approx(0.1, rel=1e-12)


@pytest.mark.parametrize("cls", [AlmgrenChrissImpact, SquareRootImpact])
def test_price_impact_missing_column_raises_config_error_naming_it(cls: type) -> None:
    model = cls("vol_20", "adv_60")
    with pytest.raises(ConfigError) as info:
        model.price_impact(50.0, 1, 1000, BAR)
    message = str(info.value)
    assert cls.__name__ in message
    assert "adv column 'adv_60'" in message
    assert "open, high, low, close, volume, vol_20, adv_20" in message


def test_permanent_impact_column_input_without_bar_raises_config_error() -> None:
    model = AlmgrenChrissImpact("vol_20", 1e6)
    with pytest.raises(ConfigError, match=r"volatility column 'vol_20'.*no bar given"):
        model.permanent_impact(50.0, 1000)


# --- missing values -----------------------------------------------------------------------

BAD_VALUES = [math.nan, 0.0, -5.0, math.inf, None, "n/a"]


@pytest.mark.parametrize("value", BAD_VALUES)
@pytest.mark.parametrize("column", ["vol_20", "adv_20"])
def test_price_impact_unusable_column_value_reject_raises_reject_order(
    column: str, value: Any
) -> None:
    bar = {**BAR, column: value}
    name = "volatility" if column == "vol_20" else "adv"
    for model in (AlmgrenChrissImpact("vol_20", "adv_20"), SquareRootImpact("vol_20", "adv_20")):
        with pytest.raises(RejectOrder) as info:
            model.price_impact(50.0, 1, 1000, bar)
        text = str(info.value)
        assert text.startswith(f"{type(model).__name__}: {name} column {column!r} is {value!r}")
        assert "on_missing='reject'" in text


@pytest.mark.parametrize("value", BAD_VALUES)
def test_price_impact_unusable_column_value_zero_policy_returns_zero(value: Any) -> None:
    bar = {**BAR, "adv_20": value}
    ac = AlmgrenChrissImpact("vol_20", "adv_20", on_missing="zero")
    sr = SquareRootImpact("vol_20", "adv_20", on_missing="zero")
    assert ac.price_impact(50.0, 1, 1000, bar) == 0.0
    assert ac.permanent_impact(50.0, 1000, bar) == 0.0
    assert ac.temporary_impact(50.0, 1000, bar) == 0.0
    assert sr.price_impact(50.0, -1, 1000, bar) == 0.0


def test_split_methods_unusable_column_value_reject_return_nan() -> None:
    model = AlmgrenChrissImpact("vol_20", "adv_20")
    bar = {**BAR, "vol_20": math.nan}
    assert math.isnan(model.permanent_impact(50.0, 1000, bar))
    assert math.isnan(model.temporary_impact(50.0, 1000, bar))


# --- parameter validation ---------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -0.02, math.nan, math.inf, True, "", "  ", None, [0.02]])
@pytest.mark.parametrize("param", ["volatility", "adv"])
@pytest.mark.parametrize("cls", [AlmgrenChrissImpact, SquareRootImpact])
def test_init_bad_input_raises_config_error_naming_it(cls: type, param: str, value: Any) -> None:
    kwargs: dict[str, Any] = {"volatility": 0.02, "adv": 1e6, param: value}
    with pytest.raises(ConfigError, match=f"{cls.__name__}: {param} must be"):
        cls(**kwargs)


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("eta", -0.1),
        ("eta", math.nan),
        ("gamma", -1.0),
        ("gamma", math.inf),
        ("beta", 0.0),
        ("beta", -0.5),
        ("beta", "0.6"),
        ("horizon", 0.0),
        ("horizon", -1.0),
        ("horizon", math.nan),
        ("horizon", False),
        ("on_missing", "skip"),
        ("on_missing", None),
    ],
)
def test_almgren_chriss_bad_param_raises_config_error_naming_it(param: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"AlmgrenChrissImpact: {param} must be"):
        AlmgrenChrissImpact(0.02, 1e6, **{param: value})


@pytest.mark.parametrize(
    ("param", "value"),
    [("coefficient", -1.0), ("coefficient", math.nan), ("on_missing", "ignore")],
)
def test_square_root_bad_param_raises_config_error_naming_it(param: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"SquareRootImpact: {param} must be"):
        SquareRootImpact(0.02, 1e6, **{param: value})


def test_init_zero_coefficients_accepted() -> None:
    assert AlmgrenChrissImpact(0.02, 1e6, eta=0.0, gamma=0.0).price_impact(100.0, 1, 1e4, {}) == 0
    assert SquareRootImpact(0.02, 1e6, coefficient=0).price_impact(100.0, 1, 1e4, {}) == 0


# --- repr --------------------------------------------------------------------------------


def test_repr_lists_parameters() -> None:
    assert repr(AlmgrenChrissImpact("vol_20", 1_000_000, horizon=0.5)) == (
        "AlmgrenChrissImpact(volatility='vol_20', adv=1000000.0, eta=0.142, gamma=0.314, "
        "beta=0.6, horizon=0.5, on_missing='reject')"
    )
    assert repr(SquareRootImpact(0.02, "adv_20", coefficient=0.7, on_missing="zero")) == (
        "SquareRootImpact(volatility=0.02, adv='adv_20', coefficient=0.7, on_missing='zero')"
    )
