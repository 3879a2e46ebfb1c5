"""The simulation broker's cost models, built from their specs.

A cost model is given as an object, a name (``"per_share"`` or the class name
``"PerShareCommission"``), an import path (``"package.module:Class"``) or
``{"model": name, "params": {...}}``. When the broker is constructed, builtin names are
built from the builtin modules' own registration functions (:func:`builtin_models`: no
plugin manager, no entry-point scan) and import paths are imported; a name only an
installed plugin provides stays a spec until the engine resolves every model through its
plugin registry (``SimulationBroker.resolve_models``), which fails with the names
available when no plugin provides it.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from ..errors import ConfigError
from ..registry import KINDS, PluginInfo, PluginRegistry, Provider
from . import commission, impact, slippage
from .commission import NoCommission
from .impact import NoImpact
from .slippage import NoSlippage

__all__ = ["COST_MODELS", "build_model", "builtin_models", "check_model"]

#: cost-model kind -> (broker attribute, the default model's factory)
COST_MODELS: dict[str, tuple[str, Callable[[], Any]]] = {
    "commission": ("commission_model", NoCommission),
    "slippage": ("slippage_model", NoSlippage),
    "impact": ("impact_model", NoImpact),
}
_BUILTIN_MODULES = {"commission": commission, "slippage": slippage, "impact": impact}


@cache
def builtin_models() -> PluginRegistry:
    """Return a registry of the builtin cost models alone.

    Built from each builtin module's registration function, called directly, with the
    provenance the plugin manager gives the same modules, so its messages read the same.
    """
    try:
        version = importlib.metadata.version("ml4t-backtest")
    except importlib.metadata.PackageNotFoundError:
        version = ""
    reg = PluginRegistry()
    for kind, module in _BUILTIN_MODULES.items():
        info = PluginInfo(module.__name__, "ml4t-backtest", version, True)
        register = getattr(module, KINDS[kind][0])
        table: dict[str, Provider] = {}
        aliases: dict[str, str] = {}
        for name, factory in register():
            table.setdefault(name, Provider(name, factory, info))
            alias = getattr(factory, "__name__", None)
            if isinstance(factory, type) and alias and alias != name:
                aliases.setdefault(alias, name)
        reg.providers[kind] = table
        reg.aliases[kind] = {a: n for a, n in aliases.items() if a not in table}
    return reg


def _builtin(kind: str, spec: str | Mapping[str, Any]) -> bool:
    """Return True if ``spec`` can be built without the plugins: a builtin name, an
    import path, or a malformed spec (whose error is then raised at once)."""
    name = spec.get("model") if isinstance(spec, Mapping) else spec
    if not isinstance(name, str):
        return True
    return ":" in name or builtin_models().lookup(kind, name) is not None


def build_model(kind: str, spec: Any, registry: PluginRegistry | None, defaults: bool) -> Any:
    """Return the ``kind`` cost model ``spec`` describes, or None to resolve it later.

    Parameters
    ----------
    kind : {"commission", "slippage", "impact"}
    spec : object, str, mapping or None
        A model object (checked and returned), a name, an import path, a ``{model,
        params}`` mapping, or None for the default model.
    registry : PluginRegistry or None
        The engine's registry. Without one, only builtin names and import paths are
        built; another name returns None (it is resolved when the engine gives its
        registry).
    defaults : bool
        Build the default (``None`` spec) through ``registry``'s ``"none"`` model, so a
        plugin replacing it wins and a blocked builtin is an error; otherwise (or
        without a registry) the default is the builtin no-cost model.
    """
    if spec is None:
        if registry is None or not defaults:
            return COST_MODELS[kind][1]()
        return registry.create(kind, "none")
    if not isinstance(spec, str | Mapping):
        check_model(spec, kind)
        return spec
    if registry is None:
        if not _builtin(kind, spec):
            return None
        registry = builtin_models()
    return registry.create(kind, spec)


def check_model(obj: Any, kind: str) -> None:
    """Raise ConfigError unless ``obj`` is a ``kind`` model object."""
    method = KINDS[kind][1]
    if isinstance(obj, type) or not callable(getattr(obj, method, None)):
        raise ConfigError(
            f"{kind}: expected a {kind} model object (with {method}()), a registered name or "
            f"{{model: NAME, params: {{...}}}}, got {obj!r} ({type(obj).__name__})"
        )
