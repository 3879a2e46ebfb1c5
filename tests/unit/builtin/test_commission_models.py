"""Commission models: hand-computed charges, per-order minimums across partial fills,
monthly volume tiers, parameter validation and lookup through the plugin registry."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from ml4t.backtest import CommissionModel, ConfigError
from ml4t.backtest.builtin.commission import (
    FixedCommission,
    IBKRFixedCommission,
    NoCommission,
    PercentageCommission,
    PerShareCommission,
    TieredCommission,
)
from ml4t.backtest.plugins import get_plugin_manager

JAN = datetime(2024, 1, 15, 10, 30)
FEB = datetime(2024, 2, 1, 9, 30)
# Small schedule for hand arithmetic: shares 1-100 pay 0.01, 101-1000 pay 0.005, more 0.001.
SMALL_TIERS: list[list[float | None]] = [[100, 0.01], [1_000, 0.005], [None, 0.001]]


def approx(value: float) -> Any:
    return pytest.approx(value, abs=1e-12)


# --- percentage -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qty", "price", "expected"),
    [
        (100, 5.0, 1.0),  # 0.001 * 100 * 5 = 0.5 < minimum 1.0
        (1_000, 50.0, 50.0),  # 0.001 * 1000 * 50 = 50
        (200, 5.0, 1.0),  # 0.001 * 200 * 5 = 1.0 == minimum
    ],
)
def test_percentage_commission_minimum_applies(qty: float, price: float, expected: float) -> None:
    assert PercentageCommission(0.001, minimum=1.0).calculate(qty, price) == approx(expected)


def test_percentage_commission_partial_fills_minimum_once_per_order() -> None:
    model = PercentageCommission(0.001, minimum=5.0)
    # fill 1: 100 @ 20 -> 0.001 * 2000 = 2.0, minimum -> 5.0
    first = model.calculate(100, 20.0)
    assert first == approx(5.0)
    # fill 2: 200 @ 20; order notional 6000 -> owes max(5, 6.0) = 6.0; paid 5 -> 1.0
    second = model.calculate_partial(200, 20.0, filled_before=100, paid_before=first)
    assert second == approx(1.0)
    # fill 3: 300 @ 20; order notional 12000 -> owes 12.0; paid 6 -> 6.0
    third = model.calculate_partial(300, 20.0, filled_before=300, paid_before=first + second)
    assert third == approx(6.0)
    assert first + second + third == approx(0.001 * 600 * 20.0)


def test_percentage_commission_partial_below_minimum_pays_nothing() -> None:
    model = PercentageCommission(0.001, minimum=5.0)
    # order notional (100 + 100) * 20 = 4000 -> 4.0 < 5.0 already paid -> 0
    assert model.calculate_partial(100, 20.0, filled_before=100, paid_before=5.0) == 0.0


def test_percentage_commission_partial_uses_notional_before_when_given() -> None:
    model = PercentageCommission(0.001, minimum=5.0)
    # earlier fill 100 @ 40 = 4000 (paid the 5.0 minimum); now 100 @ 20 = 2000
    # owes max(5, 0.001 * 6000) = 6.0 -> 1.0 (the estimate 100 * 20 would give 0)
    got = model.calculate_partial(100, 20.0, 100, 5.0, notional_before=4_000.0)
    assert got == approx(1.0)


def test_percentage_commission_no_minimum_partial_is_rate_times_notional() -> None:
    # 0.001 * 50 * 10 = 0.5 whatever was paid before
    assert PercentageCommission(0.001).calculate_partial(50, 10.0, 70, 0.9) == approx(0.5)


# --- per share -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qty", "price", "expected"),
    [
        (100, 25.0, 1.0),  # 0.5 -> minimum 1.0; cap 0.01 * 2500 = 25 does not bind
        (1_000, 25.0, 5.0),  # 0.005 * 1000 = 5.0
        (1_000, 0.25, 2.5),  # 5.0 capped at 0.01 * 250 = 2.5
        (100, 0.25, 0.25),  # minimum 1.0 but cap 0.01 * 25 = 0.25 wins
    ],
)
def test_per_share_commission_maximum_rate_caps_after_minimum(
    qty: float, price: float, expected: float
) -> None:
    model = PerShareCommission(0.005, minimum=1.0, maximum_rate=0.01)
    assert model.calculate(qty, price) == approx(expected)


def test_per_share_commission_partial_fills_minimum_once_per_order() -> None:
    model = PerShareCommission(0.005, minimum=1.0)
    # 600 shares in fills of 100, 100, 400 @ 50
    first = model.calculate(100, 50.0)  # max(1, 0.5) = 1.0
    second = model.calculate_partial(100, 50.0, 100, first)  # max(1, 0.005*200=1.0) - 1 = 0
    third = model.calculate_partial(400, 50.0, 200, first + second)  # max(1, 3.0) - 1 = 2.0
    assert (first, second, third) == (approx(1.0), approx(0.0), approx(2.0))
    # the order pays 0.005 * 600 = 3.0, not 1 + 1 + 2 = 4 as per-fill minimums would
    assert first + second + third == approx(3.0)


def test_per_share_commission_partial_cap_applies_to_whole_order() -> None:
    model = PerShareCommission(0.005, minimum=1.0, maximum_rate=0.01)
    # fill 1: 400 @ 0.25 -> max(1, 2.0) = 2.0 capped at 0.01 * 100 = 1.0
    first = model.calculate(400, 0.25)
    assert first == approx(1.0)
    # fill 2: 400 @ 0.25 -> owes min(max(1, 4.0), 0.01 * 200) = 2.0; paid 1.0 -> 1.0
    assert model.calculate_partial(400, 0.25, 400, first) == approx(1.0)
    # earlier fill at 0.5 (value 200): owes min(4.0, 0.01 * 300) = 3.0 -> 2.0
    assert model.calculate_partial(400, 0.25, 400, first, notional_before=200.0) == approx(2.0)


def test_per_share_commission_partial_never_negative() -> None:
    # owes max(1, 0.005 * 200) = 1.0 but 5.0 was already paid -> 0, not -4
    assert PerShareCommission(0.005, minimum=1.0).calculate_partial(100, 50.0, 100, 5.0) == 0.0


def test_per_share_commission_defaults_no_minimum_no_cap() -> None:
    model = PerShareCommission(0.01)
    assert (model.minimum, model.maximum_rate) == (0.0, None)
    assert model.calculate(1_000_000, 0.01) == approx(10_000.0)  # 0.01 * 1e6, no cap
    assert repr(model) == "PerShareCommission(cost_per_share=0.01, minimum=0.0, maximum_rate=None)"


# --- fixed -----------------------------------------------------------------------------------


def test_fixed_commission_partial_fill_pays_nothing() -> None:
    model = FixedCommission(7.5)
    assert model.calculate(1, 1_000.0) == 7.5
    assert model.calculate(1_000_000, 0.5) == 7.5
    assert model.calculate_partial(500, 10.0, 100, 7.5) == 0.0
    assert repr(model) == "FixedCommission(amount=7.5)"


# --- IBKR fixed ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qty", "price", "expected"),
    [
        (100, 25.0, 1.0),  # IBKR's published example: 0.005 * 100 = 0.5 -> minimum 1.00
        (1_000, 25.0, 5.0),  # published: 0.005 * 1000 = 5.00
        (1_000, 0.25, 2.5),  # published: 5.00 capped at 1 % of 250 = 2.50
        (100, 0.25, 0.25),  # minimum 1.00 capped at 1 % of 25 = 0.25
    ],
)
def test_ibkr_fixed_commission_published_examples(
    qty: float, price: float, expected: float
) -> None:
    assert IBKRFixedCommission().calculate(qty, price) == approx(expected)


def test_ibkr_fixed_commission_custom_params_partial_pays_rest() -> None:
    model = IBKRFixedCommission(per_share=0.01, minimum=2.0, maximum_rate=None)
    # 150 then 150 @ 10: first max(2, 1.5) = 2.0; order owes max(2, 0.01 * 300) = 3.0 -> 1.0
    assert model.calculate(150, 10.0) == approx(2.0)
    assert model.calculate_partial(150, 10.0, 150, 2.0) == approx(1.0)
    assert repr(model) == "IBKRFixedCommission(per_share=0.01, minimum=2.0, maximum_rate=None)"


# --- tiered ----------------------------------------------------------------------------------


def test_tiered_commission_crossing_boundaries_splits_fill() -> None:
    model = TieredCommission(SMALL_TIERS, minimum=0.0, maximum_rate=None)
    assert model.calculate(50, 10.0) == approx(0.5)  # 50 * 0.01
    model.record(50, 10.0, 0.5, JAN)
    # 80 shares from 50 to 130 cross the 100 boundary: 50 * 0.01 + 30 * 0.005 = 0.65
    assert model.calculate(80, 10.0) == approx(0.65)
    model.record(80, 10.0, 0.65, JAN)
    assert model.month_volume == 130
    assert model.calculate(10, 10.0) == approx(0.05)  # 10 * 0.005
    # 1000 shares from 130 to 1130 cross 1000: 870 * 0.005 + 130 * 0.001 = 4.35 + 0.13 = 4.48
    assert model.calculate(1_000, 10.0) == approx(4.48)


def test_tiered_commission_calculate_twice_same_state() -> None:
    model = TieredCommission(SMALL_TIERS, minimum=0.0, maximum_rate=None)
    model.record(150, 10.0, 0.0, JAN)
    assert model.calculate(10, 10.0) == model.calculate(10, 10.0) == approx(0.05)
    assert model.month_volume == 150


def test_tiered_commission_new_month_resets_volume() -> None:
    model = TieredCommission(SMALL_TIERS, minimum=0.0, maximum_rate=None)
    model.record(5_000, 10.0, 0.0, JAN)
    assert model.calculate(10, 10.0) == approx(0.01)  # 10 * 0.001 (top tier)
    model.record(10, 10.0, 0.01, FEB)
    assert model.month_volume == 10  # February starts from zero
    assert model.calculate(10, 10.0) == approx(0.1)  # shares 11-20 of February: 10 * 0.01
    model.record(10, 10.0, 0.1, datetime(2025, 2, 3))  # same month number, next year
    assert model.month_volume == 10


def test_tiered_commission_tz_aware_new_month_resets() -> None:
    model = TieredCommission(SMALL_TIERS, minimum=0.0, maximum_rate=None)
    model.record(500, 10.0, 0.0, datetime(2024, 1, 31, 20, 0, tzinfo=UTC))
    model.record(20, 10.0, 0.0, datetime(2024, 1, 31, 21, 0, tzinfo=UTC))
    assert model.month_volume == 520
    model.record(30, 10.0, 0.0, datetime(2024, 2, 1, 14, 30, tzinfo=UTC))
    assert model.month_volume == 30


def test_tiered_commission_when_prices_first_fill_of_new_month_from_zero() -> None:
    model = TieredCommission(SMALL_TIERS, minimum=0.0, maximum_rate=None)
    model.record(5_000, 10.0, 0.0, JAN)
    assert model.calculate(50, 10.0, when=JAN) == approx(0.05)  # 50 * 0.001
    assert model.calculate(50, 10.0, when=FEB) == approx(0.5)  # 50 * 0.01, before record
    assert model.month_volume == 5_000


def test_tiered_commission_reset_clears_volume() -> None:
    model = TieredCommission(SMALL_TIERS, minimum=0.0, maximum_rate=None)
    model.record(5_000, 10.0, 0.0, JAN)
    model.reset()
    assert model.month_volume == 0
    assert model.calculate(50, 10.0) == approx(0.5)  # 50 * 0.01
    model.record(1, 10.0, 0.0, JAN)  # same month as before the reset still counts from 0
    assert model.month_volume == 1


def test_tiered_commission_partial_fill_minimum_once_per_order() -> None:
    model = TieredCommission(SMALL_TIERS, minimum=1.0, maximum_rate=None)
    # fill 1: 50 @ 10 -> 50 * 0.01 = 0.5 -> minimum 1.0
    first = model.calculate(50, 10.0)
    assert first == approx(1.0)
    model.record(50, 10.0, first, JAN)
    # fill 2: 80 @ 10; the order's shares 1-130: 100 * 0.01 + 30 * 0.005 = 1.15; paid 1.0
    second = model.calculate_partial(80, 10.0, filled_before=50, paid_before=first)
    assert second == approx(0.15)
    model.record(80, 10.0, second, JAN)
    # fill 3: 10 @ 10; shares 1-140 -> 1.15 + 0.05 = 1.20; paid 1.15 -> 0.05
    assert model.calculate_partial(10, 10.0, 130, first + second) == approx(0.05)


def test_tiered_commission_ibkr_defaults_hand_computed() -> None:
    model = TieredCommission()
    assert model.calculate(10, 100.0) == approx(0.35)  # 10 * 0.0035 = 0.035 -> 0.35
    assert model.calculate(1_000, 100.0) == approx(3.5)  # 1000 * 0.0035
    assert model.calculate(1_000, 0.10) == approx(1.0)  # 3.5 capped at 1 % of 100
    assert model.calculate(50, 0.5) == approx(0.25)  # minimum 0.35, cap 1 % of 25 wins
    model.record(299_000, 50.0, 0.0, JAN)
    # 2000 shares from 299,000: 1000 * 0.0035 + 1000 * 0.002 = 3.5 + 2.0 = 5.5
    assert model.calculate(2_000, 10.0) == approx(5.5)
    model.record(2_000, 10.0, 5.5, JAN)
    assert model.calculate(1_000, 10.0) == approx(2.0)  # all in tier 2: 1000 * 0.002


def test_tiered_commission_inf_bound_repr_shows_none() -> None:
    model = TieredCommission([[100, 0.01], [math.inf, 0.001]], minimum=0.0, maximum_rate=None)
    assert model.tiers == ((100.0, 0.01), (math.inf, 0.001))
    assert repr(model) == (
        "TieredCommission(tiers=[[100.0, 0.01], [None, 0.001]], minimum=0.0, maximum_rate=None)"
    )


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "kwargs", "param"),
    [
        (PercentageCommission, {"rate": 0.001, "minimum": -1.0}, "minimum"),
        (PercentageCommission, {"rate": True}, "rate"),
        (PerShareCommission, {"cost_per_share": 0.01, "maximum_rate": -0.1}, "maximum_rate"),
        (PerShareCommission, {"cost_per_share": 0.01, "maximum_rate": "1%"}, "maximum_rate"),
        (FixedCommission, {"amount": math.nan}, "amount"),
        (FixedCommission, {"amount": "five"}, "amount"),
        (IBKRFixedCommission, {"per_share": -0.005}, "per_share"),
        (IBKRFixedCommission, {"minimum": math.inf}, "minimum"),
        (IBKRFixedCommission, {"maximum_rate": "high"}, "maximum_rate"),
        (TieredCommission, {"minimum": -0.35}, "minimum"),
        (TieredCommission, {"maximum_rate": math.nan}, "maximum_rate"),
        (TieredCommission, {"tiers": []}, "tiers"),
        (TieredCommission, {"tiers": "0.0035"}, "tiers"),
        (TieredCommission, {"tiers": [[100]]}, "tiers"),
        (TieredCommission, {"tiers": [[100, 0.01], [50, 0.02], [None, 0.001]]}, "tiers"),
        (TieredCommission, {"tiers": [[0, 0.01], [None, 0.001]]}, "tiers"),
        (TieredCommission, {"tiers": [[math.nan, 0.01], [None, 0.001]]}, "tiers"),
        (TieredCommission, {"tiers": [[100, -0.01], [None, 0.001]]}, "tiers"),
        (TieredCommission, {"tiers": [[100, 0.01], [1_000, 0.005]]}, "tiers"),
        (TieredCommission, {"tiers": [[None, 0.01], [None, 0.001]]}, "tiers"),
        (TieredCommission, {"tiers": [["lots", 0.01], [None, 0.001]]}, "tiers"),
    ],
)
def test_commission_bad_parameter_config_error_names_class_and_parameter(
    cls: type, kwargs: dict[str, Any], param: str
) -> None:
    with pytest.raises(ConfigError) as info:
        cls(**kwargs)
    msg = str(info.value)
    assert cls.__name__ in msg
    assert param in msg


def test_tiered_commission_unsorted_tiers_message_says_ascending() -> None:
    with pytest.raises(ConfigError, match=r"TieredCommission tiers\[1\].*ascending"):
        TieredCommission([[100, 0.01], [50, 0.02], [None, 0.001]])


def test_tiered_commission_bounded_last_tier_message_says_none() -> None:
    with pytest.raises(ConfigError, match=r"TieredCommission tiers\[1\].*None"):
        TieredCommission([[100, 0.01], [1_000, 0.005]])


# --- registry and protocol -------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry() -> Any:
    return get_plugin_manager(autoload=False).registry


def test_registry_tiered_dict_spec_builds_model(registry: Any) -> None:
    spec = {"model": "tiered", "params": {"tiers": SMALL_TIERS, "minimum": 0.0}}
    model = registry.create("commission", spec)
    assert isinstance(model, TieredCommission)
    assert model.maximum_rate == 0.01  # default kept
    assert model.calculate(150, 10.0) == approx(1.25)  # 100 * 0.01 + 50 * 0.005


@pytest.mark.parametrize(
    ("name", "params", "cls"),
    [
        ("none", {}, NoCommission),
        ("fixed", {"amount": 1.0}, FixedCommission),
        ("FixedCommission", {"amount": 1.0}, FixedCommission),
        ("tiered", {}, TieredCommission),
        ("TieredCommission", {}, TieredCommission),
        ("ibkr_fixed", {}, IBKRFixedCommission),
        ("IBKRFixedCommission", {"minimum": 0.5}, IBKRFixedCommission),
        ("per_share", {"cost_per_share": 0.005, "maximum_rate": 0.01}, PerShareCommission),
        ("percentage", {"rate": 0.001, "minimum": 1.0}, PercentageCommission),
    ],
)
def test_registry_commission_name_or_class_builds_model(
    registry: Any, name: str, params: dict[str, Any], cls: type
) -> None:
    model = registry.create("commission", {"model": name, "params": params})
    assert type(model) is cls
    assert isinstance(model, CommissionModel)


def test_registry_bad_tiers_config_error_names_parameter(registry: Any) -> None:
    spec = {"model": "tiered", "params": {"tiers": [[100, 0.01], [10, 0.005], [None, 0.0]]}}
    with pytest.raises(ConfigError, match=r"TieredCommission tiers\[1\]"):
        registry.create("commission", spec)
