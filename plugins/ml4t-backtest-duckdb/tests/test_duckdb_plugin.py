"""The installed distribution: entry point, registry names, YAML configs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from ml4t_backtest_duckdb import DuckDBFeed

from ml4t.backtest import ConfigError, get_plugin_manager, list_plugins


def test_plugin_is_installed_and_listed_with_its_distribution() -> None:
    entries = {p["name"]: p for p in list_plugins(get_plugin_manager())}
    assert "duckdb" in entries
    entry = entries["duckdb"]
    assert entry["distribution"] == "ml4t-backtest-duckdb"
    assert entry["version"] == "0.1.0"
    assert entry["builtin"] is False
    assert entry["hooks"] == ["ml4t_register_feeds"]
    assert entry["provides"] == {"feed": ["duckdb"]}


def test_plugin_blocked_by_entry_point_name_provides_nothing() -> None:
    pm = get_plugin_manager(block=["duckdb"])
    assert "duckdb" not in {p["name"] for p in list_plugins(pm)}
    assert pm.registry.lookup("feed", "duckdb") is None


@pytest.mark.parametrize("model", ["duckdb", "DuckDBFeed"])
def test_registry_create_by_name_or_class_alias_builds_feed(
    model: str,
    duckdb_file: Callable[..., Path],
    ml4t_make_long_bars: Callable[..., pl.DataFrame],
    ml4t_run_backtest: Callable[..., Any],
) -> None:
    frame = ml4t_make_long_bars(["A", "B"], 20)
    path = duckdb_file(bars=frame)
    spec = {
        "model": model,
        "params": {"database": str(path), "query": "SELECT * FROM bars", "chunk_size": "1w"},
    }
    feed = get_plugin_manager().registry.create("feed", spec)
    assert isinstance(feed, DuckDBFeed)
    assert feed.asset_ids == ("A", "B") and feed.chunk_size == "1w"
    got, _ = ml4t_run_backtest(feed)
    assert got.portfolio_df.height == 20
    feed.close()


def test_registry_create_with_missing_file_raises_config_error_naming_plugin(
    tmp_path: Path,
) -> None:
    spec = {"model": "duckdb", "params": {"database": str(tmp_path / "x.duckdb"), "query": "t"}}
    with pytest.raises(ConfigError, match=r"ml4t-backtest-duckdb.*x\.duckdb'?: no such"):
        get_plugin_manager().registry.create("feed", spec, where="data.feed")


_STRATEGY = """
from ml4t.backtest import Strategy


class EntryExitStrategy(Strategy):
    def on_market_data(self, event, context):
        if event.signals["entry"] == 1.0:
            self.buy(event.asset_id, 10)
        if event.signals["exit"] == 1.0:
            self.sell(event.asset_id, 10)
"""


def test_yaml_config_names_the_feed_and_runs_from_the_cli(
    tmp_path: Path,
    duckdb_file: Callable[..., Path],
    ml4t_make_bars: Callable[..., pl.DataFrame],
) -> None:
    entry = [1.0 if k == 2 else 0.0 for k in range(20)]
    exit_ = [1.0 if k == 7 else 0.0 for k in range(20)]
    (tmp_path / "data").mkdir()
    duckdb_file("data/bars.duckdb", bars=ml4t_make_bars(20, entry=entry, exit=exit_))
    (tmp_path / "entry_exit_strategy.py").write_text(_STRATEGY)
    (tmp_path / "config.yaml").write_text(
        textwrap.dedent(
            """\
            backtest: {name: duckdb_yaml, initial_capital: 100000}
            data:
              feed:
                model: duckdb
                params:
                  database: data/bars.duckdb
                  query: "SELECT * FROM bars"
                  asset_id: SPY
                  chunk_size: 1w
            strategy: {module: entry_exit_strategy, class: EntryExitStrategy}
            reporting: {output_dir: out, reporters: [parquet]}
            """
        )
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Run from another directory: data/bars.duckdb is relative to the config file.
    proc = subprocess.run(
        [sys.executable, "-m", "ml4t.backtest", "run", str(tmp_path / "config.yaml"), "--quiet"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    # Closes 100 + k, opens at the previous close: buy 10 at bar 3's open (102), sell at
    # bar 8's open (107): 100,000 + 10 * 5.
    assert metrics["final_equity"] == pytest.approx(100_050.0)
    fills = pl.read_parquet(tmp_path / "out" / "fills.parquet")
    assert fills["asset_id"].to_list() == ["SPY", "SPY"]
    assert fills["price"].to_list() == [102.0, 107.0]
