"""ml4t-backtest-duckdb: a data feed reading bars and signals from DuckDB by SQL query.

Registers the feed ``duckdb`` (alias ``DuckDBFeed``) through ``ml4t_register_feeds``, so a
config can say ``data: {feed: {model: duckdb, params: {database: ..., query: ...}}}``.
The entry point (group ``ml4t.backtest``) is named ``duckdb``; block it by that name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ml4t.backtest import hookimpl

from .feed import DuckDBFeed

__all__ = ["DuckDBFeed", "ml4t_register_feeds"]

__version__ = "0.1.0"


@hookimpl
def ml4t_register_feeds() -> Iterable[tuple[str, Callable[..., Any]]]:
    """Register ``duckdb`` (:class:`DuckDBFeed`)."""
    return [("duckdb", DuckDBFeed)]
