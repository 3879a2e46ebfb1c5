"""Issue 15, config side: booleans are not numbers, unknown names fail in ``load_config``,
and a missing data file is named by its config key.

Each case was observed to pass silently (``initial_capital: true`` ran with 1.0 of cash) or
to be reported as something else (a missing ``asset_data`` file as a failure of the
builtin feeds plugin).
"""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import polars as pl
import pytest

from ml4t.backtest import BacktestEngine, ConfigError, PluginError, load_config, run_config
from ml4t.backtest.testing import make_bars

STRATEGY = """
from ml4t.backtest import Strategy


class Hold(Strategy):
    def on_market_data(self, event, context):
        if self.get_position(event.asset_id) == 0:
            self.buy(event.asset_id, 10)
"""

BASE = """
backtest: {name: nsf, initial_capital: 100000}
data:
  asset_data: {path: bars.parquet}
strategy: {module: nsf_cfg_strategy, class: Hold}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    make_bars(10, asset_id="A").write_parquet(tmp_path / "bars.parquet")
    (tmp_path / "nsf_cfg_strategy.py").write_text(STRATEGY)
    (tmp_path / "bt.yaml").write_text(dedent(BASE))
    return tmp_path


def _config(project: Path, text: str, name: str = "bt.yaml") -> Path:
    path = project / name
    path.write_text(dedent(text))
    return path


# --- 3. booleans are not numbers ----------------------------------------------------------
def test_load_config_initial_capital_true_in_yaml_raises_naming_key_and_file(
    project: Path,
) -> None:
    cfg = _config(
        project,
        """
        backtest: {initial_capital: true}
        data: {asset_data: {path: bars.parquet}}
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    text = str(info.value)
    assert text.startswith(f"{cfg}: backtest.initial_capital: ")
    assert "boolean" in text and "true" in text.lower()


