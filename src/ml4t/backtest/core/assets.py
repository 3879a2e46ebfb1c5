"""The asset registry: contract multipliers, tick and lot sizes, margins and borrow terms.

An :class:`AssetSpec` describes how one instrument trades; an :class:`AssetRegistry` maps
asset ids to specs (with a default for assets not listed) and hands the broker one
:class:`AssetArrays` of plain numpy columns indexed by asset code, so the fill path never
looks anything up by name.

Margins have two meanings, chosen by ``asset_class``:

- ``"future"``: currency **per contract** (``initial_margin: 12000`` for one ES contract);
  ``initial_margin`` is required.
- every other class: a **fraction** of position value in ``(0, 1]`` (``0.5`` = Reg T);
  ``None`` leaves it to the broker's account default.

Specs come from a mapping, a polars/pandas frame or a file (CSV, Parquet, JSON or YAML).
Every error names the source, the asset and the field::

    assets.yaml: asset 'ES': initial_margin is required for asset_class 'future'
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, get_args

import numpy as np
import polars as pl
import yaml

from ..errors import ConfigError

__all__ = [
    "ASSET_CLASSES",
    "AssetArrays",
    "AssetClass",
    "AssetRegistry",
    "AssetSpec",
]

AssetClass = Literal["equity", "etf", "future", "crypto", "fx", "option", "index"]
ASSET_CLASSES: tuple[str, ...] = get_args(AssetClass)
_ID_COLUMNS = ("asset_id", "symbol")
_SpecSource = Mapping[str, Any] | pl.DataFrame | str | Path | None


class _Problem(Exception):
    """A field problem, prefixed with the source and asset by whoever catches it."""


@dataclass(frozen=True, slots=True)
class AssetSpec:
    """How one asset trades.

    Parameters
    ----------
    asset_class : str
        One of ``equity, etf, future, crypto, fx, option, index``; decides what the
        margins mean.
    multiplier : float
        Currency value of a one-point price move per unit (50 for ES, 1 for stocks), > 0.
    tick_size : float or None
        Minimum price increment, > 0; ``None`` means any price.
    lot_size : float or None
        Quantities are whole multiples of this, > 0; ``None`` means the broker default
        (whole units unless the broker trades fractions).
    min_quantity : float
        Smallest order quantity accepted, >= 0.
    initial_margin, maintenance_margin : float or None
        For futures: currency per contract, >= 0, and ``initial_margin`` is required.
        Otherwise: a fraction of position value in ``(0, 1]``; ``None`` = broker default.
        ``maintenance_margin`` must not exceed ``initial_margin`` when both are given.
    borrow_rate : float or None
        Annual short borrow fee as a fraction (0.03 = 3 %), >= 0; ``None`` = broker
        default.
    shortable : bool
        Whether the asset may be sold short.
    currency : str
        Quote currency (upper-cased). Accounts are single-currency, see
        :meth:`AssetRegistry.check`.

    Raises
    ------
    ConfigError
        A field has a bad type or value; the message names the field.
    """

    asset_class: AssetClass = "equity"
    multiplier: float = 1.0
    tick_size: float | None = None
    lot_size: float | None = None
    min_quantity: float = 0.0
    initial_margin: float | None = None
    maintenance_margin: float | None = None
    borrow_rate: float | None = None
    shortable: bool = True
    currency: str = "USD"

    def __post_init__(self) -> None:
        try:
            values = _normalise({f: getattr(self, f) for f in FIELDS})
        except _Problem as problem:
            raise ConfigError(f"AssetSpec: {problem}") from None
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @property
    def is_future(self) -> bool:
        """Return True when margins are currency per contract (``asset_class == 'future'``)."""
        return self.asset_class == "future"


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(AssetSpec))
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(AssetSpec)}


def _show(value: Any) -> str:
    return str(value) if isinstance(value, numbers.Real | str) else repr(value)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool | np.bool_):
        raise _Problem(f"{name} must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _Problem(f"{name} must be a number, got {value!r}") from None
    elif isinstance(value, numbers.Real):
        number = float(value)
    else:
        raise _Problem(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(number):
        raise _Problem(f"{name} must be a finite number, got {_show(value)}")
    return number


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.strip().lower()]
    raise _Problem(f"{name} must be true or false, got {value!r}")


_BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


_BOUNDED = (  # (field, must be strictly positive)
    ("multiplier", True),
    ("tick_size", True),
    ("lot_size", True),
    ("min_quantity", False),
    ("borrow_rate", False),
)


def _normalise(values: dict[str, Any]) -> dict[str, Any]:
    """Return ``values`` (every field) coerced to their types; raise ``_Problem`` if bad."""
    out = dict(values)
    kind = values["asset_class"]
    if not isinstance(kind, str) or kind.strip().lower() not in ASSET_CLASSES:
        choices = ", ".join(repr(c) for c in ASSET_CLASSES)
        raise _Problem(f"asset_class must be one of {choices}, got {kind!r}")
    kind = out["asset_class"] = kind.strip().lower()
    for name, positive in _BOUNDED:
        if values[name] is None and _DEFAULTS[name] is None:  # optional, not set
            continue
        out[name] = number = _number(name, values[name])
        if number < 0 or (positive and number == 0):
            bound = "> 0" if positive else ">= 0"
            raise _Problem(f"{name} must be {bound}, got {_show(values[name])}")
    for name in ("initial_margin", "maintenance_margin"):
        if values[name] is None:
            continue
        out[name] = number = _number(name, values[name])
        if kind == "future" and number < 0:
            raise _Problem(
                f"{name} must be >= 0 (currency per contract for a future), "
                f"got {_show(values[name])}"
            )
        if kind != "future" and not 0 < number <= 1:
            raise _Problem(
                f"{name} must be a fraction of position value in (0, 1] for asset_class "
                f"{kind!r}, got {_show(values[name])} (per-contract margins are for futures)"
            )
    if kind == "future" and out["initial_margin"] is None:
        raise _Problem("initial_margin is required for asset_class 'future'")
    init, maint = out["initial_margin"], out["maintenance_margin"]
    if init is not None and maint is not None and maint > init:
        raise _Problem(f"maintenance_margin ({maint}) must be <= initial_margin ({init})")
    out["shortable"] = _boolean("shortable", values["shortable"])
    currency = values["currency"]
    if not isinstance(currency, str) or not currency.strip():
        raise _Problem(f"currency must be a non-empty string, got {currency!r}")
    out["currency"] = currency.strip().upper()
    return out


def _spec_from(value: Any, where: str) -> AssetSpec:
    """Build a spec from an AssetSpec or a mapping of fields; ``None`` fields = default."""
    if isinstance(value, AssetSpec):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping of fields, got {type(value).__name__}")
    fields = {}
    for key, item in value.items():
        if key not in _DEFAULTS:
            close = difflib.get_close_matches(str(key), FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown field {key!r}{hint}; fields: {', '.join(FIELDS)}")
        if item is not None:
            fields[key] = item
    try:
        values = _normalise({**_DEFAULTS, **fields})
    except _Problem as problem:
        raise ConfigError(f"{where}: {problem}") from None
    return AssetSpec(**values)


@dataclass(frozen=True, slots=True)
class AssetArrays:
    """Per-asset spec columns for the broker, indexed by position in ``asset_ids``.

    Float arrays are float64 with NaN meaning "not set" (tick_size, lot_size, margins,
    borrow_rate); ``is_future`` and ``shortable`` are bool. All arrays are read-only.
    """

    asset_ids: tuple[str, ...]
    multiplier: np.ndarray
    tick_size: np.ndarray
    lot_size: np.ndarray
    min_quantity: np.ndarray
    initial_margin: np.ndarray
    maintenance_margin: np.ndarray
    borrow_rate: np.ndarray
    is_future: np.ndarray
    shortable: np.ndarray

    def __len__(self) -> int:
        return len(self.asset_ids)


class AssetRegistry:
    """Asset specs by asset id, with a default for assets not listed.

    Parameters
    ----------
    specs : mapping, polars/pandas DataFrame, str or Path, optional
        A mapping ``asset_id -> AssetSpec | dict``; or a frame with an ``asset_id`` (or
        ``symbol``) column plus any AssetSpec field columns (null/NaN = field default);
        or a path to a ``.csv``/``.parquet`` file of that frame, or a ``.json``/``.yaml``
        file holding the mapping. Integer ids (YAML ``7203:``) become strings.
    default : AssetSpec or dict, optional
        Spec for assets not listed; ``AssetSpec()`` (a plain USD equity) when omitted.
    source : str, optional
        Name used in error messages; the file path, or ``"asset registry"``.

    Raises
    ------
    ConfigError
        The file is missing or unreadable, a field or column is unknown, a value is bad or
        an asset is listed twice; the message names the source, the asset and the field.
    """

    def __init__(
        self,
        specs: _SpecSource | Any = None,
        default: AssetSpec | Mapping[str, Any] | None = None,
        *,
        source: str | None = None,
    ) -> None:
        path = Path(specs) if isinstance(specs, str | Path) else None
        self.source: str = source or (str(specs) if path is not None else "asset registry")
        self.default: AssetSpec = (
            AssetSpec() if default is None else _spec_from(default, f"{self.source}: default")
        )
        if specs is None:
            table: dict[str, AssetSpec] = {}
        elif path is not None:
            table = self._read_file(path)
        elif isinstance(specs, pl.DataFrame) or type(specs).__module__.startswith("pandas"):
            table = self._from_frame(specs)
        elif isinstance(specs, Mapping):
            table = self._from_mapping(specs)
        else:
            raise ConfigError(
                f"{self.source}: expected a mapping, a DataFrame or a file path, "
                f"got {type(specs).__name__}"
            )
        self._specs: Mapping[str, AssetSpec] = MappingProxyType(table)

    # -- loading -------------------------------------------------------------------------

    def _where(self, asset_id: str, row: int | None = None) -> str:
        at = "" if row is None else f"row {row}: "
        return f"{self.source}: {at}asset {asset_id!r}"

    def _from_mapping(self, specs: Mapping[Any, Any]) -> dict[str, AssetSpec]:
        table = {}
        for key, value in specs.items():
            if isinstance(key, bool) or not isinstance(key, str | int) or key == "":
                raise ConfigError(f"{self.source}: asset id {key!r} must be a non-empty string")
            asset_id = str(key)
            if asset_id in table:
                raise ConfigError(f"{self.source}: asset {asset_id!r} is listed twice")
            table[asset_id] = _spec_from(value, self._where(asset_id))
        return table

    def _from_frame(self, frame: Any) -> dict[str, AssetSpec]:
        if not isinstance(frame, pl.DataFrame):
            try:
                frame = pl.from_pandas(frame)
            except Exception as exc:
                raise ConfigError(f"{self.source}: cannot convert the pandas frame: {exc}") from exc
        id_col = next((c for c in _ID_COLUMNS if c in frame.columns), None)
        if id_col is None:
            raise ConfigError(
                f"{self.source}: missing column 'asset_id' (or 'symbol'); columns: "
                f"{', '.join(frame.columns)}"
            )
        for col in frame.columns:
            if col not in _DEFAULTS and col not in _ID_COLUMNS:
                close = difflib.get_close_matches(col, FIELDS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(
                    f"{self.source}: unknown column {col!r}{hint}; fields: {', '.join(FIELDS)}"
                )
        fields = [c for c in frame.columns if c in _DEFAULTS]
        table: dict[str, AssetSpec] = {}
        first_row: dict[str, int] = {}
        for row, record in enumerate(frame.iter_rows(named=True)):
            key = record[id_col]
            if key is None or (isinstance(key, str) and not key.strip()):
                raise ConfigError(f"{self.source}: row {row}: column {id_col!r} is empty")
            asset_id = str(key).strip()
            if asset_id in table:
                raise ConfigError(
                    f"{self.source}: asset {asset_id!r} is listed twice "
                    f"(rows {first_row[asset_id]} and {row})"
                )
            # NaN is how pandas (and float columns) spell a missing value.
            values = {
                f: record[f]
                for f in fields
                if not (isinstance(record[f], float) and math.isnan(record[f]))
            }
            table[asset_id] = _spec_from(values, self._where(asset_id, row))
            first_row[asset_id] = row
        return table

    def _read_file(self, path: Path) -> dict[str, AssetSpec]:
        if not path.is_file():
            raise ConfigError(f"{self.source}: asset file not found")
        suffix = path.suffix.lower()
        try:
            if suffix == ".csv":
                return self._from_frame(pl.read_csv(path, infer_schema=False))
            if suffix in (".parquet", ".pq"):
                return self._from_frame(pl.read_parquet(path))
            if suffix not in (".json", ".yaml", ".yml"):
                raise ConfigError(
                    f"{self.source}: unsupported file type {suffix!r}; use .csv, .parquet, "
                    ".json or .yaml"
                )
            text = path.read_text()
            raw = _load_json(text) if suffix == ".json" else yaml.load(text, _UniqueKeyLoader)
        except (pl.exceptions.PolarsError, OSError, json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{self.source}: cannot read: {exc}") from exc
        except _Problem as problem:
            raise ConfigError(f"{self.source}: {problem}") from None
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            raise ConfigError(
                f"{self.source}: expected a mapping asset_id -> fields at the top level, "
                f"got {type(raw).__name__}"
            )
        return self._from_mapping(raw)

    # -- queries -------------------------------------------------------------------------

    @property
    def specs(self) -> Mapping[str, AssetSpec]:
        """Return the listed specs, read-only (the default is not included)."""
        return self._specs

    def spec(self, asset_id: str) -> AssetSpec:
        """Return the spec of ``asset_id``, or the default when it is not listed."""
        return self._specs.get(asset_id, self.default)

    def check(self, asset_ids: Iterable[str], account_currency: str = "USD") -> None:
        """Check that every asset in ``asset_ids`` is quoted in the account currency.

        Only assets that are traded (in ``asset_ids``) are checked, listed or covered by
        the default; a registry may list assets the run never touches.

        Raises
        ------
        ConfigError
            An asset's currency differs from ``account_currency``.
        """
        account = str(account_currency).strip().upper()
        for asset_id in asset_ids:
            spec = self.spec(asset_id)
            if spec.currency != account:
                how = "" if asset_id in self._specs else " (the registry default)"
                raise ConfigError(
                    f"{self.source}: multi-currency accounts are not supported: asset "
                    f"{asset_id!r} is in {spec.currency}{how}, the account in {account}"
                )

    def arrays(self, asset_ids: Iterable[str]) -> AssetArrays:
        """Return the spec columns for ``asset_ids``, indexed by position in it.

        Listed assets not in ``asset_ids`` are ignored; assets not listed get the default.
        """
        ids = tuple(asset_ids)
        specs = [self.spec(a) for a in ids]

        def column(name: str) -> np.ndarray:
            values = [getattr(s, name) for s in specs]
            out = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            out.flags.writeable = False
            return out

        def flags(values: list[bool]) -> np.ndarray:
            out = np.array(values, dtype=np.bool_)
            out.flags.writeable = False
            return out

        return AssetArrays(
            asset_ids=ids,
            multiplier=column("multiplier"),
            tick_size=column("tick_size"),
            lot_size=column("lot_size"),
            min_quantity=column("min_quantity"),
            initial_margin=column("initial_margin"),
            maintenance_margin=column("maintenance_margin"),
            borrow_rate=column("borrow_rate"),
            is_future=flags([s.is_future for s in specs]),
            shortable=flags([s.shortable for s in specs]),
        )

    def __contains__(self, asset_id: object) -> bool:
        return asset_id in self._specs

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for spec in self._specs.values():
            counts[spec.asset_class] = counts.get(spec.asset_class, 0) + 1
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        listed = f"{len(self)} assets" + (f" ({kinds})" if kinds else "")
        return f"AssetRegistry({listed}, default={self.default!r}, source={self.source!r})"


class _UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc]
    """A safe YAML loader that rejects a key repeated in one mapping."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise _Problem(f"asset {key!r} is listed twice (line {key_node.start_mark.line + 1})")
        seen.add(key)
    return dict(loader.construct_mapping(node, deep=True))


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def _load_json(text: str) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise _Problem(f"asset {key!r} is listed twice")
            out[key] = value
        return out

    return json.loads(text, object_pairs_hook=pairs)
