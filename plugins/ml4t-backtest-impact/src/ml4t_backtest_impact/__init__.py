"""Market-impact models for ml4t.backtest: Almgren–Chriss and the square-root law.

An installed plugin (entry point ``impact`` in group ``ml4t.backtest``). It registers,
through ``ml4t_register_impact_models``:

``almgren_chriss`` / ``AlmgrenChriss`` / ``AlmgrenChrissImpact``
    :class:`AlmgrenChrissImpact`, permanent plus temporary impact as calibrated by
    Almgren, Thum, Hauptmann & Li (2005).
``square_root`` / ``SquareRoot`` / ``SquareRootImpact``
    :class:`SquareRootImpact`, the square-root law of market impact.

Use them by name, ``SimulationBroker(impact={"model": "AlmgrenChriss", "params": {...}})``,
or pass an instance, ``SimulationBroker(impact=AlmgrenChrissImpact(0.02, 1e6))``.

Both models follow the ``ImpactModel`` contract of ml4t.backtest: ``price_impact`` returns
the adverse impact per unit in price units (``>= 0``) and the broker executes at
``price + side * impact``. Volatility and average daily volume are either constants or
names of bar columns (indicators the user computed point-in-time, from data before the
fill bar).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from numbers import Real
from typing import Any

from ml4t.backtest import ConfigError, RejectOrder, hookimpl

__all__ = ["AlmgrenChrissImpact", "SquareRootImpact", "ml4t_register_impact_models"]

__version__ = "0.1.0"

#: What ``on_missing`` may be: ``"reject"`` (``price_impact`` raises ``RejectOrder``, so the
#: broker rejects the order with the reason) or ``"zero"``.
ON_MISSING = ("reject", "zero")

_NO_BAR: Mapping[str, Any] = {}


def _positive_or_column(model: str, name: str, value: object) -> float | str:
    """Validate an input that is a positive constant or the name of a bar column."""
    if isinstance(value, str):
        if not value.strip():
            raise ConfigError(
                f"{model}: {name} must be a positive number or a column name, got {value!r}"
            )
        return value
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigError(
            f"{model}: {name} must be a positive number or the name of a bar column, got {value!r}"
        )
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise ConfigError(f"{model}: {name} must be a positive finite number, got {value!r}")
    return number


def _number(model: str, name: str, value: object, *, allow_zero: bool) -> float:
    """Validate a numeric parameter: finite and > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigError(f"{model}: {name} must be a number, got {value!r}")
    number = float(value)
    ok = number >= 0 if allow_zero else number > 0
    if not (math.isfinite(number) and ok):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{model}: {name} must be a finite number {bound}, got {value!r}")
    return number


class _BarInputs:
    """Shared handling of the volatility and ADV inputs (constants or bar columns)."""

    volatility: float | str
    adv: float | str
    on_missing: str

    def _init_inputs(self, volatility: object, adv: object, on_missing: object) -> None:
        model = type(self).__name__
        self.volatility = _positive_or_column(model, "volatility", volatility)
        self.adv = _positive_or_column(model, "adv", adv)
        if on_missing not in ON_MISSING:
            raise ConfigError(
                f"{model}: on_missing must be one of {ON_MISSING}, got {on_missing!r}"
            )
        self.on_missing = str(on_missing)

    def _read(self, name: str, source: float | str, bar: Mapping[str, Any]) -> float | None:
        """Return the input's value for this bar, or None when the column value is missing."""
        if not isinstance(source, str):
            return source
        try:
            raw = bar[source]
        except KeyError:
            available = ", ".join(map(str, bar)) or "none (no bar given)"
            raise ConfigError(
                f"{type(self).__name__}: {name} column {source!r} is not in the bar; "
                f"columns available: {available}. Add it to the feed as a signal or "
                "indicator column."
            ) from None
        try:
            value = float(raw)
        except (TypeError, ValueError):
            return None
        # NaN (e.g. the warm-up of a rolling window) and non-positive values are unusable
        return value if math.isfinite(value) and value > 0 else None

    def _inputs(self, bar: Mapping[str, Any] | None) -> tuple[float, float] | None:
        """Return ``(sigma, adv)`` for this bar, or None if either is missing."""
        bar = _NO_BAR if bar is None else bar
        sigma = self._read("volatility", self.volatility, bar)
        adv = self._read("adv", self.adv, bar)
        if sigma is None or adv is None:
            return None
        return sigma, adv

    def _missing(self) -> float:
        """Return what a missing input yields in the analysis methods: NaN or 0."""
        return math.nan if self.on_missing == "reject" else 0.0

    def _missing_impact(self, bar: Mapping[str, Any] | None) -> float:
        """Return 0 for a missing input (``on_missing="zero"``), or reject the order."""
        if self.on_missing == "zero":
            return 0.0
        bar = _NO_BAR if bar is None else bar
        missing = [
            f"{name} column {source!r} is {bar.get(source)!r}"
            for name, source in (("volatility", self.volatility), ("adv", self.adv))
            if isinstance(source, str) and self._read(name, source, bar) is None
        ]
        raise RejectOrder(
            f"{type(self).__name__}: {', '.join(missing)} on this bar, not a positive number "
            "(on_missing='reject')"
        )


