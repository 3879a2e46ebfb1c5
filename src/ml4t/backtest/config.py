"""Backtest configuration: pydantic models for the YAML/JSON shape of DESIGN §7.

Every model is frozen and rejects unknown keys. Models, feeds, brokers and reporters are
named by registry key (``per_share``), by class name (``PerShareCommission``) or, as an
escape hatch, by import path (``package.module:Class``), with ``{model: NAME, params:
{...}}`` to pass parameters. Names are resolved through the plugin registry before any
data is read, so a misspelt name fails in milliseconds and the message lists what is
available and which plugin provides it.

Example
-------
.. code-block:: yaml

    backtest: {name: ml_top25, initial_capital: 100000}
    data:
      asset_data: {path: data/bars.parquet, columns: {signals: [pred]}}
    execution:
      commission: {model: PerShareCommission, params: {cost_per_share: 0.005}}
      impact: {model: AlmgrenChriss, params: {volatility: 0.02, adv: 1000000}}
    reporting: {output_dir: results, reporters: [parquet, summary]}
    strategy: {module: strategies.ml, class: MLStrategy, params: {threshold: 0.5}}
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Sequence
from datetime import date
from glob import glob
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveFloat,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from .builtin.broker_settings import SETTING_NAMES, setting_types
from .builtin.presets import PresetName
from .core.asof import parse_duration_ns
from .errors import ConfigError, DataValidationError
from .plugins import PluginManager, get_plugin_manager
from .registry import PluginRegistry

__all__ = [
    "BROKER_KEYS",
    "BacktestConfig",
    "DataConfig",
    "ExecutionConfig",
    "ModelSpec",
    "ReportingConfig",
    "RunConfig",
    "StrategyConfig",
    "check_data_files",
    "check_names",
    "data_paths",
    "file_feed",
    "is_local_path",
    "is_path_key",
    "load_config",
    "model_spec",
    "plugin_manager_for",
]


#: the reporting keys naming one output file each
OUTPUT_KEYS = ("trades_output", "portfolio_output", "fills_output", "metrics_output")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelSpec(_Frozen):
    """A named model and its parameters: ``{model: NAME, params: {...}}``."""

    model: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    def as_spec(self) -> dict[str, Any]:
        """Return the ``{"model": ..., "params": ...}`` mapping the registry takes."""
        return {"model": self.model, "params": dict(self.params)}


Spec = str | ModelSpec


def model_spec(value: Spec) -> Any:
    """Return a config value as the registry takes it: a name or ``{model, params}``."""
    return value.as_spec() if isinstance(value, ModelSpec) else value


def _duration(value: Any) -> Any:
    """Check a duration (``"3d"``, ``"36h"``, ``"90m"``) and keep it as given."""
    if value is not None:
        try:
            parse_duration_ns(value, "duration")
        except DataValidationError as exc:
            raise ValueError(str(exc).split(": ", 1)[-1]) from None
    return value


Duration = Annotated[str | None, AfterValidator(_duration)]


def _not_bool(value: Any) -> Any:
    """Reject a boolean where a number is expected (pydantic would read ``true`` as 1)."""
    if isinstance(value, bool):
        raise ValueError(_bool_problem(value))
    return value


def _bool_problem(value: bool) -> str:
    return (
        f"expected a number, got a boolean ({str(value).lower()}); YAML reads "
        "true/false/yes/no/on/off as booleans"
    )


#: a number that is never a boolean (``initial_capital: true`` is an error, not 1.0)
Number = Annotated[float, BeforeValidator(_not_bool)]


class RunConfig(_Frozen):
    """The ``backtest`` section: run name, period, capital and trading calendar."""

    name: str | None = None
    start_date: date | None = None
    end_date: date | None = None
    initial_capital: Annotated[PositiveFloat, BeforeValidator(_not_bool)] = 100_000.0
    calendar: str | None = None
    outside_sessions: Literal["warn", "error", "ignore"] = "warn"

    @model_validator(mode="after")
    def _period(self) -> RunConfig:
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError(f"end_date: {self.end_date} is before start_date {self.start_date}")
        return self

    @field_validator("calendar")
    @classmethod
    def _known_calendar(cls, value: str | None) -> str | None:
        if value is not None:
            from .core.calendar import SessionCalendar

            try:
                SessionCalendar(value)
            except ConfigError as exc:
                raise ValueError(str(exc).split(": ", 1)[-1]) from None
        return value


class ColumnsConfig(_Frozen):
    """Which extra columns are signals and which are indicators."""

    signals: list[str] | None = None
    indicators: list[str] = Field(default_factory=list)


class AssetDataConfig(_Frozen):
    """Bars from a Parquet or CSV file (by suffix), read by the builtin feeds."""

    path: str
    asset_id: str | None = None
    columns: ColumnsConfig | None = None
    chunk_size: Annotated[str | int | None, BeforeValidator(_not_bool)] = None


class SignalDataConfig(_Frozen):
    """Lower-frequency signals (daily predictions) served as-of at each bar."""

    path: str
    columns: ColumnsConfig | None = None
    available_at: str | None = None
    max_staleness: Duration = None


class ContextDataConfig(_Frozen):
    """Market-wide columns (VIX, SPY, ...) from a Parquet or CSV file, one row per timestamp."""

    path: str
    fields: list[str] | None = None
    available_at: str | None = None
    max_staleness: Duration = None


class DataConfig(_Frozen):
    """The ``data`` section: ``asset_data`` (a file) or ``feed`` (a named feed plugin)."""

    asset_data: AssetDataConfig | None = None
    feed: ModelSpec | None = None
    signal_data: SignalDataConfig | None = None
    context_data: ContextDataConfig | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.asset_data is None) == (self.feed is None):
            raise ValueError("give exactly one of asset_data (a file) or feed (a named feed)")
        if self.signal_data is not None and self.feed is not None:
            raise ValueError("signal_data: goes with asset_data; pass it to the named feed instead")
        return self


class _ExecutionModels(_Frozen):
    """The ``execution`` keys naming the broker, a preset and the cost models."""

    broker: Spec = "simulation"
    preset: PresetName | None = None
    commission: Spec | None = None
    slippage: Spec | None = None
    impact: Spec | None = None


#: the broker settings a config gives under ``execution``: every field of
#: :class:`~ml4t.backtest.builtin.broker_settings.BrokerSettings` but the initial cash,
#: which is ``backtest.initial_capital``
BROKER_KEYS: tuple[str, ...] = tuple(n for n in SETTING_NAMES if n != "initial_cash")


def _config_type(hint: Any) -> Any:
    """Return a setting's type as the config checks it: optional (None keeps the broker's
    default), and a number is never a boolean."""
    args = get_args(hint) if get_origin(hint) in (Union, UnionType) else (hint,)
    (base,) = [a for a in args if a is not type(None)]
    return (Number if base is float else base) | None


if TYPE_CHECKING:  # the settings' keys are built below; typed code reads them by name
    _ExecutionSettings = _ExecutionModels
else:
    _ExecutionSettings = create_model(
        "_ExecutionSettings",
        __base__=_ExecutionModels,
        __module__=__name__,
        **{key: (_config_type(setting_types()[key]), None) for key in BROKER_KEYS},
    )


class ExecutionConfig(_ExecutionSettings):
    """The ``execution`` section: broker, cost models and fill settings.

    Besides ``broker``, ``preset``, the cost models and the objects below, it has one key
    per simulation-broker setting (:data:`BROKER_KEYS`, typed from
    :class:`~ml4t.backtest.builtin.broker_settings.BrokerSettings`; the broker checks the
    values' ranges), each ``None`` unless given.
    """

    assets: str | dict[str, dict[str, Any]] | None = None
    corporate_actions: str | None = None
    exits: dict[str, Any] | None = None
    risk_limits: dict[str, Any] | None = None

    @field_validator("exits", "risk_limits")
    @classmethod
    def _numbers_not_bools(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        # every exit and limit is a number but ``on_breach`` (checked by the broker)
        for key, item in (value or {}).items():
            if isinstance(item, bool) and key != "on_breach":
                raise ValueError(f"{key}: {_bool_problem(item)}")
        return value


class ReportingConfig(_Frozen):
    """The ``reporting`` section: where results go and which reporters write them.

    ``trades_output``, ``portfolio_output``, ``fills_output`` and ``metrics_output`` name
    single files (``.parquet``, ``.csv`` or, for metrics, ``.json``); ``output_dir`` gets
    the reporters' files. The resolved config and run manifest go to ``output_dir``, or
    beside the first single-file output.
    """

    output_dir: str | None = None
    reporters: list[Spec] = Field(default_factory=lambda: list[Spec](["parquet"]))
    trades_output: str | None = None
    portfolio_output: str | None = None
    fills_output: str | None = None
    metrics_output: str | None = None

    @model_validator(mode="after")
    def _suffixes(self) -> ReportingConfig:
        for key in OUTPUT_KEYS:
            value = getattr(self, key)
            allowed = (".json",) if key == "metrics_output" else (".parquet", ".csv")
            if value is not None and Path(value).suffix.lower() not in allowed:
                raise ValueError(f"{key}: {value!r} must end in {' or '.join(allowed)}")
        return self

    def outputs(self) -> dict[str, str]:
        """Return the single-file outputs that are set: ``{"trades": path, ...}``."""
        return {k.removesuffix("_output"): v for k in OUTPUT_KEYS if (v := getattr(self, k))}


class StrategyConfig(_Frozen):
    """The ``strategy`` section: ``module``, ``class`` and constructor ``params``."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    module: str
    class_name: str = Field(alias="class")
    params: dict[str, Any] = Field(default_factory=dict)
    path: str | None = None


class PluginsConfig(_Frozen):
    """The ``plugins`` section: blocking, autoloading and extra plugin modules."""

    block: list[str] = Field(default_factory=list)
    autoload: bool = True
    modules: list[str] = Field(default_factory=list)


class BacktestConfig(_Frozen):
    """A whole backtest, as loaded from YAML or JSON by :func:`load_config`.

    Relative paths (data files, output directory, strategy modules) are resolved against
    ``base_dir``: the config file's directory, or the working directory for a config built
    in code.
    """

    backtest: RunConfig = Field(default_factory=RunConfig)
    data: DataConfig
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    reporting: ReportingConfig = Field(default_factory=ReportingConfig)
    strategy: StrategyConfig | None = None
    plugins: PluginsConfig = Field(default_factory=PluginsConfig)
    base_dir: str = "."
    source: str = "<config>"

    def path(self, value: str) -> Path:
        """Return ``value`` resolved against :attr:`base_dir`."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> BacktestConfig:
    """Read and validate a YAML (``.yaml``/``.yml``) or JSON config file.

    Parameters
    ----------
    path : str or Path
        The config file.
    overrides : sequence of str
        ``key.path=value`` assignments applied before validation, as ``ml4t-backtest run
        --set`` does (``--set execution.fill_timing=same_bar_close``). The value is read as
        YAML, so ``0.1``, ``true``, ``[a, b]`` and ``{model: x}`` have their types.

    Raises
    ------
    ConfigError
        The file is missing or unparsable, a key is unknown or has a bad value (a boolean
        where a number belongs is a bad value), or a model, feed, broker or reporter name
        is not provided by any installed plugin; the message names the file and the key
        path (``execution.commission.model: unknown commission model 'x'; available:
        ...``).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    text = p.read_text()
    try:
        raw = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, ValueError) as exc:
        # ValueError: a YAML value that looks like a date but is not one (2024-13-01)
        raise ConfigError(f"{p}: cannot parse: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(raw).__name__}")
    for key in ("base_dir", "source"):
        if key in raw:
            raise ConfigError(f"{p}: {key}: not a config key (it is set from the file's location)")
    for item in overrides:
        _override(raw, item, str(p))
    cfg = _validate({**raw, "base_dir": str(p.resolve().parent), "source": str(p)}, str(p))
    registry = plugin_manager_for(cfg).registry  # its errors name the file already
    try:
        check_names(cfg, registry)
    except ConfigError as exc:
        raise ConfigError(f"{cfg.source}: {exc}") from None
    return cfg


