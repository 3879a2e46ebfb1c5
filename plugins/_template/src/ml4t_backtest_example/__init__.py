"""An example ml4t.backtest plugin: a flat commission per order.

Hooks (see docs/plugin_hooks.md for each one)
---------------------------------------------
Required: at least one hook; a plugin implementing none is pointless. Everything else is
optional. Pick what the plugin provides:

- ``ml4t_register_commission_models`` / ``ml4t_register_slippage_models`` /
  ``ml4t_register_impact_models`` / ``ml4t_register_feeds`` / ``ml4t_register_reporters``
  / ``ml4t_register_brokers``: return ``[(name, factory), ...]``. A class as factory also
  registers its class name as an alias.
- ``ml4t_make_broker`` / ``ml4t_make_feed`` (firstresult): take over construction; return
  ``None`` to decline.
- ``ml4t_run_start`` / ``ml4t_session_end`` / ``ml4t_run_end`` / ``ml4t_report``: observe
  runs; ``@hookimpl(wrapper=True)`` with one ``yield`` wraps the others.

Rules: import only names from ``ml4t.backtest`` (its ``__all__``) and
``ml4t.backtest.testing``; never call hooks from per-bar code; raise
``ml4t.backtest.ConfigError`` for bad parameters so users see which key is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ml4t.backtest import ConfigError, hookimpl

__all__ = ["FlatFeeCommission", "ml4t_register_commission_models"]


class FlatFeeCommission:
    """Charge the same amount on every fill.

    Parameters
    ----------
    fee : float
        Currency per fill, ``>= 0``.
    """

    def __init__(self, fee: float) -> None:
        if not fee >= 0:
            raise ConfigError(f"FlatFeeCommission fee must be >= 0, got {fee!r}")
        self.fee = float(fee)

    def calculate(self, quantity: float, price: float) -> float:
        """Return the fee (the quantity and price do not matter)."""
        return self.fee

    def __repr__(self) -> str:
        return f"FlatFeeCommission(fee={self.fee!r})"


@hookimpl
def ml4t_register_commission_models() -> Iterable[tuple[str, Callable[..., Any]]]:
    """Register ``flat_fee`` (alias ``FlatFeeCommission``)."""
    return [("flat_fee", FlatFeeCommission)]
