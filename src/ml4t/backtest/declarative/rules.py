"""Rules and position sizers of a :class:`~ml4t.backtest.SignalStrategy`.

Entry rules are ANDed, exit rules ORed. Signal rules compare a signal column of the bar
being handled (``signal_above`` and ``signal_below`` are strict, ``signal_between`` is
inclusive; a NaN signal satisfies none of them). Position rules (``in_position``,
``not_in_position``) are entry conditions. ``stop_loss``, ``take_profit``,
``trailing_stop`` and ``max_holding_bars`` are exit rules that become the broker's
position exits (:class:`~ml4t.backtest.ExitRules`): protective orders working from the
bar after the entry fill.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..builtin.risk import ExitRules

__all__ = ["ConfidenceSizer", "FixedSizer", "PercentSizer", "Rule", "RuleSet", "TopKSizer"]

SIGNAL_KINDS = ("signal_above", "signal_below", "signal_between")
POSITION_KINDS = ("in_position", "not_in_position")
EXIT_KINDS = ("stop_loss", "take_profit", "trailing_stop", "trailing_amount", "max_holding_bars")


def _number(owner: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{owner}: must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Rule:
    """One condition of a :class:`~ml4t.backtest.SignalStrategy`; build with the factories."""

    kind: str
    column: str | None = None
    low: float = math.nan
    high: float = math.nan

    # --- signal rules -------------------------------------------------------------------
    @staticmethod
    def signal_above(column: str, threshold: float) -> Rule:
        """True when ``signal[column] > threshold``."""
        return Rule("signal_above", _column(column), _number("signal_above threshold", threshold))

    @staticmethod
    def signal_below(column: str, threshold: float) -> Rule:
        """True when ``signal[column] < threshold``."""
        return Rule("signal_below", _column(column), _number("signal_below threshold", threshold))

    @staticmethod
    def signal_between(column: str, low: float, high: float) -> Rule:
        """True when ``low <= signal[column] <= high``."""
        lo = _number("signal_between low", low)
        hi = _number("signal_between high", high)
        if lo > hi:
            raise ConfigError(f"signal_between: low {lo:g} is above high {hi:g}")
        return Rule("signal_between", _column(column), lo, hi)

    # --- position rules -----------------------------------------------------------------
    @staticmethod
    def in_position() -> Rule:
        """True when the asset's position is not zero."""
        return Rule("in_position")

    @staticmethod
    def not_in_position() -> Rule:
        """True when the asset's position is zero."""
        return Rule("not_in_position")

    # --- position exits -----------------------------------------------------------------
    @staticmethod
    def stop_loss(fraction: float) -> Rule:
        """Exit when the price falls ``fraction`` below the average entry price."""
        return Rule("stop_loss", low=_fraction("stop_loss", fraction))

    @staticmethod
    def take_profit(fraction: float) -> Rule:
        """Exit (limit order) when the price rises ``fraction`` above the average entry."""
        return Rule("take_profit", low=_fraction("take_profit", fraction, math.inf))

    @staticmethod
    def trailing_stop(fraction: float | None = None, amount: float | None = None) -> Rule:
        """Trail the highest price since entry by ``fraction`` (or by ``amount``)."""
        if (fraction is None) == (amount is None):
            raise ConfigError("trailing_stop: give fraction or amount (one of them)")
        if amount is not None:
            return Rule("trailing_amount", low=_fraction("trailing_stop amount", amount, math.inf))
        assert fraction is not None
        return Rule("trailing_stop", low=_fraction("trailing_stop", fraction))

    @staticmethod
    def max_holding_bars(bars: int) -> Rule:
        """Exit with a market order once the position has been held ``bars`` timestamps."""
        if isinstance(bars, bool) or not isinstance(bars, int) or bars < 1:
            raise ConfigError(f"max_holding_bars: must be an integer >= 1, got {bars!r}")
        return Rule("max_holding_bars", low=float(bars))

    def holds(self, value: float, position: float) -> bool:
        """Evaluate a signal or position rule (the event path's implementation)."""
        kind = self.kind
        if kind == "signal_above":
            return value > self.low
        if kind == "signal_below":
            return value < self.low
        if kind == "signal_between":
            return self.low <= value <= self.high
        if kind == "in_position":
            return position != 0
        if kind == "not_in_position":
            return position == 0
        raise ConfigError(f"rule {kind} is a position exit, not a condition")


def _column(column: Any) -> str:
    if not isinstance(column, str) or not column:
        raise ConfigError(f"a signal rule needs a column name, got {column!r}")
    return column


def _fraction(owner: str, value: Any, upper: float = 1.0) -> float:
    x = _number(owner, value)
    if not 0 < x <= upper:
        raise ConfigError(f"{owner}: must be in (0, {upper:g}], got {value!r}")
    return x


@dataclass(frozen=True)
class PercentSizer:
    """Buy with ``percent`` (a fraction) of the available cash (``buy_percent``)."""

    percent: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "percent", _fraction("PercentSizer percent", self.percent))


@dataclass(frozen=True)
class FixedSizer:
    """Buy a fixed ``quantity`` of units."""

    quantity: float

    def __post_init__(self) -> None:
        q = _number("FixedSizer quantity", self.quantity)
        if q <= 0:
            raise ConfigError(f"FixedSizer quantity: must be positive, got {self.quantity!r}")
        object.__setattr__(self, "quantity", q)


@dataclass(frozen=True)
class ConfidenceSizer:
    """Target ``max_percent * scaled confidence`` of equity (``size_by_confidence``).

    The confidence is the signal ``column``, rescaled from ``[min_confidence, 1]`` to
    ``[0, 1]`` and clipped; NaN places no order.
    """

    column: str
    max_percent: float = 1.0
    min_confidence: float = 0.0

    def __post_init__(self) -> None:
        _column(self.column)
        mp = _fraction("ConfidenceSizer max_percent", self.max_percent, math.inf)
        object.__setattr__(self, "max_percent", mp)
        mc = _number("ConfidenceSizer min_confidence", self.min_confidence)
        if not 0 <= mc < 1:
            raise ConfigError(f"ConfidenceSizer min_confidence: must be in [0, 1), got {mc!r}")
        object.__setattr__(self, "min_confidence", mc)


@dataclass(frozen=True)
class TopKSizer:
    """Hold the ``k`` assets with the highest ``column`` value, ``1/k`` of equity each.

    Every timestamp the strategy rebalances (``rebalance_to_weights``) to equal weights
    over the top ``k`` of the assets with a bar now, a finite score, all entry signal
    rules true and no exit signal rule true (ties: asset order); every other held asset
    is sold.
    """

    k: int
    column: str

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ConfigError(f"TopKSizer k: must be an integer >= 1, got {self.k!r}")
        _column(self.column)


Sizer = PercentSizer | FixedSizer | ConfidenceSizer | TopKSizer


class RuleSet(Protocol):
    """What the compiled runner reads of a declarative strategy (its rules, not its class)."""

    entry_rules: tuple[Rule, ...]
    exit_rules: tuple[Rule, ...]
    exit_signals: tuple[Rule, ...]
    position_sizer: Sizer
    exits: ExitRules | None
    columns: tuple[str, ...]