def _override(raw: dict[str, Any], item: str, source: str) -> None:
    """Apply one ``key.path=value`` assignment to the raw config mapping."""
    key, sep, text = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"{source}: --set {item!r}: expected KEY.PATH=VALUE")
    if parts[0] in ("base_dir", "source"):
        raise ConfigError(f"{source}: --set {item!r}: {parts[0]} is not a config key")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: --set {item!r}: cannot read the value: {exc}") from exc
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise ConfigError(
                f"{source}: --set {item!r}: {where} is {child!r}, not a mapping of keys"
            )
        node = child
    node[parts[-1]] = value


def _validate(raw: dict[str, Any], source: str) -> BacktestConfig:
    try:
        return BacktestConfig.model_validate(raw)
    except ValidationError as exc:
        problems: dict[str, list[str]] = {}
        for err in exc.errors():
            loc = [str(x) for x in err["loc"] if not _is_union_tag(str(x))]
            msg = err["msg"].removeprefix("Value error, ")
            key = _KEY_IN_MESSAGE.match(msg)
            if err["type"] == "value_error" and key is not None:
                loc.append(key.group(1))  # "trades_output: ..." from a model validator
                msg = msg[key.end() :]
            problems.setdefault(".".join(loc) or "(top level)", []).append(msg)
        lines: list[str] = []
        for where, msgs in problems.items():
            # a value matching no member of a union reports every member's complaint; a
            # "should be a valid string/dictionary" is only the other member's when there
            # is a more specific problem at or under the same key
            deeper = any(k.startswith(where + ".") for k in problems)
            mismatch = [m.startswith(_BRANCH_MISMATCH) for m in msgs]
            keep = [
                m
                for m, b in zip(msgs, mismatch, strict=True)
                if not (b and (deeper or not all(mismatch)))
            ]
            lines.extend(f"{where}: {m}" for m in dict.fromkeys(keep))
        raise ConfigError(f"{source}: " + "; ".join(lines)) from None


