"""Reading data into polars: frame conversion and the OHLCV CSV loader.

Shared by the core (context frames) and the builtin feeds, so it lives outside both.
"""

from __future__ import annotations

import csv
import glob as globmod
import re
from pathlib import Path
from typing import Any

import polars as pl

from ..errors import DataValidationError
from .data import PRICE_COLUMNS, check_distinct_names

__all__ = ["FeedSource", "read_ohlcv_csv", "to_polars", "to_polars_frame"]

FeedSource = Any  # pl.DataFrame | pl.LazyFrame | pandas.DataFrame | str | Path

_TIME_OF_DAY = re.compile(r"^\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$")


def to_polars(data: FeedSource, source: str) -> pl.DataFrame | pl.LazyFrame:
    """Return ``data`` as a polars DataFrame or LazyFrame.

    Accepts polars frames, pandas DataFrames (a DatetimeIndex becomes a column) and
    Parquet or CSV paths (Parquet also as a glob).
    """
    if isinstance(data, pl.DataFrame | pl.LazyFrame):
        return data
    if isinstance(data, str | Path):
        return _scan_path(str(data))
    if type(data).__module__.startswith("pandas"):
        return _from_pandas(data, source)
    raise DataValidationError(
        f"{source}: expected a polars DataFrame/LazyFrame, a pandas DataFrame or a file "
        f"path, got {type(data).__name__}"
    )


def to_polars_frame(data: FeedSource, source: str) -> pl.DataFrame:
    """Return ``data`` as an eager polars DataFrame (see :func:`to_polars`)."""
    frame = to_polars(data, source)
    return frame.collect() if isinstance(frame, pl.LazyFrame) else frame


def _scan_path(path: str) -> pl.DataFrame | pl.LazyFrame:
    matches = sorted(globmod.glob(path)) if any(ch in path for ch in "*?[") else [path]
    if not matches or not all(Path(m).is_file() for m in matches):
        raise DataValidationError(f"{path}: no such file (or the glob matches nothing)")
    if path.lower().endswith(".csv"):
        return read_ohlcv_csv(path)
    return pl.scan_parquet(path)


def _from_pandas(data: Any, source: str) -> pl.DataFrame:
    import pandas as pd

    frame = data
    if isinstance(frame.index, pd.DatetimeIndex):
        frame = frame.reset_index(names=frame.index.name or "timestamp")
    for col in frame.columns:
        if frame[col].dtype == object and len(frame):
            sample = frame[col].head(10_000)
            kinds = {getattr(v, "tzinfo", None) is not None for v in sample if hasattr(v, "year")}
            if len(kinds) > 1:
                raise DataValidationError(
                    f"{source}: column {col!r} mixes timezone-aware and naive timestamps"
                )
            zones = {str(v.tzinfo) for v in sample if getattr(v, "tzinfo", None) is not None}
            if len(zones) > 1:
                raise DataValidationError(
                    f"{source}: column {col!r} mixes timezones {sorted(zones)}; convert to one"
                )
    try:
        return pl.from_pandas(frame)
    except Exception as exc:
        raise DataValidationError(f"{source}: cannot convert the pandas frame: {exc}") from exc


def _csv_name(header: str) -> str:
    """Return the column name of a CSV header field: ``Adj Close`` -> ``adj_close``."""
    return re.sub(r"\s+", "_", header.strip().lower())


def _read_csv(path: str, names: list[str]) -> pl.DataFrame:
    """Read the rows of ``path`` with polars, naming the columns ``names``.

    polars guesses each column's type from the first rows; a price column whose text is
    not a number further down then fails the whole read. Such a file is read again with
    the price columns as text, so the offending row can be named.
    """
    kwargs: dict[str, Any] = {"has_header": False, "skip_rows": 1, "new_columns": names}
    try:
        return pl.read_csv(path, infer_schema_length=10_000, **kwargs)
    except pl.exceptions.PolarsError as exc:
        prices = {c: pl.String for c in PRICE_COLUMNS if c in names}
        if not prices:
            raise DataValidationError(f"{path}: cannot parse as CSV: {exc}") from exc
        try:
            return pl.read_csv(path, infer_schema_length=10_000, schema_overrides=prices, **kwargs)
        except pl.exceptions.PolarsError:
            raise DataValidationError(f"{path}: cannot parse as CSV: {exc}") from exc


