"""The installed distribution is discovered through its entry point and registers its names."""

from __future__ import annotations

import pytest
from ml4t.backtest import ConfigError, get_plugin_manager, list_plugins

from ml4t_backtest_impact import AlmgrenChrissImpact, SquareRootImpact

NAMES = ["AlmgrenChriss", "SquareRoot", "almgren_chriss", "square_root"]


def test_list_plugins_installed_distribution_lists_impact_plugin() -> None:
    entries = [p for p in list_plugins(get_plugin_manager()) if p["name"] == "impact"]
    assert len(entries) == 1
    entry = entries[0]
    assert entry["distribution"] == "ml4t-backtest-impact"
    assert entry["builtin"] is False
    assert entry["hooks"] == ["ml4t_register_impact_models"]
    assert entry["provides"] == {"impact": NAMES}


def test_list_plugins_autoload_disabled_omits_impact_plugin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ML4T_BACKTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    names = [p["name"] for p in list_plugins(get_plugin_manager())]
    assert "impact" not in names


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("almgren_chriss", AlmgrenChrissImpact),
        ("AlmgrenChriss", AlmgrenChrissImpact),
        ("AlmgrenChrissImpact", AlmgrenChrissImpact),
        ("square_root", SquareRootImpact),
        ("SquareRoot", SquareRootImpact),
        ("SquareRootImpact", SquareRootImpact),
    ],
)
def test_registry_create_each_name_builds_class(name: str, cls: type) -> None:
    registry = get_plugin_manager().registry
    model = registry.create("impact", {"model": name, "params": {"volatility": 0.02, "adv": 1e6}})
    assert type(model) is cls
    assert model.volatility == 0.02
    assert model.adv == 1e6


def test_registry_create_bad_param_raises_config_error_naming_it() -> None:
    registry = get_plugin_manager().registry
    with pytest.raises(ConfigError, match="horizon"):
        registry.create(
            "impact",
            {"model": "AlmgrenChriss", "params": {"volatility": 0.02, "adv": 1e6, "horizon": 0}},
        )


def test_registry_create_blocked_plugin_name_unknown() -> None:
    registry = get_plugin_manager(block=["impact"]).registry
    with pytest.raises(ConfigError, match="unknown impact model 'AlmgrenChriss'"):
        registry.create("impact", {"model": "AlmgrenChriss", "params": {}})
