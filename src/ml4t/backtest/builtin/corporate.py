"""Corporate actions (splits and cash dividends) from a table of events.

:class:`CorporateActions` validates a frame of events once; :meth:`CorporateActions.schedule`
turns it into an :class:`ActionSchedule` keyed by asset code, which the engine asks once per
session for what happens that day. Apply these only to **unadjusted** prices: data that is
already split- or dividend-adjusted would count each action twice.

Columns
-------
``asset_id`` (or ``symbol``), ``action`` (``"split"`` or ``"dividend"``, any case),
``ex_date``, and per action:

- split: ``ratio`` > 0, new shares per old share (3-for-2 = 1.5, a reverse 1-for-10 = 0.1);
- dividend: ``amount`` >= 0, cash per share, and optional ``pay_date`` >= ``ex_date``
  (missing or null = paid on the ex-date).

Other columns are ignored, so a vendor file can be passed as it is.

Dates
-----
Dates become calendar **day numbers**: days since 1970-01-01 of the date *as written*.
A datetime contributes its date part in its own timezone, with no conversion (``2024-03-01
23:30-05:00`` is day 19783, 2024-03-01, not the UTC date); an ISO string contributes its
first ten characters (``YYYY-MM-DD``). :func:`session_days` turns engine timestamps into the
same numbers, in the data's timezone.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from ..errors import DataValidationError

__all__ = [
    "ActionSchedule",
    "CorporateActions",
    "DividendEx",
    "DividendPay",
    "Split",
    "day_number",
    "session_days",
]

ROW = "__row"
_NS_PER_DAY = 86_400_000_000_000
_EPOCH = date(1970, 1, 1)
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}(?:[T ].*)?$"
_SCHEMA = {
    ROW: pl.Int64,
    "asset_id": pl.String,
    "action": pl.String,
    "ex_day": pl.Int64,
    "ratio": pl.Float64,
    "amount": pl.Float64,
    "pay_day": pl.Int64,
}


class Split(NamedTuple):
    """A split of asset ``code`` effective at the open of ``ex_day``: quantity x ratio."""

    code: int
    asset_id: str
    ex_day: int
    ratio: float
    row: int = -1  # source row, 0-based


class DividendEx(NamedTuple):
    """A cash dividend going ex on ``ex_day``: holders at the previous close are entitled."""

    code: int
    asset_id: str
    ex_day: int
    pay_day: int
    amount: float
    row: int = -1  # source row, 0-based; pairs this with its DividendPay


class DividendPay(NamedTuple):
    """The payment of a dividend (same fields as its :class:`DividendEx`) on ``pay_day``."""

    code: int
    asset_id: str
    ex_day: int
    pay_day: int
    amount: float
    row: int = -1


def day_number(value: date | datetime | str) -> int:
    """Return the day number (days since 1970-01-01) of a date, datetime or ISO string.

    A datetime counts by its own date part (no timezone conversion); a string by its
    leading ``YYYY-MM-DD``.
    """
    if isinstance(value, datetime):
        value = value.date()
    elif isinstance(value, str):
        text = value.strip()
        if not re.match(_ISO_DATE, text):
            raise ValueError(f"not an ISO date: {value!r}")
        value = date.fromisoformat(text[:10])
    if not isinstance(value, date):
        raise TypeError(f"expected a date, datetime or ISO string, got {type(value).__name__}")
    return (value - _EPOCH).days


def session_days(ts_ns: Sequence[int] | np.ndarray, timezone: str | None = None) -> np.ndarray:
    """Return the day numbers of engine timestamps (int ns since the epoch, UTC).

    Parameters
    ----------
    ts_ns : array-like of int
        Timestamps as the engine stores them; naive data stores wall time as if UTC.
    timezone : str, optional
        The data's timezone; each timestamp counts by its local date there.

    Returns
    -------
    numpy.ndarray
        int64 day numbers, comparable with the ``ex_day``/``pay_day`` of the actions.
    """
    ns = np.asarray(ts_ns, dtype=np.int64)
    if timezone is None:
        return np.floor_divide(ns, _NS_PER_DAY)
    stamps = pl.Series(ns).cast(pl.Datetime("ns")).dt.replace_time_zone("UTC")
    local = stamps.dt.convert_time_zone(timezone).dt.date()
    return local.cast(pl.Int64).to_numpy()


class ActionSchedule:
    """Actions of the traded assets, sorted by day, served one session at a time.

    Built by :meth:`CorporateActions.schedule`. :meth:`between` is meant to be called with
    increasing days; consecutive calls (``prev_day`` equal to the last ``day``) continue
    from a pointer and cost a list slice, any other call re-seeks by bisection.
    """

    def __init__(
        self, splits: list[Split], dividends: list[DividendEx], payments: list[DividendPay]
    ) -> None:
        self._streams: tuple[list[Any], list[Any], list[Any]] = (splits, dividends, payments)
        self._days = (
            [s.ex_day for s in splits],
            [d.ex_day for d in dividends],
            [p.pay_day for p in payments],
        )
        self._empty = not (splits or dividends or payments)
        self.reset()

    def reset(self) -> None:
        """Rewind to before the first session."""
        self._last: int | None = None
        self._ptr = [0, 0, 0]

    def between(
        self, prev_day: int | None, day: int
    ) -> tuple[list[Split], list[DividendEx], list[DividendPay]]:
        """Return the actions taking effect after ``prev_day`` up to and including ``day``.

        Parameters
        ----------
        prev_day : int or None
            Day number of the previous session; ``None`` takes everything up to ``day``.
            An ex-date on a weekend or holiday therefore lands on the next session.
        day : int
            Day number of the current session.

        Returns
        -------
        splits, dividends, payments : list
            Splits and dividends with ``prev_day < ex_day <= day``, and dividend payments
            with ``prev_day < pay_day <= day``; each sorted by (day, asset code, source
            row). A dividend whose ex- and pay-days fall in one window is in both lists;
            record its entitlement before paying it.
        """
        if self._empty:
            return [], [], []
        out: list[list[Any]] = []
        fast = prev_day is not None and prev_day == self._last
        for k in range(3):
            days = self._days[k]
            if prev_day is None:
                lo = 0
            elif fast:
                lo = self._ptr[k]
            else:
                lo = bisect_right(days, prev_day)
            hi = bisect_right(days, day, lo) if lo < len(days) and days[lo] <= day else lo
            self._ptr[k] = hi
            out.append(self._streams[k][lo:hi])
        self._last = day
        return out[0], out[1], out[2]

    def __len__(self) -> int:
        return len(self._streams[0]) + len(self._streams[1])

    def __repr__(self) -> str:
        splits, dividends, _ = self._streams
        return f"ActionSchedule(splits={len(splits)}, dividends={len(dividends)})"


class CorporateActions:
    """Validated splits and dividends.

    Parameters
    ----------
    events : polars/pandas DataFrame, list of dicts, str or Path, optional
        The events (columns in the module docstring), or a ``.csv``/``.parquet`` file of
        them; ``None`` for none.
    source : str, optional
        Name for error messages; defaults to the file path for a file.

    Attributes
    ----------
    frame : polars.DataFrame
        The normalised events: ``__row`` (source row), ``asset_id``, ``action``,
        ``ex_day``, ``ratio`` (splits), ``amount`` and ``pay_day`` (dividends).

    Raises
    ------
    DataValidationError
        A required column is missing, a value is null, unparsable or out of range, an
        action is unknown, or an asset has two splits on one ex-date; the message names
        the source, the row (0-based) and the column.
    """

    def __init__(self, events: Any = None, source: str | None = None) -> None:
        if source is None and isinstance(events, str | Path):
            source = str(events)
        self.source = source
        self.label = "corporate actions" + (f" ({source})" if source else "")
        self.frame = _normalise(_to_frame(events, self.label), self.label)

    @property
    def n_splits(self) -> int:
        """Return the number of splits."""
        return int((self.frame["action"] == "split").sum())

    @property
    def n_dividends(self) -> int:
        """Return the number of dividends."""
        return int((self.frame["action"] == "dividend").sum())

    @property
    def asset_ids(self) -> list[str]:
        """Return the assets with at least one action, sorted."""
        return sorted(self.frame["asset_id"].unique().to_list())

    def check(self, asset_ids: Iterable[str]) -> list[str]:
        """Return one warning per asset with actions that is not in ``asset_ids``."""
        known = set(asset_ids)
        counts = (
            self.frame.filter(~pl.col("asset_id").is_in(list(known)))
            .group_by("asset_id")
            .agg(
                (pl.col("action") == "split").sum().alias("splits"),
                (pl.col("action") == "dividend").sum().alias("dividends"),
            )
            .sort("asset_id")
        )
        warnings = []
        for asset_id, n_splits, n_dividends in counts.iter_rows():
            parts = [_plural(n_splits, "split"), _plural(n_dividends, "dividend")]
            what = " and ".join(p for p in parts if p)
            warnings.append(
                f"{self.label}: asset {asset_id!r} has {what} but is not in the data; ignored"
            )
        return warnings

    def schedule(self, asset_ids: Sequence[str]) -> ActionSchedule:
        """Return the actions of ``asset_ids``, coded by position in it; others are ignored."""
        codes: dict[str, int] = {}
        for code, asset_id in enumerate(asset_ids):
            codes.setdefault(asset_id, code)
        lookup = pl.DataFrame(
            {"asset_id": list(codes), "code": list(codes.values())},
            schema={"asset_id": pl.String, "code": pl.Int64},
        )
        df = self.frame.join(lookup, on="asset_id", how="inner")
        splits = df.filter(pl.col("action") == "split").sort("ex_day", "code", ROW)
        divs = df.filter(pl.col("action") == "dividend")
        ex_cols = ["code", "asset_id", "ex_day", "pay_day", "amount", ROW]
        return ActionSchedule(
            [Split(*r) for r in splits.select("code", "asset_id", "ex_day", "ratio", ROW).rows()],
            [DividendEx(*r) for r in divs.sort("ex_day", "code", ROW).select(ex_cols).rows()],
            [
                DividendPay(*r)
                for r in divs.sort("pay_day", "code", "ex_day", ROW).select(ex_cols).rows()
            ],
        )

    def __len__(self) -> int:
        return self.frame.height

    def __repr__(self) -> str:
        n_assets = self.frame["asset_id"].n_unique()
        where = f", source={self.source!r}" if self.source else ""
        return (
            f"CorporateActions(splits={self.n_splits}, dividends={self.n_dividends}, "
            f"assets={n_assets}{where})"
        )


def _plural(n: int, word: str) -> str:
    return "" if n == 0 else f"{n} {word}" + ("" if n == 1 else "s")


# -- loading and validation ---------------------------------------------------------------


def _to_frame(events: Any, label: str) -> pl.DataFrame:
    if events is None:
        return pl.DataFrame()
    if isinstance(events, pl.LazyFrame):
        events = events.collect()
    if isinstance(events, pl.DataFrame):
        return events
    if isinstance(events, str | Path):
        return _read_file(Path(events), label)
    if type(events).__module__.startswith("pandas"):
        try:
            return pl.from_pandas(events)
        except Exception as exc:
            raise DataValidationError(f"{label}: cannot convert the pandas frame: {exc}") from exc
    if isinstance(events, list | tuple):
        return _from_rows(events, label)
    raise DataValidationError(
        f"{label}: expected a polars or pandas DataFrame, a list of dicts or a .csv/.parquet "
        f"path, got {type(events).__name__}"
    )


def _from_rows(rows: Sequence[Any], label: str) -> pl.DataFrame:
    """Build a frame from dicts; dates become ISO text so mixed date/str columns load."""
    columns: dict[str, list[Any]] = {}
    for row, item in enumerate(rows):
        if not isinstance(item, Mapping):
            raise DataValidationError(
                f"{label}: row {row}: expected a mapping of columns, got {type(item).__name__}"
            )
        for key in item:
            columns.setdefault(str(key), [])
    for item in rows:
        for key, values in columns.items():
            value = item.get(key)
            if isinstance(value, datetime):
                value = value.date()
            values.append(value.isoformat() if isinstance(value, date) else value)
    for key, values in columns.items():
        if any(isinstance(v, str) for v in values):  # parsed as text like a CSV column
            columns[key] = [None if v is None else str(v) for v in values]
    try:
        return pl.DataFrame(columns, strict=False)
    except Exception as exc:
        raise DataValidationError(f"{label}: cannot build a frame from the rows: {exc}") from exc


def _read_file(path: Path, label: str) -> pl.DataFrame:
    if not path.is_file():
        raise DataValidationError(f"{label}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pl.read_csv(path, infer_schema=False)  # every column as text, parsed below
        if suffix in (".parquet", ".pq"):
            return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataValidationError(f"{label}: cannot read: {exc}") from exc
    raise DataValidationError(f"{label}: unsupported file type {suffix!r}; use .csv or .parquet")


def _first(df: pl.DataFrame, cond: pl.Expr) -> dict[str, Any] | None:
    """Return the first row (as a dict) where ``cond`` holds, or ``None``."""
    hit = df.filter(cond).head(1)
    return hit.row(0, named=True) if hit.height else None


def _fail_first(df: pl.DataFrame, cond: pl.Expr, message: Callable[[dict[str, Any]], str]) -> None:
    """Raise ``message(row)`` for the first row where ``cond`` holds."""
    row = _first(df, cond)
    if row is not None:
        raise DataValidationError(message(row))


def _days(df: pl.DataFrame, col: str, label: str) -> pl.Expr:
    """Return an expression of ``col`` as Int64 day numbers; null where null/unparsable."""
    dtype = df.schema[col]
    if dtype == pl.Date:
        return pl.col(col).cast(pl.Int64)
    if isinstance(dtype, pl.Datetime):
        return pl.col(col).dt.date().cast(pl.Int64)  # local date, no conversion
    if dtype == pl.String:
        text = pl.col(col).str.strip_chars()
        parsed = text.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
        return pl.when(text.str.contains(_ISO_DATE)).then(parsed).cast(pl.Int64)
    if dtype == pl.Null:
        return pl.lit(None, pl.Int64)
    raise DataValidationError(
        f"{label}: column {col!r} must hold dates, datetimes or ISO date strings, got {dtype}"
    )


def _numbers(df: pl.DataFrame, col: str, label: str) -> pl.Expr:
    """Return an expression of ``col`` as Float64; null where null/unparsable."""
    dtype = df.schema[col]
    if dtype.is_numeric():
        return pl.col(col).cast(pl.Float64)
    if dtype == pl.String:
        return pl.col(col).str.strip_chars().cast(pl.Float64, strict=False)
    if dtype == pl.Null:
        return pl.lit(None, pl.Float64)
    raise DataValidationError(f"{label}: column {col!r} must hold numbers, got {dtype}")


def _normalise(raw: pl.DataFrame, label: str) -> pl.DataFrame:
    """Validate the events and return them in the :attr:`CorporateActions.frame` shape."""
    if raw.height == 0:
        return pl.DataFrame(schema=_SCHEMA)
    id_col = "asset_id" if "asset_id" in raw.columns else "symbol"
    for col in (id_col, "action", "ex_date"):
        if col not in raw.columns:
            named = "'asset_id' (or 'symbol')" if col == "symbol" else repr(col)
            raise DataValidationError(
                f"{label}: missing required column {named}; columns: {', '.join(raw.columns)}"
            )
    df = raw.with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64))
    asset = pl.col(id_col).cast(pl.String).str.strip_chars()
    action = pl.col("action").cast(pl.String).str.strip_chars().str.to_lowercase()
    df = df.with_columns(asset.alias("__asset"), action.alias("__action"))
    _fail_first(
        df,
        pl.col("__asset").is_null() | (pl.col("__asset") == ""),
        lambda r: f"{label}: row {r[ROW]}: column {id_col!r} is empty",
    )
    _fail_first(
        df,
        ~pl.col("__action").is_in(["split", "dividend"]) | pl.col("__action").is_null(),
        lambda r: (
            f"{label}: row {r[ROW]}: column 'action' must be 'split' or 'dividend', "
            f"got {r['action']!r}"
        ),
    )
    df = df.with_columns(_days(df, "ex_date", label).alias("ex_day"))
    _fail_first(
        df,
        pl.col("ex_day").is_null(),
        lambda r: (
            f"{label}: row {r[ROW]}: column 'ex_date' is null"
            if r["ex_date"] is None
            else f"{label}: row {r[ROW]}: column 'ex_date' is not a date: {r['ex_date']!r} "
            "(use YYYY-MM-DD)"
        ),
    )
    is_split = pl.col("__action") == "split"
    df = _check_amounts(df, is_split, label)
    _check_duplicate_splits(df, is_split, label)
    return df.select(
        pl.col(ROW),
        pl.col("__asset").alias("asset_id"),
        pl.col("__action").alias("action"),
        pl.col("ex_day"),
        pl.when(is_split).then(pl.col("ratio")).alias("ratio"),
        pl.when(~is_split).then(pl.col("amount")).alias("amount"),
        pl.when(~is_split).then(pl.col("pay_day")).alias("pay_day"),
    )


def _check_amounts(df: pl.DataFrame, is_split: pl.Expr, label: str) -> pl.DataFrame:
    """Check ratio (splits), amount and pay_date (dividends); add parsed columns."""
    kinds = (("ratio", "split", is_split), ("amount", "dividend", ~is_split))
    for col, action, rows in kinds:
        first = df.filter(rows).head(1)
        if col not in df.columns:
            if first.height:
                raise DataValidationError(
                    f"{label}: missing column {col!r}, required for {action} rows "
                    f"(first at row {first[ROW][0]})"
                )
            df = df.with_columns(pl.lit(None, pl.Float64).alias(col))
            continue
        df = df.with_columns(_numbers(df, col, label).alias(f"__{col}"))
        _check_number_column(df, col, action, rows, label)
        df = df.drop(col).rename({f"__{col}": col})
    if "pay_date" in df.columns:
        df = df.with_columns(_days(df, "pay_date", label).alias("pay_day"))
        _fail_first(
            df,
            ~is_split & pl.col("pay_day").is_null() & pl.col("pay_date").is_not_null(),
            lambda r: (
                f"{label}: row {r[ROW]}: column 'pay_date' is not a date: {r['pay_date']!r} "
                "(use YYYY-MM-DD)"
            ),
        )
        _fail_first(
            df,
            ~is_split & (pl.col("pay_day") < pl.col("ex_day")),
            lambda r: (
                f"{label}: row {r[ROW]}: column 'pay_date' ({_iso(r['pay_day'])}) is before "
                f"'ex_date' ({_iso(r['ex_day'])})"
            ),
        )
        return df.with_columns(pl.col("pay_day").fill_null(pl.col("ex_day")))
    return df.with_columns(pl.col("ex_day").alias("pay_day"))


def _check_number_column(
    df: pl.DataFrame, col: str, action: str, rows: pl.Expr, label: str
) -> None:
    """Raise for the first ``action`` row whose parsed ``col`` is missing or out of range."""
    value = pl.col(f"__{col}")
    bad = value <= 0 if action == "split" else value < 0
    bound = "> 0" if action == "split" else ">= 0"
    hit = _first(df, rows & value.is_null())
    if hit is not None:
        raw = hit[col]
        problem = f"is null in a {action} row" if raw is None else f"is not a number: {raw!r}"
    elif (hit := _first(df, rows & (value.is_nan() | value.is_infinite()))) is not None:
        problem = f"must be finite for a {action}, got {hit[f'__{col}']}"
    elif (hit := _first(df, rows & bad)) is not None:
        problem = f"must be {bound} for a {action}, got {hit[f'__{col}']}"
    else:
        return
    raise DataValidationError(f"{label}: row {hit[ROW]}: column {col!r} {problem}")


def _check_duplicate_splits(df: pl.DataFrame, is_split: pl.Expr, label: str) -> None:
    key = pl.struct("__asset", "ex_day")
    dups = df.filter(is_split).filter(key.is_duplicated()).sort(ROW)
    if dups.height:
        asset, day = dups["__asset"][0], dups["ex_day"][0]
        same = dups.filter((pl.col("__asset") == asset) & (pl.col("ex_day") == day))
        raise DataValidationError(
            f"{label}: rows {same[ROW][0]} and {same[ROW][1]}: asset {asset!r} has two splits "
            f"with ex_date {_iso(day)}; give one split with the combined ratio"
        )


def _iso(day: int) -> str:
    return date.fromordinal(_EPOCH.toordinal() + day).isoformat()
