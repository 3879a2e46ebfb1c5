"""The simulation broker's settings: one frozen record, with the rule each value obeys.

:class:`BrokerSettings` holds every plain setting of
:class:`~ml4t.backtest.builtin.sim_broker.SimulationBroker` (its keyword arguments other
than the cost models, the asset registry, corporate actions, exits and risk limits, which
are objects with their own parsers) with its type, default and allowed values. The rest is
derived from it:

- ``SimulationBroker.__init__`` validates its keywords by building a ``BrokerSettings``
  and keeps it as ``broker.config``; ``broker.fill_timing`` and the other settings are
  read-only views of it (:func:`settings_attributes`);
- ``SimulationBroker.settings()`` reports it (:meth:`BrokerSettings.reported`), and the
  kernels' settings arrays are read from it;
- the config schema's ``execution`` keys and their types (:func:`setting_types`), and the
  keys a preset may set (:mod:`.presets`).

Each field's rule is one function: a ``Literal`` field must be one of its values, a
``bool`` field is read as true or false, a number field names its rule in the field's
metadata. A bad value raises :class:`SettingError`, a
:class:`~ml4t.backtest.ConfigError` whose ``key`` names the setting and whose message
starts with it (``"volume_limit: must be in (0, 1], got 0"``).
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from operator import attrgetter
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import numpy as np

from ..errors import ConfigError
from ..kernels.matching import IntrabarMode
from .accounts import AccountType, MarginCallPolicy

__all__ = [
    "CASH_POLICIES",
    "EXIT_BASES",
    "FILL_TIMINGS",
    "ORDER_SIZINGS",
    "SETTING_NAMES",
    "TRAIL_REFERENCES",
    "BrokerSettings",
    "CashPolicy",
    "ExitBase",
    "FillTiming",
    "OrderSizing",
    "SettingError",
    "TrailReference",
    "setting_types",
    "settings_attributes",
]

FillTiming = Literal["next_bar_open", "same_bar_close", "next_bar_close"]
#: in the kernels, a policy's code is its index: reject 0, resize 1, allow 2
CashPolicy = Literal["reject", "resize", "allow"]
ExitBase = Literal["fill_price", "bar_close"]
OrderSizing = Literal["at_fill", "at_order"]
TrailReference = Literal["high_low", "close"]
FILL_TIMINGS: tuple[FillTiming, ...] = get_args(FillTiming)
CASH_POLICIES: tuple[CashPolicy, ...] = get_args(CashPolicy)
EXIT_BASES: tuple[ExitBase, ...] = get_args(ExitBase)
ORDER_SIZINGS: tuple[OrderSizing, ...] = get_args(OrderSizing)
TRAIL_REFERENCES: tuple[TrailReference, ...] = get_args(TrailReference)

#: a rule: ``(setting name, value) -> the value as stored``, or raise :class:`SettingError`
Rule = Callable[[str, Any], Any]


class SettingError(ConfigError):
    """A broker setting with a bad value.

    Parameters
    ----------
    key : str
        The setting's name (``"volume_limit"``); the message starts with it.
    problem : str
        What is wrong with the value (``"must be in (0, 1], got 0"``).
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


