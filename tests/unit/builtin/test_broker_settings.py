"""SimulationBroker's numeric settings are numbers: booleans and text are errors naming them."""

from __future__ import annotations

from typing import Any

import pytest

from ml4t.backtest import ConfigError, SimulationBroker


@pytest.mark.parametrize("value", [True, False, None, "abc", "100000", [100_000]])
def test_initial_cash_not_a_number_is_an_error_naming_it(value: Any) -> None:
    # True used to be read as 1.0 (a one-unit account that rejected every order)
    with pytest.raises(ConfigError, match=r"^initial_cash: must be a positive number, got "):
        SimulationBroker(initial_cash=value)


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf")])
def test_initial_cash_not_positive_and_finite_is_an_error(value: float) -> None:
    with pytest.raises(ConfigError, match="initial_cash: must be a positive number"):
        SimulationBroker(initial_cash=value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("borrow_rate", True),
        ("volume_limit", True),
        ("initial_margin", True),
        ("max_leverage", True),
    ],
)
def test_boolean_numeric_setting_is_an_error_naming_it(key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"^{key}: must be a number, got the boolean True"):
        SimulationBroker(account="margin", **{key: value})


def test_boolean_exit_fraction_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="stop_loss: must be a number, got the boolean True"):
        SimulationBroker(exits={"stop_loss": True})


def test_numpy_and_int_cash_are_accepted() -> None:
    import numpy as np

    assert SimulationBroker(initial_cash=np.float64(5e4)).initial_cash == 5e4
    assert SimulationBroker(initial_cash=250).initial_cash == 250.0
