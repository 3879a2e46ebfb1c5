"""Test kit for ml4t.backtest and its plugin authors.

Synthetic bars, a scripted strategy that records what the broker reports, and a one-call
runner. The same helpers are served as pytest fixtures by
:mod:`ml4t.backtest.testing.pytest_plugin`, which the core distribution registers under the
``pytest11`` entry point (so any project with ml4t-backtest installed gets the fixtures).
"""

from __future__ import annotations

from .data import make_bars, make_long_bars
from .stubs import ScriptedStrategy, check_order_reports, run_backtest

__all__ = [
    "ScriptedStrategy",
    "check_order_reports",
    "make_bars",
    "make_long_bars",
    "run_backtest",
]
