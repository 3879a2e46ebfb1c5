"""Configuration: models by name from YAML/JSON, errors naming file and key, run and plugins CLI."""

from __future__ import annotations

import json
from pathlib import Path
from textwrap import dedent

import pytest

from ml4t.backtest import BacktestEngine, ConfigError, load_config, run_config
from ml4t.backtest.cli import main
from ml4t.backtest.testing import make_bars

STRATEGY = """
from ml4t.backtest import Strategy


class BuyDay2SellDay5(Strategy):
    def __init__(self, quantity=10.0):
        self.quantity = quantity
        self.k = 0

    def on_market_data(self, event, context):
        if self.k == 1:
            self.buy(event.asset_id, self.quantity)
        elif self.k == 4:
            self.sell(event.asset_id, self.quantity)
        self.k += 1
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    make_bars(10, asset_id="A").write_parquet(tmp_path / "bars.parquet")
    (tmp_path / "my_strategies.py").write_text(STRATEGY)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.write_text(dedent(text))
    return path


BASE = """
backtest: {name: cfg_test, initial_capital: 50000}
data:
  asset_data: {path: bars.parquet}
execution:
  commission: {model: PerShareCommission, params: {cost_per_share: 0.01, minimum: 1.0}}
  slippage: {model: fixed, params: {amount: 0.05}}
