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
import os
import sys
import traceback
from collections.abc import Iterable
from typing import Any

import pluggy

from . import hookspecs
from .errors import ConfigError, DataValidationError, PluginError
from .markers import PROJECT
from .registry import KINDS, PluginInfo, PluginRegistry

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

_ENV_DISABLE = "ML4T_BACKTEST_DISABLE_PLUGIN_AUTOLOAD"
_ENV_ALLOW = "ML4T_BACKTEST_PLUGINS"
_ENV_BLOCK = "ML4T_BACKTEST_BLOCK_PLUGINS"
_ENV_TRACE = "ML4T_BACKTEST_TRACE_PLUGINS"


def _switch(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def _names(value: str | None) -> list[str]:
    return [p.strip() for p in (value or "").split(",") if p.strip()]


class PluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers each plugin's provenance and builds the registry."""

    def __init__(self) -> None:
        super().__init__(PROJECT)
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

    def construct(self, name: str, check: str, what: str, **kwargs: Any) -> Any:
        """Call a ``firstresult`` construction hook through pluggy and check its result.

        Wrappers (``wrapper=True``) and tracing apply as to any hook. The result, if not
        None, must have method ``check``; otherwise the error names the plugin that most
        likely returned it (the first non-builtin implementation pluggy called).
        """
        caller = getattr(self.hook, name)
        try:
            out = caller(**kwargs)
        except (PluginError, ConfigError, DataValidationError):
            raise  # already names what is wrong (a bad setting, a bad file)
        except Exception as exc:
            culprit = _culprit(caller, exc)
            if culprit is None:
                raise
            raise self.error(culprit, f"raised {type(exc).__name__} in {name}: {exc}") from exc
        if out is not None and not callable(getattr(out, check, None)):
            raise self.error(
                self._likely_maker(caller, out),
                f"returned a {type(out).__name__} from {name}, which is not a {what} "
                f"(it has no {check}() method)",
            )
        return out

    def _likely_maker(self, caller: Any, out: object) -> str | None:
        """Name the implementation that returned ``out`` (pluggy does not say which)."""
        impls = [i for i in reversed(caller.get_hookimpls()) if not (i.wrapper or i.hookwrapper)]
        module = type(out).__module__
        for impl in impls:
            if getattr(impl.function, "__module__", None) == module:
                return str(impl.plugin_name)
        for impl in impls:
            if not self.info(impl.plugin_name).builtin:
                return str(impl.plugin_name)
        return str(impls[0].plugin_name) if impls else None

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
        eps = importlib.metadata.entry_points(group=PROJECT)
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