def _numbers_from_text(df: pl.DataFrame, path: str, date_col: str) -> pl.DataFrame:
    """Return ``df`` with price columns read as text turned into numbers.

    Raises on the first entry that is not a number (``"n/a"``), naming the line.
    """
    for col in PRICE_COLUMNS:
        if col not in df.columns or df.schema[col] != pl.String:
            continue
        number = pl.col(col).str.strip_chars().cast(pl.Float64, strict=False)
        bad = (
            df.with_row_index("__line").filter(number.is_null() & pl.col(col).is_not_null()).head(1)
        )
        if bad.height:
            line = int(bad["__line"][0]) + 2
            raise DataValidationError(
                f"{path}: line {line}: column {col!r} is not a number: {bad[col][0]!r} "
                f"(date {bad[date_col][0]}); prices must be numbers (leave a missing one empty)"
            )
        df = df.with_columns(number.alias(col))
    return df


def read_ohlcv_csv(
    path: str | Path, asset_id: str | None = None, *, timezone: str | None = None
) -> pl.DataFrame:
    """Read an OHLCV CSV file (Yahoo-style or Backtrader sample format).

    Column names are lower-cased with spaces turned into underscores (``Adj Close`` ->
    ``adj_close``) and the date column becomes ``timestamp``. A file whose rows carry one
    field more than its header, with a time of day as the second field (Backtrader's
    ``2006-01-02,09:01:00,...`` minute files), is read with date and time combined.

    Parameters
    ----------
    path : str or Path
        The CSV file.
    asset_id : str, optional
        Adds an ``asset_id`` column with this value.
    timezone : str, optional
        Timezone of the timestamps (e.g. ``"America/New_York"``); naive when omitted.

    Returns
    -------
    polars.DataFrame

    Raises
    ------
    DataValidationError
        If the header and the rows disagree in a way other than the one above, two header
        names differ only by case or spacing (``Close`` and ``close``), a date cannot be
        parsed, or a price (open, high, low, close, volume) is not a number (``n/a``); the
        message names the file, and the line and column where there is one.

    Notes
    -----
    Decision: price fields are read as numbers even when quoted (``"101.5"``); text that
    is not a number is an error, never a silent null.
    """
    path = str(path)
    if not Path(path).is_file():
        raise DataValidationError(f"{path}: no such file")
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        first = next(reader, None)
        width = None if first is None else len(first)
        for line, fields in enumerate(reader, start=3):
            if fields and len(fields) != width:
                raise DataValidationError(
                    f"{path}: line {line} has {len(fields)} fields, line 2 has {width}"
                )
    if not header or first is None:
        raise DataValidationError(f"{path}: the file has no header or no data rows")
    check_distinct_names(header, path, _csv_name)
    names = [_csv_name(h) for h in header]
    split_time = False
    if len(first) == len(header) + 1 and _TIME_OF_DAY.match(first[1].strip()):
        split_time = True
        names = [names[0], "__time", *names[1:]]
    elif len(first) != len(header):
        raise DataValidationError(
            f"{path}: the header names {len(header)} columns but line 2 has {len(first)} "
            "fields; fix the header or pass the data as a frame"
        )
    df = _read_csv(path, names)
    if len(df.columns) != len(names):
        raise DataValidationError(
            f"{path}: rows have {len(df.columns)} fields, expected {len(names)}"
        )
    df = _numbers_from_text(df, path, names[0])
    date_col = names[0]
    text = pl.col(date_col).cast(pl.String)
    if split_time:
        text = text + " " + pl.col("__time").cast(pl.String)
        parsed = text.str.to_datetime(strict=False, time_unit="us")
    elif df.schema[date_col] in (pl.Date,) or isinstance(df.schema[date_col], pl.Datetime):
        parsed = pl.col(date_col)
    else:
        parsed = text.str.to_datetime(strict=False, time_unit="us")
    df = df.with_columns(parsed.alias("__ts"))
    bad = df.with_row_index("__line").filter(pl.col("__ts").is_null()).head(1)
    if bad.height:
        line = int(bad["__line"][0]) + 2
        raise DataValidationError(f"{path}: line {line}: cannot parse date {bad[date_col][0]!r}")
    drop = [date_col, "__time"] if split_time else [date_col]
    df = df.drop(drop).rename({"__ts": "timestamp"}).select("timestamp", pl.exclude("timestamp"))
    if timezone is not None:
        ts = pl.col("timestamp").cast(pl.Datetime("us")).dt.replace_time_zone(timezone)
        df = df.with_columns(ts)
    if asset_id is not None:
        df = df.with_columns(pl.lit(asset_id).alias("asset_id"))
    return df