reporting: {output_dir: out, reporters: [parquet, summary]}
strategy: {module: my_strategies, class: BuyDay2SellDay5, params: {quantity: 200}}
"""


def test_yaml_config_runs_with_models_by_name(project: Path) -> None:
    result, paths = run_config(write(project / "bt.yaml", BASE))
    fills = result.fills_df
    # bars: close 100+k, open = previous close; buy placed on bar 1 fills at bar 2's open
    # (101) + 0.05 slippage; sell placed on bar 4 fills at bar 5's open (104) - 0.05
    assert fills["price"].to_list() == pytest.approx([101.05, 103.95], rel=1e-12)
    # per-share 0.01 * 200 = 2.00 > minimum 1.00
    assert fills["commission"].to_list() == pytest.approx([2.0, 2.0], rel=1e-12)
    assert result.final_equity == pytest.approx(50_000 + 200 * (103.95 - 101.05) - 4.0)
    assert result.metadata["name"] == "cfg_test"
    assert (project / "out" / "summary.txt").is_file()
    # every file of the reporters (each reports all it writes), then the resolved config
    # and the run manifest (written last)
    assert [p.name for p in paths[-2:]] == ["resolved_config.yaml", "run_manifest.json"]
    on_disk = {p.name for p in (project / "out").iterdir() if p.is_file()}
    assert {p.name for p in paths} == on_disk
    assert {"trades.parquet", "metrics.json", "metadata.json", "summary.txt"} <= on_disk


def test_json_config_equivalent_to_yaml(project: Path) -> None:
    import yaml

    raw = yaml.safe_load(BASE)
    (project / "bt.json").write_text(json.dumps(raw))
    a, _ = run_config(write(project / "bt.yaml", BASE))
    b, _ = run_config(project / "bt.json")
    assert a.fills_df.drop("timestamp").equals(b.fills_df.drop("timestamp"))
    assert a.final_equity == b.final_equity


def test_from_config_with_strategy_object(project: Path) -> None:
    from ml4t.backtest.testing import ScriptedStrategy

    cfg = load_config(write(project / "bt.yaml", BASE))
    strat = ScriptedStrategy(script={0: [("buy", 1.0)]})
    engine = BacktestEngine.from_config(cfg, strategy=strat)
    assert engine.strategy is strat
    assert engine.run().fills_df.height == 1


def test_unknown_key_names_file_and_key_path(project: Path) -> None:
    bad = BASE.replace("fixed, params", "fixed, parms")
    with pytest.raises(ConfigError) as info:
        load_config(write(project / "bad.yaml", bad))
    msg = str(info.value)
    assert "bad.yaml" in msg and "execution.slippage" in msg and "parms" in msg


def test_bad_value_names_key(project: Path) -> None:
    bad = BASE.replace("initial_capital: 50000", "initial_capital: -5")
    with pytest.raises(ConfigError, match=r"bad.yaml: backtest.initial_capital: .*greater than 0"):
        load_config(write(project / "bad.yaml", bad))


def test_unknown_model_name_lists_available_before_data_is_read(project: Path) -> None:
    bad = BASE.replace("PerShareCommission", "PerShareComission").replace(
        "bars.parquet", "missing.parquet"
    )
    with pytest.raises(ConfigError) as info:
        BacktestEngine.from_config(write(project / "bad.yaml", bad))
    msg = str(info.value)
    assert "execution.commission.model: unknown commission model 'PerShareComission'" in msg
    assert "per_share / PerShareCommission [ml4t.backtest.builtin.commission]" in msg
    assert "missing.parquet" not in msg  # the name failed first; no data was touched


def test_bad_model_params_name_the_key(project: Path) -> None:
    bad = BASE.replace("cost_per_share: 0.01", "cost_per_share: -1")
    with pytest.raises(ConfigError, match=r"execution.commission: .*cost_per_share must be"):
        BacktestEngine.from_config(write(project / "bad.yaml", bad))


def test_unknown_reporter_and_feed_names(project: Path) -> None:
    bad = BASE.replace("[parquet, summary]", "[parquet, html]")
    with pytest.raises(
        ConfigError, match=r"reporting.reporters\[1\]: unknown reporter model 'html'"
    ):
        BacktestEngine.from_config(write(project / "bad.yaml", bad))
    bad = BASE.replace("asset_data: {path: bars.parquet}", "feed: {model: sqlite, params: {}}")
    with pytest.raises(ConfigError, match=r"data.feed.model: unknown feed 'sqlite'"):
        BacktestEngine.from_config(write(project / "bad2.yaml", bad))


def test_data_needs_exactly_one_source(project: Path) -> None:
    bad = BASE.replace(
        "asset_data: {path: bars.parquet}",
        "asset_data: {path: bars.parquet}\n  feed: {model: parquet}",
    )
    with pytest.raises(ConfigError, match="exactly one of asset_data"):
        load_config(write(project / "bad.yaml", bad))


def test_strategy_import_errors_name_the_key(project: Path) -> None:
    bad = BASE.replace("module: my_strategies", "module: no_such_module")
    with pytest.raises(ConfigError, match=r"strategy.module: cannot import 'no_such_module'"):
        BacktestEngine.from_config(write(project / "bad.yaml", bad))
    bad = BASE.replace("quantity: 200", "qty: 200")
    with pytest.raises(ConfigError, match=r"strategy.params: .*qty"):
        BacktestEngine.from_config(write(project / "bad2.yaml", bad))


def test_blocked_plugin_in_config(project: Path) -> None:
    cfg = BASE + "plugins: {block: [ml4t.backtest.builtin.slippage]}\n"
    with pytest.raises(ConfigError, match="unknown slippage model 'fixed'; available: none"):
        BacktestEngine.from_config(write(project / "bt.yaml", cfg))


def test_cli_run_writes_reports(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(project / "bt.yaml", BASE)
    assert main(["run", str(cfg), "--output", str(project / "cli_out")]) == 0
    out = capsys.readouterr().out
    assert "final_equity" in out and "wrote" in out
    assert (project / "cli_out" / "fills.parquet").is_file()


def test_cli_run_bad_config_one_line_error(project: Path, capsys) -> None:
    cfg = write(project / "bad.yaml", BASE.replace("fixed", "fixd"))
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown slippage model 'fixd'" in err


def test_cli_plugins_lists_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "ml4t.backtest.builtin.commission" in out and "per_share (PerShareCommission)" in out
    assert main(["plugins", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert {e["name"] for e in entries} >= {"ml4t.backtest.builtin.sim_broker"}


def test_context_data_fields_from_config(project: Path) -> None:
    import polars as pl

    bars = make_bars(10)
    pl.DataFrame(
        {"timestamp": bars["timestamp"], "vix": [15.0 + k for k in range(10)], "spy": 1.0}
    ).write_parquet(project / "ctx.parquet")
    cfg = BASE.replace(
        "asset_data: {path: bars.parquet}",
        "asset_data: {path: bars.parquet}\n  context_data: {path: ctx.parquet, fields: [vix]}",
    )
    result = BacktestEngine.from_config(write(project / "bt.yaml", cfg)).run()
    trade = result.trades_df.row(0, named=True)
    # the buy is placed on bar 1 (vix 16) and the sell on bar 4 (vix 19)
    assert (trade["entry_context_vix"], trade["exit_context_vix"]) == (16.0, 19.0)
    assert "entry_context_spy" not in result.trades_df.columns
    bad = cfg.replace("fields: [vix]", "fields: [vxx]")
    with pytest.raises(ConfigError, match=r"data.context_data.fields: \['vxx'\] not in"):
        BacktestEngine.from_config(write(project / "bad.yaml", bad))
