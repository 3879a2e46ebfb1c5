"""Declarative strategies: rules and sizers compiled into a Numba kernel."""

from __future__ import annotations

from .rules import ConfidenceSizer, FixedSizer, PercentSizer, Rule, TopKSizer
from .strategy import SignalStrategy

__all__ = ["ConfidenceSizer", "FixedSizer", "PercentSizer", "Rule", "SignalStrategy", "TopKSizer"]
