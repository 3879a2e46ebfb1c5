"""Lifecycle and reporting hooks, plugin provenance in results, errors that name the plugin."""

from __future__ import annotations

import json
import types
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest

from ml4t.backtest import BacktestEngine, PluginError, PolarsDataFeed, hookimpl
from ml4t.backtest.testing import ScriptedStrategy, make_bars


class Recorder:
    """A plugin object implementing every lifecycle hook."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    @hookimpl
    def ml4t_run_start(self, engine: Any) -> None:
        self.calls.append(("run_start", engine.broker.portfolio.cash))

    @hookimpl
    def ml4t_session_end(self, engine: Any, timestamp: datetime) -> None:
        self.calls.append(("session_end", timestamp))

    @hookimpl
    def ml4t_run_end(self, engine: Any, result: Any) -> None:
        result.metadata["recorder"] = len(self.calls)
        self.calls.append(("run_end", result.complete))

    @hookimpl
    def ml4t_report(self, result: Any, destination: Path) -> list[Path]:
        path = destination / "recorder.json"
        path.write_text(json.dumps([c[0] for c in self.calls]))
        return [path]


def _intraday_feed() -> PolarsDataFeed:
    # 3 sessions of 4 hourly bars
    stamps = [datetime(2024, 1, 2 + d, 10) + timedelta(hours=h) for d in range(3) for h in range(4)]
    return PolarsDataFeed(make_bars(12).with_columns(pl.Series("timestamp", stamps)), asset_id="A")


def test_lifecycle_hooks_called_in_order_once_per_session(tmp_path: Path) -> None:
    rec = Recorder()
    engine = BacktestEngine(_intraday_feed(), ScriptedStrategy(), plugins=[rec])
    result = engine.run()
    kinds = [c[0] for c in rec.calls]
    assert kinds == ["run_start", "session_end", "session_end", "session_end", "run_end"]
    assert rec.calls[0][1] == 100_000.0
    assert [c[1] for c in rec.calls[1:4]] == [datetime(2024, 1, d, 13) for d in (2, 3, 4)]
    assert result.metadata["recorder"] == 4
    paths = engine.report(result, tmp_path, reporters=[])
    assert paths == [tmp_path / "recorder.json"]


def test_run_end_wrapper_sees_the_other_implementations() -> None:
    order: list[str] = []

    class Inner:
        @hookimpl
        def ml4t_run_end(self, engine: Any, result: Any) -> None:
            order.append("inner")

    class Outer:
        @hookimpl(wrapper=True)
        def ml4t_run_end(self, engine: Any, result: Any) -> Any:
            order.append("before")
            out = yield
            order.append("after")
            return out

    BacktestEngine(_intraday_feed(), ScriptedStrategy(), plugins=[Inner(), Outer()]).run()
    assert order == ["before", "inner", "after"]


def test_session_hook_not_called_when_unimplemented() -> None:
    engine = BacktestEngine(_intraday_feed(), ScriptedStrategy())
    engine.run()
    assert engine._run is not None
    assert engine._run.setup.observers.session_end is None


@pytest.mark.parametrize("hook", ["ml4t_run_start", "ml4t_session_end", "ml4t_run_end"])
def test_lifecycle_hook_raising_names_the_plugin(hook: str) -> None:
    def boom(**kwargs: Any) -> None:
        raise ZeroDivisionError("bad plugin arithmetic")

    args = {
        "ml4t_run_start": "engine",
        "ml4t_session_end": "engine, timestamp",
        "ml4t_run_end": "engine, result",
    }[hook]
    namespace: dict[str, Any] = {"boom": boom}
    exec(f"def {hook}({args}):\n    boom()", namespace)  # a real signature for pluggy
    plugin = types.ModuleType("exploding_plugin")
    setattr(plugin, hook, hookimpl(namespace[hook]))
    engine = BacktestEngine(_intraday_feed(), ScriptedStrategy(), plugins=[plugin])
    with pytest.raises(PluginError) as info:
        engine.run()
    msg = str(info.value)
    assert "'exploding_plugin'" in msg and "ZeroDivisionError" in msg and hook in msg


def test_result_metadata_records_active_plugins(tmp_path: Path) -> None:
    rec = Recorder()
    engine = BacktestEngine(_intraday_feed(), ScriptedStrategy(), plugins=[rec])
    result = engine.run()
    plugins = result.metadata["plugins"]
    names = [p["name"] for p in plugins]
    assert "ml4t.backtest.builtin.commission" in names
    assert names[-1].endswith(".Recorder")  # objects in code are named by their class
    commission = next(p for p in plugins if p["name"] == "ml4t.backtest.builtin.commission")
    assert commission["distribution"] == "ml4t-backtest" and commission["version"]
    assert commission["provides"] == {
        "commission": ["fixed", "ibkr_fixed", "none", "per_share", "percentage", "tiered"]
    }
    result.to_parquet(tmp_path)
    written = json.loads((tmp_path / "metadata.json").read_text())
    assert written["plugins"] == json.loads(json.dumps(plugins))
    meta = pq.read_metadata(tmp_path / "fills.parquet").metadata
    assert json.loads(meta[b"ml4t.backtest"])["plugins"] == written["plugins"]
