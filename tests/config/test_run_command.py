"""Running a config (``run_config`` and ``ml4t-backtest run``): the round trip config -> run
-> resolved config -> run, the run manifest (data hashes, versions, overrides), atomic
outputs when a run is interrupted, ``--set``, the summary and the progress bar.

Project: three assets (A, B, C) of 12 daily bars from Tue 2 Jan 2024 (every day, so the
calendar is "24/7"), daily predictions visible 12 hours after their timestamp
(``known_at``), a VIX context file and a strategy buying ``10 * x`` shares on a positive
prediction while VIX < 18 and closing on a negative one.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import sys
from collections.abc import Iterator
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pytest
import tqdm
import yaml

from ml4t.backtest import ConfigError, load_config, run_config
from ml4t.backtest import runner as runner_module
from ml4t.backtest.builtin.reporters import SummaryReporter
from ml4t.backtest.cli import main
from ml4t.backtest.runner import resolved_config
from ml4t.backtest.testing import make_bars

MODULE = "wf_run_strategy"
STRATEGY = """
from ml4t.backtest import Strategy


class Top(Strategy):
    def __init__(self, x=1.0):
        self.x = x

    def on_market_data(self, event, context):
        pred = event.signals["pred"]
        held = self.get_position(event.asset_id)
        if pred > 0 and context["vix"] < 18 and held == 0:
            self.buy(event.asset_id, 10 * self.x)
        elif pred < 0 and held > 0:
            self.close_position(event.asset_id)
"""

CONFIG = """
backtest:
  name: run_cmd
  initial_capital: 100000
  start_date: 2024-01-04
  end_date: 2024-01-12
  calendar: "24/7"
data:
  asset_data: {path: bars.parquet}
  signal_data: {path: preds.parquet, available_at: known_at, max_staleness: 3d}
  context_data: {path: ctx.parquet, fields: [vix], available_at: published}
execution:
  commission: {model: per_share, params: {cost_per_share: 0.01}}
  slippage: {model: bps, params: {bps: 5}}
reporting:
  output_dir: out
  reporters: [parquet, summary]
  trades_output: out/single/trades.csv
  portfolio_output: out/single/portfolio.parquet
  fills_output: out/single/fills.parquet
  metrics_output: out/single/metrics.json
