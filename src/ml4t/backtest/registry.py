"""Named factories: the registry each plugin manager builds from the registration hooks.

For each kind (commission, slippage, impact, feed, reporter, broker) the registry maps a
name to a factory and to the plugin that registered it, so a configuration can say
``slippage="volume_share"`` and an error can name the plugin behind a model.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import ConfigError, DataValidationError, PluginError

__all__ = ["KINDS", "PluginInfo", "PluginRegistry", "Provider"]

#: kind -> (registration hook, method every object of that kind has).
KINDS: dict[str, tuple[str, str]] = {
    "commission": ("ml4t_register_commission_models", "calculate"),
    "slippage": ("ml4t_register_slippage_models", "fill_price"),
    "impact": ("ml4t_register_impact_models", "price_impact"),
    "feed": ("ml4t_register_feeds", "load"),
    "reporter": ("ml4t_register_reporters", "report"),
    "broker": ("ml4t_register_brokers", "submit_order"),
}


@dataclass(frozen=True)
class PluginInfo:
    """Where a registered plugin came from.

    Attributes
    ----------
    name : str
        Registered name: the module name for builtins, the entry-point name for installed
        plugins; the name to block it by.
    distribution : str
        The distribution providing it (``ml4t-backtest`` for builtins, ``"(in code)"`` for
        objects passed to the engine).
    version : str
        Version of that distribution (empty for objects passed in code).
    builtin : bool
        True for the modules in :data:`DEFAULT_PLUGINS`.
    """

    name: str
    distribution: str
    version: str
    builtin: bool = False

    def describe(self) -> str:
        """Return ``"'name' (distribution version)"`` for messages."""
        dist = f"{self.distribution} {self.version}".strip()
        return f"{self.name!r} ({dist})"


class _Manager(Protocol):
    """What the registry needs of its plugin manager: provenance and error messages."""

    provenance: dict[str, PluginInfo]

    def info(self, plugin_name: str | None) -> PluginInfo: ...

    def error(self, plugin_name: str | None, problem: str) -> PluginError: ...

    def get_plugins(self) -> set[Any]: ...


@dataclass(frozen=True)
class Provider:
    """A named factory and the plugin that registered it."""

    name: str
    factory: Callable[..., Any]
    plugin: PluginInfo


@dataclass
class PluginRegistry:
    """Named factories per kind (commission, slippage, impact, feed, reporter, broker).

    Built once per plugin manager. For each kind, the first plugin pluggy calls wins a
    name: installed plugins override builtins; ``shadowed`` records the losers.
    """

    providers: dict[str, dict[str, Provider]] = field(default_factory=dict)
    aliases: dict[str, dict[str, str]] = field(default_factory=dict)
    shadowed: list[tuple[str, str, PluginInfo]] = field(default_factory=list)
    manager: _Manager | None = None

    @classmethod
    def build(cls, pm: Any) -> PluginRegistry:
        """Call every registration hook once and collect the factories."""
        reg = cls(manager=pm)
        for kind, (hook_name, _) in KINDS.items():
            table: dict[str, Provider] = {}
            aliases: dict[str, str] = {}
            for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
                info = pm.info(impl.plugin_name)
                try:
                    pairs = list(impl.function())
                except Exception as exc:
                    raise pm.error(
                        impl.plugin_name, f"raised {type(exc).__name__} in {hook_name}: {exc}"
                    ) from exc
                for pair in pairs:
                    if not (
                        isinstance(pair, tuple)
                        and len(pair) == 2
                        and isinstance(pair[0], str)
                        and pair[0]
                        and callable(pair[1])
                    ):
                        raise pm.error(
                            impl.plugin_name,
                            f"returned {pair!r} from {hook_name}; expected (name, factory) "
                            "pairs with a non-empty name and a callable factory",
                        )
                    name, factory = pair
                    if name in table:
                        reg.shadowed.append((kind, name, info))
                        continue
                    table[name] = Provider(name, factory, info)
                    alias = getattr(factory, "__name__", None)
                    if isinstance(factory, type) and alias and alias != name:
                        aliases.setdefault(alias, name)
            reg.providers[kind] = table
            reg.aliases[kind] = {a: n for a, n in aliases.items() if a not in table}
        return reg

    def names(self, kind: str) -> list[str]:
        """Return the registered names of ``kind``, sorted."""
        return sorted(self.providers.get(kind, {}))

    def lookup(self, kind: str, name: str) -> Provider | None:
        """Return the provider of ``name`` (a registry name or a class-name alias)."""
        table = self.providers.get(kind, {})
        if name in table:
            return table[name]
        target = self.aliases.get(kind, {}).get(name)
        return table.get(target) if target is not None else None

    def available(self, kind: str) -> str:
        """Describe the available names of ``kind`` and who provides each."""
        table = self.providers.get(kind, {})
        if not table:
            return "none (is the plugin that provides them blocked?)"
        by_alias = {n: a for a, n in self.aliases.get(kind, {}).items()}
        parts = []
        for name in sorted(table):
            alias = f" / {by_alias[name]}" if name in by_alias else ""
            parts.append(f"{name}{alias} [{table[name].plugin.name}]")
        return ", ".join(parts)

    def create(self, kind: str, spec: Any, *, where: str | None = None) -> Any:
        """Build an object of ``kind`` from a spec.

        Parameters
        ----------
        kind : str
            One of :data:`KINDS`.
        spec : object, str or mapping
            An object that already has the kind's method (returned unchanged); a registry
            name or class-name alias (``"per_share"``, ``"PerShareCommission"``); an import
            path ``"package.module:Class"``; or ``{"model": name, "params": {...}}``.
        where : str, optional
            Key path used in error messages (defaults to ``kind``).

        Raises
        ------
        ConfigError
            Unknown name (the message lists the names available and their plugins), or
            parameters the factory rejects.
        PluginError
            The factory raised something else or returned an object of the wrong type.
        """
        where = where or kind
        method = KINDS[kind][1]
        if callable(getattr(spec, method, None)) and not isinstance(spec, type):
            return spec
        params: dict[str, Any] = {}
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"model", "params"}
            if unknown or "model" not in spec:
                raise ConfigError(
                    f"{where}: expected {{model: NAME, params: {{...}}}}, got keys "
                    f"{sorted(map(str, spec))}"
                )
            raw = spec.get("params") or {}
            if not isinstance(raw, Mapping):
                raise ConfigError(f"{where}.params: expected a mapping, got {raw!r}")
            params = dict(raw)
            spec = spec["model"]
        if not isinstance(spec, str):
            raise ConfigError(
                f"{where}: expected a {kind} object, a registered name or "
                f"{{model: NAME, params: {{...}}}}, got {type(spec).__name__}"
            )
        if ":" in spec:
            provider = Provider(spec, _import_path(spec, where), PluginInfo(spec, "(import)", ""))
        else:
            found = self.lookup(kind, spec)
            if found is None:
                raise ConfigError(
                    f"{where}: unknown {kind} model {spec!r}; available: {self.available(kind)}"
                )
            provider = found
        try:
            obj = provider.factory(**params)
        except DataValidationError:
            raise  # bad data, not a bad parameter: its message names the file and row
        except (ConfigError, TypeError, ValueError) as exc:
            key, problem = _param_problem(exc, params, provider.factory)
            if key is not None:
                raise ConfigError(
                    f"{where}.params.{key}: {problem} ({kind} model {spec!r}, plugin "
                    f"{provider.plugin.describe()})"
                ) from exc
            raise ConfigError(
                f"{where}: {spec!r} (plugin {provider.plugin.describe()}) rejected its "
                f"parameters {params!r}: {exc}"
            ) from exc
        except PluginError:
            raise
        except Exception as exc:
            raise self._error(
                provider, f"raised {type(exc).__name__} building {kind} {spec!r}: {exc}"
            ) from exc
        if not callable(getattr(obj, method, None)):
            raise self._error(
                provider,
                f"built a {type(obj).__name__} for {kind} {spec!r}, which has no {method}() method",
            )
        return obj

    def provider_of(self, kind: str, obj: object) -> Provider | None:
        """Return the provider of ``obj``'s type (its class or its module), or None."""
        cls = type(obj)
        table = self.providers.get(kind, {}).values()
        exact = next((prov for prov in table if prov.factory is cls), None)
        if exact is not None:
            return exact
        module = cls.__module__
        return next((p for p in table if getattr(p.factory, "__module__", None) == module), None)

    def error_for(self, kind: str, obj: object, problem: str) -> PluginError:
        """Return a :class:`PluginError` naming the plugin that provides ``obj``'s type."""
        prov = self.provider_of(kind, obj)
        if prov is not None:
            return self._error(prov, problem)
        return PluginError(f"{kind} {obj!r} {problem}")

    def model_files(self) -> dict[str, tuple[str, list[tuple[str, str, str]]]]:
        """Map each non-builtin plugin model's source file to its plugin and models.

        Values are ``(plugin name, [(kind, name, factory qualname), ...])``; a run uses it
        to name the plugin whose model raised.
        """
        out: dict[str, tuple[str, list[tuple[str, str, str]]]] = {}
        for kind, table in self.providers.items():
            for name, prov in table.items():
                module = sys.modules.get(getattr(prov.factory, "__module__", "") or "")
                path = getattr(module, "__file__", None)
                if path and not prov.plugin.builtin:
                    entry = out.setdefault(os.path.realpath(path), (prov.plugin.name, []))
                    entry[1].append((kind, name, getattr(prov.factory, "__qualname__", "")))
        return out

    def _error(self, provider: Provider, problem: str) -> PluginError:
        if self.manager is not None and provider.plugin.name in self.manager.provenance:
            return self.manager.error(provider.plugin.name, problem)
        info = provider.plugin
        return PluginError(f"plugin {info.describe()} {problem}", plugin=info.name)


def _import_path(path: str, where: str) -> Callable[..., Any]:
    module_name, _, attr = path.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{where}: cannot import {path!r}: {exc}") from exc
    if not callable(obj):
        raise ConfigError(f"{where}: {path!r} is not callable")
    return obj  # type: ignore[return-value]


def _param_problem(
    exc: Exception, params: Mapping[str, Any], factory: Any
) -> tuple[str | None, str]:
    """Find which parameter a model's constructor complained about, and the problem."""
    text = str(exc)
    unexpected = re.search(r"unexpected keyword argument '(\w+)'", text)
    if unexpected is not None:
        try:
            names = [
                n for n in inspect.signature(factory).parameters if n not in ("self", "kwargs")
            ]
        except (TypeError, ValueError):
            names = []
        return unexpected.group(1), f"unknown parameter; accepted: {names}"
    for name in sorted(params, key=len, reverse=True):
        marker = f"{name}:"
        if marker in text:
            return name, text.split(marker, 1)[1].strip()
    return None, text
