"""The demo, the command line and every runnable example, end to end.

Expected values are computed here from the embedded data with plain numpy/polars, never by
asking the engine: final equity from the fills and the last closes, fill prices from the
next bar's open and the slippage rate, context values from an independently built index.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import ModuleType

import numpy as np
import polars as pl
import pytest

import ml4t.backtest as bt
from ml4t.backtest import cli, demo

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*/run.py"))
RESULT_FILES = ("trades", "fills", "orders", "portfolio")


@pytest.fixture(scope="module")
def bars() -> pl.DataFrame:
    return demo.load_demo_data()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[bt.BacktestResult, Path]:
    out = tmp_path_factory.mktemp("demo")
    return demo.run_demo(out, quiet=True), out


# --- embedded data ------------------------------------------------------------------------
def test_load_demo_data_embedded_file_expected_shape(bars: pl.DataFrame) -> None:
    assert bars.columns == list(demo._COLUMNS)
    assert sorted(bars["asset_id"].unique()) == ["NVDA", "ORCL", "YHOO"]
    assert bars.group_by("asset_id").len()["len"].to_list() == [2517] * 3
    assert bars["timestamp"].min() == datetime(2005, 1, 3)
    assert bars["timestamp"].max() == datetime(2014, 12, 31)
    assert bars.null_count().sum_horizontal().item() == 0
    size = (Path(demo.__file__).parent / "data" / demo.DEMO_FILE).stat().st_size
    assert size < 300 * 1024


def test_build_demo_dataset_from_repository_csv_matches_embedded(
    tmp_path: Path, bars: pl.DataFrame
) -> None:
    src = REPO / "validation" / "real_data"
    rebuilt = pl.read_parquet(demo.build_demo_dataset(src, tmp_path / "d.parquet"))
    assert rebuilt.equals(bars)
    nvda = pl.read_csv(src / "nvda_daily_yahoo.csv")  # spot-check one raw row by hand
    row = nvda.filter(pl.col("Date") == "2008-09-15")
    got = bars.filter(
        (pl.col("asset_id") == "NVDA") & (pl.col("timestamp") == datetime(2008, 9, 15))
    )
    assert got["close"].item() == row["Close"].item()
    assert got["volume"].item() == row["Volume"].item()


# --- walk-forward predictions: no look-ahead ----------------------------------------------
def _preds_up_to(preds: pl.DataFrame, day: datetime) -> np.ndarray:
    return preds.filter(pl.col("timestamp") <= day)["prediction"].to_numpy()


def _cut_days(bars: pl.DataFrame) -> list[datetime]:
    # Refit dates (every 21st timestamp) are where a leak of the newest target would show.
    dates = bars["timestamp"].unique().sort().to_list()
    return [dates[21 * 20], dates[21 * 20 + 7], dates[21 * 60], dates[21 * 100 + 3]]


def test_walk_forward_predictions_truncated_future_same_past(bars: pl.DataFrame) -> None:
    full = demo.walk_forward_predictions(bars)
    for day in _cut_days(bars):
        cut = demo.walk_forward_predictions(bars.filter(pl.col("timestamp") <= day))
        past = _preds_up_to(full, day)
        assert np.isfinite(past).sum() > 100
        np.testing.assert_array_equal(_preds_up_to(cut, day), past)


def test_walk_forward_predictions_changed_future_same_past(bars: pl.DataFrame) -> None:
    full = demo.walk_forward_predictions(bars)
    rng = np.random.default_rng(7)
    for day in _cut_days(bars):
        after = (bars["timestamp"] > day).to_numpy()
        noise = np.where(after, rng.lognormal(0.0, 0.05, bars.height), 1.0)
        changed = bars.with_columns(pl.col("close") * pl.Series(noise))
        preds = demo.walk_forward_predictions(changed)
        np.testing.assert_array_equal(_preds_up_to(preds, day), _preds_up_to(full, day))
        later_new = preds.filter(pl.col("timestamp") > day)["prediction"].to_numpy()
        later_old = full.filter(pl.col("timestamp") > day)["prediction"].to_numpy()
        assert not np.allclose(later_new, later_old)  # the perturbation did reach the model


def test_walk_forward_predictions_fit_dates_not_after_prediction(bars: pl.DataFrame) -> None:
    preds = demo.walk_forward_predictions(bars)
    has = preds.filter(pl.col("prediction").is_not_nan())
    assert (has["fit_timestamp"] <= has["timestamp"]).all()
    assert preds.filter(pl.col("prediction").is_nan())["fit_timestamp"].null_count() == (
        preds["prediction"].is_nan().sum()
    )
    dates = bars["timestamp"].unique().sort().to_list()
    assert set(has["fit_timestamp"].unique().to_list()) <= set(dates[::21])
    # 750 known-target rows need about 250 days of three assets plus the 20-day warm-up.
    first = has["timestamp"].min()
    assert datetime(2005, 12, 1) < first < datetime(2006, 3, 1)


# --- run_demo -------------------------------------------------------------------------------
def test_run_demo_default_settings_trades_and_writes_files(
    demo_run: tuple[bt.BacktestResult, Path],
) -> None:
    result, out = demo_run
    assert result.complete
    assert result.trades_df.height > 0 and result.fills_df.height > 0
    for name in RESULT_FILES:
        back = pl.read_parquet(out / f"{name}.parquet")
        assert back.equals(getattr(result, f"{name}_df"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_trades"] == result.metrics["num_trades"] > 0
    assert json.loads((out / "metadata.json").read_text())["complete"] is True
    for key in ("final_equity", "total_return", "cagr", "volatility", "sharpe_ratio"):
        assert math.isfinite(result.metrics[key]), key
    assert -1.0 < result.metrics["max_drawdown"] < 0.0


def test_run_demo_final_equity_equals_cash_plus_last_closes(
    demo_run: tuple[bt.BacktestResult, Path], bars: pl.DataFrame
) -> None:
    result, _ = demo_run
    fills = result.fills_df
    sign = np.where(fills["side"].to_numpy() == "buy", 1.0, -1.0)
    value = (fills["quantity"] * fills["price"]).to_numpy()
    cash = 100_000.0 - float((sign * value).sum()) - float(fills["commission"].sum())
    held = fills.with_columns(pl.Series("q", sign * fills["quantity"].to_numpy()))
    held = held.group_by("asset_id").agg(pl.col("q").sum())
    last = bars.filter(pl.col("timestamp") == bars["timestamp"].max())
    worth = held.join(last, on="asset_id").select((pl.col("q") * pl.col("close")).sum()).item()
    assert result.final_equity == pytest.approx(cash + worth, rel=1e-9)


def test_run_demo_fills_next_open_with_costs(
    demo_run: tuple[bt.BacktestResult, Path], bars: pl.DataFrame
) -> None:
    result, _ = demo_run
    fills = result.fills_df.with_columns(pl.col("timestamp").cast(pl.Datetime("us")))
    joined = fills.join(bars, on=["timestamp", "asset_id"], how="left")
    assert joined["open"].null_count() == 0
    side = np.where(joined["side"].to_numpy() == "buy", 1.0, -1.0)
    expected = joined["open"].to_numpy() * (1.0 + side * demo.SLIPPAGE_RATE)
    np.testing.assert_allclose(joined["price"].to_numpy(), expected, rtol=1e-12)
    notional = joined["quantity"].to_numpy() * joined["price"].to_numpy()
    np.testing.assert_allclose(
        joined["commission"].to_numpy(), demo.COMMISSION_RATE * notional, rtol=1e-12
    )


def test_run_demo_not_quiet_prints_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    demo.run_demo(tmp_path, quiet=False)
    text = capsys.readouterr().out
    for needle in ("NVDA, ORCL, YHOO", "ridge", "sharpe_ratio", "not investment advice"):
        assert needle in text
    assert f"results written to {tmp_path.resolve()}" in text
    demo.run_demo(tmp_path, quiet=True)
    assert capsys.readouterr().out == ""


# --- command line -----------------------------------------------------------------------------
def test_cli_demo_quiet_returns_zero_and_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert cli.main(["demo", "--output", str(tmp_path), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert all((tmp_path / f"{n}.parquet").is_file() for n in RESULT_FILES)


def test_cli_version_returns_zero(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"ml4t-backtest {bt.__version__}"


def test_cli_no_command_or_bad_option_returns_two() -> None:
    assert cli.main([]) == 2
    assert cli.main(["demo", "--no-such-option"]) == 2


def test_cli_backtest_error_one_line_exit_two(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise bt.DataValidationError("prices.csv: line 7: high below low")

    monkeypatch.setattr(demo, "run_demo", broken)
    assert cli.main(["demo", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == "ml4t-backtest: error: DataValidationError: prices.csv: line 7: high below low\n"


def test_python_dash_m_version_subprocess() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ml4t.backtest", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"ml4t-backtest {bt.__version__}"


# --- examples -------------------------------------------------------------------------------
@contextmanager
def _example_module(path: Path) -> Iterator[ModuleType]:
    # Each example imports its own `strategy` module from its folder; keep them apart.
    saved_path, saved = list(sys.path), sys.modules.pop("strategy", None)
    try:
        spec = importlib.util.spec_from_file_location(f"example_{path.parent.name}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path[:] = saved_path
        sys.modules.pop("strategy", None)
        if saved is not None:
            sys.modules["strategy"] = saved


def test_examples_discovered_with_readme_and_strategy() -> None:
    assert len(EXAMPLES) >= 2
    for run in EXAMPLES:
        assert (run.parent / "README.md").is_file() and (run.parent / "strategy.py").is_file()


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.parent.name for p in EXAMPLES])
def test_example_main_with_test_args_produces_result(path: Path, tmp_path: Path) -> None:
    with _example_module(path) as module:
        args = module.test_args()
        assert isinstance(args, list) and all(isinstance(a, str) for a in args)
        result = module.main([*args, "--output", str(tmp_path)])
    assert isinstance(result, bt.BacktestResult)
    assert result.complete and result.portfolio_df.height > 0
    assert result.trades_df.height > 0
    assert all((tmp_path / f"{n}.parquet").is_file() for n in RESULT_FILES)


def test_example_02_entry_context_is_index_at_decision_bar(
    tmp_path: Path, bars: pl.DataFrame
) -> None:
    # Independent equal-weight index: mean close-to-close return per day, compounded.
    wide = bars.pivot(on="asset_id", index="timestamp", values="close").sort("timestamp")
    closes = wide.drop("timestamp").to_numpy()
    daily = np.concatenate(([0.0], (closes[1:] / closes[:-1] - 1.0).mean(axis=1)))
    index = dict(zip(wide["timestamp"].to_list(), np.cumprod(1.0 + daily), strict=True))
    days = wide["timestamp"].to_list()
    with _example_module(REPO / "examples" / "02_multi_asset_ml" / "run.py") as module:
        result = module.main(["--start", "2013-01-01"])
    trades = result.trades_df
    assert trades.height > 0
    for entry, got in zip(
        trades["entry_timestamp"].cast(pl.Datetime("us")).to_list(),
        trades["entry_context_ew_index"].to_list(),
        strict=True,
    ):
        decision = days[days.index(entry) - 1]  # orders are decided the day before the fill
        assert got == pytest.approx(index[decision], rel=1e-12)
