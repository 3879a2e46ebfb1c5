"""What the Numba kernels need of the simulation broker: whether they can fill its orders
and, if so, its settings as the kernels' arrays.

The kernels (:mod:`ml4t.backtest.kernels`) settle fills for cash and simple accounts with
cost models that expose ``kernel_params()``; the broker's batch path for market orders and
the compiled signal runner use them. ``SimulationBroker.kernel_problem`` and
``SimulationBroker.kernel_settings`` call the functions here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..kernels import _layout as layout
from .broker_settings import CASH_POLICIES
from .impact import NoImpact

if TYPE_CHECKING:
    from ..core.assets import AssetRegistry
    from .broker_settings import BrokerSettings

__all__ = ["KernelBroker", "kernel_formula", "kernel_problem", "kernel_settings"]


class KernelBroker(Protocol):
    """What the kernel terms read of a simulation broker: settings, models, limits."""

    config: BrokerSettings
    commission_model: Any
    slippage_model: Any
    impact_model: Any
    risk_limits: Any
    assets: AssetRegistry


def kernel_problem(broker: KernelBroker) -> str | None:
    """Return why fills cannot be computed by the Numba kernels, or None if they can.

    The kernels cover cash and simple accounts (no borrow fee on shorts) without volume
    limits, impact, risk limits or per-asset specifications, with cost models that expose
    ``kernel_params()`` (every builtin model except the volume-, spread- and tier-based
    ones). Anything else runs through the Python fill path.
    """
    s = broker.config
    shorts_cost = bool(s.allow_short) and s.borrow_rate > 0
    impact = broker.impact_model
    checks = (
        (s.account == "margin", "account='margin' (kernels: 'cash' or 'simple')"),
        (shorts_cost, "shorts pay a borrow fee (borrow_rate > 0)"),
        (s.volume_limit is not None, "volume_limit is set"),
        (broker.risk_limits is not None, "risk_limits are set"),
        (not isinstance(impact, NoImpact), f"impact model {impact!r}"),
        (len(broker.assets) > 0, "an asset registry is set (multipliers, ticks, lots)"),
    )
    for bad, why in checks:
        if bad:
            return why
    slip = broker.slippage_model
    if getattr(slip, "volume_limit", None) is not None:
        return f"slippage model {slip!r} has a volume limit"
    if getattr(slip, "required_columns", ()):
        return f"slippage model {slip!r} reads bar columns"
    if kernel_formula(slip, "fill_price") is None:
        return f"slippage model {slip!r} has no kernel version (kernel_params)"
    comm = broker.commission_model
    if kernel_formula(comm, "calculate") is None:
        return f"commission model {comm!r} has no kernel version"
    if getattr(comm, "record", None) is not None:
        return f"commission model {comm!r} keeps state across fills"
    return None


def kernel_settings(broker: KernelBroker) -> tuple[np.ndarray, np.ndarray]:
    """Return the kernels' settings arrays ``(ip, fp)`` for the costs and cash rules.

    Only valid when :func:`kernel_problem` returns None.
    """
    s = broker.config
    ck, cparams = kernel_formula(broker.commission_model, "calculate")  # type: ignore[misc]
    sk, sparams = kernel_formula(broker.slippage_model, "fill_price")  # type: ignore[misc]
    ip = np.zeros(layout.IP_SIZE, dtype=np.int64)
    fp = np.full(layout.FP_SIZE, np.nan)
    ip[layout.IP_CASH_POLICY] = CASH_POLICIES.index(s.cash_policy)
    ip[layout.IP_EXIT_SLIP] = int(s.exit_slippage)
    ip[layout.IP_SLIP_IN_BAR] = int(s.slippage_within_bar)
    ip[layout.IP_COMM] = ck
    ip[layout.IP_SLIP] = sk
    ip[layout.IP_ALLOW_SHORT] = int(bool(s.allow_short))
    ip[layout.IP_ONE_PER_BAR] = int(s.one_order_per_bar)
    fp[layout.FP_COMM : layout.FP_COMM + 3] = 0.0
    fp[layout.FP_COMM : layout.FP_COMM + len(cparams)] = cparams
    fp[layout.FP_SLIP] = sparams[0] if sparams else 0.0
    fp[layout.FP_LOT] = 0.0 if s.fractional else 1.0
    return ip, fp


def kernel_formula(model: Any, method: str) -> tuple[int, tuple[float, ...]] | None:
    """Return a cost model's kernel formula ``(kind, params)``, or None without one.

    The formula counts only if the class that declares ``kernel_params`` also declares (or
    inherits) ``method``: a subclass that overrides the formula has no kernel version.
    """
    get = getattr(model, "kernel_params", None)
    if get is None:
        return None
    mro = type(model).__mro__
    owner_k = next((c for c in mro if "kernel_params" in c.__dict__), None)
    owner_m = next((c for c in mro if method in c.__dict__), None)
    if owner_k is None or owner_m is None or not issubclass(owner_k, owner_m):
        return None
    kind, params = get()
    return int(kind), tuple(float(p) for p in params)
