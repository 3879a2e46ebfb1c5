"""Presets: named sets of broker settings reproducing another framework's conventions.

A preset is data, not code: each is a mapping of :class:`SimulationBroker` keyword
arguments: settings (fields of :class:`~.broker_settings.BrokerSettings`, checked against
them when this module is imported, so a preset cannot hold an unknown key or a bad value)
and cost-model specs. ``SimulationBroker.preset("vectorbt", initial_cash=10_000, commission=...)``
builds a broker from one, with any keyword overriding the preset's value; in a config
file, ``execution: {preset: vectorbt}`` does the same and the other ``execution`` keys
override it. What each setting means is documented on :class:`SimulationBroker`; why
each preset holds what it holds (with the frameworks' source lines) is in
``docs/presets.md``, and the validation harness (``ml4t-backtest validate``) proves each
preset against its framework.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

from ..errors import ConfigError
from .broker_settings import SETTING_NAMES, BrokerSettings, SettingError

__all__ = ["PRESETS", "PresetName", "check_preset", "preset_settings"]

#: a preset's name (``PRESETS`` holds one preset per name)
PresetName = Literal["vectorbt", "backtrader", "zipline"]

#: the cost-model keywords a preset may give besides the settings
_COST_KEYS = ("commission", "slippage", "impact")

_VECTORBT: dict[str, Any] = {
    # Portfolio.from_signals: orders fill at the signal bar's close (price=np.inf)
    "fill_timing": "same_bar_close",
    # sizes are floats; size_granularity=1 is the caller's choice (fractional=False)
    "fractional": True,
    # allow_partial=True: a buy larger than the cash is shrunk, fees included
    "cash_policy": "resize",
    # buys are limited by cash, shorts are not (no margin model, proceeds to cash)
    "account": "simple",
    # stops are fractions of the entry bar's close (stop_entry_price="close") ...
    "exit_base": "bar_close",
    # ... and fill at the stop price without slippage (stop_exit_price="stoplimit")
    "exit_slippage": False,
    # the trailing reference follows highs (lows for shorts) from the bar after entry
    "trail_reference": "high_low",
    # a gap through the stop fills at the open; stop-loss checked before take-profit
    "intrabar": "conservative",
    # one order per column per bar: a stop exit wins over that bar's signal
    "one_order_per_bar": True,
}

_BACKTRADER: dict[str, Any] = {
    # BackBroker: a market order placed in next() fills at the next bar's open
    "fill_timing": "next_bar_open",
    # explicit sizes pass through unrounded; order_target_* floor to whole units
    "fractional": True,
    # an order the cash cannot cover at execution gets Margin status: no resize
    "cash_policy": "reject",
    # shortcash=True: shorts are not limited by cash; buys are
    "account": "simple",
    # stops fill at their level (or the open on a gap), then slippage applies
    "exit_base": "fill_price",
    "exit_slippage": True,
    # StopTrail is adjusted with each bar's close
    "trail_reference": "close",
    "intrabar": "conservative",
    # slip_match=True: a slipped price beyond the bar's high/low is capped at it
    "slippage_within_bar": True,
    "one_order_per_bar": False,
}

_ZIPLINE: dict[str, Any] = {
    # market orders fill at the next bar's close, before handle_data sees that bar
    "fill_timing": "next_bar_close",
    # round_order truncates amounts to whole shares
    "fractional": False,
    # no cash check at all: orders fill and cash may go negative
    "cash_policy": "allow",
    "account": "simple",
    # limit and stop orders trigger on the close only and fill at the close
    "intrabar": "close_only",
    "exit_base": "fill_price",
    "exit_slippage": True,
    "trail_reference": "close",
    "one_order_per_bar": False,
    # default models: PerShare(0.001), FixedBasisPointsSlippage(5 bp, volume_limit=0.1)
    "commission": {"model": "per_share", "params": {"cost_per_share": 0.001}},
    "slippage": {"model": "bps", "params": {"bps": 5.0}},
    "volume_limit": 0.1,
}


def check_preset(name: str, settings: dict[str, Any]) -> Mapping[str, Any]:
    """Return a preset's keywords read-only, once they are known keys with valid values."""
    unknown = sorted(set(settings) - {*SETTING_NAMES, *_COST_KEYS})
    if unknown:
        raise ConfigError(
            f"preset {name!r}: unknown setting(s) {unknown}; a preset sets fields of "
            f"BrokerSettings {list(SETTING_NAMES)} and cost models {list(_COST_KEYS)}"
        )
    try:
        BrokerSettings(**{k: v for k, v in settings.items() if k in SETTING_NAMES})
    except SettingError as exc:
        raise ConfigError(f"preset {name!r}: {exc}") from exc
    return MappingProxyType(settings)


#: preset name -> broker keyword arguments (read-only)
PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "vectorbt": check_preset("vectorbt", _VECTORBT),
        "backtrader": check_preset("backtrader", _BACKTRADER),
        "zipline": check_preset("zipline", _ZIPLINE),
    }
)


def preset_settings(name: str, **overrides: Any) -> dict[str, Any]:
    """Return the broker keyword arguments of preset ``name`` with ``overrides`` applied.

    Raises
    ------
    ConfigError
        ``name`` is not a preset.
    """
    settings = PRESETS.get(str(name).lower())
    if settings is None:
        raise ConfigError(f"preset: unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return {**settings, **overrides}