def test_load_config_initial_capital_set_yes_raises_naming_key_and_file(project: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(project / "bt.yaml", overrides=["backtest.initial_capital=yes"])
    text = str(info.value)
    assert text.startswith(f"{project / 'bt.yaml'}: backtest.initial_capital: ")
    assert "boolean" in text


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("execution.initial_margin=true", "execution.initial_margin"),
        ("execution.maintenance_margin=false", "execution.maintenance_margin"),
        ("execution.max_leverage=on", "execution.max_leverage"),
        ("execution.borrow_rate=no", "execution.borrow_rate"),
        ("execution.volume_limit=true", "execution.volume_limit"),
        ("data.asset_data.chunk_size=true", "data.asset_data.chunk_size"),
        ("execution.exits={stop_loss: true}", "execution.exits.stop_loss"),
        ("execution.exits={max_bars: yes}", "execution.exits.max_bars"),
        ("execution.risk_limits={max_gross_leverage: true}", "execution.risk_limits"),
    ],
)
def test_load_config_bool_for_a_numeric_key_raises_naming_it(
    project: Path, override: str, key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(project / "bt.yaml", overrides=[override])
    text = str(info.value)
    assert text.startswith(f"{project / 'bt.yaml'}: {key}")
    assert "boolean" in text


def test_load_config_numbers_still_accepted_where_bools_are_not(project: Path) -> None:
    cfg = load_config(
        project / "bt.yaml",
        overrides=[
            "backtest.initial_capital=2500",
            "execution.volume_limit=0.1",
            "data.asset_data.chunk_size=1000",
            "execution.exits={stop_loss: 0.05, max_bars: 3}",
            "execution.fractional=false",  # a real boolean key keeps its booleans
        ],
    )
    assert cfg.backtest.initial_capital == 2500.0
    assert cfg.execution.volume_limit == 0.1
    assert cfg.data.asset_data is not None and cfg.data.asset_data.chunk_size == 1000
    assert cfg.execution.exits == {"stop_loss": 0.05, "max_bars": 3}
    assert cfg.execution.fractional is False


# --- 4. unknown names fail in load_config ---------------------------------------------------
@pytest.mark.parametrize(
    ("override", "key", "kind", "known"),
    [
        ("execution.commission={model: per_sahre}", "execution.commission.model", "commission",
         "per_share"),
        ("execution.commission=per_sahre", "execution.commission", "commission", "per_share"),
        ("execution.slippage={model: VolumeShare, params: {volume_limit: 0.1}}",
         "execution.slippage.model", "slippage", "volume_share"),
        ("execution.impact={model: sqrt}", "execution.impact.model", "impact", "none"),
        ("execution.broker=ib", "execution.broker", "broker", "simulation"),
        ("execution.broker={model: ib}", "execution.broker.model", "broker", "simulation"),
        ("reporting.reporters=[parquet, htlm]", "reporting.reporters[1]", "reporter",
         "summary"),
        ("reporting.reporters=[{model: htlm}]", "reporting.reporters[0].model", "reporter",
         "parquet"),
    ],
)  # fmt: skip
def test_load_config_unknown_model_name_raises_with_key_file_and_available(
    project: Path, override: str, key: str, kind: str, known: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(project / "bt.yaml", overrides=[override])
    text = str(info.value)
    assert text.startswith(f"{project / 'bt.yaml'}: {key}: unknown {kind}")
    bad = override.split("=", 1)[1]
    name = next(n for n in ("per_sahre", "VolumeShare", "sqrt", "ib", "htlm") if n in bad)
    assert repr(name) in text
    assert "available: " in text and known in text.split("available: ", 1)[1]


def test_load_config_unknown_feed_name_raises_with_key(project: Path) -> None:
    cfg = _config(
        project,
        """
        data: {feed: {model: duckbd, params: {database: x.db}}}
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    text = str(info.value)
    assert text.startswith(f"{cfg}: data.feed.model: unknown feed 'duckbd'")
    assert "parquet" in text.split("available: ", 1)[1]


def test_load_config_name_of_a_blocked_plugin_is_unknown(project: Path) -> None:
    # blocking the builtin commission plugin leaves no commission model to name
    with pytest.raises(ConfigError, match=r"execution\.commission: unknown commission"):
        load_config(
            project / "bt.yaml",
            overrides=[
                "execution.commission=per_share",
                "plugins.block=[ml4t.backtest.builtin.commission]",
            ],
        )


def test_load_config_plugin_module_that_does_not_import_names_key_once(project: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(project / "bt.yaml", overrides=["plugins.modules=[nsf_no_such_plugin]"])
    text = str(info.value)
    assert text.startswith(f"{project / 'bt.yaml'}: plugins.modules[0]: cannot import")
    assert text.count("bt.yaml") == 1


def test_load_config_known_names_and_import_paths_pass(project: Path) -> None:
    cfg = load_config(
        project / "bt.yaml",
        overrides=[
            "execution.commission=PerShareCommission",
            "execution.slippage={model: volume_share, params: {volume_limit: 0.1}}",
            "execution.impact=ml4t.backtest.builtin.impact:NoImpact",
            "reporting.reporters=[parquet, summary]",
        ],
    )
    assert cfg.execution.commission == "PerShareCommission"


# --- 5. a missing data file is named by its config key --------------------------------------
@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("data.asset_data.path=missing.parquet", "data.asset_data.path"),
        ("data.asset_data.path=missing/*.parquet", "data.asset_data.path"),
        ("data.signal_data={path: missing_preds.parquet}", "data.signal_data.path"),
        ("data.context_data={path: missing_ctx.parquet}", "data.context_data.path"),
        ("execution.assets=missing_assets.yaml", "execution.assets"),
        ("execution.corporate_actions=missing_ca.parquet", "execution.corporate_actions"),
    ],
)
def test_engine_from_config_missing_data_file_names_its_key(
    project: Path, override: str, key: str
) -> None:
    cfg = load_config(project / "bt.yaml", overrides=[override])
    with pytest.raises(ConfigError) as info:
        BacktestEngine.from_config(cfg)
    err = info.value
    assert not isinstance(err, PluginError)
    text = str(err)
    missing = override.split("=", 1)[1].removeprefix("{path: ").removesuffix("}")
    assert text.startswith(f"{project / 'bt.yaml'}: {key}: no such file")
    assert str(project / missing) in text


def test_run_config_missing_asset_file_is_not_a_feed_plugin_failure(project: Path) -> None:
    with pytest.raises(ConfigError) as info:
        run_config(project / "bt.yaml", overrides=["data.asset_data.path=gone.parquet"])
    assert "data.asset_data.path: no such file" in str(info.value)
    assert "builtin.feeds" not in str(info.value)


def test_engine_from_config_missing_feed_param_path_names_its_key(project: Path) -> None:
    cfg = load_config(
        project / "bt.yaml",
        overrides=["data={feed: {model: parquet, params: {path: nowhere.parquet}}}"],
    )
    with pytest.raises(ConfigError) as info:
        BacktestEngine.from_config(cfg)
    text = str(info.value)
    assert f"data.feed.params.path: no such file: {project / 'nowhere.parquet'}" in text


def test_engine_from_config_existing_files_and_globs_pass(project: Path) -> None:
    pl.DataFrame({"timestamp": make_bars(10)["timestamp"], "vix": [15.0] * 10}).write_parquet(
        project / "ctx.parquet"
    )
    cfg = load_config(
        project / "bt.yaml",
        overrides=["data.asset_data.path=bar*.parquet", "data.context_data={path: ctx.parquet}"],
    )
    result = BacktestEngine.from_config(cfg).run()
    assert result.complete and result.fills_df.height == 1
