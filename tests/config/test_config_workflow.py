"""Config workflow: every invalid config names the file, the key path and the problem; bad
configs fail before any data is read; ``backtest.start_date``/``end_date`` restrict the
bars while earlier as-of rows still count; ``strategy.path`` imports from a subdirectory.

Bars (``make_bars``): asset ``A``, daily from Tue 2 Jan 2024, closes 100, 101, ...
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
import yaml
from pydantic import ValidationError

from ml4t.backtest import BacktestEngine, ConfigError, load_config
from ml4t.backtest.testing import make_bars

STRATEGY_MODULE = "wf_recorder_strategy"
STRATEGY = """
from ml4t.backtest import Strategy


class Recorder(Strategy):
    def __init__(self, quantity=0.0, label="none"):
        self.quantity = quantity
        self.label = label
        self.seen = []

    def on_market_data(self, event, context):
        vix = context["vix"] if "vix" in context else None
        self.seen.append((event.timestamp, event.signals.get("pred"), vix))
        if self.quantity and len(self.seen) == 1:
            self.buy(event.asset_id, self.quantity)
"""

BASE = {
    "backtest": {"name": "wf"},
    "data": {"asset_data": {"path": "bars.parquet"}},
    "strategy": {"module": STRATEGY_MODULE, "class": "Recorder", "path": "strategies"},
}


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    make_bars(10, asset_id="A").write_parquet(tmp_path / "bars.parquet")
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / f"{STRATEGY_MODULE}.py").write_text(STRATEGY)
    yield tmp_path
    sys.modules.pop(STRATEGY_MODULE, None)  # the next test's module lives in another tmp_path


def write(path: Path, **sections: object) -> Path:
    """Write BASE with ``sections`` replacing (or adding) top-level sections."""
    path.write_text(yaml.safe_dump({**BASE, **sections}, sort_keys=False))
    return path


ASSET = {"path": "bars.parquet"}
# (sections replacing BASE's, regex the message must match); "bad.yaml: " is prepended
INVALID = [
    ({"backtest": {"name": "wf", "nme": "x"}}, r"backtest\.nme: Extra inputs are not permitted"),
    (
        {"data": {"asset_data": {**ASSET, "colums": {"signals": []}}}},
        r"data\.asset_data\.colums: Extra inputs are not permitted",
    ),
    (
        {"data": {"asset_data": ASSET, "signal_data": {"path": "p.parquet", "availble_at": "k"}}},
        r"data\.signal_data\.availble_at: Extra inputs are not permitted",
    ),
    (
        {"data": {"asset_data": ASSET, "context_data": {"path": "c.parquet", "field": ["vix"]}}},
        r"data\.context_data\.field: Extra inputs are not permitted",
    ),
    ({"execution": {"comission": "per_share"}}, r"execution\.comission: Extra inputs are not"),
    ({"reporting": {"outdir": "out"}}, r"reporting\.outdir: Extra inputs are not permitted"),
    (
        {"strategy": {"module": "m", "class": "C", "param": {}}},
        r"strategy\.param: Extra inputs are not permitted",
    ),
    ({"plugins": {"blok": []}}, r"plugins\.blok: Extra inputs are not permitted"),
    ({"extras": {"a": 1}}, r"extras: Extra inputs are not permitted"),
    ({"backtest": {"calendar": "XNYSX"}}, r"backtest\.calendar: .*unknown calendar 'XNYSX'"),
    (
        {"backtest": {"calendar": "nyse"}},
        r"backtest\.calendar: .*unknown calendar 'nyse'; did you mean 'NYSE'\?",
    ),
    (
        {"backtest": {"outside_sessions": "skip"}},
        r"backtest\.outside_sessions: Input should be 'warn', 'error' or 'ignore'",
    ),
    # model-level checks
    (
        {"backtest": {"start_date": "2024-01-05", "end_date": "2024-01-03"}},
        r"backtest\.end_date: 2024-01-03 is before start_date 2024-01-05",
    ),
    (
        {"data": {"asset_data": ASSET, "signal_data": {"path": "p", "max_staleness": "3 days"}}},
        r"data\.signal_data\.max_staleness: .*'3 days' is not a duration like '3d'",
    ),
    (
        {"data": {"asset_data": ASSET, "context_data": {"path": "c", "max_staleness": "soon"}}},
        r"data\.context_data\.max_staleness: .*'soon' is not a duration like '3d'",
    ),
    (
        {"reporting": {"trades_output": "out/trades.txt"}},
        r"reporting\.trades_output: 'out/trades\.txt' must end in \.parquet or \.csv",
    ),
    (
        {"reporting": {"metrics_output": "out/metrics.csv"}},
        r"reporting\.metrics_output: 'out/metrics\.csv' must end in \.json",
    ),
    (
        {"data": {"feed": {"model": "parquet"}, "signal_data": {"path": "p.parquet"}}},
        r"data\.signal_data: goes with asset_data",
    ),
]


SECTIONS = ["backtest", "asset_data", "signal_data", "context_data", "execution", "reporting"]
INVALID_IDS = [
    *(f"unknown-{s}" for s in [*SECTIONS, "strategy", "plugins", "top-level"]),
    *["calendar", "calendar-case", "outside-sessions", "end-before-start", "signal-staleness"],
    *["context-staleness", "trades-txt", "metrics-csv", "signal-data-with-feed"],
]


@pytest.mark.parametrize(("sections", "pattern"), INVALID, ids=INVALID_IDS)
def test_invalid_config_names_file_key_path_and_problem(
    project: Path, sections: dict[str, object], pattern: str
) -> None:
    with pytest.raises(ConfigError, match=r"bad\.yaml: " + pattern):
        load_config(write(project / "bad.yaml", **sections))


# errors from model-level validators carry the key path, without pydantic's "Value error, "
@pytest.mark.parametrize(
    ("sections", "message"),
    [
        (
            {"reporting": {"trades_output": "t.txt"}},
            "reporting.trades_output: 't.txt' must end in .parquet or .csv",
        ),
        (
            {"backtest": {"start_date": "2024-01-05", "end_date": "2024-01-03"}},
            "backtest.end_date: 2024-01-03 is before start_date 2024-01-05",
        ),
    ],
)
def test_model_level_errors_use_the_key_path(
    project: Path, sections: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(project / "bad.yaml", **sections))
    assert str(info.value).endswith("bad.yaml: " + message)


# a wrong key inside a `{model, params}` spec is reported once, without the union's member
# names ("str", "ModelSpec") in the key path
def test_unknown_key_in_model_spec_has_a_clean_key_path(project: Path) -> None:
    slippage = {"model": "fixed", "parms": {"amount": 0.05}}
    with pytest.raises(ConfigError) as info:
        load_config(write(project / "bad.yaml", execution={"slippage": slippage}))
    assert str(info.value).endswith(
        "bad.yaml: execution.slippage.parms: Extra inputs are not permitted"
    )


# an impossible YAML date (yaml.safe_load raises ValueError) is a config error naming the file
def test_impossible_yaml_date_is_a_config_error(project: Path) -> None:
    path = project / "bad.yaml"
    path.write_text("backtest: {start_date: 2024-13-01}\ndata: {asset_data: {path: b.parquet}}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: "):
        load_config(path)


@pytest.mark.parametrize(
    ("slippage", "commission", "pattern"),
    [
        # the exact text of the issue
        (
            {"model": "volume_share", "params": {"volume_limit": 1.5}},
            "none",
            r"execution\.slippage\.params\.volume_limit: must be in \(0, 1\]",
        ),
        (
            {"model": "fixed", "params": {"amout": 0.05}},
            "none",
            r"execution\.slippage\.params\.amout: unknown parameter; accepted: \['amount'\]",
        ),
        (
            "none",
            {"model": "per_share", "params": {"cost_per_shar": 0.01}},
            r"execution\.commission\.params\.cost_per_shar: unknown parameter",
        ),
    ],
)
def test_bad_model_parameter_fails_before_the_missing_data_file_is_read(
    project: Path, slippage: object, commission: object, pattern: str
) -> None:
    # the data file does not exist: a message about the parameter proves it was never read
    cfg = write(
        project / "bad.yaml",
        data={"asset_data": {"path": "missing.parquet"}},
        execution={"slippage": slippage, "commission": commission},
    )
    with pytest.raises(ConfigError, match=r"bad\.yaml: " + pattern) as info:
        BacktestEngine.from_config(cfg)
    assert "missing.parquet" not in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (["backtest.name"], r"--set 'backtest\.name': expected KEY\.PATH=VALUE"),
        (["=1"], r"--set '=1': expected KEY\.PATH=VALUE"),
        (["backtest.name.x=1"], r"--set 'backtest\.name\.x=1': backtest\.name is 'wf', not a "),
        (["execution.slipage=fixed"], r"execution\.slipage: Extra inputs are not permitted"),
        (
            ["data.asset_data.colums.signals=[pred]"],
            r"data\.asset_data\.colums: Extra inputs are not permitted",
        ),
        (["backtest.initial_capital=-5"], r"backtest\.initial_capital: .*greater than 0"),
    ],
)
def test_bad_override_names_file_and_key(project: Path, overrides: list[str], pattern: str) -> None:
    with pytest.raises(ConfigError, match=r"base\.yaml: " + pattern):
        load_config(write(project / "base.yaml"), overrides)


def test_override_sets_nested_keys_with_yaml_types(project: Path) -> None:
    cfg = load_config(
        write(project / "base.yaml"),
        ["strategy.params.quantity=2.5", "execution.slippage={model: fixed}", "backtest.name=x"],
    )
    assert cfg.strategy is not None and cfg.strategy.params == {"quantity": 2.5}
    assert cfg.execution.slippage is not None and cfg.execution.slippage.model == "fixed"
    assert cfg.backtest.name == "x"


def test_json_config_is_equivalent_and_its_errors_name_the_json_file(project: Path) -> None:
    (project / "good.json").write_text(json.dumps(BASE))
    from_json = load_config(project / "good.json")
    from_yaml = load_config(write(project / "good.yaml"))
    assert from_json.model_dump(exclude={"source"}) == from_yaml.model_dump(exclude={"source"})
    (project / "bad.json").write_text(json.dumps({**BASE, "execution": {"comission": "none"}}))
    with pytest.raises(ConfigError, match=r"bad\.json: execution\.comission: Extra inputs"):
        load_config(project / "bad.json")


def test_loaded_config_is_frozen(project: Path) -> None:
    cfg = load_config(write(project / "base.yaml"))
    with pytest.raises(ValidationError, match="frozen"):
        cfg.backtest.name = "changed"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        cfg.data = cfg.data  # type: ignore[misc]
    assert cfg.backtest.name == "wf"


# --- nothing is built when the config is bad -----------------------------------------------
FEED_COUNTER = """
from ml4t.backtest import hookimpl