_KEY_IN_MESSAGE = re.compile(r"^([a-z_][a-z0-9_]*): ")
_BRANCH_MISMATCH = ("Input should be a valid string", "Input should be a valid dictionary")


def _is_union_tag(part: str) -> bool:
    """Return True for the member names pydantic puts in the location of a union error."""
    return part in ("str", "ModelSpec", "int", "float", "bool") or "[" in part


def check_names(cfg: BacktestConfig, registry: PluginRegistry) -> None:
    """Check every plugin-provided name of a config against the plugin registry.

    Cost models, the broker, the feed (a named ``data.feed`` or the builtin ``parquet``/
    ``csv`` feed that reads ``data.asset_data``) and the reporters are looked up by name;
    ``package.module:Class`` import paths are resolved later, when the object is built.

    Raises
    ------
    ConfigError
        A name no plugin provides; the message names the key (``execution.commission.model``
        for ``{model: NAME}``, ``execution.commission`` for a bare name), the unknown name
        and the names available, with the plugin providing each.
    """
    ex = cfg.execution
    checks: list[tuple[str, Spec, str]] = [
        (kind, spec, f"execution.{kind}")
        for kind in ("commission", "slippage", "impact")
        if (spec := getattr(ex, kind)) is not None
    ]
    checks.append(("broker", ex.broker, "execution.broker"))
    checks.extend(
        ("reporter", rep, f"reporting.reporters[{k}]")
        for k, rep in enumerate(cfg.reporting.reporters)
    )
    data = cfg.data
    if data.feed is not None:
        checks.append(("feed", data.feed, "data.feed"))
    elif data.asset_data is not None:
        name = file_feed(data.asset_data.path)
        if registry.lookup("feed", name) is None:
            raise ConfigError(
                f"data.asset_data.path: reading {data.asset_data.path!r} needs the feed "
                f"{name!r}, which no plugin provides; available: {registry.available('feed')}"
            )
    for kind, spec, where in checks:
        name, key = (spec.model, f"{where}.model") if isinstance(spec, ModelSpec) else (spec, where)
        if ":" in name or registry.lookup(kind, name) is not None:
            continue
        what = f"{kind} model" if kind in ("commission", "slippage", "impact", "reporter") else kind
        raise ConfigError(f"{key}: unknown {what} {name!r}; available: {registry.available(kind)}")


