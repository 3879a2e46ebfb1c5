"""Boundary validation of market data frames.

Each check is one vectorised polars pass; the first offending row is looked up only when a
check fails, so clean data pays a handful of column scans and nothing per row. Messages
name the source, the column, the source row number (0-based, in file/frame order), the
timestamp and the asset.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from ..core.data import make_ts_converter
from ..errors import DataValidationError

ROW = "__ml4t_row"
TS = "timestamp"
ASSET = "asset_id"
OHLC = ("open", "high", "low", "close")


def _duplicated(df: pl.DataFrame) -> pl.Expr:
    """Flag repeated keys: (timestamp, asset) in long frames, timestamp otherwise.

    A single-asset frame is checked for sortedness in the same pass, so a repeated
    timestamp there is simply a zero step, which is much cheaper than hashing.
    """
    if ASSET in df.columns:
        return pl.struct([TS, ASSET]).is_duplicated()
    step = pl.col(TS).diff()
    return (step == 0) | (step.shift(-1) == 0)


def _maybe_duplicated(df: pl.DataFrame) -> pl.Expr:
    """Cheap screen for repeated keys in a frame sorted by timestamp: adjacent rows only.

    True when a timestamp repeats with the same asset, or its assets are not in ascending
    order (where a repeat need not be adjacent); the exact check (:func:`_duplicated`,
    a hash over every key) then runs only for such frames.
    """
    same = pl.col(TS).diff() == 0
    if ASSET not in df.columns:
        return same.any()
    return (same & (pl.col(ASSET) <= pl.col(ASSET).shift(1))).any()


def first_row_where(df: pl.DataFrame, cond: pl.Expr) -> dict[str, object] | None:
    """Return the first row (as a dict) where ``cond`` holds, or ``None``."""
    hit = df.filter(cond).head(1)
    return hit.row(0, named=True) if hit.height else None


def where(row: dict[str, object], has_asset: bool, timezone: str | None = None) -> str:
    """Describe a row's position: source row, timestamp (ISO format) and asset."""
    ts = row.get(TS)
    shown = make_ts_converter(timezone)(ts).isoformat() if isinstance(ts, int) else ts
    text = f"row {row.get(ROW)}, timestamp {shown}"
    if has_asset:
        text += f", asset {row.get(ASSET)!r}"
    return text


def _any_problem(df: pl.DataFrame, value_columns: list[str], keys_checked: bool = False) -> bool:
    """Run every row check in one parallel polars query; True if any fails."""
    cols = [] if keys_checked else [TS, ASSET] if ASSET in df.columns else [TS]
    px = [pl.col(c) for c in OHLC]
    checks = [
        *(pl.col(c).is_null().any() for c in cols),
        *(pl.col(c).is_null().any() | pl.col(c).is_nan().any() for c in (*OHLC, "volume")),
        *(((p <= 0) | p.is_infinite()).any() for p in px),
        ((pl.col("volume") < 0) | pl.col("volume").is_infinite()).any(),
        (pl.col("high") < pl.col("low")).any(),
        *(
            ((pl.col(c) > pl.col("high")) | (pl.col(c) < pl.col("low"))).any()
            for c in ("close", "open")
        ),
        *(pl.col(c).is_infinite().any() for c in value_columns),
    ]
    if not keys_checked:
        checks += [(pl.col(TS).diff() < 0).any(), _maybe_duplicated(df)]
    flags = df.select(pl.any_horizontal(checks).alias("bad"))
    return bool(flags["bad"][0])


