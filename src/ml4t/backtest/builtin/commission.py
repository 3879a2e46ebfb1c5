"""Builtin commission models.

Contract (see :class:`~ml4t.backtest.CommissionModel`): ``calculate(quantity, price)`` is
called once per fill with the positive quantity and the execution price (after slippage)
and returns a non-negative amount in the account currency. For futures ``price`` is the
per-unit price and no multiplier is applied: per-unit models charge per contract as given.
Rates are fractions: ``0.001`` is 0.1 %.

Optional methods the broker calls when a model has them:

``calculate_partial(quantity, price, filled_before, paid_before)``
    Called instead of ``calculate`` for the second and later fills of the same order, so a
    per-order minimum or fixed fee is charged once per order: the order pays
    ``max(minimum, commission on everything filled so far) - paid_before``, never negative.
``record(quantity, price, commission, when)``
    Called after every fill with its timestamp; stateful models (monthly volume tiers)
    update here.
``reset()``
    Called at the start of each run.

``calculate`` and ``calculate_partial`` never change a model's state: the broker may call
them more than once for one fill (to size an order to the available cash).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from ..errors import ConfigError
from ..kernels.costs import (
    fixed_commission,
    no_commission,
    per_share_commission,
    percentage_commission,
)
from ..markers import hookimpl

__all__ = [
    "IBKR_US_STOCK_TIERS",
    "FixedCommission",
    "IBKRFixedCommission",
    "NoCommission",
    "PerShareCommission",
    "PercentageCommission",
    "TieredCommission",
    "ml4t_register_commission_models",
]

#: IBKR Pro tiered schedule for US stocks and ETFs: (monthly share volume upper bound,
#: USD per share). Commission part only; exchange, clearing and regulatory fees excluded.
IBKR_US_STOCK_TIERS: tuple[tuple[float | None, float], ...] = (
    (300_000, 0.0035),
    (3_000_000, 0.002),
    (20_000_000, 0.0015),
    (100_000_000, 0.001),
    (None, 0.0005),
)


def to_number(name: str, value: Any) -> float:
    """Return ``value`` as a float (possibly NaN or infinite), or raise ConfigError."""
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None


def non_negative_number(name: str, value: Any) -> float:
    """Return ``value`` as a finite float ``>= 0``, or raise ConfigError naming ``name``."""
    number = to_number(name, value)
    if not math.isfinite(number) or number < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


def _optional_rate(name: str, value: Any) -> float | None:
    return None if value is None else non_negative_number(name, value)


def _cap_param(maximum_rate: float | None) -> float:
    # The kernel formula's cap parameter: NaN for no cap.
    return math.nan if maximum_rate is None else maximum_rate


def _capped(amount: float, maximum_rate: float | None, notional: float) -> float:
    # The cap wins over the minimum, as in IBKR's schedules.
    return amount if maximum_rate is None else min(amount, maximum_rate * notional)


def _per_unit_partial(
    rate: float,
    minimum: float,
    maximum_rate: float | None,
    quantity: float,
    price: float,
    filled_before: float,
    paid_before: float,
    notional_before: float | None,
) -> float:
    # Zipline semantics: the whole order owes max(minimum, rate * units), capped at
    # maximum_rate of its value; this fill pays what is still owed.
    before = filled_before * price if notional_before is None else notional_before
    total = _capped(
        max(minimum, rate * (filled_before + quantity)), maximum_rate, before + quantity * price
    )
    return max(0.0, total - paid_before)


class NoCommission:
    """Charge nothing."""

    def calculate(self, quantity: float, price: float) -> float:
        """Return 0."""
        return no_commission(quantity, price)

    def kernel_params(self) -> tuple[int, tuple[float, ...]]:
        """Return the kernel formula (see :mod:`ml4t.backtest.kernels.costs`)."""
        return 0, ()

    def __repr__(self) -> str:
        return "NoCommission()"


class PercentageCommission:
    """Charge a fraction of the traded notional: ``max(minimum, rate * quantity * price)``.

    Parameters
    ----------
    rate : float
        Fraction of notional, e.g. ``0.001`` for 10 basis points.
    minimum : float, default 0.0
        Minimum charge per order (not per fill), in currency.
    """

    def __init__(self, rate: float, minimum: float = 0.0) -> None:
        self.rate = non_negative_number("PercentageCommission rate", rate)
        self.minimum = non_negative_number("PercentageCommission minimum", minimum)

    def calculate(self, quantity: float, price: float) -> float:
        """Return ``max(minimum, rate * quantity * price)``."""
        return percentage_commission(self.rate, self.minimum, quantity, price)

    def calculate_partial(
        self,
        quantity: float,
        price: float,
        filled_before: float,
        paid_before: float,
        notional_before: float | None = None,
    ) -> float:
        """Return the commission for a later fill of an order that paid ``paid_before``.

        The order owes ``max(minimum, rate * order notional)`` in total. Without
        ``notional_before`` (the value of the earlier fills) the earlier notional is
        recovered from ``paid_before`` when the minimum no longer binds, and estimated as
        ``filled_before * price`` otherwise.
        """
        if notional_before is not None:
            raw_before = self.rate * notional_before
        elif paid_before > self.minimum:
            raw_before = paid_before  # the minimum no longer binds: paid == rate * notional
        else:
            raw_before = min(self.minimum, self.rate * filled_before * price)
        total = max(self.minimum, raw_before + self.rate * quantity * price)
        return max(0.0, total - paid_before)

    def kernel_params(self) -> tuple[int, tuple[float, ...]]:
        """Return the kernel formula (see :mod:`ml4t.backtest.kernels.costs`)."""
        return 1, (self.rate, self.minimum)

    def __repr__(self) -> str:
        return f"PercentageCommission(rate={self.rate!r}, minimum={self.minimum!r})"


class PerShareCommission:
    """Charge per unit traded, with a per-order minimum and an optional cap.

    The charge is ``max(minimum, cost_per_share * quantity)``, then capped at
    ``maximum_rate * quantity * price`` when ``maximum_rate`` is given (the cap wins over
    the minimum). Across partial fills of one order the minimum and the cap apply to the
    order as a whole (see :meth:`calculate_partial`).

    Parameters
    ----------
    cost_per_share : float
        Currency per share or contract (e.g. ``0.005``).
    minimum : float, default 0.0
        Minimum charge per order, in currency.
    maximum_rate : float, optional
        Cap as a fraction of the order's value (``0.01`` = 1 %); ``None`` for no cap.
    """

    def __init__(
        self, cost_per_share: float, minimum: float = 0.0, maximum_rate: float | None = None
    ) -> None:
        self.cost_per_share = non_negative_number(
            "PerShareCommission cost_per_share", cost_per_share
        )
        self.minimum = non_negative_number("PerShareCommission minimum", minimum)
        self.maximum_rate = _optional_rate("PerShareCommission maximum_rate", maximum_rate)

    def calculate(self, quantity: float, price: float) -> float:
        """Return ``max(minimum, cost_per_share * quantity)``, capped by ``maximum_rate``."""
        cap = self.maximum_rate
        return per_share_commission(
            self.cost_per_share, self.minimum, math.nan if cap is None else cap, quantity, price
        )

    def calculate_partial(
        self,
        quantity: float,
        price: float,
        filled_before: float,
        paid_before: float,
        notional_before: float | None = None,
    ) -> float:
        """Return the commission for a later fill of an order that paid ``paid_before``.

        The order owes ``max(minimum, cost_per_share * total quantity)`` capped at
        ``maximum_rate`` of its value; this fill pays the difference, never less than 0.
        The earlier fills' value is ``notional_before`` when given, else it is estimated
        as ``filled_before * price``.
        """
        return _per_unit_partial(
            self.cost_per_share,
            self.minimum,
            self.maximum_rate,
            quantity,
            price,
            filled_before,
            paid_before,
            notional_before,
        )

    def kernel_params(self) -> tuple[int, tuple[float, ...]]:
        """Return the kernel formula (see :mod:`ml4t.backtest.kernels.costs`)."""
        return 2, (self.cost_per_share, self.minimum, _cap_param(self.maximum_rate))

    def __repr__(self) -> str:
        return (
            f"PerShareCommission(cost_per_share={self.cost_per_share!r}, "
            f"minimum={self.minimum!r}, maximum_rate={self.maximum_rate!r})"
        )


class IBKRFixedCommission(PerShareCommission):
    """Interactive Brokers' fixed pricing for US stocks (commission part).

    ``max(minimum, per_share * quantity)`` capped at ``maximum_rate * quantity * price``,
    per order; the cap wins over the minimum. Defaults: USD 0.005 per share, USD 1.00
    minimum, 1 % of trade value maximum.

    Parameters
    ----------
    per_share : float, default 0.005
        Currency per share.
    minimum : float, default 1.0
        Minimum charge per order.
    maximum_rate : float, default 0.01
        Cap as a fraction of the order's value; ``None`` for no cap.
    """

    def __init__(
        self, per_share: float = 0.005, minimum: float = 1.0, maximum_rate: float | None = 0.01
    ) -> None:
        self.per_share = non_negative_number("IBKRFixedCommission per_share", per_share)
        super().__init__(
            self.per_share,
            non_negative_number("IBKRFixedCommission minimum", minimum),
            _optional_rate("IBKRFixedCommission maximum_rate", maximum_rate),
        )

    def __repr__(self) -> str:
        return (
            f"IBKRFixedCommission(per_share={self.per_share!r}, minimum={self.minimum!r}, "
            f"maximum_rate={self.maximum_rate!r})"
        )


class FixedCommission:
    """Charge a fixed amount per order, whatever its size.

    Parameters
    ----------
    amount : float
        Currency per order, charged on the order's first fill; later partial fills of the
        same order pay nothing.
    """

    def __init__(self, amount: float) -> None:
        self.amount = non_negative_number("FixedCommission amount", amount)

    def calculate(self, quantity: float, price: float) -> float:
        """Return ``amount``."""
        return fixed_commission(self.amount, quantity, price)

    def calculate_partial(
        self, quantity: float, price: float, filled_before: float, paid_before: float
    ) -> float:
        """Return what is left of ``amount`` after ``paid_before`` (0 once it is paid)."""
        return max(0.0, self.amount - paid_before)

    def kernel_params(self) -> tuple[int, tuple[float, ...]]:
        """Return the kernel formula (see :mod:`ml4t.backtest.kernels.costs`)."""
        return 3, (self.amount,)

    def __repr__(self) -> str:
        return f"FixedCommission(amount={self.amount!r})"


def _parse_tiers(raw: Any) -> tuple[tuple[float, float], ...]:
    where = "TieredCommission tiers"
    if isinstance(raw, str | bytes) or not isinstance(raw, Sequence) or not raw:
        raise ConfigError(
            f"{where}: expected a non-empty list of [upper_bound, rate] pairs, got {raw!r}"
        )
    tiers: list[tuple[float, float]] = []
    previous = 0.0
    for i, pair in enumerate(raw):
        if isinstance(pair, str | bytes) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ConfigError(f"{where}[{i}]: expected [upper_bound, rate], got {pair!r}")
        rate = non_negative_number(f"{where}[{i}] rate", pair[1])
        bound = math.inf if pair[0] is None else to_number(f"{where}[{i}] upper_bound", pair[0])
        last = i == len(raw) - 1
        if last and bound != math.inf:
            raise ConfigError(
                f"{where}[{i}]: the last tier's upper bound must be None (or inf) so every "
                f"volume has a rate, got {pair[0]!r}"
            )
        if not last and not math.isfinite(bound):
            raise ConfigError(
                f"{where}[{i}]: only the last tier may be unbounded, got upper bound {pair[0]!r}"
            )
        if not bound > previous:  # also rejects NaN
            raise ConfigError(
                f"{where}[{i}]: upper bounds must be > 0 and strictly ascending, got "
                f"{pair[0]!r} after {previous!r}"
            )
        tiers.append((bound, rate))
        previous = bound
    return tuple(tiers)


class TieredCommission:
    """Charge per share at a rate set by the month-to-date share volume (IBKR tiered).

    Each tier is ``[upper_bound, rate]``: shares number ``upper_bound`` and below of the
    calendar month's cumulative volume pay ``rate`` per share; the last tier's bound is
    ``None`` (unbounded). A fill is priced from the volume traded *before* it and is
    split across tiers when it crosses a boundary (each share pays the rate of the tier
    its cumulative count falls in, as in IBKR's published examples). The per-order
    charge is at least ``minimum`` and at most ``maximum_rate`` of the order's value (the
    cap wins over the minimum).

    Volume is counted by :meth:`record`, called by the broker after every fill of every
    asset; the count restarts when ``record`` sees a fill in a new calendar month of its
    timestamp (in the timestamp's own time zone), and :meth:`reset` clears it.

    Defaults follow IBKR Pro's tiered schedule for US stocks and ETFs, commission part
    only: exchange, clearing, regulatory and pass-through fees are not included.

    Parameters
    ----------
    tiers : sequence of [upper_bound, rate], default IBKR_US_STOCK_TIERS
        Monthly share volume upper bounds, strictly ascending, and currency per share.
    minimum : float, default 0.35
        Minimum charge per order.
    maximum_rate : float, default 0.01
        Cap as a fraction of the order's value; ``None`` for no cap.
    """

    def __init__(
        self,
        tiers: Sequence[Sequence[float | None]] = IBKR_US_STOCK_TIERS,
        minimum: float = 0.35,
        maximum_rate: float | None = 0.01,
    ) -> None:
        self.tiers = _parse_tiers(tiers)
        self.minimum = non_negative_number("TieredCommission minimum", minimum)
        self.maximum_rate = _optional_rate("TieredCommission maximum_rate", maximum_rate)
        self._month: tuple[int, int] | None = None
        self._volume = 0.0

    @property
    def month_volume(self) -> float:
        """Shares recorded so far in the current calendar month."""
        return self._volume

    def reset(self) -> None:
        """Forget the month-to-date volume (called at the start of each run)."""
        self._month = None
        self._volume = 0.0

    def record(self, quantity: float, price: float, commission: float, when: datetime) -> None:
        """Add a fill's quantity to the month-to-date volume, restarting on a new month."""
        month = (when.year, when.month)
        if month != self._month:
            self._month = month
            self._volume = 0.0
        self._volume += abs(quantity)

    def tiered_cost(self, start: float, quantity: float) -> float:
        """Return the per-share cost of ``quantity`` shares after ``start`` shares this month."""
        cost, low, end = 0.0, 0.0, start + quantity
        for bound, rate in self.tiers:
            if end <= low:
                break
            overlap = min(end, bound) - max(start, low)
            if overlap > 0:
                cost += overlap * rate
            low = bound
        return cost

    def _volume_at(self, when: datetime | None) -> float:
        # No month recorded yet means no volume either.
        new_month = when is not None and (when.year, when.month) != self._month
        return 0.0 if new_month else self._volume

    def calculate(self, quantity: float, price: float, when: datetime | None = None) -> float:
        """Return the tiered commission of a fill (an order's first).

        ``when`` (optional) is the fill time: a fill in a new month is then priced from
        zero volume even before :meth:`record` has seen that month.
        """
        raw = self.tiered_cost(self._volume_at(when), quantity)
        return _capped(max(self.minimum, raw), self.maximum_rate, quantity * price)

    def calculate_partial(
        self,
        quantity: float,
        price: float,
        filled_before: float,
        paid_before: float,
        notional_before: float | None = None,
        when: datetime | None = None,
    ) -> float:
        """Return the commission for a later fill of an order that paid ``paid_before``.

        The order's earlier fills are taken to be the last ``filled_before`` shares of the
        month-to-date volume (exact unless another order's fills were recorded in between
        across a tier boundary). The order owes ``max(minimum, tiered cost of all its
        shares)`` capped at ``maximum_rate`` of its value (earlier value:
        ``notional_before``, else ``filled_before * price``); this fill pays the rest.
        """
        volume = self._volume_at(when)
        raw = self.tiered_cost(max(volume - filled_before, 0.0), filled_before)
        raw += self.tiered_cost(volume, quantity)
        before = filled_before * price if notional_before is None else notional_before
        total = _capped(max(self.minimum, raw), self.maximum_rate, before + quantity * price)
        return max(0.0, total - paid_before)

    def __repr__(self) -> str:
        tiers = [[None if b == math.inf else b, r] for b, r in self.tiers]
        return (
            f"TieredCommission(tiers={tiers!r}, minimum={self.minimum!r}, "
            f"maximum_rate={self.maximum_rate!r})"
        )


@hookimpl(trylast=True)
def ml4t_register_commission_models() -> Iterable[tuple[str, Callable[..., Any]]]:
    """Register ``none``, ``percentage``, ``per_share``, ``fixed``, ``tiered``, ``ibkr_fixed``."""
    return [
        ("none", NoCommission),
        ("percentage", PercentageCommission),
        ("per_share", PerShareCommission),
        ("fixed", FixedCommission),
        ("tiered", TieredCommission),
        ("ibkr_fixed", IBKRFixedCommission),
    ]
