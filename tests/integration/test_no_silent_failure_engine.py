"""Issue 15, engine side: errors raised mid-run are reported as what they are.

- a model of an installed plugin that raises becomes a ``PluginError`` naming the plugin,
  its distribution, the model, the timestamp and the asset, with the partial result;
- a strategy with no source file (a notebook cell, ``exec``'d code) gets a
  ``StrategyError`` like any other;
- the partial result of a ``StrategyError`` lists open positions as open trades, so its
  trade P&L reconciles with its equity.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ml4t.backtest import (
    BacktestEngine,
    PluginError,
    PolarsDataFeed,
    SimulationBroker,
    Strategy,
    StrategyError,
)
from ml4t.backtest.testing import make_bars

START = datetime(2024, 1, 2)
N = 20
TS = [START + timedelta(days=k) for k in range(N)]


def _frame(assets: str = "AB") -> pl.DataFrame:
    return pl.concat(
        [make_bars(N, asset_id=a, seed=k, start=START) for k, a in enumerate(assets)]
    ).sort("timestamp", "asset_id")


class BuyEach(Strategy):
    """Buys 10 of every asset on its first bar and holds."""

    def on_market_data(self, event: Any, context: Any) -> None:
        if self.get_position(event.asset_id) == 0:
            self.buy(event.asset_id, 10)


# --- 8. a plugin model raising mid-run is a PluginError ---------------------------------------
PLUGIN = '''
from ml4t.backtest import hookimpl


class FlakyCommission:
    """One currency unit per fill; raises from its ``fail_on``-th call."""

    def __init__(self, fail_on=3):
        self.calls = 0
        self.fail_on = fail_on

    def calculate(self, quantity, price):
        self.calls += 1
        if self.calls >= self.fail_on:
            return quantity / 0.0 * price
        return 1.0


@hookimpl
def ml4t_register_commission_models():
    return [("flaky", FlakyCommission)]
'''


@pytest.fixture
def flaky_plugin(tmp_path: Path) -> Iterator[types.ModuleType]:
    (tmp_path / "nsf_flaky_plugin.py").write_text(PLUGIN)
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("nsf_flaky_plugin")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("nsf_flaky_plugin", None)


def _flaky_engine(plugin: types.ModuleType, assets: str, fail_on: int) -> BacktestEngine:
    spec = {
        "model": "simulation",
        "params": {"commission": {"model": "flaky", "params": {"fail_on": fail_on}}},
    }
    return BacktestEngine(PolarsDataFeed(_frame(assets)), BuyEach(), spec, plugins=[plugin])


def test_engine_plugin_model_raising_mid_run_becomes_plugin_error_with_partial_result(
    flaky_plugin: types.ModuleType,
) -> None:
    # one asset: the buy placed on bar 0 fills at bar 1's open, where the commission model
    # is first called, and raises
    with pytest.raises(PluginError) as info:
        _flaky_engine(flaky_plugin, "A", fail_on=1).run()
    err = info.value
    text = str(err)
    assert isinstance(err.__cause__, ZeroDivisionError)
    assert err.plugin == "nsf_flaky_plugin"
    assert err.distribution == "(in code)"
    assert err.model is not None and "flaky" in err.model and "FlakyCommission" in err.model
    assert TS[1].isoformat() in str(err.timestamp)
    assert err.asset_id == "A"  # one bar at that timestamp: the broker was filling A
    for part in (
        "'nsf_flaky_plugin'",
        "FlakyCommission.calculate",
        TS[1].isoformat(),
        "'A'",
        "ZeroDivisionError",
    ):
        assert part in text, (part, text)
    partial = err.partial_result
    assert partial is not None and partial.complete is False
    assert partial.portfolio_df["timestamp"].to_list() == TS[:2]


def test_engine_plugin_error_with_several_assets_says_the_asset_is_not_known(
    flaky_plugin: types.ModuleType,
) -> None:
    with pytest.raises(PluginError) as info:
        _flaky_engine(flaky_plugin, "AB", fail_on=1).run()
    err = info.value
    assert err.asset_id is None
    assert TS[1].isoformat() in str(err) and "asset not known" in str(err)
    assert err.partial_result.complete is False


def test_engine_plugin_error_from_installed_distribution_names_it(
    flaky_plugin: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.metadata as md

    class Dist:
        name, version = "ml4t-backtest-flaky", "0.4.2"

    class EntryPoint:
        name, value, group, dist = "flaky", "nsf_flaky_plugin", "ml4t.backtest", Dist()

        def load(self) -> Any:
            return flaky_plugin

    real = md.entry_points

    def entry_points(**kw: Any) -> Any:
        return [EntryPoint()] if kw.get("group") == "ml4t.backtest" else real(**kw)

    monkeypatch.setattr(md, "entry_points", entry_points)
    monkeypatch.delenv("ML4T_BACKTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    flaky = {"model": "flaky", "params": {"fail_on": 1}}
    spec = {"model": "simulation", "params": {"commission": flaky}}
    engine = BacktestEngine(PolarsDataFeed(_frame("A")), BuyEach(), spec)
    with pytest.raises(PluginError) as info:
        engine.run()
    err = info.value
    assert err.plugin == "flaky"
    assert err.distribution == "ml4t-backtest-flaky 0.4.2"
    assert "ml4t-backtest-flaky 0.4.2" in str(err)
    assert "ML4T_BACKTEST_BLOCK_PLUGINS=flaky" in str(err)  # how to run without it


def test_engine_error_in_builtin_code_is_not_blamed_on_a_plugin() -> None:
    # a model object passed in code (no plugin) raising: the original exception, with notes
    class Broken:
        def calculate(self, quantity: float, price: float) -> float:
            raise RuntimeError("own model")

    engine = BacktestEngine(
        PolarsDataFeed(_frame("A")), BuyEach(), SimulationBroker(commission=Broken())
    )
    with pytest.raises(RuntimeError, match="own model") as info:
        engine.run()
    assert not isinstance(info.value, PluginError)
    assert any(TS[1].isoformat() in note for note in info.value.__notes__)


# --- 9. a strategy without a source file -----------------------------------------------------
NOTEBOOK_CELL = """
from ml4t.backtest import Strategy