def file_feed(path: str) -> str:
    """Return the builtin feed reading ``path``: ``csv`` by suffix, else ``parquet``."""
    return "csv" if Path(path).suffix.lower() == ".csv" else "parquet"


def plugin_manager_for(cfg: BacktestConfig) -> PluginManager:
    """Build the plugin manager the config's ``plugins`` section asks for."""
    extra = []
    for k, name in enumerate(cfg.plugins.modules):
        try:
            extra.append(importlib.import_module(name))
        except ImportError as exc:
            raise ConfigError(
                f"{cfg.source}: plugins.modules[{k}]: cannot import {name!r}: {exc}"
            ) from exc
    return get_plugin_manager(autoload=cfg.plugins.autoload, block=cfg.plugins.block, extra=extra)


#: Feed parameters holding file paths, resolved against the config file's directory.
PATH_KEYS = ("path", "database", "file", "directory")


def is_path_key(key: str) -> bool:
    """Return True for a feed parameter that names a file or directory."""
    return key in PATH_KEYS or key.endswith(("_path", "_file", "_dir"))


def is_local_path(value: Any) -> bool:
    """Return True for a string that is a local path (not ``:memory:`` or a URL)."""
    return isinstance(value, str) and value != ":memory:" and "://" not in value


def data_paths(cfg: BacktestConfig) -> list[tuple[str, Path]]:
    """Return ``(key, path)`` for every local file or directory the config reads.

    Paths are resolved against the config's directory; they may be globs. Feed parameters
    count when their key names a path (``path``, ``database``, ``file``, ``directory``,
    ``*_path``, ``*_file``); ``*_dir`` parameters are left out (a feed may create them).
    """
    out: list[tuple[str, Path]] = []
    data = cfg.data
    for key in ("asset_data", "signal_data", "context_data"):
        section = getattr(data, key)
        if section is not None:
            out.append((f"data.{key}.path", cfg.path(section.path)))
    if data.feed is not None:
        for k, v in data.feed.params.items():
            if is_path_key(k) and not k.endswith("_dir") and is_local_path(v):
                out.append((f"data.feed.params.{k}", cfg.path(v)))
    for key in ("assets", "corporate_actions"):
        value = getattr(cfg.execution, key)
        if isinstance(value, str):
            out.append((f"execution.{key}", cfg.path(value)))
    return out


def check_data_files(cfg: BacktestConfig) -> None:
    """Check that every data file the config names exists (a glob matches a file).

    Raises
    ------
    ConfigError
        ``data.asset_data.path: no such file: /abs/path`` (the key, then the path), so a
        missing file is not reported later as a failure of the plugin that reads it.
    """
    for key, path in data_paths(cfg):
        name = str(path)
        if any(ch in name for ch in "*?["):
            if not glob(name):
                raise ConfigError(f"{key}: no such file: {name} (the glob matches nothing)")
        elif not path.exists():
            raise ConfigError(f"{key}: no such file: {name}")
