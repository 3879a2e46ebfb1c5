"""Issue 15, ``run_config`` / ``ml4t-backtest run`` side.

- two runs writing to one output directory cannot mix: the second fails at once naming the
  directory and the holder; a stale lock of a dead run is taken over, saying so;
- the output locations are checked before any bar is run;
- SIGTERM/SIGINT during a run leave no staging directory, no lock and the previous outputs
  intact;
- the same input writes byte-identical files (wall-clock values live in the manifest only).

Runs that must be caught in the middle use a strategy (or reporter) that writes a marker
file and then waits for a release file the test creates, so nothing depends on timing.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ml4t.backtest import ConfigError, run_config
from ml4t.backtest.cli import main
from ml4t.backtest.errors import OutputLockError, StaleLockWarning
from ml4t.backtest.testing import make_bars

MODULE = "nsf_gate_strategy"
STRATEGY = '''
import time
from pathlib import Path

from ml4t.backtest import Strategy


def gate(marker, release):
    """Write ``marker``, then wait (at most a minute) until ``release`` exists."""
    Path(marker).write_text(str(__import__("os").getpid()))
    deadline = time.monotonic() + 60
    while not Path(release).exists() and time.monotonic() < deadline:
        time.sleep(0.01)


class Gated(Strategy):
    def __init__(self, x=1.0, marker=None, release=None, at_bar=3):
        self.x, self.marker, self.release, self.at_bar = x, marker, release, at_bar
        self.bars = 0

    def on_market_data(self, event, context):
        self.bars += 1
        if self.marker and self.bars == self.at_bar:
            gate(self.marker, self.release)
        if self.get_position(event.asset_id) == 0 and self.bars % 2:
            self.buy(event.asset_id, 10 * self.x)
        elif self.bars % 5 == 0:
            self.close_position(event.asset_id)
'''

REPORTER = """
from pathlib import Path

from ml4t.backtest import hookimpl
from nsf_gate_strategy import gate


class GateReporter:
    def __init__(self, marker, release):
        self.marker, self.release = marker, release

    def report(self, result, destination):
        path = Path(destination) / "gate.txt"
        path.write_text("half")
        gate(self.marker, self.release)
        path.write_text("written")
        return [path]


@hookimpl
def ml4t_register_reporters():
    return [("gate", GateReporter)]
"""

CONFIG = """
backtest: {name: nsf_run, initial_capital: 100000}
data:
  asset_data: {path: bars.parquet}
reporting:
  output_dir: out
  reporters: [parquet, summary]
  trades_output: out/single/trades.csv
  metrics_output: out/single/metrics.json
