"""The DuckDB feed: bars and signals from a SQL query, read one time window at a time.

At construction the feed asks DuckDB for the query's columns, its distinct assets and its
first and last timestamp, so nothing but those aggregates is read up front. During a run
the engine's clock calls :meth:`DuckDBFeed.load` once per time window (``chunk_size``),
and each call runs the query wrapped as a subquery with the window's bounds as
parameters. The rows of a window are validated and converted by a
:class:`ml4t.backtest.PolarsDataFeed`, so the checks (positive prices, ``low <= high``,
no duplicate bars, ...) and their messages are the same as for a polars frame.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
import numpy as np
import polars as pl

from ml4t.backtest import ConfigError, DataValidationError, PolarsDataFeed, RawBlock

from ._sql import (
    bound_sql,
    bound_value,
    normalise_chunk_size,
    quote_ident,
    short_query,
    source_sql,
)

__all__ = ["DuckDBFeed"]

_MEMORY = ":memory:"
_TS_ALIASES = ("timestamp", "datetime", "date", "time", "dt")
_ASSET_ALIASES = ("asset_id", "symbol")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class DuckDBFeed:
    """A feed reading bars and signals from a DuckDB database by SQL query.

    Parameters
    ----------
    query : str
        A ``SELECT`` statement, or a table or view name (``"bars"``, ``"main.bars"``).
        Its result needs a timestamp column, ``open, high, low, close, volume`` and, for
        several assets, an ``asset_id`` or ``symbol`` column; names are matched
        case-insensitively as in :class:`ml4t.backtest.PolarsDataFeed`.
    database : str or path, default ":memory:"
        A DuckDB database file, opened read-only. ``":memory:"`` opens an empty
        in-memory database, useful for queries over files
        (``SELECT * FROM read_parquet('bars/*.parquet')``).
    connection : duckdb.DuckDBPyConnection, optional
        An open connection to use instead of ``database`` (needed for an in-memory
        database you filled yourself). The feed never closes it.
    asset_id : str, optional
        Asset of a single-asset query (one without an asset column).
    signal_columns, indicator_columns : list of str, optional
        Columns delivered as ``event.signals`` / ``event.indicators``. By default every
        extra numeric column is a signal.
    timestamp_column, asset_column : str, optional
        Override the column names detected automatically.
    chunk_size : str or None, default "1mo"
        Time window read per query, as a duration (``"1mo"``, ``"2w"``, ``"1d"``,
        ``"1y"``). ``None`` reads everything in one query.
    timezone : str, optional
        IANA zone in which ``TIMESTAMPTZ`` values are delivered. By default they keep
        the connection's ``TimeZone`` setting. Not allowed for naive columns.
    name : str, optional
        Name used in messages (default ``"duckdb:<database>"``).

    Raises
    ------
    ConfigError
        A bad parameter: missing database file, SQL that DuckDB rejects, bad
        ``chunk_size`` or ``timezone``.
    DataValidationError
        The query's result lacks a required column, has a column of the wrong type,
        returns no rows, or has null timestamps or asset ids.

    Notes
    -----
    Timestamps may be ``TIMESTAMP`` (naive), ``TIMESTAMP_S/_MS/_NS``, ``TIMESTAMPTZ``
    (aware) or ``DATE``. Window bounds are compared in the column's own type, so
    ``TIMESTAMPTZ`` rows are windowed by their UTC instant whatever the session zone
    (``TIMESTAMP_NS`` windows are cut to the microsecond in SQL, then trimmed exactly).
    Each window is sorted by timestamp, then asset, by DuckDB.
    """

    def __init__(
        self,
        query: str,
        database: str | os.PathLike[str] = _MEMORY,
        *,
        connection: duckdb.DuckDBPyConnection | None = None,
        asset_id: str | None = None,
        signal_columns: Sequence[str] | None = None,
        indicator_columns: Sequence[str] | None = None,
        timestamp_column: str | None = None,
        asset_column: str | None = None,
        chunk_size: str | None = "1mo",
        timezone: str | None = None,
        name: str | None = None,
    ) -> None:
        if not isinstance(query, str):
            raise ConfigError(f"query: expected a SQL string, got {type(query).__name__}")
        label = _label(database, connection)
        self._name = name or f"duckdb:{label}"
        self._source = f"{self._name} [database {label!r}, query {short_query(query)!r}]"
        try:
            self._sql = source_sql(query)
            self.chunk_size = normalise_chunk_size(chunk_size)
            self._zone = _check_zone(timezone)
        except ConfigError as exc:
            raise ConfigError(f"{self._source}: {exc}") from None
        self._con, self._owns = _connect(database, connection)
        try:
            self._inspect(
                asset_id,
                signal_columns,
                indicator_columns,
                timestamp_column,
                asset_column,
            )
        except BaseException:
            self.close()
            raise

    # --- set-up -------------------------------------------------------------------------
    def _inspect(
        self,
        asset_id: str | None,
        signal_columns: Sequence[str] | None,
        indicator_columns: Sequence[str] | None,
        timestamp_column: str | None,
        asset_column: str | None,
    ) -> None:
        src = self._subquery()
        types = {
            str(row[0]): str(row[1])
            for row in self._fetch(f"DESCRIBE {src}", None, ConfigError).iter_rows()
        }
        empty = self._fetch(f"{src} LIMIT 0", None, ConfigError)
        lower = {c.lower(): c for c in empty.columns}
        ts_col = timestamp_column or next((lower[a] for a in _TS_ALIASES if a in lower), None)
        if ts_col in empty.columns:
            empty = self._localise(empty, ts_col)
        # The same checks and column resolution as a polars frame, on zero rows.
        shape = PolarsDataFeed(
            empty,
            asset_id,
            signal_columns=signal_columns,
            indicator_columns=indicator_columns,
            timestamp_column=timestamp_column,
            asset_column=asset_column,
            name=self._source,
        )
        assert ts_col is not None  # PolarsDataFeed raised otherwise
        self._ts_col = ts_col
        self._asset_col = (
            None
            if asset_id is not None
            else asset_column or next((lower[a] for a in _ASSET_ALIASES if a in lower), None)
        )
        self._asset_id = asset_id
        self._signal_names = tuple(shape.signal_names)
        self._indicator_names = tuple(shape.indicator_names)
        self._timezone = shape.timezone
        self._ts_type = types[ts_col]
        self._bounds = self._scan_bounds()
        self._asset_ids = self._scan_assets() if self._asset_col else (str(asset_id),)
        self._index = {a: k for k, a in enumerate(self._asset_ids)}
        self._window_sql = self._make_window_sql()

    def _scan_bounds(self) -> tuple[int, int]:
        ts = quote_ident(self._ts_col)
        stats = self._fetch(
            f"SELECT count(*) AS n_rows, count({ts}) AS n_ts, min({ts}) AS first, "
            f"max({ts}) AS last FROM {self._from()}",
            None,
            DataValidationError,
        )
        n_rows, n_ts = int(stats["n_rows"][0]), int(stats["n_ts"][0])
        if n_rows == 0:
            raise DataValidationError(
                f"{self._source}: the query returned no rows; a feed needs at least one bar"
            )
        if n_ts < n_rows:
            raise DataValidationError(
                f"{self._source}: column {self._ts_col!r} has {n_rows - n_ts} null value(s); "
                "every bar needs a timestamp"
            )
        return _ns(stats, "first"), _ns(stats, "last")

    def _scan_assets(self) -> tuple[str, ...]:
        assert self._asset_col is not None
        col = quote_ident(self._asset_col)
        found = self._fetch(
            f"SELECT DISTINCT CAST({col} AS VARCHAR) AS asset FROM {self._from()}",
            None,
            DataValidationError,
        )["asset"].to_list()
        if None in found:
            raise DataValidationError(
                f"{self._source}: column {self._asset_col!r} has null values; every bar needs "
                "an asset id"
            )
        return tuple(sorted(found))

    def _make_window_sql(self) -> str:
        ts = quote_ident(self._ts_col)
        cast = bound_sql(self._ts_type)
        if cast is None:  # a timestamp type without a known unit: compare as epoch ns
            where = f"epoch_ns({ts}) >= ? AND epoch_ns({ts}) < ?"
        else:
            where = f"{ts} >= {cast} AND {ts} < {cast}"
        order = ts
        if self._asset_col is not None:
            order += f", CAST({quote_ident(self._asset_col)} AS VARCHAR)"
        return f"{self._subquery()} WHERE {where} ORDER BY {order}"

    def _subquery(self) -> str:
        return f"SELECT * FROM {self._from()}"

    def _from(self) -> str:
        # The newline keeps a trailing "-- comment" in the user's SQL from eating ")".
        return f"(\n{self._sql}\n) AS ml4t_src"

    def _fetch(self, sql: str, params: list[Any] | None, error: type[Exception]) -> pl.DataFrame:
        try:
            frame: pl.DataFrame = self._con.sql(sql, params=params).pl()
        except duckdb.Error as exc:
            raise error(f"{self._source}: DuckDB could not run the query: {exc}") from exc
        return frame

    def _localise(self, frame: pl.DataFrame, ts_col: str) -> pl.DataFrame:
        if self._zone is None:
            return frame
        dtype = frame.schema[ts_col]
        if not (isinstance(dtype, pl.Datetime) and dtype.time_zone is not None):
            raise ConfigError(
                f"{self._source}: timezone={self._zone!r} applies to TIMESTAMPTZ columns; "
                f"column {ts_col!r} is {dtype}"
            )
        return frame.with_columns(pl.col(ts_col).dt.convert_time_zone(self._zone))

    # --- Feed protocol ------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Name used in messages (``"duckdb:<database>"`` unless given)."""
        return self._name

    @property
    def asset_ids(self) -> tuple[str, ...]:
        """Assets of the query, sorted; a row's local code is its asset's index here."""
        return self._asset_ids

    @property
    def signal_names(self) -> tuple[str, ...]:
        """Columns delivered as signals."""
        return self._signal_names

    @property
    def indicator_names(self) -> tuple[str, ...]:
        """Columns delivered as indicators."""
        return self._indicator_names

    @property
    def timezone(self) -> str | None:
        """Zone of the timestamps; None for ``TIMESTAMP``/``DATE`` columns."""
        return self._timezone

    @property
    def query(self) -> str:
        """The SELECT statement the feed runs (a table name expanded)."""
        return self._sql

    def time_bounds(self) -> tuple[int, int]:
        """Return the first and last timestamp of the query (int64 ns UTC), inclusive."""
        return self._bounds

    def load(self, start_ns: int, end_ns: int) -> RawBlock:
        """Return the validated rows with ``start_ns <= ts < end_ns`` (one SQL query).

        Rows are sorted by timestamp, then asset; ``code`` indexes :attr:`asset_ids`.

        Raises
        ------
        DataValidationError
            A row of the window fails validation (the message names the column,
            timestamp and asset), or DuckDB fails to run the query.
        """
        cast = bound_sql(self._ts_type)
        params: list[Any] = (
            [start_ns, end_ns]
            if cast is None
            else [
                bound_value(start_ns, self._ts_type, upper=False),
                bound_value(end_ns, self._ts_type, upper=True),
            ]
        )
        frame = self._localise(
            self._fetch(self._window_sql, params, DataValidationError), self._ts_col
        )
        window = PolarsDataFeed(
            frame,
            self._asset_id,
            signal_columns=list(self._signal_names),
            indicator_columns=list(self._indicator_names),
            timestamp_column=self._ts_col,
            asset_column=self._asset_col,
            name=(
                f"{self._source} window [{_iso(start_ns, self._timezone)}, "
                f"{_iso(end_ns, self._timezone)})"
            ),
        )
        raw = window.load(start_ns, end_ns)  # exact bounds (the SQL window may be wider)
        if self._asset_col is None or raw.code.shape[0] == 0:
            return raw
        try:
            mapping = np.asarray([self._index[a] for a in window.asset_ids], dtype=np.int32)
        except KeyError as exc:
            raise DataValidationError(
                f"{self._source}: column {self._asset_col!r} has asset {exc.args[0]!r}, which "
                "was not in the data when the feed was built"
            ) from None
        return RawBlock(raw.ts, mapping[raw.code], raw.cols)

    def context_frames(self) -> Mapping[str, tuple[np.ndarray, np.ndarray]]:
        """Return no market-wide series (this feed carries asset rows only)."""
        return {}

    # --- resources ----------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection if the feed opened it (a given connection stays open)."""
        con = getattr(self, "_con", None)
        if con is not None and getattr(self, "_owns", False):
            con.close()
            self._owns = False

    def __enter__(self) -> DuckDBFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self._source}, assets={len(self._asset_ids)}, "
            f"signals={list(self._signal_names)}, chunk_size={self.chunk_size!r})"
        )


