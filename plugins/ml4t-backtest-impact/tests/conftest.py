"""Shared set-up: the tests need this plugin to be discovered through its entry point."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _plugin_autoload_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clear the switches that could keep the installed plugin from loading."""
    for name in (
        "ML4T_BACKTEST_DISABLE_PLUGIN_AUTOLOAD",
        "ML4T_BACKTEST_PLUGINS",
        "ML4T_BACKTEST_BLOCK_PLUGINS",
    ):
        monkeypatch.delenv(name, raising=False)