def validate_rows(
    df: pl.DataFrame,
    source: str,
    value_columns: list[str],
    timezone: str | None = None,
    keys_checked: bool = False,
) -> None:
    """Validate prices, volume and value columns of a normalised frame.

    ``df`` has columns ``timestamp`` (int64 ns), optional ``asset_id``, OHLCV, the value
    columns and the source row number. All checks run in one parallel pass; only when
    one fails are they repeated one by one to find and name the first offending row.
    ``keys_checked``: the timestamps and assets (nulls, order, duplicates) were already
    checked for the whole source (a lazy feed's key scan), so the screen skips them.
    Raises :class:`DataValidationError` on the first failing check.
    """
    if not df.height or not _any_problem(df, value_columns, keys_checked):
        return
    has_asset = ASSET in df.columns
    key_cols = [TS, ASSET] if has_asset else [TS]
    for col in key_cols:
        row = first_row_where(df, pl.col(col).is_null())
        if row is not None:
            raise DataValidationError(
                f"{source}: column {col!r} has a null value at row {row[ROW]}"
            )
    for col in (*OHLC, "volume"):
        row = first_row_where(df, pl.col(col).is_null() | pl.col(col).is_nan())
        if row is not None:
            raise DataValidationError(
                f"{source}: column {col!r} is null/NaN at {where(row, has_asset, timezone)}"
            )
    for col in OHLC:
        row = first_row_where(df, (pl.col(col) <= 0) | pl.col(col).is_infinite())
        if row is not None:
            raise DataValidationError(
                f"{source}: column {col!r} must be positive and finite, got {row[col]!r} "
                f"at {where(row, has_asset, timezone)}"
            )
    row = first_row_where(df, (pl.col("volume") < 0) | pl.col("volume").is_infinite())
    if row is not None:
        raise DataValidationError(
            f"{source}: column 'volume' must be >= 0 and finite, got {row['volume']!r} "
            f"at {where(row, has_asset, timezone)}"
        )
    row = first_row_where(df, pl.col("high") < pl.col("low"))
    if row is not None:
        raise DataValidationError(
            f"{source}: column 'high' ({row['high']!r}) is below 'low' ({row['low']!r}) "
            f"at {where(row, has_asset, timezone)}"
        )
    for col in ("close", "open"):
        cond = (pl.col(col) > pl.col("high")) | (pl.col(col) < pl.col("low"))
        row = first_row_where(df, cond)
        if row is not None:
            raise DataValidationError(
                f"{source}: column {col!r} ({row[col]!r}) is outside [low, high] = "
                f"[{row['low']!r}, {row['high']!r}] at {where(row, has_asset, timezone)}"
            )
    for col in value_columns:
        row = first_row_where(df, pl.col(col).is_infinite())
        if row is not None:
            raise DataValidationError(
                f"{source}: column {col!r} is infinite at {where(row, has_asset, timezone)}; "
                "use NaN for a missing value"
            )
    check_order(df, source, timezone)


def check_text_numbers(
    df: pl.DataFrame,
    source: str,
    text_columns: Mapping[str, tuple[str, str]],
    timezone: str | None = None,
) -> None:
    """Raise on the first price given as text that is not a number.

    ``text_columns`` maps a price column (already cast to Float64, non-numbers null) to
    ``(source column name, column holding the original text)``: a row whose text is
    present but whose number is null holds text such as ``"n/a"``.
    """
    has_asset = ASSET in df.columns
    for col, (name, text) in text_columns.items():
        row = first_row_where(df, pl.col(col).is_null() & pl.col(text).is_not_null())
        if row is not None:
            raise DataValidationError(
                f"{source}: column {name!r} holds text that is not a number, "
                f"{row[text]!r}, at {where(row, has_asset, timezone)}; prices given as text "
                "must be numbers such as '101.5' (leave a missing price empty/null)"
            )


def check_order(df: pl.DataFrame, source: str, timezone: str | None = None) -> None:
    """Raise if timestamps decrease or a (timestamp, asset) pair repeats."""
    has_asset = ASSET in df.columns
    row = first_row_where(df, pl.col(TS).diff() < 0)
    if row is not None:
        raise unsorted_error(source, where(row, has_asset, timezone))
    row = first_row_where(df, _duplicated(df))
    if row is not None:
        raise duplicate_error(source, has_asset, where(row, has_asset, timezone))


def unsorted_error(source: str, at: str) -> DataValidationError:
    """The error for a timestamp that comes after a later one (``at`` names the row)."""
    return DataValidationError(
        f"{source}: column 'timestamp' is not sorted ascending: {at} comes after a later "
        "timestamp; sort the data by timestamp first"
    )


def duplicate_error(source: str, has_asset: bool, at: str) -> DataValidationError:
    """The error for a repeated (timestamp, asset) pair, or timestamp of a single asset."""
    what = "(timestamp, asset) pair" if has_asset else "timestamp"
    return DataValidationError(
        f"{source}: duplicate {what} at {at}; each asset may have one bar per timestamp"
    )