CALLS = []


@hookimpl
def ml4t_make_feed(spec, registry):
    CALLS.append(spec)
    return None  # let the builtin feed plugin build it
"""


@pytest.fixture
def feed_calls(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Calls of ``ml4t_make_feed`` made through a counting plugin (``plugins.modules``)."""
    (project / "plugin_dir").mkdir()
    (project / "plugin_dir" / "wf_feed_counter.py").write_text(FEED_COUNTER)
    monkeypatch.syspath_prepend(str(project / "plugin_dir"))
    import wf_feed_counter  # type: ignore[import-not-found]

    yield wf_feed_counter.CALLS
    sys.modules.pop("wf_feed_counter", None)


COUNTED = {"plugins": {"modules": ["wf_feed_counter"]}}


def test_feed_counter_sees_a_good_config_build_its_feed(
    project: Path, feed_calls: list[object]
) -> None:
    BacktestEngine.from_config(write(project / "good.yaml", **COUNTED))
    assert len(feed_calls) == 1  # the counter works: a good config builds one feed


@pytest.mark.parametrize(
    ("sections", "pattern"),
    [
        (
            {"strategy": {"module": "no_such_module", "class": "Recorder"}},
            r"strategy\.module: cannot import 'no_such_module'",
        ),
        (
            {"strategy": {**BASE["strategy"], "class": "Missing"}},  # type: ignore[dict-item]
            r"strategy\.class: wf_recorder_strategy\.Missing is not a Strategy class",
        ),
        (
            {"strategy": {**BASE["strategy"], "params": {"qty": 1}}},  # type: ignore[dict-item]
            r"strategy\.params: .*qty",
        ),
        ({"execution": {"broker": "ib_live"}}, r"execution\.broker: unknown broker 'ib_live'"),
        (
            {"reporting": {"reporters": ["parquet", "html"]}},
            r"reporting\.reporters\[1\]: unknown reporter model 'html'",
        ),
    ],
)
def test_bad_strategy_or_name_builds_no_feed(
    project: Path, feed_calls: list[object], sections: dict[str, object], pattern: str
) -> None:
    cfg = write(project / "bad.yaml", **COUNTED, **sections)
    with pytest.raises(ConfigError, match=r"bad\.yaml: " + pattern):
        BacktestEngine.from_config(cfg)
    assert feed_calls == []