# --- one function per rule ------------------------------------------------------------------
def positive_number(key: str, value: Any) -> float:
    """Return ``value`` as a positive finite float; booleans and text are errors."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise SettingError(
            key, f"must be a positive number, got {value!r} ({type(value).__name__})"
        )
    x = float(value)
    if not math.isfinite(x) or x <= 0:
        raise SettingError(key, f"must be a positive number, got {value!r}")
    return x


def non_negative(key: str, value: Any) -> float:
    """Return ``value`` as a finite float >= 0; a boolean is an error."""
    if isinstance(value, bool):
        raise SettingError(key, f"must be a number, got the boolean {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise SettingError(key, f"must be a number, got {value!r}") from None
    if not (math.isfinite(x) and x >= 0):
        raise SettingError(key, f"must be a finite number >= 0, got {value!r}")
    return x


def fraction(key: str, value: Any) -> float:
    """Return ``value`` as a float in (0, 1]."""
    x = non_negative(key, value)
    if not 0 < x <= 1:
        raise SettingError(key, f"must be in (0, 1], got {value!r}")
    return x


def leverage(key: str, value: Any) -> float:
    """Return ``value`` as a finite float >= 1."""
    x = non_negative(key, value)
    if not (math.isfinite(x) and x >= 1):
        raise SettingError(key, f"must be a number >= 1, got {value!r}")
    return x


def flag(key: str, value: Any) -> bool:
    """Return ``value`` read as true or false."""
    return bool(value)


def one_of(options: tuple[str, ...]) -> Rule:
    """Return the rule of a ``Literal`` setting: the value must be one of ``options``."""

    def choice(key: str, value: Any) -> Any:
        if value not in options:
            raise SettingError(key, f"must be one of {options}, got {value!r}")
        return value

    return choice


def _rule(rule: Rule, *, default: Any) -> Any:
    """A number field: the rule its values obey and its default."""
    return field(default=default, metadata={"rule": rule})


# --- the settings -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """Every plain setting of the simulation broker, validated and frozen.

    Each field is the :class:`~ml4t.backtest.builtin.sim_broker.SimulationBroker` keyword
    of the same name, with the same default; the broker's docstring says what each means.
    Building one validates every value (:class:`SettingError` names the first bad one) and
    normalizes it: numbers become floats, flags booleans, ``allow_short=None`` becomes the
    account's default (False for a cash account, True otherwise) and ``initial_margin``
    becomes the effective initial margin, ``max(initial_margin, 1 / max_leverage)``.

    Examples
    --------
    >>> BrokerSettings(account="margin").allow_short
    True
    >>> BrokerSettings(volume_limit=0)
    Traceback (most recent call last):
    ...
    ml4t.backtest.builtin.broker_settings.SettingError: volume_limit: must be in (0, 1], got 0
    """

    initial_cash: float = _rule(positive_number, default=100_000.0)
    fill_timing: FillTiming = "next_bar_open"
    fractional: bool = True
    allow_short: bool | None = None
    cash_policy: CashPolicy = "reject"
    account: AccountType = "cash"
    initial_margin: float = _rule(fraction, default=0.5)
    maintenance_margin: float = _rule(fraction, default=0.25)
    max_leverage: float | None = _rule(leverage, default=None)
    borrow_rate: float = _rule(non_negative, default=0.0)
    margin_call: MarginCallPolicy = "liquidate"
    volume_limit: float | None = _rule(fraction, default=None)
    intrabar: IntrabarMode = "conservative"
    trail_reference: TrailReference = "high_low"
    exit_base: ExitBase = "fill_price"
    exit_slippage: bool = True
    one_order_per_bar: bool = False
    slippage_within_bar: bool = False
    order_sizing: OrderSizing = "at_fill"

    def __post_init__(self) -> None:
        for name, (rule, optional) in _rules().items():
            value = getattr(self, name)
            if not (optional and value is None):
                object.__setattr__(self, name, rule(name, value))
        for across in _ACROSS:
            across(self)

    def reported(self) -> dict[str, Any]:
        """Return the settings as a run's metadata records them.

        Every field but ``max_leverage``, which the effective ``initial_margin`` includes.
        """
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "max_leverage"}


def _short_needs_margin(s: BrokerSettings) -> None:
    """``allow_short``: defaults to the account's rule; a cash account cannot short."""
    if s.allow_short is None:
        object.__setattr__(s, "allow_short", s.account != "cash")
    elif s.allow_short and s.account == "cash":
        raise SettingError(
            "allow_short",
            "a cash account cannot sell short; use account='margin' "
            "(initial_margin=1.0 for a margin account without leverage)",
        )


def _maintenance_within_initial(s: BrokerSettings) -> None:
    """``maintenance_margin`` may not exceed ``initial_margin``."""
    mm, im = s.maintenance_margin, s.initial_margin
    if mm > im:
        raise SettingError("maintenance_margin", f"{mm:g} must not exceed initial_margin {im:g}")


def _leverage_raises_margin(s: BrokerSettings) -> None:
    """``max_leverage`` raises the effective initial margin to ``1 / max_leverage``."""
    if s.max_leverage is not None:
        object.__setattr__(s, "initial_margin", max(s.initial_margin, 1.0 / s.max_leverage))


#: the rules that relate two settings, run in this order after each field's own rule
_ACROSS: tuple[Callable[[BrokerSettings], None], ...] = (
    _short_needs_margin,
    _maintenance_within_initial,
    _leverage_raises_margin,
)
#: the settings' names, in the broker's keyword order
SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in fields(BrokerSettings))


@cache
def setting_types() -> Mapping[str, Any]:
    """Return each setting's type (``Literal[...]``, ``bool``, ``float``, ``... | None``)."""
    return types.MappingProxyType(get_type_hints(BrokerSettings))


@cache
def _rules() -> dict[str, tuple[Rule, bool]]:
    """Return each setting's rule and whether ``None`` is allowed, in field order."""
    types_ = setting_types()
    out: dict[str, tuple[Rule, bool]] = {}
    for f in fields(BrokerSettings):
        hint = types_[f.name]
        args = get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)
        optional = type(None) in args
        (base,) = [a for a in args if a is not type(None)]
        if "rule" in f.metadata:
            rule: Rule = f.metadata["rule"]
        elif get_origin(base) is Literal:
            rule = one_of(get_args(base))
        elif base is bool:
            rule = flag
        else:  # pragma: no cover - a new field must say how it is checked
            raise TypeError(f"BrokerSettings.{f.name}: no rule for type {hint!r}")
        out[f.name] = (rule, optional)
    return out


_Cls = TypeVar("_Cls", bound=type)


def settings_attributes(cls: _Cls) -> _Cls:
    """Class decorator: give ``cls`` one read-only attribute per setting.

    ``obj.fill_timing`` reads ``obj.config.fill_timing``; the class keeps its settings in
    a :class:`BrokerSettings` named ``config``.
    """
    for name in SETTING_NAMES:
        doc = f"The ``{name}`` setting (read-only; ``config.{name}``)."
        setattr(cls, name, property(attrgetter(f"config.{name}"), doc=doc))
    return cls
