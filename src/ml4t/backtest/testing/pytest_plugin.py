"""pytest fixtures for ml4t.backtest users and plugin authors.

Registered under the ``pytest11`` entry point of the ml4t-backtest distribution, so the
fixtures are available in any test suite once ml4t-backtest is installed:

``ml4t_bars``
    A 20-bar synthetic single-asset frame (closes 100, 101, ...).
``ml4t_make_bars`` / ``ml4t_make_long_bars``
    The frame builders of :mod:`ml4t.backtest.testing`.
``ml4t_run_backtest``
    :func:`ml4t.backtest.testing.run_backtest`.
``ml4t_scripted_strategy``
    The :class:`~ml4t.backtest.testing.ScriptedStrategy` class.
``ml4t_no_autoload``
    Disables loading installed plugins for the test (``ML4T_BACKTEST_DISABLE_PLUGIN_AUTOLOAD``),
    so only the builtins and the plugins a test passes are active.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl
import pytest

from .data import make_bars, make_long_bars
from .stubs import ScriptedStrategy, run_backtest


@pytest.fixture
def ml4t_bars() -> pl.DataFrame:
    """Return 20 daily bars with closes 100, 101, ..., 119."""
    return make_bars(20)


@pytest.fixture
def ml4t_make_bars() -> Callable[..., pl.DataFrame]:
    """Return :func:`ml4t.backtest.testing.make_bars`."""
    return make_bars


@pytest.fixture
def ml4t_make_long_bars() -> Callable[..., pl.DataFrame]:
    """Return :func:`ml4t.backtest.testing.make_long_bars`."""
    return make_long_bars


@pytest.fixture
def ml4t_run_backtest() -> Callable[..., Any]:
    """Return :func:`ml4t.backtest.testing.run_backtest`."""
    return run_backtest


@pytest.fixture
def ml4t_scripted_strategy() -> type[ScriptedStrategy]:
    """Return the :class:`ScriptedStrategy` class."""
    return ScriptedStrategy


@pytest.fixture
def ml4t_no_autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    """Load no installed plugins during the test."""
    monkeypatch.setenv("ML4T_BACKTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
