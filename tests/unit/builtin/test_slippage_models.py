"""Slippage models: hand-computed prices, bar-column models, parameter validation, registry
lookup, and a property test that no model ever improves the price."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml4t.backtest import ConfigError, RejectOrder, SlippageModel
from ml4t.backtest.builtin.slippage import (
    BasisPointsSlippage,
    FixedSlippage,
    NoSlippage,
    PercentageSlippage,
    SpreadSlippage,
    VolumeShareSlippage,
)
from ml4t.backtest.errors import DataValidationError
from ml4t.backtest.plugins import get_plugin_manager

BUY, SELL = 1, -1


def approx(value: float) -> Any:
    return pytest.approx(value, rel=1e-12, abs=1e-12)


# --- basis points ----------------------------------------------------------------------------


def test_basis_points_slippage_5bps_moves_price_against_trader() -> None:
    model = BasisPointsSlippage(5)
    assert model.fill_price(100.0, BUY, 10, 1e6) == approx(100.05)  # 100 * (1 + 5e-4)
    assert model.fill_price(200.0, SELL, 10, 1e6) == approx(199.9)  # 200 * (1 - 5e-4)
    assert BasisPointsSlippage(0).fill_price(100.0, SELL, 10, 1e6) == 100.0
    assert repr(model) == "BasisPointsSlippage(bps=5.0)"


@pytest.mark.parametrize("bps", [-1, 10_000, 20_000, math.nan, "5bp", None])
def test_basis_points_slippage_bad_bps_config_error(bps: Any) -> None:
    with pytest.raises(ConfigError, match="BasisPointsSlippage bps"):
        BasisPointsSlippage(bps)


# --- volume share ----------------------------------------------------------------------------


def test_volume_share_slippage_share_squared_times_impact() -> None:
    model = VolumeShareSlippage()  # volume_limit 0.025, price_impact 0.1
    # share = 1000 / 100000 = 0.01 -> 100 * (1 + 0.1 * 0.0001) = 100.001
    assert model.fill_price(100.0, BUY, 1_000, 100_000) == approx(100.001)
    assert model.fill_price(100.0, SELL, 1_000, 100_000) == approx(99.999)
    # share = 0.1 capped at 0.025 -> 100 * (1 + 0.1 * 0.000625) = 100.00625
    assert model.fill_price(100.0, BUY, 10_000, 100_000) == approx(100.00625)


@pytest.mark.parametrize("volume", [0.0, math.nan])
def test_volume_share_slippage_zero_or_missing_volume_uses_volume_limit(volume: float) -> None:
    model = VolumeShareSlippage(volume_limit=0.1, price_impact=0.2)
    # share = 0.1 -> 50 * (1 - 0.2 * 0.01) = 49.9
    assert model.fill_price(50.0, SELL, 10, volume) == approx(49.9)


def test_volume_share_slippage_params_kept_as_attributes() -> None:
    model = VolumeShareSlippage(volume_limit=0.1, price_impact=0.2)
    assert model.volume_limit == 0.1  # the broker reads it as the per-bar participation cap
    assert model.price_impact == 0.2
    assert repr(model) == "VolumeShareSlippage(volume_limit=0.1, price_impact=0.2)"


@pytest.mark.parametrize("limit", [0, -0.1, 1.5, math.nan])
def test_volume_share_slippage_bad_volume_limit_exact_message(limit: float) -> None:
    with pytest.raises(ConfigError) as info:
        VolumeShareSlippage(volume_limit=limit)
    assert str(info.value) == f"VolumeShareSlippage volume_limit: must be in (0, 1], got {limit!r}"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"volume_limit": "2.5%"}, "volume_limit"),
        ({"price_impact": -0.1}, "price_impact"),
        ({"price_impact": math.inf}, "price_impact"),
        ({"volume_limit": 1.0, "price_impact": 1.0}, "price_impact"),  # 1 * 1**2 is not < 1
    ],
)
def test_volume_share_slippage_bad_parameter_config_error(
    kwargs: dict[str, Any], param: str
) -> None:
    with pytest.raises(ConfigError, match=f"VolumeShareSlippage {param}"):
        VolumeShareSlippage(**kwargs)


# --- spread ----------------------------------------------------------------------------------


def test_spread_slippage_absolute_spread_pays_half() -> None:
    model = SpreadSlippage()
    bar = {"close": 100.0, "spread": 0.04}
    assert model.required_columns == ("spread",)
    assert model.fill_price(100.0, BUY, 10, 1e6, bar) == approx(100.02)  # 100 + 0.5 * 0.04
    assert model.fill_price(100.0, SELL, 10, 1e6, bar) == approx(99.98)


def test_spread_slippage_relative_spread_scales_price() -> None:
    model = SpreadSlippage(column="rel_spread", fraction=1.0, relative=True)
    bar = {"rel_spread": 0.001}
    assert model.required_columns == ("rel_spread",)
    assert model.fill_price(200.0, BUY, 10, 1e6, bar) == approx(200.2)  # 200 * (1 + 0.001)
    assert model.fill_price(200.0, SELL, 10, 1e6, bar) == approx(199.8)
    assert repr(model) == "SpreadSlippage(column='rel_spread', fraction=1.0, relative=True)"


@pytest.mark.parametrize("spread", [math.nan, -0.01, None, math.inf, "wide"])
def test_spread_slippage_bad_spread_value_rejects_the_order(spread: Any) -> None:
    with pytest.raises(RejectOrder, match=f"the 'spread' on this bar is {spread!r}"):
        SpreadSlippage().fill_price(100.0, BUY, 10, 1e6, {"spread": spread})


def test_spread_slippage_sell_through_zero_rejects_the_order() -> None:
    # 1.0 - 0.5 * 3.0 = -0.5: not a price
    with pytest.raises(RejectOrder, match=r"moves the price 1 to -0\.5"):
        SpreadSlippage().fill_price(1.0, SELL, 10, 1e6, {"spread": 3.0})


def test_spread_slippage_missing_column_data_error_names_column() -> None:
    with pytest.raises(DataValidationError, match="'spread'"):
        SpreadSlippage().fill_price(100.0, BUY, 10, 1e6, {"close": 100.0})


def test_spread_slippage_without_bar_type_error() -> None:
    with pytest.raises(TypeError, match="spread"):
        SpreadSlippage().fill_price(100.0, BUY, 10, 1e6)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"column": ""}, "column"),
        ({"column": 5}, "column"),
        ({"fraction": -0.5}, "fraction"),
        ({"fraction": "half"}, "fraction"),
        ({"relative": "yes"}, "relative"),
    ],
)
def test_spread_slippage_bad_parameter_config_error(kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(ConfigError, match=f"SpreadSlippage {param}"):
        SpreadSlippage(**kwargs)


# --- fixed floor, bar argument -----------------------------------------------------------------


def test_fixed_slippage_sell_below_floor_keeps_base_price() -> None:
    # base 0.0005 is already below the 0.001 floor: never move a sell up
    assert FixedSlippage(0.01).fill_price(0.0005, SELL, 1, 1.0) == 0.0005
    assert FixedSlippage(1.0).fill_price(0.5, SELL, 1, 1.0) == 0.001


def test_slippage_models_bar_argument_ignored() -> None:
    bar = {"open": 10.0, "volume": 1e6}
    assert NoSlippage().fill_price(10.0, BUY, 1, 1e6, bar) == 10.0
    assert FixedSlippage(0.1).fill_price(10.0, BUY, 1, 1e6, bar) == approx(10.1)
    assert PercentageSlippage(0.01).fill_price(10.0, BUY, 1, 1e6, bar) == approx(10.1)
    assert BasisPointsSlippage(100).fill_price(10.0, BUY, 1, 1e6, bar) == approx(10.1)


# --- registry --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry() -> Any:
    return get_plugin_manager(autoload=False).registry


@pytest.mark.parametrize(
    ("name", "params", "cls"),
    [
        ("bps", {"bps": 5}, BasisPointsSlippage),
        ("basis_points", {"bps": 5}, BasisPointsSlippage),
        ("BasisPointsSlippage", {"bps": 5}, BasisPointsSlippage),
        ("volume_share", {"volume_limit": 0.1}, VolumeShareSlippage),
        ("VolumeShareSlippage", {}, VolumeShareSlippage),
        ("spread", {}, SpreadSlippage),
        ("SpreadSlippage", {"column": "ba", "relative": True}, SpreadSlippage),
        ("fixed", {"amount": 0.01}, FixedSlippage),
        ("percentage", {"rate": 0.001}, PercentageSlippage),
        ("none", {}, NoSlippage),
    ],
)
def test_registry_slippage_name_or_class_builds_model(
    registry: Any, name: str, params: dict[str, Any], cls: type
) -> None:
    model = registry.create("slippage", {"model": name, "params": params})
    assert type(model) is cls
    assert isinstance(model, SlippageModel)


def test_registry_volume_share_bad_limit_config_error(registry: Any) -> None:
    spec = {"model": "volume_share", "params": {"volume_limit": 2}}
    with pytest.raises(ConfigError, match=r"volume_limit: must be in \(0, 1\], got 2"):
        registry.create("slippage", spec)


# --- property: slippage never improves the price ---------------------------------------------

PRICES = st.floats(min_value=1e-4, max_value=1e6, allow_nan=False)
QUANTITIES = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False)
VOLUMES = st.one_of(st.just(0.0), st.floats(min_value=1e-6, max_value=1e12, allow_nan=False))


@st.composite
def models(draw: st.DrawFn) -> tuple[Any, dict[str, float]]:
    """Draw any slippage model with random valid parameters and a bar it can price."""
    kind = draw(st.sampled_from(["none", "fixed", "pct", "bps", "volume", "spread", "rel"]))
    unit = st.floats(min_value=0.0, max_value=0.999, allow_nan=False)
    if kind == "none":
        return NoSlippage(), {}
    if kind == "fixed":
        return FixedSlippage(draw(st.floats(min_value=0.0, max_value=1e3))), {}
    if kind == "pct":
        return PercentageSlippage(draw(unit)), {}
    if kind == "bps":
        return BasisPointsSlippage(draw(st.floats(min_value=0.0, max_value=9_999.0))), {}
    if kind == "volume":
        limit = draw(st.floats(min_value=1e-6, max_value=1.0))
        impact = draw(st.floats(min_value=0.0, max_value=0.999)) / limit**2
        return VolumeShareSlippage(limit, impact), {}
    # spread below price / fraction keeps sells positive: draw its share of that bound
    fraction = draw(st.floats(min_value=0.01, max_value=2.0))
    return SpreadSlippage(fraction=fraction, relative=kind == "rel"), {"spread": draw(unit)}


@settings(max_examples=300, deadline=None)
@given(models(), PRICES, st.sampled_from([BUY, SELL]), QUANTITIES, VOLUMES)
def test_slippage_random_inputs_never_improves_price(
    model_bar: tuple[Any, dict[str, float]],
    price: float,
    side: int,
    quantity: float,
    volume: float,
) -> None:
    model, bar = model_bar
    if isinstance(model, SpreadSlippage):
        # scale the drawn unit share so fraction * spread < price (absolute) or < 1 (relative)
        limit = 1.0 if model.relative else price
        bar = {"spread": bar["spread"] * limit / model.fraction}
    got = model.fill_price(price, side, quantity, volume, bar)
    assert got > 0
    if side == BUY:
        assert got >= price
    else:
        assert got <= price
