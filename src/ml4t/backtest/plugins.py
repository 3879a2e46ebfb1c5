"""Plugin discovery and the registry of named factories.

One path for every plugin: the builtin modules in :data:`DEFAULT_PLUGINS`, the entry points
of group ``ml4t.backtest`` (sorted by name, so ``pip install`` order never changes a
result) and objects passed in code all go through ``_register``, which registers them and
records where they came from. Each :class:`~ml4t.backtest.BacktestEngine` creates its own
manager with :func:`get_plugin_manager`; nothing is global.

Environment switches
--------------------
``ML4T_BACKTEST_DISABLE_PLUGIN_AUTOLOAD``
    Any value but ``""``/``"0"``: load no entry points (the builtins still load).
``ML4T_BACKTEST_PLUGINS``
    Comma-separated allow-list of entry-point names to load; others are skipped.
``ML4T_BACKTEST_BLOCK_PLUGINS``
    Comma-separated names to block (builtins included), like ``block=``.
``ML4T_BACKTEST_TRACE_PLUGINS``
    Any value but ``""``/``"0"``: print every hook call to stderr.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .errors import ConfigError, DataValidationError, PluginError

__all__ = [
    "DEFAULT_PLUGINS",
    "KINDS",
    "PluginInfo",
    "PluginManager",
    "PluginRegistry",
    "get_plugin_manager",
    "list_plugins",
]

#: Builtin plugin modules, registered first (and so called last).
DEFAULT_PLUGINS: tuple[str, ...] = (
    "ml4t.backtest.builtin.commission",
    "ml4t.backtest.builtin.slippage",
    "ml4t.backtest.builtin.impact",
    "ml4t.backtest.builtin.feeds",
    "ml4t.backtest.builtin.reporters",
    "ml4t.backtest.builtin.sim_broker",
)

#: kind -> (registration hook, method every object of that kind has).
KINDS: dict[str, tuple[str, str]] = {
    "commission": ("ml4t_register_commission_models", "calculate"),
    "slippage": ("ml4t_register_slippage_models", "fill_price"),
    "impact": ("ml4t_register_impact_models", "price_impact"),
    "feed": ("ml4t_register_feeds", "load"),
    "reporter": ("ml4t_register_reporters", "report"),
    "broker": ("ml4t_register_brokers", "submit_order"),
}

_ENV_DISABLE = "ML4T_BACKTEST_DISABLE_PLUGIN_AUTOLOAD"
_ENV_ALLOW = "ML4T_BACKTEST_PLUGINS"
_ENV_BLOCK = "ML4T_BACKTEST_BLOCK_PLUGINS"
_ENV_TRACE = "ML4T_BACKTEST_TRACE_PLUGINS"


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


def _switch(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def _names(value: str | None) -> list[str]:
    return [p.strip() for p in (value or "").split(",") if p.strip()]


class PluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers each plugin's provenance and builds the registry."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.provenance: dict[str, PluginInfo] = {}
        self._registry: PluginRegistry | None = None
        # historic: every plugin registered from now on gets to add its own specs
        self.hook.ml4t_addhooks.call_historic(kwargs={"pluginmanager": self})

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register ``plugin`` (see pluggy) and invalidate the cached registry."""
        self._registry = None
        return super().register(plugin, name)

    @property
    def registry(self) -> PluginRegistry:
        """The named factories of every registered plugin (built once, then cached)."""
        if self._registry is None:
            self._registry = PluginRegistry.build(self)
        return self._registry

    def info(self, plugin_name: str | None) -> PluginInfo:
        """Return the provenance of a registered plugin."""
        if plugin_name in self.provenance:
            return self.provenance[plugin_name]
        return PluginInfo(str(plugin_name), "unknown", "")

    def call_hook(self, name: str, **kwargs: Any) -> Any:
        """Call hook ``name``; an exception names the plugin that raised it."""
        caller = getattr(self.hook, name)
        try:
            return caller(**kwargs)
        except PluginError:
            raise
        except Exception as exc:
            culprit = _culprit(caller, exc)
            if culprit is None:
                raise
            raise self.error(culprit, f"raised {type(exc).__name__} in {name}: {exc}") from exc

    def has_impls(self, name: str) -> bool:
        """Return True when at least one plugin implements hook ``name``."""
        return bool(getattr(self.hook, name).get_hookimpls())

    def first_result(self, name: str, check: str, what: str, **kwargs: Any) -> Any:
        """Call a ``firstresult`` hook one implementation at a time, checking the result.

        The first non-None result wins and must have method ``check``; otherwise the error
        names the plugin that returned it.
        """
        caller = getattr(self.hook, name)
        for impl in reversed(caller.get_hookimpls()):
            args = {a: kwargs[a] for a in impl.argnames}
            try:
                out = impl.function(**args)
            except (PluginError, ConfigError, DataValidationError):
                raise  # already names what is wrong (a bad setting, a bad file)
            except Exception as exc:
                raise self.error(
                    impl.plugin_name, f"raised {type(exc).__name__} in {name}: {exc}"
                ) from exc
            if out is None:
                continue
            if not callable(getattr(out, check, None)):
                raise self.error(
                    impl.plugin_name,
                    f"returned a {type(out).__name__} from {name}, which is not a {what} "
                    f"(it has no {check}() method)",
                )
            return out
        return None

    def error(self, plugin_name: str | None, problem: str) -> PluginError:
        """Return a :class:`PluginError` naming the plugin, its distribution and a fix."""
        info = self.info(plugin_name)
        hint = (
            ""
            if info.builtin or info.distribution == "(in code)"
            else f"; to run without it, block it with {_ENV_BLOCK}={info.name} or "
            f"BacktestEngine(block_plugins=[{info.name!r}])"
        )
        return PluginError(
            f"plugin {info.describe()} {problem}{hint}",
            plugin=info.name,
            distribution=f"{info.distribution} {info.version}".strip(),
        )