def _helper(x):
    return [1 / (x - x) for _ in range(1)]


class CellStrategy(Strategy):
    def on_market_data(self, event, context):
        if self.get_position(event.asset_id) == 0:
            self.buy(event.asset_id, 10)
        if event.timestamp.day == 9 and event.asset_id == "B":
            {k: _helper(k) for k in (1.0,)}
"""


def _exec_module(name: str, filename: str) -> types.ModuleType:
    module = types.ModuleType(name)  # like __main__ in a notebook: no __file__
    exec(compile(NOTEBOOK_CELL, filename, "exec"), module.__dict__)
    return module


@pytest.mark.parametrize(
    "filename", ["<ipython-input-7-3f2a9c>", "<stdin>", "<string>", "/tmp/not_its_module.py"]
)
def test_engine_strategy_without_file_raising_gives_strategy_error(
    filename: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _exec_module("nsf_notebook", filename)
    monkeypatch.setitem(sys.modules, "nsf_notebook", module)
    assert not hasattr(module, "__file__")
    engine = BacktestEngine(PolarsDataFeed(_frame("AB")), module.CellStrategy())
    with pytest.raises(StrategyError) as info:
        engine.run()
    err = info.value
    assert isinstance(err.__cause__, ZeroDivisionError)
    assert err.asset_id == "B" and "2024-01-09" in str(err.timestamp)
    assert err.partial_result.complete is False
    assert err.partial_result.portfolio_df.height == 8  # 2 to 9 January


def test_engine_strategy_whose_module_left_sys_modules_gives_strategy_error() -> None:
    module = _exec_module("nsf_gone", "<ipython-input-1-aa>")  # never in sys.modules
    with pytest.raises(StrategyError):
        BacktestEngine(PolarsDataFeed(_frame("AB")), module.CellStrategy()).run()


# --- 10. the partial result lists open positions as open trades ---------------------------
class RoundTripThenFail(Strategy):
    """A: buy on bar 0, sell on bar 4, buy again on bar 6. B: buy on bar 2. Then raise."""

    def __init__(self, hook: str, at: datetime) -> None:
        self.hook, self.at, self.k = hook, at, {"A": 0, "B": 0}

    def before_trading_start(self, timestamp: datetime, context: Any) -> None:
        if self.hook == "before_trading_start" and timestamp == self.at:
            raise ValueError("session boom")

    def after_trading_end(self, timestamp: datetime, context: Any) -> None:
        if self.hook == "after_trading_end" and timestamp == self.at:
            raise ValueError("session boom")

    def on_market_data(self, event: Any, context: Any) -> None:
        a = event.asset_id
        k = self.k[a]
        self.k[a] += 1
        if self.hook == "on_market_data" and (event.timestamp, a) == (self.at, "B"):
            raise ValueError("bar boom")
        if a == "A" and k in (0, 6):
            self.buy(a, 10)
        elif a == "A" and k == 4:
            self.close_position(a)
        elif a == "B" and k == 2:
            self.buy(a, 7)


@pytest.mark.parametrize(
    ("hook", "at"),
    [
        ("on_market_data", TS[10]),
        ("before_trading_start", TS[10]),
        ("after_trading_end", TS[10]),
        ("after_trading_end", TS[-1]),
    ],
)
def test_strategy_error_partial_result_has_open_trades_and_reconciles(
    hook: str, at: datetime
) -> None:
    broker = SimulationBroker(initial_cash=100_000.0)  # no costs, no dividends
    engine = BacktestEngine(PolarsDataFeed(_frame("AB")), RoundTripThenFail(hook, at), broker)
    with pytest.raises(StrategyError) as info:
        engine.run()
    partial = info.value.partial_result
    trades = partial.trades_df
    assert trades.filter(~pl.col("is_open")).height == 1  # A's round trip
    open_trades = trades.filter(pl.col("is_open")).sort("asset_id")
    assert open_trades["asset_id"].to_list() == ["A", "B"]
    assert open_trades["quantity"].abs().to_list() == [10.0, 7.0]
    last = partial.portfolio_df.row(-1, named=True)
    pnl = float(trades["pnl_net"].sum())
    assert pnl == pytest.approx(last["equity"] - 100_000.0, abs=1e-6)
    # the open trades are marked at the last close of the partial books
    assert last["positions_value"] == pytest.approx(
        float((open_trades["quantity"].abs() * open_trades["exit_price"]).sum()), rel=1e-12
    )
    # metrics count closed trades only, as in a complete result
    assert partial.metrics["num_trades"] == 1


# --- 8. the command line: one line, exit 2; --traceback shows the user's code --------------
CLI_STRATEGY = """
from ml4t.backtest import Strategy