class AlmgrenChrissImpact(_BarInputs):
    """Almgren–Chriss market impact with the calibration of Almgren et al. (2005).

    With ``sigma`` the daily return volatility, ``V`` the average daily volume, ``Q`` the
    order quantity and ``T`` the execution horizon in trading days:

    - permanent impact (fraction of price) ``I = gamma * sigma * (Q / V)``;
    - temporary impact (fraction of price) ``J = eta * sigma * (Q / (V * T)) ** beta``;
    - the order pays half of the permanent impact it causes (the price moves
      while it executes), so the per-unit impact charged is
      ``price * (I / 2 + J)``.

    ``beta = 1`` is the linear temporary impact of the original Almgren & Chriss (2000)
    model; the default ``beta = 0.6`` (3/5), ``eta = 0.142`` and ``gamma = 0.314`` are the
    estimates of Almgren, Thum, Hauptmann & Li (2005). Their permanent term also has a
    turnover factor ``(shares outstanding / V) ** (1/4)``, left out here (fold it into
    ``gamma`` if needed).

    Parameters
    ----------
    volatility : float or str
        Daily return volatility as a fraction (``0.02`` is 2 % a day), or the name of a
        bar column holding it.
    adv : float or str
        Average daily volume in units (shares), or the name of a bar column holding it.
    eta : float, default 0.142
        Temporary-impact coefficient (``>= 0``).
    gamma : float, default 0.314
        Permanent-impact coefficient (``>= 0``).
    beta : float, default 0.6
        Exponent of the participation rate in the temporary impact (``> 0``).
    horizon : float, default 1.0
        Time the order is assumed to execute over, in trading days (``> 0``; ``0.1`` is a
        tenth of a session).
    on_missing : {"reject", "zero"}, default "reject"
        What a NaN or non-positive column value does: reject the order (``price_impact``
        raises ``RejectOrder``; the analysis methods return NaN), or zero impact.

    Raises
    ------
    ConfigError
        A parameter is out of range; the message names it.
    """

    def __init__(
        self,
        volatility: float | str,
        adv: float | str,
        eta: float = 0.142,
        gamma: float = 0.314,
        beta: float = 0.6,
        horizon: float = 1.0,
        on_missing: str = "reject",
    ) -> None:
        self._init_inputs(volatility, adv, on_missing)
        model = type(self).__name__
        self.eta = _number(model, "eta", eta, allow_zero=True)
        self.gamma = _number(model, "gamma", gamma, allow_zero=True)
        self.beta = _number(model, "beta", beta, allow_zero=False)
        self.horizon = _number(model, "horizon", horizon, allow_zero=False)

    def permanent_impact(
        self, price: float, quantity: float, bar: Mapping[str, Any] | None = None
    ) -> float:
        """Return the full permanent impact per unit, ``price * gamma * sigma * Q / V``.

        This is the lasting price shift the order causes; :meth:`price_impact` charges
        half of it. ``bar`` is needed only when an input is a column name. Returns NaN or
        0 for missing inputs, as set by ``on_missing``.
        """
        parts = self._fractions(quantity, bar)
        return self._missing() if parts is None else float(price) * parts[0]

    def temporary_impact(
        self, price: float, quantity: float, bar: Mapping[str, Any] | None = None
    ) -> float:
        """Return the temporary impact per unit, ``price * eta * sigma * (Q/(V*T))**beta``.

        ``bar`` is needed only when an input is a column name. Returns NaN or 0 for
        missing inputs, as set by ``on_missing``.
        """
        parts = self._fractions(quantity, bar)
        return self._missing() if parts is None else float(price) * parts[1]

    def price_impact(
        self, price: float, side: int, quantity: float, bar: Mapping[str, Any]
    ) -> float:
        """Return the impact per unit charged to the fill: half the permanent plus temporary.

        Parameters
        ----------
        price : float
            Fill price after slippage.
        side : int
            +1 buy, -1 sell; the impact is the same size for both (the broker applies
            the sign).
        quantity : float
            Units filled (positive; the sign is ignored).
        bar : mapping
            The fill bar's columns for the asset.

        Returns
        -------
        float
            Impact per unit in price units (``>= 0``).

        Raises
        ------
        RejectOrder
            When an input column is missing on this bar and ``on_missing="reject"``: the
            broker rejects the order with this reason.
        """
        parts = self._fractions(quantity, bar)
        if parts is None:
            return self._missing_impact(bar)
        permanent, temporary = parts
        return float(price) * (0.5 * permanent + temporary)

    def _fractions(
        self, quantity: float, bar: Mapping[str, Any] | None
    ) -> tuple[float, float] | None:
        """Return (permanent, temporary) impact as fractions of price, None if inputs miss."""
        inputs = self._inputs(bar)
        if inputs is None:
            return None
        sigma, adv = inputs
        fraction = abs(quantity) / adv
        permanent = self.gamma * sigma * fraction
        temporary = self.eta * sigma * float((fraction / self.horizon) ** self.beta)
        return permanent, temporary

    def __repr__(self) -> str:
        return (
            f"AlmgrenChrissImpact(volatility={self.volatility!r}, adv={self.adv!r}, "
            f"eta={self.eta!r}, gamma={self.gamma!r}, beta={self.beta!r}, "
            f"horizon={self.horizon!r}, on_missing={self.on_missing!r})"
        )