def _culprit(caller: Any, exc: BaseException) -> str | None:
    codes = {impl.function.__code__: impl.plugin_name for impl in caller.get_hookimpls()}
    found = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        if frame.f_code in codes:
            found = codes[frame.f_code]
    return found


def _register(pm: PluginManager, plugin: object, name: str, info: PluginInfo) -> None:
    """Register one plugin and record its provenance (the one path for every plugin)."""
    if pm.is_blocked(name):
        return
    pm.provenance[name] = info
    try:
        pm.register(plugin, name)
    except PluginError:
        raise
    except Exception as exc:
        if not isinstance(exc, pluggy.PluginValidationError):  # raised in ml4t_addhooks
            raise pm.error(name, f"raised {type(exc).__name__} in ml4t_addhooks: {exc}") from exc
        del pm.provenance[name]
        raise PluginError(
            f"plugin {info.describe()} is invalid: {exc}",
            plugin=name,
            distribution=f"{info.distribution} {info.version}".strip(),
        ) from exc


def _code_name(pm: PluginManager, obj: object) -> str:
    base = getattr(obj, "__name__", None) or f"{type(obj).__module__}.{type(obj).__qualname__}"
    name, k = str(base), 2
    while pm.has_plugin(name) or pm.is_blocked(name):
        name, k = f"{base}#{k}", k + 1
    return name