class Boom(Strategy):
    def __init__(self, fail_on=None):
        self.fail_on, self.bars = fail_on, 0

    def on_market_data(self, event, context):
        self.bars += 1
        if self.bars == self.fail_on:
            raise ValueError("strategy boom")
        if self.get_position(event.asset_id) == 0:
            self.buy(event.asset_id, 10)
"""

CLI_CONFIG = """
data: {asset_data: {path: bars.parquet}}
strategy: {module: nsf_cli_strategy, class: Boom}
"""


@pytest.fixture
def cli_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    make_bars(N, asset_id="A", start=START).write_parquet(tmp_path / "bars.parquet")
    (tmp_path / "nsf_cli_strategy.py").write_text(CLI_STRATEGY)
    (tmp_path / "nsf_cli_flaky.py").write_text(PLUGIN)
    (tmp_path / "bt.yaml").write_text(CLI_CONFIG)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("nsf_cli_strategy", "nsf_cli_flaky"):
        sys.modules.pop(name, None)


FLAKY = [
    "--set",
    "plugins.modules=[nsf_cli_flaky]",
    "--set",
    "execution.commission={model: flaky, params: {fail_on: 1}}",
]
STRATEGY_FAILS = ["--set", "strategy.params.fail_on=4"]
BAD_SESSIONS = ["--set", "backtest.calendar=NYSE", "--set", "backtest.outside_sessions=error"]


@pytest.mark.parametrize(
    ("extra", "kind", "words"),
    [
        (STRATEGY_FAILS, "StrategyError", ["Boom", "ValueError", "strategy boom", "'A'"]),
        (FLAKY, "PluginError", ["'nsf_cli_flaky'", "FlakyCommission.calculate", "'A'"]),
        (BAD_SESSIONS, "DataValidationError", ["outside the NYSE sessions"]),
        (["--set", "execution.commission=flaky"], "ConfigError", ["unknown commission"]),
    ],
)
def test_cli_run_error_prints_one_line_and_exits_2(
    cli_project: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    kind: str,
    words: list[str],
) -> None:
    from ml4t.backtest.cli import main

    assert main(["run", str(cli_project / "bt.yaml"), "-q", *extra]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert err.startswith(f"ml4t-backtest: error: {kind}: "), err
    for word in words:
        assert word in err, (word, err)
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("extra", "source", "line"),
    [
        (STRATEGY_FAILS, "nsf_cli_strategy.py", 'raise ValueError("strategy boom")'),
        (FLAKY, "nsf_cli_flaky.py", "return quantity / 0.0 * price"),
    ],
)
@pytest.mark.parametrize("where", ["global", "run"])
def test_cli_traceback_option_shows_the_user_code_that_raised(
    cli_project: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    source: str,
    line: str,
    where: str,
) -> None:
    from ml4t.backtest.cli import main

    args = ["run", str(cli_project / "bt.yaml"), "-q", *extra]
    args = ["--traceback", *args] if where == "global" else [*args, "--traceback"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert f'File "{cli_project / source}"' in err and line in err
    assert err.splitlines()[-1].startswith("ml4t-backtest: error: ")