strategy: {module: nsf_gate_strategy, class: Gated, params: {x: 2}}
"""
LOCK = ".ml4t-run.lock"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    frames = [make_bars(12, asset_id=a, seed=k) for k, a in enumerate("ABC")]
    pl.concat(frames).sort("timestamp", "asset_id").write_parquet(tmp_path / "bars.parquet")
    (tmp_path / f"{MODULE}.py").write_text(STRATEGY)
    (tmp_path / "nsf_gate_reporter.py").write_text(REPORTER)
    (tmp_path / "bt.yaml").write_text(CONFIG)
    monkeypatch.syspath_prepend(str(tmp_path))  # the reporter plugin module
    yield tmp_path
    for name in (MODULE, "nsf_gate_reporter"):
        sys.modules.pop(name, None)


def _gate(project: Path, name: str = "gate") -> tuple[Path, Path, list[str]]:
    marker, release = project / f"{name}.marker", project / f"{name}.release"
    overrides = [f"strategy.params.marker={marker}", f"strategy.params.release={release}"]
    return marker, release, overrides


def _start(project: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.Popen(
        [sys.executable, "-m", "ml4t.backtest", "run", str(project / "bt.yaml"), "-q", *args],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, proc: subprocess.Popen[str] | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended before {path.name}: {proc.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} never appeared")
        time.sleep(0.01)


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def _sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


# --- 1. one writer per output directory ------------------------------------------------------
def test_run_config_second_run_on_busy_output_dir_fails_at_once_naming_holder(
    project: Path,
) -> None:
    marker, release, gated = _gate(project)
    first = _start(project, *_sets(gated))
    try:
        _wait_for(marker, first)
        t0 = time.monotonic()
        with pytest.raises(OutputLockError) as info:
            run_config(project / "bt.yaml", overrides=["strategy.params.x=3"])
        assert time.monotonic() - t0 < 10  # at once: the first run is still waiting
        err = info.value
        text = str(err)
        out = (project / "out").resolve()
        assert err.path == str(out) and str(out) in text
        assert err.holder["pid"] == first.pid and f"pid {first.pid}" in text
        assert err.holder["host"] == socket.gethostname() and socket.gethostname() in text
        assert str((project / "bt.yaml").resolve()) in text  # the holder's config
        assert "started" in text and str(err.holder["started_at"]) in text
    finally:
        release.write_text("go")
        _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    # the directory holds the first run alone: compare with the same run made elsewhere
    ref, _ = run_config(
        project / "bt.yaml",
        output_dir=project / "ref",
        overrides=gated,
    )
    manifest = json.loads((project / "out" / "run_manifest.json").read_text())
    assert manifest["complete"] is True and manifest["overrides"] == gated
    metrics = json.loads((project / "out" / "metrics.json").read_text())
    assert metrics == json.loads((project / "ref" / "metrics.json").read_text())
    trades = pl.read_parquet(project / "out" / "trades.parquet")
    assert trades.height > 0 and trades.equals(ref.trades_df)
    assert not (project / "out" / LOCK).exists()


def test_cli_run_on_busy_output_dir_exits_2_with_one_line(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker, release, gated = _gate(project)
    first = _start(project, *_sets(gated))
    try:
        _wait_for(marker, first)
        assert main(["run", str(project / "bt.yaml"), "-q"]) == 2
    finally:
        release.write_text("go")
        first.communicate(timeout=120)
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("ml4t-backtest: error: OutputLockError: ")
    assert f"pid {first.pid}" in err and str((project / "out").resolve()) in err


def test_run_config_two_threads_on_one_output_dir_one_fails_one_completes(
    project: Path,
) -> None:
    marker, release, gated = _gate(project)
    outcome: dict[str, Any] = {}

    def first() -> None:
        try:
            outcome["first"] = run_config(project / "bt.yaml", overrides=gated)
        except BaseException as exc:  # pragma: no cover - reported below
            outcome["first"] = exc

    thread = threading.Thread(target=first)
    thread.start()
    try:
        _wait_for(marker)
        with pytest.raises(OutputLockError, match=f"pid {os.getpid()}"):
            run_config(project / "bt.yaml", overrides=["strategy.params.x=3"])
    finally:
        release.write_text("go")
        thread.join(120)
    result, _ = outcome["first"]
    metrics = json.loads((project / "out" / "metrics.json").read_text())
    assert metrics["num_trades"] == result.metrics["num_trades"]
    assert metrics["final_equity"] == result.metrics["final_equity"]
    manifest = json.loads((project / "out" / "run_manifest.json").read_text())
    assert manifest["overrides"] == gated
    assert not (project / "out" / LOCK).exists()


def test_run_config_stale_lock_of_a_killed_run_is_taken_over_with_a_warning(
    project: Path,
) -> None:
    marker, _, gated = _gate(project)
    first = _start(project, *_sets(gated))
    _wait_for(marker, first)
    first.send_signal(signal.SIGKILL)  # no clean-up at all: the lock file stays
    first.communicate(timeout=60)
    lock = project / "out" / LOCK
    assert json.loads(lock.read_text())["pid"] == first.pid
    with pytest.warns(StaleLockWarning) as caught:
        result, _ = run_config(project / "bt.yaml")
    message = str(caught[0].message)
    assert f"pid {first.pid}" in message and "no longer running" in message
    assert str((project / "out").resolve()) in message
    assert result.complete
    manifest = json.loads((project / "out" / "run_manifest.json").read_text())
    assert manifest["stale_lock_taken_over"]["pid"] == first.pid
    assert not lock.exists()


def test_run_config_lock_released_after_a_failed_run(project: Path) -> None:
    with pytest.raises(ConfigError):
        run_config(project / "bt.yaml", overrides=["strategy.params={y: 1}"])
    assert not (project / "out").exists()  # nothing was created for the failed run
    run_config(project / "bt.yaml")
    assert not (project / "out" / LOCK).exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaleLockWarning)
        run_config(project / "bt.yaml")  # a clean release leaves nothing to take over


# --- 2. the output locations are checked before the run ------------------------------------
def _never_runs(project: Path) -> list[str]:
    """Overrides making the strategy write a marker on its first bar."""
    return [
        f"strategy.params.marker={project / 'ran.marker'}",
        f"strategy.params.release={project}",  # exists: no waiting
        "strategy.params.at_bar=1",
    ]


@pytest.mark.parametrize(
    ("make", "override", "key"),
    [
        ("out", [], "reporting.output_dir"),
        ("out/single", [], "reporting.trades_output"),
        ("blocker", ["reporting.output_dir=blocker/deeper"], "reporting.output_dir"),
    ],
)
def test_run_config_output_path_that_is_a_file_fails_before_any_bar(
    project: Path, make: str, override: list[str], key: str
) -> None:
    blocker = project / make
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where a directory belongs")
    with pytest.raises(ConfigError) as info:
        run_config(project / "bt.yaml", overrides=[*override, *_never_runs(project)])
    text = str(info.value)
    assert text.startswith(f"{project / 'bt.yaml'}: {key}: ")
    assert str(blocker) in text and "not a directory" in text
    assert not (project / "ran.marker").exists()


def test_run_config_output_file_that_is_a_directory_fails_before_any_bar(project: Path) -> None:
    (project / "out" / "single" / "metrics.json").mkdir(parents=True)
    with pytest.raises(ConfigError) as info:
        run_config(project / "bt.yaml", overrides=_never_runs(project))
    text = str(info.value)
    assert "reporting.metrics_output: " in text and "is a directory" in text
    assert not (project / "ran.marker").exists()


def test_cli_output_option_naming_a_file_fails_before_any_bar(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "taken").write_text("x")
    args = ["run", str(project / "bt.yaml"), "--output", str(project / "taken")]
    assert main([*args, *_sets(_never_runs(project))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--output: " in err and str(project / "taken") in err
    assert not (project / "ran.marker").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_run_config_output_dir_that_cannot_be_created_fails_before_any_bar(
    project: Path,
) -> None:
    # /proc refuses new directories, even to root
    with pytest.raises(ConfigError) as info:
        run_config(
            project / "bt.yaml",
            overrides=["reporting.output_dir=/proc/self/nsf_out", *_never_runs(project)],
        )
    text = str(info.value)
    assert "reporting.output_dir: " in text and "/proc/self/nsf_out" in text
    assert not (project / "ran.marker").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_run_config_existing_output_dir_not_writable_fails_before_any_bar(
    project: Path,
) -> None:
    # /proc exists but refuses new files, even to root (a chmod 555 directory would not
    # stop root, which CI runs as)
    with pytest.raises(ConfigError, match=r"reporting\.output_dir: cannot write to /proc"):
        run_config(
            project / "bt.yaml",
            overrides=["reporting.output_dir=/proc", *_never_runs(project)],
        )
    assert not (project / "ran.marker").exists()


# --- 6. SIGTERM / SIGINT --------------------------------------------------------------------
def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.name.startswith("."))


@pytest.mark.parametrize(
    ("sig", "status"), [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 130)]
)
def test_cli_signal_mid_run_keeps_previous_outputs_and_leaves_nothing(
    project: Path, sig: signal.Signals, status: int
) -> None:
    run_config(project / "bt.yaml")
    before = _snapshot(project / "out")
    marker, _, gated = _gate(project)
    proc = _start(project, *_sets([*gated, "strategy.params.x=3"]))
    _wait_for(marker, proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == status, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("ml4t-backtest: error: ")
    assert _snapshot(project / "out") == before  # the earlier complete run, untouched
    assert _leftovers(project / "out") == []  # no lock, no staging directory


def test_cli_sigterm_while_writing_reports_removes_staging_and_lock(project: Path) -> None:
    run_config(project / "bt.yaml")
    before = _snapshot(project / "out")
    marker, release = project / "rep.marker", project / "rep.release"
    reporter = f"{{model: gate, params: {{marker: {marker}, release: {release}}}}}"
    sets = [
        "plugins.modules=[nsf_gate_reporter]",
        f"reporting.reporters=[parquet, {reporter}]",
        "strategy.params.x=3",
    ]
    proc = _start(project, *_sets(sets))
    _wait_for(marker, proc)
    staged = [p for p in (project / "out").iterdir() if p.name.startswith(".ml4t-run-")]
    assert staged and any(staged[0].rglob("trades.parquet"))  # caught while staging
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert _snapshot(project / "out") == before
    assert _leftovers(project / "out") == []


# --- 7. the same input writes the same bytes ------------------------------------------------
def test_cli_same_config_twice_writes_byte_identical_files_but_the_manifest(
    project: Path,
) -> None:
    cfg = str(project / "bt.yaml")
    for name in ("first", "second"):
        assert main(["run", cfg, "-q", "--output", str(project / name)]) == 0
        time.sleep(0.01)  # distinct wall-clock times
    first, second = _snapshot(project / "first"), _snapshot(project / "second")
    assert sorted(first) == sorted(second)
    assert {"metadata.json", "summary.txt", "trades.parquet", "resolved_config.yaml"} <= set(first)
    differ = [name for name in first if first[name] != second[name]]
    assert differ == ["run_manifest.json"]
    # the wall-clock values are in the manifest
    manifest = json.loads(first["run_manifest.json"])
    assert {"started_at", "finished_at", "elapsed_seconds", "run_seconds"} <= set(manifest)
    meta = json.loads(first["metadata.json"])
    assert "created_at" not in meta and meta["complete"] is True


def test_run_config_same_config_twice_into_config_dirs_is_byte_identical(
    project: Path,
) -> None:
    def elsewhere(out: Path) -> list[str]:
        return [
            f"reporting.output_dir={out}",
            f"reporting.trades_output={out / 'single' / 'trades.csv'}",
            f"reporting.metrics_output={out / 'single' / 'metrics.json'}",
        ]

    run_config(project / "bt.yaml", overrides=elsewhere(project / "a"))
    run_config(project / "bt.yaml", overrides=elsewhere(project / "b"))
    a, b = _snapshot(project / "a"), _snapshot(project / "b")
    assert sorted(a) == sorted(b)
    assert [n for n in a if a[n] != b[n]] == ["run_manifest.json"]
    # the resolved config names its outputs relative to itself: run again, it rewrites the
    # same directory with the same bytes
    run_config(project / "a" / "resolved_config.yaml")
    again = _snapshot(project / "a")
    assert sorted(again) == sorted(a)
    assert [n for n in a if a[n] != again[n]] == ["run_manifest.json"]
