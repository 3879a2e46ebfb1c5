"""Builtin slippage models.

Slippage moves the execution price against the trader: up for buys, down for sells. It
applies to market fills and triggered stop fills; limit fills execute at the limit or
better and are not slipped. The slipped price is not capped by the bar's range.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..errors import ConfigError
from ..hookspecs import hookimpl
from .commission import non_negative_number

__all__ = [
    "FixedSlippage",
    "NoSlippage",
    "PercentageSlippage",
    "ml4t_register_slippage_models",
]


class NoSlippage:
    """Fill at the base price."""

    def fill_price(self, price: float, side: int, quantity: float, volume: float) -> float:
        """Return ``price`` unchanged."""
        return price

    def __repr__(self) -> str:
        return "NoSlippage()"


class FixedSlippage:
    """Move the price by a fixed amount per unit.

    Parameters
    ----------
    amount : float
        Currency per unit added to buys and subtracted from sells.
    """

    def __init__(self, amount: float) -> None:
        self.amount = non_negative_number("FixedSlippage amount", amount)

    def fill_price(self, price: float, side: int, quantity: float, volume: float) -> float:
        """Return ``price + side * amount`` (never below a tenth of a cent for sells)."""
        return max(price + side * self.amount, 1e-3) if side < 0 else price + self.amount

    def __repr__(self) -> str:
        return f"FixedSlippage(amount={self.amount!r})"


class PercentageSlippage:
    """Move the price by a fraction of itself.

    Parameters
    ----------
    rate : float
        Fraction, e.g. ``0.0005`` for 5 basis points; must be in ``[0, 1)``.
    """

    def __init__(self, rate: float) -> None:
        rate = non_negative_number("PercentageSlippage rate", rate)
        if not rate < 1:
            raise ConfigError(f"PercentageSlippage rate must be in [0, 1), got {rate!r}")
        self.rate = rate

    def fill_price(self, price: float, side: int, quantity: float, volume: float) -> float:
        """Return ``price * (1 + side * rate)``."""
        return price * (1.0 + side * self.rate)

    def __repr__(self) -> str:
        return f"PercentageSlippage(rate={self.rate!r})"


@hookimpl(trylast=True)
def ml4t_register_slippage_models() -> Iterable[tuple[str, Callable[..., Any]]]:
    """Register ``none``, ``fixed`` and ``percentage``."""
    return [("none", NoSlippage), ("fixed", FixedSlippage), ("percentage", PercentageSlippage)]
