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


# --- one settings object: the constructor, settings(), the config and presets derive from it
def test_constructor_keywords_and_defaults_are_the_settings_fields() -> None:
    import dataclasses
    import inspect

    from ml4t.backtest.builtin.broker_settings import SETTING_NAMES, BrokerSettings

    params = inspect.signature(SimulationBroker.__init__).parameters
    for f in dataclasses.fields(BrokerSettings):
        assert f.name in params, f.name
        assert params[f.name].default == f.default, f.name
    objects = {"commission", "slippage", "impact", "assets", "corporate_actions"}
    objects |= {"exits", "risk_limits"}
    assert set(params) - {"self"} == set(SETTING_NAMES) | objects


def test_every_setting_passes_through_the_constructor_to_config() -> None:
    from ml4t.backtest.builtin.broker_settings import BrokerSettings

    given: dict[str, Any] = {
        "initial_cash": 5_000.0,
        "fill_timing": "next_bar_close",
        "fractional": False,
        "allow_short": True,
        "cash_policy": "resize",
        "account": "margin",
        "initial_margin": 0.6,
        "maintenance_margin": 0.3,
        "max_leverage": 1.5,
        "borrow_rate": 0.02,
        "margin_call": "liquidate_all",
        "volume_limit": 0.2,
        "intrabar": "nearest",
        "trail_reference": "close",
        "exit_base": "bar_close",
        "exit_slippage": False,
        "one_order_per_bar": True,
        "slippage_within_bar": True,
        "order_sizing": "at_order",
    }
    broker = SimulationBroker(**given)
    assert broker.config == BrokerSettings(**given)
    # max_leverage 1.5 raises the effective initial margin to 1 / 1.5
    assert broker.initial_margin == pytest.approx(1 / 1.5)
    for key, value in given.items():
        if key != "initial_margin":
            assert getattr(broker, key) == value, key


def test_settings_are_read_only_attributes() -> None:
    broker = SimulationBroker()
    with pytest.raises(AttributeError):
        broker.fill_timing = "same_bar_close"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        broker.config.fill_timing = "same_bar_close"  # type: ignore[misc]


def test_settings_metadata_keys() -> None:
    assert list(SimulationBroker().settings()) == [
        "initial_cash",
        "commission",
        "slippage",
        "impact",
        "fill_timing",
        "fractional",
        "allow_short",
        "cash_policy",
        "account",
        "initial_margin",
        "maintenance_margin",
        "borrow_rate",
        "margin_call",
        "volume_limit",
        "intrabar",
        "trail_reference",
        "exit_base",
        "exit_slippage",
        "one_order_per_bar",
        "slippage_within_bar",
        "order_sizing",
        "assets",
        "corporate_actions",
        "exits",
        "risk_limits",
    ]


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("fill_timing", "later", "must be one of ('next_bar_open', 'same_bar_close', "),
        ("volume_limit", 0, "must be in (0, 1], got 0"),
        ("maintenance_margin", 0.6, "0.6 must not exceed initial_margin 0.5"),
        ("allow_short", True, "a cash account cannot sell short"),
        ("max_leverage", 0.5, "must be a number >= 1, got 0.5"),
    ],
)
def test_a_bad_setting_is_a_setting_error_naming_its_key(
    key: str, value: Any, problem: str
) -> None:
    from ml4t.backtest.builtin.broker_settings import BrokerSettings, SettingError

    with pytest.raises(SettingError) as info:
        BrokerSettings(**{key: value})
    assert isinstance(info.value, ConfigError)
    assert info.value.key == key
    assert info.value.problem.startswith(problem)
    assert str(info.value) == f"{key}: {info.value.problem}"


def test_config_execution_keys_are_the_settings_fields() -> None:
    from typing import get_args

    from ml4t.backtest.builtin.broker_settings import FILL_TIMINGS, SETTING_NAMES
    from ml4t.backtest.config import BROKER_KEYS, ExecutionConfig

    assert tuple(n for n in SETTING_NAMES if n != "initial_cash") == BROKER_KEYS
    fields = ExecutionConfig.model_fields
    assert set(BROKER_KEYS) <= set(fields)
    assert all(fields[k].default is None for k in BROKER_KEYS)
    # the allowed values come from the settings' Literal types
    assert set(get_args(get_args(fields["fill_timing"].annotation)[0])) == set(FILL_TIMINGS)


def test_presets_hold_only_settings_and_cost_models() -> None:
    from typing import get_args

    from ml4t.backtest.builtin.presets import PRESETS, PresetName, check_preset

    assert tuple(PRESETS) == get_args(PresetName)
    with pytest.raises(ConfigError, match=r"^preset 'x': unknown setting\(s\) \['fill_timng'\]"):
        check_preset("x", {"fill_timng": "same_bar_close"})
    with pytest.raises(ConfigError, match=r"^preset 'x': intrabar: must be one of"):
        check_preset("x", {"intrabar": "sideways"})


def test_typed_setting_attributes_match_the_settings_fields() -> None:
    """The attributes SimulationBroker declares for type checkers are exactly the settings."""
    import ast
    import inspect

    from ml4t.backtest.builtin import sim_broker
    from ml4t.backtest.builtin.broker_settings import SETTING_NAMES

    tree = ast.parse(inspect.getsource(sim_broker))
    cls = next(
        n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SimulationBroker"
    )
    block = next(
        n
        for n in cls.body
        if isinstance(n, ast.If) and isinstance(n.test, ast.Name) and n.test.id == "TYPE_CHECKING"
    )
    declared = [n.target.id for n in block.body if isinstance(n, ast.AnnAssign)]  # type: ignore[union-attr]
    assert declared == list(SETTING_NAMES)