def _label(database: str | os.PathLike[str], connection: object) -> str:
    if connection is None:
        return os.fspath(database)
    try:
        rows = connection.sql(  # type: ignore[attr-defined]
            "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
        ).fetchall()
    except Exception:  # only a label: any failure falls back to a generic one
        return "connection"
    return str(rows[0][0]) if rows and rows[0][0] else "in-memory connection"


def _connect(
    database: str | os.PathLike[str], connection: duckdb.DuckDBPyConnection | None
) -> tuple[duckdb.DuckDBPyConnection, bool]:
    if connection is not None:
        if os.fspath(database) != _MEMORY:
            raise ConfigError(
                f"database {os.fspath(database)!r} and connection= both given; pass one"
            )
        if not callable(getattr(connection, "sql", None)):
            raise ConfigError(
                f"connection: expected a duckdb connection, got {type(connection).__name__}"
            )
        return connection, False
    path = os.fspath(database)
    if path == _MEMORY:
        return duckdb.connect(_MEMORY), True
    if not Path(path).is_file():
        raise ConfigError(
            f"database {path!r}: no such DuckDB file (for an in-memory database pass "
            "connection=...)"
        )
    try:
        return duckdb.connect(path, read_only=True), True
    except duckdb.Error as exc:
        raise ConfigError(
            f"database {path!r}: cannot open it read-only: {exc} (if this process has it "
            "open for writing, pass that connection as connection=...)"
        ) from exc


def _check_zone(timezone: str | None) -> str | None:
    if timezone is None:
        return None
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"timezone: unknown time zone {timezone!r}") from exc
    return timezone


def _ns(frame: pl.DataFrame, col: str) -> int:
    # The same conversion PolarsDataFeed applies to every row, so the bounds agree with it.
    dtype = frame.schema[col]
    zone = dtype.time_zone if isinstance(dtype, pl.Datetime) else None
    return int(frame.select(pl.col(col).cast(pl.Datetime("ns", zone)).dt.epoch("ns")).item())


def _iso(ns: int, zone: str | None) -> str:
    moment = _EPOCH + timedelta(microseconds=ns // 1000)
    if zone is None:
        return moment.replace(tzinfo=None).isoformat()
    return moment.astimezone(ZoneInfo(zone)).isoformat()
