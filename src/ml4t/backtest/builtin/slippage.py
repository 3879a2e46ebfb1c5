"""Builtin slippage models.

Slippage moves the execution price against the trader: up for buys, down for sells. It
applies to market fills and triggered stop fills; limit fills execute at the limit or
better and are not slipped. The slipped price is not capped by the bar's range.

Contract (see :class:`~ml4t.backtest.SlippageModel`): ``fill_price(price, side, quantity,
volume)`` gets the base price, the side sign (+1 buy, -1 sell), the positive fill quantity
and the bar's volume, and returns a price ``>= price`` for buys, ``<= price`` for sells
and ``> 0``. A model that needs other bar columns lists them in ``required_columns``; the
broker checks at set-up that the feed has them and then passes ``bar``, a mapping of the
fill bar's columns, as a fifth argument. Every builtin model accepts ``bar`` (and ignores
it unless it needs it). A model raises :class:`~ml4t.backtest.RejectOrder` when the bar's
data cannot price the fill; the broker then rejects the order with a reason naming the
model. A NaN or infinite price, or one better than the market, stops the run with a
``PluginError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import ConfigError, DataValidationError, RejectOrder
from ..kernels.costs import fixed_slippage, fraction_slippage, no_slippage
from ..markers import hookimpl
from .commission import non_negative_number, to_number

__all__ = [
    "BasisPointsSlippage",
    "FixedSlippage",
    "NoSlippage",
    "PercentageSlippage",
    "SpreadSlippage",
    "VolumeShareSlippage",
    "ml4t_register_slippage_models",
]


class NoSlippage:
    """Fill at the base price."""

    def fill_price(
        self,
        price: float,
        side: int,
        quantity: float,
        volume: float,
        bar: Mapping[str, Any] | None = None,
    ) -> float:
        """Return ``price`` unchanged."""
        return no_slippage(price, side)

    def kernel_params(self) -> tuple[int, tuple[float, ...]]:
        """Return the kernel formula (see :mod:`ml4t.backtest.kernels.costs`)."""
        return 0, ()

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

    def fill_price(
        self,
        price: float,
        side: int,
        quantity: float,
        volume: float,
        bar: Mapping[str, Any] | None = None,
    ) -> float:
        """Return ``price + side * amount``; sells never go below a tenth of a cent.

        A sell whose base price is already below the floor fills at the base price.
        """
        return fixed_slippage(self.amount, price, side)

    def kernel_params(self) -> tuple[int, tuple[float, ...]]:
        """Return the kernel formula (see :mod:`ml4t.backtest.kernels.costs`)."""
        return 1, (self.amount,)

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

    def fill_price(
        self,
        price: float,
        side: int,
        quantity: float,
        volume: float,
        bar: Mapping[str, Any] | None = None,
    ) -> float:
        """Return ``price * (1 + side * rate)``."""
        return fraction_slippage(self.rate, price, side)

    def kernel_params(self) -> tuple[int, tuple[float, ...]]:
        """Return the kernel formula (see :mod:`ml4t.backtest.kernels.costs`)."""
        return 2, (self.rate,)

    def __repr__(self) -> str:
        return f"PercentageSlippage(rate={self.rate!r})"


class BasisPointsSlippage:
    """Move the price by a fixed number of basis points: ``price * (1 + side * bps / 1e4)``.

    Parameters
    ----------
    bps : float
        Basis points (1 bp = 0.01 %), in ``[0, 10000)``.
    """

    def __init__(self, bps: float) -> None:
        value = to_number("BasisPointsSlippage bps", bps)
        if not 0 <= value < 10_000:  # also rejects NaN
            raise ConfigError(f"BasisPointsSlippage bps: must be in [0, 10000), got {bps!r}")
        self.bps = value
        self._rate = value / 10_000.0

    def fill_price(
        self,
        price: float,
        side: int,
        quantity: float,
        volume: float,
        bar: Mapping[str, Any] | None = None,
    ) -> float:
        """Return ``price * (1 + side * bps / 10000)``."""
        return fraction_slippage(self._rate, price, side)

    def kernel_params(self) -> tuple[int, tuple[float, ...]]:
        """Return the kernel formula (see :mod:`ml4t.backtest.kernels.costs`)."""
        return 2, (self._rate,)

    def __repr__(self) -> str:
        return f"BasisPointsSlippage(bps={self.bps!r})"


class VolumeShareSlippage:
    """Slip quadratically in the fill's share of the bar's volume (Zipline's model).

    ``share = min(quantity / volume, volume_limit)`` (``volume_limit`` when the volume is
    0 or missing) and the fill price is ``price * (1 + side * price_impact * share**2)``.

    ``volume_limit`` is also the broker's per-bar participation cap: a fill is limited to
    ``volume_limit * volume`` units per bar and the rest of the order stays open as a
    partial fill for later bars.

    Parameters
    ----------
    volume_limit : float, default 0.025
        Largest fraction of a bar's volume one fill may take, in ``(0, 1]``.
    price_impact : float, default 0.1
        Scale of the impact; ``price_impact * volume_limit**2`` must be below 1 so sell
        prices stay positive.
    """

    def __init__(self, volume_limit: float = 0.025, price_impact: float = 0.1) -> None:
        limit = to_number("VolumeShareSlippage volume_limit", volume_limit)
        if not 0 < limit <= 1:  # also rejects NaN
            raise ConfigError(
                f"VolumeShareSlippage volume_limit: must be in (0, 1], got {volume_limit!r}"
            )
        impact = non_negative_number("VolumeShareSlippage price_impact", price_impact)
        if not impact * limit**2 < 1:
            raise ConfigError(
                "VolumeShareSlippage price_impact: price_impact * volume_limit**2 must be "
                f"< 1 so sell prices stay positive, got {impact!r} * {limit!r}**2"
            )
        self.volume_limit = limit
        self.price_impact = impact

    def fill_price(
        self,
        price: float,
        side: int,
        quantity: float,
        volume: float,
        bar: Mapping[str, Any] | None = None,
    ) -> float:
        """Return ``price * (1 + side * price_impact * share**2)``."""
        # `volume > 0` is False for NaN too: unknown volume is priced at the cap.
        share = min(quantity / volume, self.volume_limit) if volume > 0 else self.volume_limit
        return price * (1.0 + side * self.price_impact * share * share)

    def __repr__(self) -> str:
        return (
            f"VolumeShareSlippage(volume_limit={self.volume_limit!r}, "
            f"price_impact={self.price_impact!r})"
        )


class SpreadSlippage:
    """Cross a fraction of the quoted spread taken from a bar column.

    ``price + side * fraction * spread`` with ``spread = bar[column]`` in price units, or
    with ``relative=True`` (the column is a fraction of price)
    ``price * (1 + side * fraction * spread)``. ``fraction=0.5`` (half the spread) fills
    a buy at the ask and a sell at the bid when ``price`` is the mid.

    A NaN, missing or negative spread, or one so wide that a sell would fill at or below
    0, raises :class:`~ml4t.backtest.RejectOrder`: the broker rejects the order with a
    reason naming this model and the value.

    Parameters
    ----------
    column : str, default "spread"
        Bar column with the spread (a signal or indicator column of the feed).
    fraction : float, default 0.5
        Fraction of the spread paid, ``>= 0``.
    relative : bool, default False
        Whether the column holds the spread as a fraction of price.
    """

    required_columns: tuple[str, ...]

    def __init__(
        self, column: str = "spread", fraction: float = 0.5, relative: bool = False
    ) -> None:
        if not isinstance(column, str) or not column:
            raise ConfigError(
                f"SpreadSlippage column: must be a non-empty column name, got {column!r}"
            )
        if not isinstance(relative, bool):
            raise ConfigError(f"SpreadSlippage relative: must be true or false, got {relative!r}")
        self.column = column
        self.fraction = non_negative_number("SpreadSlippage fraction", fraction)
        self.relative = relative
        self.required_columns = (column,)

    def fill_price(
        self,
        price: float,
        side: int,
        quantity: float,
        volume: float,
        bar: Mapping[str, Any] | None = None,
    ) -> float:
        """Return the price after paying ``fraction`` of ``bar[column]``.

        Raises ``RejectOrder`` when the bar's spread cannot price the fill.
        """
        if bar is None:
            raise TypeError(
                f"SpreadSlippage.fill_price needs the fill bar (it requires column "
                f"{self.column!r}); the broker passes it when required_columns is set"
            )
        try:
            raw = bar[self.column]
        except KeyError:
            raise DataValidationError(
                f"SpreadSlippage: the bar has no column {self.column!r}; columns: {sorted(bar)}"
            ) from None
        try:
            spread = float(raw)
        except (TypeError, ValueError):
            spread = math.nan  # null or non-numeric value
        if not (math.isfinite(spread) and spread >= 0):
            raise RejectOrder(f"the {self.column!r} on this bar is {raw!r}, not a spread >= 0")
        move = side * self.fraction * spread
        out = price * (1.0 + move) if self.relative else price + move
        if not out > 0:
            raise RejectOrder(
                f"the {self.column!r} of {spread:g} on this bar moves the price {price:g} to "
                f"{out:g}, not a price > 0"
            )
        return out

    def __repr__(self) -> str:
        return (
            f"SpreadSlippage(column={self.column!r}, fraction={self.fraction!r}, "
            f"relative={self.relative!r})"
        )


@hookimpl(trylast=True)
def ml4t_register_slippage_models() -> Iterable[tuple[str, Callable[..., Any]]]:
    """Register ``none``, ``fixed``, ``percentage``, ``bps``/``basis_points``, the rest."""
    return [
        ("none", NoSlippage),
        ("fixed", FixedSlippage),
        ("percentage", PercentageSlippage),
        ("bps", BasisPointsSlippage),
        ("basis_points", BasisPointsSlippage),
        ("volume_share", VolumeShareSlippage),
        ("spread", SpreadSlippage),
    ]