def get_plugin_manager(
    *,
    autoload: bool = True,
    block: Iterable[str] = (),
    extra: Iterable[object] = (),
) -> PluginManager:
    """Create a plugin manager with the builtins, installed plugins and ``extra``.

    Parameters
    ----------
    autoload : bool, default True
        Load the entry points of group ``ml4t.backtest`` (sorted by name). The
        environment variable ``ML4T_BACKTEST_DISABLE_PLUGIN_AUTOLOAD`` turns it off.
    block : iterable of str
        Plugin names not to register: entry-point names or builtin module names (see
        ``ml4t-backtest plugins``). ``ML4T_BACKTEST_BLOCK_PLUGINS`` adds to it.
    extra : iterable of object
        Plugin objects or modules registered last, so their implementations run first.

    Raises
    ------
    PluginError
        A plugin fails to import, is invalid, or implements a hook that does not exist.
    """
    pm = PluginManager()
    for name in [*block, *_names(os.environ.get(_ENV_BLOCK))]:
        pm.set_blocked(name)
    version = _version("ml4t-backtest")
    for modname in DEFAULT_PLUGINS:
        if not pm.is_blocked(modname):
            module = importlib.import_module(modname)
            _register(pm, module, modname, PluginInfo(modname, "ml4t-backtest", version, True))
    if autoload and not _switch(_ENV_DISABLE):
        allow = set(_names(os.environ.get(_ENV_ALLOW))) or None
        eps = importlib.metadata.entry_points(group=hookspecs.PROJECT)
        for ep in sorted(eps, key=lambda e: e.name):
            if pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
                continue
            if allow is not None and ep.name not in allow:
                continue
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                ep.name,
                getattr(dist, "name", None) or "unknown distribution",
                getattr(dist, "version", None) or "",
            )
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {info.describe()} failed to import ({ep.value}): "
                    f"{type(exc).__name__}: {exc}; to run without it, block it with "
                    f"{_ENV_BLOCK}={ep.name} or BacktestEngine(block_plugins=[{ep.name!r}]), "
                    f"or uninstall {info.distribution}",
                    plugin=ep.name,
                    distribution=f"{info.distribution} {info.version}".strip(),
                ) from exc
            _register(pm, plugin, ep.name, info)
    for obj in extra:
        name = _code_name(pm, obj)
        _register(pm, obj, name, PluginInfo(name, "(in code)", ""))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        plugin_name = pm.get_name(exc.plugin) if exc.plugin is not None else None
        raise pm.error(plugin_name, f"implements an unknown hook: {exc}") from exc
    if _switch(_ENV_TRACE):
        pm.trace.root.setwriter(sys.stderr.write)
        pm.enable_tracing()
    return pm


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return ""


# --- the registry ---------------------------------------------------------------------


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
    manager: PluginManager | None = None

    @classmethod
    def build(cls, pm: PluginManager) -> PluginRegistry:
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

    def plugin_in_traceback(self, exc: BaseException) -> PluginInfo | None:
        """Return the non-builtin plugin whose factory's module raised ``exc``, if any.

        Used to name the plugin when a model object fails inside the run loop.
        """
        files: dict[str, PluginInfo] = {}
        for table in self.providers.values():
            for prov in table.values():
                module = sys.modules.get(getattr(prov.factory, "__module__", "") or "")
                path = getattr(module, "__file__", None)
                if path and not prov.plugin.builtin:
                    files[os.path.realpath(path)] = prov.plugin
        found = None
        for frame, _ in traceback.walk_tb(exc.__traceback__):
            info = files.get(os.path.realpath(frame.f_code.co_filename))
            found = info or found
        return found

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


def list_plugins(pm: PluginManager) -> list[dict[str, Any]]:
    """Return every registered plugin with its provenance, hooks and named factories.

    Each entry has ``name``, ``distribution``, ``version``, ``builtin``, ``hooks`` (the
    hooks it implements), ``provides`` (``{kind: [names]}``, the names it registered,
    including any another plugin overrides) and ``aliases`` (``{kind: {class name:
    name}}``). This is what each result's metadata records.
    """
    reg = pm.registry
    provided: dict[str, dict[str, list[str]]] = {}
    for kind, table in reg.providers.items():
        for name, prov in table.items():
            provided.setdefault(prov.plugin.name, {}).setdefault(kind, []).append(name)
    aliases: dict[str, dict[str, dict[str, str]]] = {}
    for kind, alias_table in reg.aliases.items():
        for alias, target in alias_table.items():
            owner = reg.providers[kind][target].plugin.name
            aliases.setdefault(owner, {}).setdefault(kind, {})[alias] = target
    for kind, name, info in reg.shadowed:
        provided.setdefault(info.name, {}).setdefault(kind, []).append(f"{name} (overridden)")
    out = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        info = pm.info(name)
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or ())
        out.append(
            {
                "name": name,
                "distribution": info.distribution,
                "version": info.version,
                "builtin": info.builtin,
                "hooks": hooks,
                "provides": {k: sorted(v) for k, v in sorted(provided.get(name, {}).items())},
                "aliases": aliases.get(name, {}),
            }
        )
    return out


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
