"""Assembly from a config: the engine's arguments a validated config describes.

:func:`engine_arguments` resolves every plugin name before any data is read, validates the
broker settings, then imports the strategy and builds the feed (``ml4t_make_feed``);
:meth:`ml4t.backtest.BacktestEngine.from_config` passes the result to the engine, which
builds the broker (``ml4t_make_broker``). The config's shape and loading are in
:mod:`ml4t.backtest.config`.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import polars as pl

from .builtin.broker_settings import SETTING_NAMES, BrokerSettings, SettingError
from .builtin.corporate import CorporateActions
from .builtin.presets import preset_settings
from .builtin.risk import as_exit_rules, as_risk_limits
from .config import (
    BROKER_KEYS,
    BacktestConfig,
    check_data_files,
    check_names,
    file_feed,
    is_local_path,
    is_path_key,
    load_config,
    model_spec,
    plugin_manager_for,
)
from .core.assets import AssetRegistry
from .core.context import Context
from .core.data import TIMESTAMP_ALIASES
from .core.sources import to_polars_frame
from .core.strategy import Strategy
from .errors import ConfigError

__all__ = ["BROKER_KEYS", "engine_arguments"]


def _check_broker_settings(params: dict[str, Any]) -> None:
    """Validate the simulation-broker settings now, naming the config key of a bad one."""
    try:
        BrokerSettings(**{k: v for k, v in params.items() if k in SETTING_NAMES})
    except SettingError as exc:
        key = exc.key
        where = "backtest.initial_capital" if key == "initial_cash" else f"execution.{key}"
        raise ConfigError(f"{where}: {exc.problem}") from exc


def _broker_objects(cfg: BacktestConfig) -> dict[str, Any]:
    """Build the asset registry, corporate actions, exits and limits (validated now)."""
    ex = cfg.execution
    out: dict[str, Any] = {}
    if ex.assets is not None:
        if isinstance(ex.assets, str):
            path = cfg.path(ex.assets)
            out["assets"] = AssetRegistry(str(path), source=f"execution.assets ({path})")
        else:
            out["assets"] = AssetRegistry(ex.assets, source="execution.assets")
    if ex.corporate_actions is not None:
        path = cfg.path(ex.corporate_actions)
        out["corporate_actions"] = CorporateActions(
            str(path), source=f"execution.corporate_actions ({path})"
        )
    if ex.exits is not None:
        out["exits"] = as_exit_rules(ex.exits, where="execution.exits")
    if ex.risk_limits is not None:
        out["risk_limits"] = as_risk_limits(ex.risk_limits, where="execution.risk_limits")
    return out


def _feed_spec(cfg: BacktestConfig) -> dict[str, Any]:
    data = cfg.data
    if data.feed is not None:
        spec = data.feed.as_spec()
        spec["params"] = {
            k: str(cfg.path(v)) if is_path_key(k) and is_local_path(v) else v
            for k, v in spec["params"].items()
        }
        return spec
    ad = data.asset_data
    assert ad is not None
    path = cfg.path(ad.path)
    params: dict[str, Any] = {"path": str(path)}
    if ad.asset_id is not None:
        params["asset_id"] = ad.asset_id
    if ad.columns is not None:
        if ad.columns.signals is not None:
            params["signal_columns"] = ad.columns.signals
        params["indicator_columns"] = ad.columns.indicators
    if ad.chunk_size is not None:
        params["chunk_size"] = ad.chunk_size
    sd = data.signal_data
    if sd is not None:
        params["signal_data"] = str(cfg.path(sd.path))
        if sd.available_at is not None:
            params["available_at"] = sd.available_at
        if sd.max_staleness is not None:
            params["signal_max_staleness"] = sd.max_staleness
        if sd.columns is not None:
            signals = list(params.get("signal_columns") or [])
            indicators = list(params.get("indicator_columns") or [])
            params["signal_columns"] = signals + list(sd.columns.signals or [])
            params["indicator_columns"] = indicators + list(sd.columns.indicators)
    return {"model": file_feed(ad.path), "params": params}


def engine_arguments(
    config: BacktestConfig | str | Path, strategy: Strategy | None = None
) -> dict[str, Any]:
    """Return the :class:`~ml4t.backtest.BacktestEngine` arguments a config describes.

    Every plugin name (cost models, broker, feed, reporters) is resolved before any data
    is read; then the strategy is imported, the feed built through ``ml4t_make_feed`` and
    the broker through ``ml4t_make_broker``.
    """
    cfg = config if isinstance(config, BacktestConfig) else load_config(config)
    src = cfg.source
    pm = plugin_manager_for(cfg)
    reg = pm.registry
    ex = cfg.execution
    params: dict[str, Any] = {"initial_cash": cfg.backtest.initial_capital}
    try:
        check_names(cfg, reg)
        preset = {} if ex.preset is None else preset_settings(ex.preset)
        for kind in ("commission", "slippage", "impact"):
            spec = getattr(ex, kind)
            if spec is not None:
                params[kind] = reg.create(kind, model_spec(spec), where=f"execution.{kind}")
            elif kind in preset:
                params[kind] = reg.create(kind, preset[kind], where=f"execution.preset.{kind}")
        params.update({k: v for k, v in preset.items() if k in BROKER_KEYS})
        for key in BROKER_KEYS:
            if getattr(ex, key) is not None:
                params[key] = getattr(ex, key)
        check_data_files(cfg)
        params.update(_broker_objects(cfg))
        _check_broker_settings(params)
        for k, rep in enumerate(cfg.reporting.reporters):
            reg.create("reporter", model_spec(rep), where=f"reporting.reporters[{k}]")
        feed_spec = _feed_spec(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{src}: {exc}") from exc
    strat = strategy if strategy is not None else _import_strategy(cfg)
    broker_spec = model_spec(ex.broker)
    if isinstance(broker_spec, str):
        broker_spec = {"model": broker_spec, "params": {}}
    broker_spec = {"model": broker_spec["model"], "params": {**params, **broker_spec["params"]}}
    feed = pm.construct("ml4t_make_feed", "load", "feed", spec=feed_spec, registry=reg)
    if feed is None:
        raise ConfigError(f"{src}: data: no plugin built a feed for {feed_spec!r}")
    context = None
    cd = cfg.data.context_data
    if cd is not None:
        context = Context(
            _read_context(cfg), max_staleness=cd.max_staleness, available_at=cd.available_at
        )
    run = cfg.backtest
    return {
        "feed": feed,
        "strategy": strat,
        "broker": broker_spec,
        "context": context,
        "name": run.name,
        "calendar": run.calendar,
        "outside_sessions": run.outside_sessions,
        "start": run.start_date,
        "end": run.end_date,
        "plugin_manager": pm,
    }


def _import_strategy(cfg: BacktestConfig) -> Strategy:
    sc = cfg.strategy
    if sc is None:
        raise ConfigError(f"{cfg.source}: strategy: missing (give one in code or in the config)")
    base = str(cfg.path(sc.path).resolve() if sc.path is not None else Path(cfg.base_dir).resolve())
    added = base not in sys.path
    if added:
        sys.path.insert(0, base)
    _forget_module_from_elsewhere(sc.module, Path(base))
    try:
        module = importlib.import_module(sc.module)
    except ImportError as exc:
        raise ConfigError(
            f"{cfg.source}: strategy.module: cannot import {sc.module!r}: {exc}"
        ) from exc
    finally:
        if added:
            sys.path.remove(base)
    cls = getattr(module, sc.class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ConfigError(
            f"{cfg.source}: strategy.class: {sc.module}.{sc.class_name} is not a Strategy class"
        )
    try:
        return cls(**sc.params)
    except TypeError as exc:
        raise ConfigError(f"{cfg.source}: strategy.params: {exc}") from exc


def _forget_module_from_elsewhere(name: str, base: Path) -> None:
    """Drop a cached module of that name when the config's directory has its own file.

    Two projects each with a ``strategy.py``: the second config must import its own, not
    the one the first left in ``sys.modules``.
    """
    cached = sys.modules.get(name)
    where = getattr(cached, "__file__", None)
    rel = Path(*name.split("."))
    own = [base / rel.with_suffix(".py"), base / rel / "__init__.py"]
    mine = next((f for f in own if f.is_file()), None)
    if cached is None or where is None or mine is None:
        return
    if Path(where).resolve() != mine.resolve():
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]


def _read_context(cfg: BacktestConfig) -> pl.DataFrame:
    cd = cfg.data.context_data
    assert cd is not None
    path = cfg.path(cd.path)
    if not path.is_file():
        raise ConfigError(f"{cfg.source}: data.context_data.path: no such file: {path}")
    df = to_polars_frame(str(path), str(path))
    if cd.fields is None:
        return df
    missing = [f for f in cd.fields if f not in df.columns]
    if missing:
        raise ConfigError(
            f"{cfg.source}: data.context_data.fields: {missing} not in {path}; columns are "
            f"{df.columns}"
        )
    keys = {*TIMESTAMP_ALIASES, cd.available_at or "available_at"}
    return df.select(*[c for c in df.columns if c.lower() in keys], *cd.fields)
