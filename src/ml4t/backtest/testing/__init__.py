"""Test kit for ml4t.backtest and its plugin authors.

Synthetic bars, a scripted strategy that records what the broker reports, a one-call
runner, and the broker contract suite (:class:`BrokerContract`) any broker can run against
itself. The data and run helpers are also served as pytest fixtures by
:mod:`ml4t.backtest.testing.pytest_plugin`, which the core distribution registers under the
``pytest11`` entry point (so any project with ml4t-backtest installed gets the fixtures).
"""

from __future__ import annotations

from .broker_contract import FEATURES, BrokerContract
from .data import make_bars, make_long_bars
from .stubs import ScriptedStrategy, check_order_reports, run_backtest

__all__ = [
    "FEATURES",
    "BrokerContract",
    "ScriptedStrategy",
    "check_order_reports",
    "make_bars",
    "make_long_bars",
    "run_backtest",
]
