"""Helpers building real DuckDB databases (files and in-memory) from polars frames."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest


def store(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    """Create ``table`` in ``con`` with the rows and column types of ``frame``."""
    con.register("ml4t_test_frame", frame.to_arrow())
    try:
        con.execute(f'CREATE TABLE "{table}" AS SELECT * FROM ml4t_test_frame')
    finally:
        con.unregister("ml4t_test_frame")


@pytest.fixture
def duckdb_file(tmp_path: Path) -> Callable[..., Path]:
    """Return ``make(**tables)``: write frames as tables of a new database file, closed."""

    def make(name: str = "bars.duckdb", **tables: pl.DataFrame) -> Path:
        path = tmp_path / name
        con = duckdb.connect(str(path))
        try:
            for table, frame in tables.items():
                store(con, table, frame)
        finally:
            con.close()
        return path

    return make


@pytest.fixture
def duckdb_memory() -> Iterator[Callable[..., duckdb.DuckDBPyConnection]]:
    """Return ``make(**tables)``: an in-memory connection holding the frames as tables."""
    opened: list[duckdb.DuckDBPyConnection] = []

    def make(**tables: pl.DataFrame) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        opened.append(con)
        for table, frame in tables.items():
            store(con, table, frame)
        return con

    yield make
    for con in opened:
        con.close()
