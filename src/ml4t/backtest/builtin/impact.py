"""Builtin market-impact model: none.

Impact models are plugins (see ``ImpactModel``). The core ships only :class:`NoImpact`, the
default; Almgren–Chriss and the square-root law come with the first-party distribution
``ml4t-backtest-impact``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..markers import hookimpl

__all__ = ["NoImpact", "ml4t_register_impact_models"]


class NoImpact:
    """Charge no market impact."""

    def price_impact(
        self, price: float, side: int, quantity: float, bar: Mapping[str, float]
    ) -> float:
        """Return 0."""
        return 0.0

    def __repr__(self) -> str:
        return "NoImpact()"


@hookimpl(trylast=True)
def ml4t_register_impact_models() -> Iterable[tuple[str, Callable[..., Any]]]:
    """Register ``none``."""
    return [("none", NoImpact)]
