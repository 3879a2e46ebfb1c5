"""The entry-point path end to end, with real distributions (no monkeypatching).

The README's test command installs the first-party plugin distributions; these tests find
them through the installed metadata, list them with ``ml4t-backtest plugins``, use them by
name from a YAML config, and show that a really broken installed plugin is named.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from textwrap import dedent

import pytest

from ml4t.backtest import get_plugin_manager, list_plugins, run_config

FIRST_PARTY = {"impact": "ml4t-backtest-impact", "duckdb": "ml4t-backtest-duckdb"}


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ml4t.backtest", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(autouse=True)
def _autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DISABLE_PLUGIN_AUTOLOAD", "PLUGINS", "BLOCK_PLUGINS"):
        monkeypatch.delenv(f"ML4T_BACKTEST_{var}", raising=False)


@pytest.mark.parametrize("name", sorted(FIRST_PARTY))
def test_first_party_plugin_discovered_from_distribution_metadata(name: str) -> None:
    dist = importlib.metadata.distribution(FIRST_PARTY[name])
    eps = [ep for ep in dist.entry_points if ep.group == "ml4t.backtest"]
    assert [ep.name for ep in eps] == [name]
    entry = next(e for e in list_plugins(get_plugin_manager()) if e["name"] == name)
    assert entry["distribution"] == FIRST_PARTY[name]
    assert entry["version"] == dist.version
    assert entry["builtin"] is False


def test_cli_plugins_lists_builtins_and_first_party_plugins() -> None:
    proc = _cli("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    entries = {e["name"]: e for e in json.loads(proc.stdout)}
    assert {n for n, e in entries.items() if e["builtin"]} == {
        f"ml4t.backtest.builtin.{m}"
        for m in ("commission", "slippage", "impact", "feeds", "reporters", "sim_broker")
    }
    assert entries["impact"]["provides"]["impact"] == sorted(
        ["AlmgrenChriss", "SquareRoot", "almgren_chriss", "square_root"]
    )
    assert entries["duckdb"]["provides"] == {"feed": ["duckdb"]}
    table = _cli("plugins").stdout
    assert "ml4t-backtest-impact" in table and "ml4t-backtest-duckdb" in table


STRATEGY = """
from ml4t.backtest import Strategy


class RoundTrip(Strategy):
    def __init__(self, quantity):
        self.quantity = quantity
        self.k = 0

    def on_market_data(self, event, context):
        if self.k == 0:
            self.buy(event.asset_id, self.quantity)
        elif self.k == 2:
            self.sell(event.asset_id, self.quantity)
        self.k += 1
"""

CONFIG = """
backtest: {name: e2e, initial_capital: 1000000}
data:
  feed:
    model: duckdb
    params: {database: bars.duckdb, query: "SELECT * FROM bars", asset_id: XYZ, chunk_size: 1w}
execution:
  impact: {model: AlmgrenChriss, params: {volatility: 0.02, adv: 1000000}}
  commission: {model: per_share, params: {cost_per_share: 0.005}}
reporting: {output_dir: out, reporters: [parquet]}
strategy: {module: e2e_strategy, class: RoundTrip, params: {quantity: 1000}}
"""


def test_yaml_config_uses_almgren_chriss_and_duckdb_by_name(tmp_path: Path) -> None:
    import duckdb

    con = duckdb.connect(str(tmp_path / "bars.duckdb"))
    con.execute(
        "CREATE TABLE bars (timestamp TIMESTAMP, open DOUBLE, high DOUBLE, low DOUBLE, "
        "close DOUBLE, volume DOUBLE)"
    )
    t0 = datetime(2024, 1, 2)
    rows = [(t0 + timedelta(days=k), 100.0, 101.0, 99.0, 100.0, 5e5) for k in range(20)]
    rows[1] = (t0 + timedelta(days=1), 100.0, 102.0, 99.0, 101.0, 5e5)
    rows[3] = (t0 + timedelta(days=3), 102.0, 103.0, 101.0, 102.5, 5e5)
    con.executemany("INSERT INTO bars VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.close()
    (tmp_path / "e2e_strategy.py").write_text(STRATEGY)
    (tmp_path / "bt.yaml").write_text(dedent(CONFIG))

    result, paths = run_config(tmp_path / "bt.yaml")

    # Almgren et al. (2005) defaults eta=0.142, gamma=0.314, beta=0.6, horizon 1 day;
    # sigma=0.02, ADV=1e6, Q=1000 -> Q/ADV = 0.001:
    #   permanent/2 = 0.5 * 0.314 * 0.02 * 0.001        = 3.14e-6
    #   temporary   = 0.142 * 0.02 * 0.001 ** 0.6       = 4.50109666e-5
    #   fraction    = 4.81509666e-5 of the price
    fraction = 0.5 * 0.314 * 0.02 * 0.001 + 0.142 * 0.02 * 0.001**0.6
    assert fraction == pytest.approx(4.81509666659e-5, rel=1e-9)
    fills = result.fills_df
    # buy placed on bar 0 fills at bar 1's open (100), sell placed on bar 2 at bar 3's (102)
    assert fills["price"].to_list() == pytest.approx(
        [100 * (1 + fraction), 102 * (1 - fraction)], rel=1e-12
    )
    assert fills["impact"].to_list() == pytest.approx(
        [1000 * 100 * fraction, 1000 * 102 * fraction], rel=1e-12
    )
    assert fills["commission"].to_list() == pytest.approx([5.0, 5.0], rel=1e-12)
    pnl = 1000 * (102 * (1 - fraction) - 100 * (1 + fraction)) - 10.0
    assert result.final_equity == pytest.approx(1_000_000 + pnl, rel=1e-12)
    assert result.metrics["total_impact"] == pytest.approx(1000 * 202 * fraction, rel=1e-12)
    plugins = {p["name"]: p for p in result.metadata["plugins"]}
    assert plugins["impact"]["distribution"] == "ml4t-backtest-impact"
    assert plugins["duckdb"]["distribution"] == "ml4t-backtest-duckdb"
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert {"impact", "duckdb"} <= {p["name"] for p in meta["plugins"]}
    assert tmp_path / "out" / "fills.parquet" in paths


def _broken_distribution(root: Path) -> None:
    """Write an installed-looking distribution whose plugin module fails to import."""
    info = root / "ml4t_backtest_broken-0.3.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: ml4t-backtest-broken\nVersion: 0.3.0\n"
    )
    (info / "entry_points.txt").write_text("[ml4t.backtest]\nbroken = ml4t_backtest_broken\n")
    (root / "ml4t_backtest_broken.py").write_text("import numpy_financial_that_is_missing\n")


def test_really_broken_installed_plugin_is_named(tmp_path: Path) -> None:
    _broken_distribution(tmp_path)
    env = {"PYTHONPATH": str(tmp_path)}
    proc = _cli("plugins", env=env)
    assert proc.returncode == 2
    err = proc.stderr
    assert "plugin 'broken' (ml4t-backtest-broken 0.3.0) failed to import" in err
    assert "numpy_financial_that_is_missing" in err
    assert "ML4T_BACKTEST_BLOCK_PLUGINS=broken" in err
    fixed = _cli("plugins", env={**env, "ML4T_BACKTEST_BLOCK_PLUGINS": "broken"})
    assert fixed.returncode == 0 and "broken" not in fixed.stdout