strategy: {module: wf_run_strategy, class: Top, params: {x: 2}, path: strats}
"""
N_DAYS = 12
DATA_FILES = ("bars.parquet", "preds.parquet", "ctx.parquet")


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    frames = [make_bars(N_DAYS, asset_id=a, seed=k) for k, a in enumerate("ABC")]
    pl.concat(frames).sort("timestamp", "asset_id").write_parquet(tmp_path / "bars.parquet")
    ts = frames[0]["timestamp"].to_list()
    pl.DataFrame(
        {
            "timestamp": [t for t in ts for _ in "ABC"],
            "asset_id": list("ABC") * N_DAYS,
            "pred": [float((7 * k + 3 * j) % 5 - 2) for k in range(N_DAYS) for j in range(3)],
            "known_at": [t + timedelta(hours=12) for t in ts for _ in "ABC"],
        }
    ).write_parquet(tmp_path / "preds.parquet")
    pl.DataFrame(
        {"timestamp": ts, "vix": [15.0 + k % 4 for k in range(N_DAYS)], "published": ts}
    ).write_parquet(tmp_path / "ctx.parquet")
    (tmp_path / "strats").mkdir()
    (tmp_path / "strats" / f"{MODULE}.py").write_text(STRATEGY)
    (tmp_path / "bt.yaml").write_text(CONFIG)
    yield tmp_path
    sys.modules.pop(MODULE, None)  # the next test's module lives in another tmp_path


def elsewhere(out: Path) -> list[str]:
    """Overrides sending every output of a run to ``out``."""
    single = out / "single"
    return [
        f"reporting.output_dir={out}",
        f"reporting.trades_output={single / 'trades.csv'}",
        f"reporting.portfolio_output={single / 'portfolio.parquet'}",
        f"reporting.fills_output={single / 'fills.parquet'}",
        f"reporting.metrics_output={single / 'metrics.json'}",
    ]


# --- round trip ----------------------------------------------------------------------------
def test_round_trip_through_resolved_config_reproduces_the_run(project: Path) -> None:
    first, _ = run_config(project / "bt.yaml")
    resolved = project / "out" / "resolved_config.yaml"
    second, _ = run_config(resolved, overrides=elsewhere(project / "again"))
    assert first.trades_df.height >= 3  # the run trades: identity is not vacuous
    assert first.trades_df.equals(second.trades_df)
    assert first.fills_df.equals(second.fills_df)
    assert first.portfolio_df.equals(second.portfolio_df)
    # no key is excluded: the metrics hold no timing (elapsed time is in the metadata)
    assert first.metrics == second.metrics
    for name in ("trades", "fills", "portfolio"):
        a = pl.read_parquet(project / "out" / f"{name}.parquet")
        b = pl.read_parquet(project / "again" / f"{name}.parquet")
        assert a.equals(b), name
    a_metrics = json.loads((project / "out" / "single" / "metrics.json").read_text())
    assert a_metrics == json.loads((project / "again" / "single" / "metrics.json").read_text())


def test_resolved_config_has_absolute_inputs_relative_outputs_and_the_same_values(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_config(project / "bt.yaml")
    raw = yaml.safe_load((project / "out" / "resolved_config.yaml").read_text())
    # the original, with each relative input path joined to the config file's directory by
    # hand, and each output path relative to the resolved config's own directory (out/),
    # so the same input writes the same bytes wherever its outputs go
    root = project.resolve()
    expected = yaml.safe_load(CONFIG)
    for key in ("asset_data", "signal_data", "context_data"):
        expected["data"][key]["path"] = str(root / expected["data"][key]["path"])
    expected["reporting"]["output_dir"] = "."
    for key in ("trades_output", "portfolio_output", "fills_output", "metrics_output"):
        expected["reporting"][key] = expected["reporting"][key].removeprefix("out/")
    expected["strategy"]["path"] = str(root / "strats")
    # every key of the original has its value; the resolved file adds only defaults
    for section, values in expected.items():
        for key, value in values.items():
            want = value.isoformat() if hasattr(value, "isoformat") else value
            assert raw[section][key] == want, (section, key)
    # loaded from another working directory, it is the same config as the original
    monkeypatch.chdir(project / "strats")
    again = resolved_config(load_config(project / "out" / "resolved_config.yaml"))
    assert again == resolved_config(load_config(project / "bt.yaml"))


# --- manifest --------------------------------------------------------------------------------
def test_manifest_records_data_hashes_versions_plugins_overrides_and_outputs(
    project: Path,
) -> None:
    overrides = ["strategy.params.x=3"]
    _, written = run_config(project / "bt.yaml", overrides=overrides)
    manifest_path = project / "out" / "run_manifest.json"
    assert written[-1] == manifest_path  # written last
    manifest = json.loads(manifest_path.read_text())
    expected = {}
    for name in DATA_FILES:
        content = (project / name).read_bytes()
        expected[str((project / name).resolve())] = {
            "sha256": hashlib.sha256(content).hexdigest(),
            "bytes": len(content),
        }
    assert manifest["data_files"] == expected
    versions = manifest["versions"]
    assert versions["python"] == platform.python_version()
    assert versions["ml4t-backtest"] == version("ml4t-backtest")
    assert (versions["polars"], versions["numpy"]) == (pl.__version__, np.__version__)
    names = {p["name"] for p in manifest["plugins"]}
    assert {"ml4t.backtest.builtin.slippage", "ml4t.backtest.builtin.feeds"} <= names
    assert manifest["overrides"] == overrides
    assert manifest["config_file"] == str((project / "bt.yaml").resolve())
    assert manifest["complete"] is True
    assert [Path(p) for p in manifest["outputs"]] == written[:-1]
    assert all(Path(p).is_file() for p in manifest["outputs"])
    single = project / "out" / "single"
    for name in ("trades.csv", "portfolio.parquet", "fills.parquet", "metrics.json"):
        assert single / name in written
    # the resolved config carries the override and loads as a config
    resolved = load_config(project / "out" / manifest["resolved_config"])
    assert resolved.strategy is not None and resolved.strategy.params == {"x": 3}


# --- atomic outputs ------------------------------------------------------------------------
def _disk_full(self: SummaryReporter, result: Any, destination: Path) -> list[Path]:
    raise OSError("disk full")


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def test_failure_while_staging_leaves_no_file_in_a_fresh_output_dir(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the parquet reporter has staged its files when the summary reporter fails
    monkeypatch.setattr(SummaryReporter, "report", _disk_full)
    with pytest.raises(OSError, match="disk full"):
        run_config(project / "bt.yaml")
    # no result, manifest, lock or staging dir: the directory the run created is removed
    assert not (project / "out").exists()


def test_failure_while_staging_leaves_the_previous_run_untouched(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_config(project / "bt.yaml")
    before = _snapshot(project / "out")
    assert "run_manifest.json" in before
    monkeypatch.setattr(SummaryReporter, "report", _disk_full)
    with pytest.raises(OSError, match="disk full"):
        run_config(project / "bt.yaml", overrides=["strategy.params.x=3"])
    # runner.py removes the manifest only once every file is staged: a failure before that
    # leaves the earlier complete run (files and manifest) exactly as it was
    assert _snapshot(project / "out") == before


class _InterruptedOs:
    """``os`` for runner.py whose ``replace`` is interrupted after ``allowed`` calls."""

    def __init__(self, allowed: int) -> None:
        import os

        self._os = os
        self.calls = 0
        self.allowed = allowed

    def replace(self, src: Any, dst: Any) -> None:
        self.calls += 1
        if self.calls > self.allowed:
            raise KeyboardInterrupt
        self._os.replace(src, dst)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._os, name)


def test_interrupted_move_leaves_no_manifest(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_config(project / "bt.yaml")
    assert (project / "out" / "run_manifest.json").is_file()
    fake_os = _InterruptedOs(allowed=2)
    monkeypatch.setattr(runner_module, "os", fake_os)
    with pytest.raises(KeyboardInterrupt):
        run_config(project / "bt.yaml", overrides=["strategy.params.x=3"])
    assert fake_os.calls == 3  # two result files moved, interrupted on the third
    # some files are new and some old: without a manifest the directory is not complete
    assert not (project / "out" / "run_manifest.json").exists()
    leftovers = [p.name for p in (project / "out").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no .ml4t-run-* staging directory, no temporary file


# --- command line -------------------------------------------------------------------------------
def test_cli_run_quiet_with_override(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(project / "bt.yaml")
    assert main(["run", cfg, "--set", "strategy.params.x=3", "-q"]) == 0
    assert capsys.readouterr() == ("", "")
    quantities = pl.read_parquet(project / "out" / "trades.parquet")["quantity"]
    assert quantities.len() >= 3 and set(quantities.abs().to_list()) == {30.0}  # 10 * 3
    assert main(["run", cfg, "-q"]) == 0  # the config's own x: 2
    quantities = pl.read_parquet(project / "out" / "trades.parquet")["quantity"]
    assert set(quantities.abs().to_list()) == {20.0}


def test_cli_run_prints_summary_and_written_files(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result, written = run_config(project / "bt.yaml", output_dir=project / "api")
    capsys.readouterr()
    assert main(["run", str(project / "bt.yaml"), "--output", str(project / "api")]) == 0
    lines = capsys.readouterr().out.splitlines()
    summary = result.summary().splitlines()
    # the same summary, but for its elapsed_time row (wall-clock time of each run)
    assert [x for x in lines[: len(summary)] if "elapsed_time" not in x] == [
        x for x in summary if "elapsed_time" not in x
    ]
    assert sum("elapsed_time" in x for x in summary) == 1
    assert lines[len(summary) :] == [f"wrote {p}" for p in written]


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ("backtest.name", "--set 'backtest.name': expected KEY.PATH=VALUE"),
        ("backtest.name.x=1", "backtest.name is 'run_cmd', not a mapping of keys"),
        ("execution.slipage=fixed", "execution.slipage: Extra inputs are not permitted"),
    ],
)
def test_cli_bad_set_exits_2_with_one_line(
    project: Path, capsys: pytest.CaptureFixture[str], item: str, problem: str
) -> None:
    assert main(["run", str(project / "bt.yaml"), "--set", item]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("ml4t-backtest: error: ConfigError: ")
    assert "bt.yaml: " in err and problem in err
    assert not (project / "out").exists()  # nothing ran


def test_run_config_reports_progress(project: Path) -> None:
    calls: list[float] = []
    run_config(project / "bt.yaml", progress=calls.append)
    assert all(0.0 <= f <= 1.0 for f in calls)
    assert calls == sorted(calls) and calls[-1] == 1.0
    # once per session (4 to 12 Jan: 9 days) and once at the end
    assert len(calls) == 9 + 1


class _FakeBar:
    """Stands in for ``tqdm.tqdm``: records that a bar was drawn and how far it went."""

    made: ClassVar[list[_FakeBar]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.n = 0
        self.closed = False
        _FakeBar.made.append(self)

    def update(self, step: int) -> None:
        self.n += step

    def close(self) -> None:
        self.closed = True


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("tty", "flags", "drawn"),
    [(True, [], True), (False, [], False), (True, ["--no-progress"], False), (True, ["-q"], False)],
)
def test_cli_progress_bar_only_on_a_terminal(
    project: Path, monkeypatch: pytest.MonkeyPatch, tty: bool, flags: list[str], drawn: bool
) -> None:
    monkeypatch.setattr(tqdm, "tqdm", _FakeBar)
    monkeypatch.setattr(_FakeBar, "made", [])
    stderr = _Terminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert main(["run", str(project / "bt.yaml"), *flags]) == 0
    assert stderr.getvalue() == ""
    if not drawn:
        assert _FakeBar.made == []
        return
    [bar] = _FakeBar.made
    assert bar.kwargs["file"] is stderr
    assert bar.kwargs["delay"] == 1.0  # shown only for runs longer than a second
    assert (bar.n, bar.kwargs["total"], bar.closed) == (1000, 1000, True)


def test_overrides_rejected_for_a_config_object(project: Path) -> None:
    cfg = load_config(project / "bt.yaml")
    with pytest.raises(TypeError, match="overrides apply to a config file"):
        run_config(cfg, overrides=["backtest.name=x"])
    with pytest.raises(ConfigError, match=r"bt\.yaml: --set 'x': expected KEY\.PATH=VALUE"):
        run_config(project / "bt.yaml", overrides=["x"])


def test_cli_run_says_when_orders_were_rejected(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # with 100 of cash every buy of 20 shares (at ~100 each) is rejected: the run completes,
    # but the command says so: on stderr with -q, in the printed summary otherwise
    cfg = str(project / "bt.yaml")
    poor = ["--set", "backtest.initial_capital=100"]
    assert main(["run", cfg, *poor, "-q"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith("ml4t-backtest: warning: ") and " orders were rejected: " in line
    assert "insufficient cash" in line
    assert main(["run", cfg, *poor]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "orders were rejected" in out
