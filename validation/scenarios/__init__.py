"""The scenario registry: every scenario by name, in a stable order."""

from __future__ import annotations

from ..scenario import Scenario
from . import core, orders, portfolio

__all__ = ["SCENARIOS", "get"]

SCENARIOS: dict[str, Scenario] = {}
for _module in (core, orders, portfolio):
    for _sc in _module.SCENARIOS:
        if _sc.name in SCENARIOS:
            raise ValueError(f"duplicate scenario name {_sc.name!r}")
        SCENARIOS[_sc.name] = _sc


def get(name: str) -> Scenario:
    """Return the scenario ``name`` (KeyError listing the names)."""
    if name not in SCENARIOS:
        raise KeyError(f"unknown scenario {name!r}; have {sorted(SCENARIOS)}")
    return SCENARIOS[name]
