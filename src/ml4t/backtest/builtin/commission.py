"""Builtin commission models.

Each model is called once per fill with the positive quantity and the execution price
(after slippage) and returns a non-negative amount in the account currency. Rates are
fractions: ``0.001`` is 0.1 %.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import ConfigError
from ..hookspecs import hookimpl

__all__ = [
    "NoCommission",
    "PerShareCommission",
    "PercentageCommission",
    "ml4t_register_commission_models",
]


def non_negative_number(name: str, value: float) -> float:
    """Return ``value`` as a float, or raise ConfigError naming ``name``."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


class NoCommission:
    """Charge nothing."""

    def calculate(self, quantity: float, price: float) -> float:
        """Return 0."""
        return 0.0

    def __repr__(self) -> str:
        return "NoCommission()"


class PercentageCommission:
    """Charge a fraction of the traded notional: ``rate * quantity * price``.

    Parameters
    ----------
    rate : float
        Fraction of notional, e.g. ``0.001`` for 10 basis points.
    """

    def __init__(self, rate: float) -> None:
        self.rate = non_negative_number("PercentageCommission rate", rate)

    def calculate(self, quantity: float, price: float) -> float:
        """Return ``rate * quantity * price``."""
        return self.rate * quantity * price

    def __repr__(self) -> str:
        return f"PercentageCommission(rate={self.rate!r})"


class PerShareCommission:
    """Charge per unit traded, with a minimum per fill.

    Parameters
    ----------
    cost_per_share : float
        Currency per share (e.g. ``0.005``).
    minimum : float, default 0.0
        Minimum charge per fill, in currency.
    """

    def __init__(self, cost_per_share: float, minimum: float = 0.0) -> None:
        self.cost_per_share = non_negative_number(
            "PerShareCommission cost_per_share", cost_per_share
        )
        self.minimum = non_negative_number("PerShareCommission minimum", minimum)

    def calculate(self, quantity: float, price: float) -> float:
        """Return ``max(minimum, cost_per_share * quantity)``."""
        return max(self.minimum, self.cost_per_share * quantity)

    def __repr__(self) -> str:
        return (
            f"PerShareCommission(cost_per_share={self.cost_per_share!r}, minimum={self.minimum!r})"
        )


@hookimpl(trylast=True)
def ml4t_register_commission_models() -> Iterable[tuple[str, Callable[..., Any]]]:
    """Register ``none``, ``percentage`` and ``per_share``."""
    return [
        ("none", NoCommission),
        ("percentage", PercentageCommission),
        ("per_share", PerShareCommission),
    ]