class SquareRootImpact(_BarInputs):
    """Square-root law of market impact.

    The per-unit impact is ``price * coefficient * sigma * sqrt(Q / V)``, with ``sigma``
    the daily return volatility, ``V`` the average daily volume and ``Q`` the order
    quantity. The law is an empirical regularity of metaorders across markets (see, for
    example, Tóth et al., "Anomalous price impact and the critical nature of liquidity in
    financial markets", 2011); ``coefficient`` is of order one.

    Parameters
    ----------
    volatility : float or str
        Daily return volatility as a fraction (``0.02`` is 2 % a day), or the name of a
        bar column holding it.
    adv : float or str
        Average daily volume in units (shares), or the name of a bar column holding it.
    coefficient : float, default 1.0
        Dimensionless prefactor (``>= 0``).
    on_missing : {"reject", "zero"}, default "reject"
        What a NaN or non-positive column value does: reject the order (``price_impact``
        raises ``RejectOrder``; the analysis methods return NaN), or zero impact.

    Raises
    ------
    ConfigError
        A parameter is out of range; the message names it.
    """

    def __init__(
        self,
        volatility: float | str,
        adv: float | str,
        coefficient: float = 1.0,
        on_missing: str = "reject",
    ) -> None:
        self._init_inputs(volatility, adv, on_missing)
        self.coefficient = _number(type(self).__name__, "coefficient", coefficient, allow_zero=True)

    def price_impact(
        self, price: float, side: int, quantity: float, bar: Mapping[str, Any]
    ) -> float:
        """Return the impact per unit, ``price * coefficient * sigma * sqrt(Q / V)``.

        Parameters are those of :meth:`AlmgrenChrissImpact.price_impact`; like it, raises
        ``RejectOrder`` when an input column is missing and ``on_missing="reject"``.
        """
        inputs = self._inputs(bar)
        if inputs is None:
            return self._missing_impact(bar)
        sigma, adv = inputs
        return float(price) * self.coefficient * sigma * math.sqrt(abs(quantity) / adv)

    def __repr__(self) -> str:
        return (
            f"SquareRootImpact(volatility={self.volatility!r}, adv={self.adv!r}, "
            f"coefficient={self.coefficient!r}, on_missing={self.on_missing!r})"
        )


@hookimpl
def ml4t_register_impact_models() -> list[tuple[str, Callable[..., Any]]]:
    """Register the Almgren–Chriss and square-root impact models.

    The class names (``AlmgrenChrissImpact``, ``SquareRootImpact``) become aliases
    automatically.
    """
    return [
        ("almgren_chriss", AlmgrenChrissImpact),
        ("AlmgrenChriss", AlmgrenChrissImpact),
        ("square_root", SquareRootImpact),
        ("SquareRoot", SquareRootImpact),
    ]
