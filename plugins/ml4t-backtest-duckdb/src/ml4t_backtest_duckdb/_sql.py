"""SQL text for the DuckDB feed: quoting, query wrapping and window bounds.

The feed's clock speaks int64 nanoseconds since the epoch (UTC); DuckDB columns are
``TIMESTAMP`` (naive, microseconds), ``TIMESTAMP_S``/``_MS``/``_NS``, ``TIMESTAMPTZ`` or
``DATE``. A window bound is turned into a constant *of the column's own type*, so the
comparison happens in that type and DuckDB can push it into the scan (skipping row groups
by their min/max), instead of wrapping every row's value in a conversion function.

``TIMESTAMP_NS`` is the exception to exactness: DuckDB 1.0 parses a literal only to the
microsecond (and its ``epoch_ns`` drops the nanoseconds too), so for such columns the SQL
window is widened to whole microseconds and the feed trims the fetched rows to the exact
nanosecond bounds.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from ml4t.backtest import ConfigError

__all__ = [
    "bound_sql",
    "bound_value",
    "normalise_chunk_size",
    "quote_ident",
    "short_query",
    "source_sql",
]

# DuckDB type name (as DESCRIBE spells it) -> (nanoseconds per stored unit, digits of the
# fraction of a second written; -1 writes a date only).
_TYPE_UNITS: dict[str, tuple[int, int]] = {
    "TIMESTAMP_S": (1_000_000_000, 0),
    "TIMESTAMP_MS": (1_000_000, 3),
    "TIMESTAMP": (1_000, 6),
    "TIMESTAMP WITH TIME ZONE": (1_000, 6),
    "TIMESTAMP_NS": (1, 6),
    "DATE": (86_400_000_000_000, -1),
}
_EPOCH = datetime(1970, 1, 1)
_LITERAL_NS = 1_000  # the finest literal every supported DuckDB version parses exactly

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$")
_CHUNK = re.compile(r"^(\d+)\s*([a-z]+)$")
_CHUNK_UNITS = {
    "d": "d",
    "day": "d",
    "days": "d",
    "w": "w",
    "week": "w",
    "weeks": "w",
    "mo": "mo",
    "month": "mo",
    "months": "mo",
    "y": "y",
    "year": "y",
    "years": "y",
}


def quote_ident(name: str) -> str:
    """Return ``name`` as a double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def source_sql(query: str) -> str:
    """Return the SELECT text for ``query``: a SELECT as given, or ``SELECT * FROM`` a table.

    Raises
    ------
    ConfigError
        ``query`` is empty.
    """
    text = query.strip().rstrip(";").strip()
    if not text:
        raise ConfigError("query: expected a SELECT statement or a table name, got an empty string")
    if _TABLE_NAME.match(text):
        return "SELECT * FROM " + ".".join(quote_ident(part) for part in text.split("."))
    return text


def short_query(query: str, limit: int = 120) -> str:
    """Return ``query`` on one line, cut to ``limit`` characters, for messages."""
    text = " ".join(query.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def bound_sql(column_type: str) -> str | None:
    """Return the SQL expression a bound parameter is cast with, or None if unsupported.

    ``column_type`` is the DuckDB type name of the timestamp column.
    """
    kind = column_type.upper()
    return f"CAST(? AS {kind})" if kind in _TYPE_UNITS else None


def bound_value(ns: int, column_type: str, *, upper: bool) -> str:
    """Return the text of a window bound, in the column's type, for ``bound_sql``.

    A stored value ``v`` (in the column's unit ``u`` nanoseconds) stands for ``v * u``
    ns, so ``v * u >= ns`` holds exactly when ``v >= ceil(ns / u)``; the same ceiling
    serves the exclusive upper bound (``v * u < ns`` iff ``v < ceil(ns / u)``). Rounding
    either bound any other way would drop or repeat rows at a window edge. For
    ``TIMESTAMP_NS`` the lower bound is rounded down and the upper one up to whole
    microseconds, a window slightly too wide that the caller trims exactly.
    """
    kind = column_type.upper()
    unit_ns, digits = _TYPE_UNITS[kind]
    if unit_ns < _LITERAL_NS and not upper:
        count = ns // _LITERAL_NS * _LITERAL_NS
    else:
        step = max(unit_ns, _LITERAL_NS)
        count = -(-ns // step) * step
    seconds, frac_ns = divmod(count, 1_000_000_000)
    moment = _EPOCH + timedelta(seconds=seconds)
    if digits < 0:
        return moment.strftime("%Y-%m-%d")
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    if digits:
        text += "." + f"{frac_ns:09d}"[:digits]
    if kind == "TIMESTAMP WITH TIME ZONE":
        text += "+00:00"
    return text


def normalise_chunk_size(chunk_size: str | None) -> str | None:
    """Return ``chunk_size`` in the clock's spelling (``"1mo"``, ``"2w"``, ``"7d"``).

    Accepts polars-style durations (``"1mo"``, ``"1w"``, ``"1d"``), the long forms
    (``"1 month"``, ``"2 weeks"``) and years (``"1y"`` becomes ``"12mo"``). ``None``
    means no streaming: the whole query is read in one window.

    Raises
    ------
    ConfigError
        The text is not such a duration.
    """
    if chunk_size is None:
        return None
    match = _CHUNK.match(str(chunk_size).strip().lower())
    unit = _CHUNK_UNITS.get(match.group(2)) if match else None
    if match is None or unit is None or int(match.group(1)) <= 0:
        raise ConfigError(
            f"chunk_size: {chunk_size!r} is not a duration like '1mo', '2w', '7d' or '1y'"
        )
    n = int(match.group(1))
    return f"{12 * n}mo" if unit == "y" else f"{n}{unit}"
