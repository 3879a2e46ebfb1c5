"""Risk rules: position exits and portfolio limits.

:class:`ExitRules` are position-level exits the broker manages for every position (or
per asset, set from a strategy with ``Strategy.set_exits``): when a position opens, the
broker places protective orders for it — a stop-loss (stop), a take-profit (limit), a
trailing stop and a time exit (market, after ``max_bars`` timestamps) — in one
one-cancels-other group, sized to the position and priced from its average entry price.
They work from the bar after the entry fill, follow the position when it grows or
shrinks, are cancelled when it closes, and the one that fills becomes the trade's
``exit_reason`` (``stop_loss``, ``take_profit``, ``trailing_stop``, ``time_exit``).

:class:`RiskLimits` are portfolio-level limits checked on every fill that increases an
asset's exposure: maximum position weight, gross and net leverage, number of positions,
and a drawdown halt. A breach rejects the order or resizes it to the limit
(``on_breach``), with the reason reported to ``on_order_rejected`` / the fills frame.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from ..errors import ConfigError
from .accounts import qty_for_abs_cap

__all__ = ["ExitRules", "RiskLimits", "as_exit_rules", "as_risk_limits"]


def _fraction(owner: str, name: str, value: Any, upper: float = 1.0) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{owner} {name}: must be a number, got the boolean {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{owner} {name}: must be a number, got {value!r}") from None
    if not (math.isfinite(x) and 0 < x <= upper):
        raise ConfigError(f"{owner} {name}: must be in (0, {upper:g}], got {value!r}")
    return x


@dataclass(frozen=True)
class ExitRules:
    """Position-level exits, each optional.

    Parameters
    ----------
    stop_loss : float, optional
        Exit when the price moves this fraction against the average entry price
        (0.05: a long exits at 95 % of entry, a short at 105 %).
    take_profit : float, optional
        Exit when the price moves this fraction in favour (limit order at the level).
    trailing_stop : float, optional
        Trail the best price since entry by this fraction.
    trailing_amount : float, optional
        Trail the best price by this amount (currency) instead.
    max_bars : int, optional
        Exit with a market order after the position has been held this many timestamps.
    """

    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None
    trailing_amount: float | None = None
    max_bars: int | None = None

    def __post_init__(self) -> None:
        owner = "ExitRules"
        object.__setattr__(self, "stop_loss", _fraction(owner, "stop_loss", self.stop_loss))
        tp = _fraction(owner, "take_profit", self.take_profit, upper=math.inf)
        object.__setattr__(self, "take_profit", tp)
        trail = _fraction(owner, "trailing_stop", self.trailing_stop)
        object.__setattr__(self, "trailing_stop", trail)
        amount = _fraction(owner, "trailing_amount", self.trailing_amount, upper=math.inf)
        object.__setattr__(self, "trailing_amount", amount)
        if trail is not None and amount is not None:
            raise ConfigError("ExitRules: give trailing_stop or trailing_amount, not both")
        if self.max_bars is not None:
            if isinstance(self.max_bars, bool) or not isinstance(self.max_bars, int):
                raise ConfigError(f"ExitRules max_bars: must be an integer, got {self.max_bars!r}")
            if self.max_bars < 1:
                raise ConfigError(f"ExitRules max_bars: must be >= 1, got {self.max_bars}")

    @property
    def active(self) -> bool:
        """Return True when at least one exit is set."""
        return any(getattr(self, f.name) is not None for f in fields(self))

    def to_dict(self) -> dict[str, Any]:
        """Return the set exits as a dict."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class RiskLimits:
    """Portfolio-level limits, each optional.

    Parameters
    ----------
    max_position_weight : float, optional
        Largest ``|position value| / equity`` after a fill.
    max_gross_leverage : float, optional
        Largest ``sum |position notional| / equity`` after a fill.
    max_net_leverage : float, optional
        Largest ``|sum position notional| / equity`` after a fill.
    max_positions : int, optional
        Largest number of open positions; an order that would open one more is rejected.
    max_drawdown : float, optional
        Halt when equity falls this fraction below its running peak (checked at every
        bar's close): from then on every order that increases exposure is rejected.
    on_breach : {"reject", "resize"}
        Reject a breaching order, or resize it to the largest quantity within the limits
        (the count and halt limits always reject).
    """

    max_position_weight: float | None = None
    max_gross_leverage: float | None = None
    max_net_leverage: float | None = None
    max_positions: int | None = None
    max_drawdown: float | None = None
    on_breach: str = "reject"

    def __post_init__(self) -> None:
        owner = "RiskLimits"
        for name, upper in (
            ("max_position_weight", math.inf),
            ("max_gross_leverage", math.inf),
            ("max_net_leverage", math.inf),
            ("max_drawdown", 1.0),
        ):
            object.__setattr__(self, name, _fraction(owner, name, getattr(self, name), upper))
        n = self.max_positions
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ConfigError(f"RiskLimits max_positions: must be an integer >= 1, got {n!r}")
        if self.on_breach not in ("reject", "resize"):
            raise ConfigError(
                f"RiskLimits on_breach: must be 'reject' or 'resize', got {self.on_breach!r}"
            )

    @property
    def active(self) -> bool:
        """Return True when at least one limit is set."""
        return any(getattr(self, f.name) is not None for f in fields(self) if f.name != "on_breach")

    def to_dict(self) -> dict[str, Any]:
        """Return the set limits as a dict."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def max_quantity(
        self,
        *,
        old: float,
        side: int,
        unit_value: float,
        equity: float,
        gross: float,
        net: float,
        num_positions: int,
        halted: bool,
    ) -> tuple[float, str | None]:
        """Return the largest quantity the limits allow and the binding limit's text.

        ``unit_value`` is the notional of one unit (``multiplier * price``); ``gross``
        and ``net`` are the current exposures and ``num_positions`` the open positions.
        """
        if halted:
            return 0.0, f"drawdown halt (max_drawdown {self.max_drawdown:g})"
        best, why = math.inf, None
        if self.max_positions is not None and old == 0 and num_positions >= self.max_positions:
            return 0.0, f"max_positions {self.max_positions} reached"
        if equity <= 0:
            return 0.0, f"equity {equity:,.2f} is not positive"
        caps = []
        if self.max_position_weight is not None:
            caps.append((self.max_position_weight * equity / unit_value, "max_position_weight"))
        if self.max_gross_leverage is not None:
            room = self.max_gross_leverage * equity - gross + abs(old) * unit_value
            caps.append((room / unit_value, "max_gross_leverage"))
        for cap, name in caps:
            q = qty_for_abs_cap(old, side, cap)
            if q < best:
                best, why = q, f"{name} {getattr(self, name):g}"
        if self.max_net_leverage is not None:
            q = max((self.max_net_leverage * equity - side * net) / unit_value, 0.0)
            if q < best:
                best, why = q, f"max_net_leverage {self.max_net_leverage:g}"
        return best, why


def as_exit_rules(spec: Any, where: str = "exits") -> ExitRules | None:
    """Return ``spec`` (ExitRules, mapping or None) as :class:`ExitRules`, None if empty."""
    return _parse(ExitRules, spec, where, "exit rules")


def as_risk_limits(spec: Any, where: str = "risk_limits") -> RiskLimits | None:
    """Return ``spec`` (RiskLimits, mapping or None) as :class:`RiskLimits`, None if empty."""
    return _parse(RiskLimits, spec, where, "risk limits")


_Rules = TypeVar("_Rules", ExitRules, RiskLimits)


def _parse(cls: type[_Rules], spec: Any, where: str, what: str) -> _Rules | None:
    if spec is None:
        return None
    if not isinstance(spec, cls):
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}: expected a mapping of {what}, got {spec!r}")
        known = {f.name for f in fields(cls)}
        unknown = set(spec) - known
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        try:
            spec = cls(**spec)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    return spec if spec.active else None