# --- period and as-of data; strategy.path ------------------------------------------------------
def test_start_end_dates_restrict_bars_but_earlier_asof_rows_count(project: Path) -> None:
    # predictions: 0.7 dated Wed 3 Jan (available that noon); 0.9 dated Sat 6 Jan but only
    # available on Tue 9 Jan, after the period -> never seen; context: VIX 21 on 2 Jan only
    # (and 99 on 10 Jan, after the period)
    pl.DataFrame(
        {
            "timestamp": [datetime(2024, 1, 3), datetime(2024, 1, 6)],
            "asset_id": ["A", "A"],
            "pred": [0.7, 0.9],
            "known_at": [datetime(2024, 1, 3, 12), datetime(2024, 1, 9)],
        }
    ).write_parquet(project / "preds.parquet")
    pl.DataFrame(
        {"timestamp": [datetime(2024, 1, 2), datetime(2024, 1, 10)], "vix": [21.0, 99.0]}
    ).write_parquet(project / "ctx.parquet")
    data = {
        "asset_data": ASSET,
        "signal_data": {"path": "preds.parquet", "available_at": "known_at"},
        "context_data": {"path": "ctx.parquet"},
    }
    cfg = write(
        project / "bt.yaml",
        backtest={"name": "wf", "start_date": "2024-01-05", "end_date": "2024-01-08"},
        data=data,
    )
    engine = BacktestEngine.from_config(cfg)
    result = engine.run()
    days = [datetime(2024, 1, d) for d in (5, 6, 7, 8)]  # both ends inclusive
    assert result.portfolio_df["timestamp"].to_list() == days
    assert engine.strategy.seen == [(d, 0.7, 21.0) for d in days]  # type: ignore[attr-defined]


def test_from_config_imports_strategy_from_path_subdirectory(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    strategy = {**BASE["strategy"], "params": {"quantity": 3.0, "label": "sub"}}  # type: ignore[dict-item]
    cfg = write(project / "bt.yaml", strategy=strategy)
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # strategy.path is relative to the config file, not the cwd
    engine = BacktestEngine.from_config(str(cfg))
    strat = engine.strategy
    assert type(strat).__name__ == "Recorder"
    assert type(strat).__module__ == STRATEGY_MODULE
    assert Path(sys.modules[STRATEGY_MODULE].__file__ or "").parent == project / "strategies"
    assert (strat.quantity, strat.label) == (3.0, "sub")  # type: ignore[attr-defined]
    assert str(project / "strategies") not in sys.path  # the import path was removed again
    result = engine.run()
    # quantity 3 bought on bar 0 fills at bar 1's open, 100 (the previous close)
    assert result.fills_df.select("quantity", "price").rows() == [(3.0, 100.0)]
