"""Broker presets from a config file: ``execution: {preset: NAME}``, explicit keys winning.

Bars (``make_bars``, daily from Tue 2 Jan 2024): closes 100, 101, ..., each bar k >= 1
opening at the previous close 99 + k, volume 1,000. The scripted strategy buys on bar 1
(close 101), so the fill is at bar 1's close 101 (same bar), bar 2's open 101 (next open)
or bar 2's close 102 (next close).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from ml4t.backtest import BacktestEngine, BacktestResult, ConfigError, load_config
from ml4t.backtest.testing import ScriptedStrategy, make_bars

BASE = """
backtest: {name: preset_cfg, initial_capital: CASH}
data:
  asset_data: {path: bars.parquet}
execution:
  EXEC
"""


class Recorder(ScriptedStrategy):
    """The scripted strategy, also recording whether the run started at all."""

    def __init__(self, script: dict[int, list[tuple[str, float]]] | None = None) -> None:
        super().__init__(script=script)
        self.started = False

    def on_start(self) -> None:
        self.started = True


@pytest.fixture
def project(tmp_path: Path) -> Path:
    make_bars(10, asset_id="A").write_parquet(tmp_path / "bars.parquet")
    return tmp_path


def write(path: Path, execution: str, cash: float = 100_000) -> Path:
    body = dedent(execution).strip("\n").replace("\n", "\n  ")
    path.write_text(BASE.replace("EXEC", body).replace("CASH", str(cash)))
    return path


def run(path: Path, script: dict[int, list[tuple[str, float]]]) -> BacktestResult:
    return BacktestEngine.from_config(load_config(path), strategy=Recorder(script)).run()


def _fills(result: BacktestResult) -> list[tuple[Any, ...]]:
    cols = ("timestamp", "quantity", "price", "commission", "reason")
    return result.fills_df.select(*cols).rows()


# --- a preset by name -----------------------------------------------------------------------
def test_config_preset_zipline_builds_broker_with_preset_settings(project: Path) -> None:
    result = run(write(project / "bt.yaml", "preset: zipline"), {1: [("buy", 100)]})
    broker = result.metadata["broker"]
    want = {
        "fill_timing": "next_bar_close",
        "fractional": False,
        "allow_short": True,  # the simple account's default
        "cash_policy": "allow",
        "account": "simple",
        "volume_limit": 0.1,
        "intrabar": "close_only",
        "trail_reference": "close",
        "exit_base": "fill_price",
        "exit_slippage": True,
        "one_order_per_bar": False,
        "slippage_within_bar": False,
    }
    assert {k: broker[k] for k in want} == want
    assert broker["commission"].startswith("PerShareCommission(cost_per_share=0.001,")
    assert broker["slippage"] == "BasisPointsSlippage(bps=5.0)"
    # bar 2's close 102 x (1 + 5 bp) = 102.051; 100 x 0.001 = 0.10 commission
    [fill] = _fills(result)
    assert fill[0] == datetime(2024, 1, 4)
    assert fill[1:4] == pytest.approx((100.0, 102.051, 0.1), rel=1e-12)


@pytest.mark.parametrize(
    ("preset", "timing", "day", "price"),
    [
        ("vectorbt", "same_bar_close", 3, 101.0),  # bar 1 (Wed 3 Jan) at its close 101
        ("backtrader", "next_bar_open", 4, 101.0),  # bar 2 (Thu 4 Jan) at its open 101
    ],
)
def test_config_preset_sets_fill_timing(
    project: Path, preset: str, timing: str, day: int, price: float
) -> None:
    result = run(write(project / "bt.yaml", f"preset: {preset}"), {1: [("buy", 10)]})
    assert result.metadata["broker"]["fill_timing"] == timing
    assert result.metadata["broker"]["account"] == "simple"
    # neither framework has default costs: no commission, no slippage
    assert _fills(result) == [(datetime(2024, 1, day), 10.0, price, 0.0, None)]


# --- explicit keys win ------------------------------------------------------------------------
def test_config_preset_explicit_keys_override_preset_values(project: Path) -> None:
    cfg = write(
        project / "bt.yaml",
        """
        preset: zipline
        fill_timing: next_bar_open
        volume_limit: 0.5
        commission: {model: per_share, params: {cost_per_share: 0.01}}
        slippage: none
        """,
        cash=10_000,
    )
    result = run(cfg, {1: [("buy", 600)]})
    broker = result.metadata["broker"]
    assert (broker["fill_timing"], broker["volume_limit"]) == ("next_bar_open", 0.5)
    assert broker["commission"].startswith("PerShareCommission(cost_per_share=0.01,")
    assert broker["slippage"] == "NoSlippage()"
    # keys not given keep the preset's values
    assert (broker["intrabar"], broker["cash_policy"], broker["fractional"]) == (
        "close_only",
        "allow",
        False,
    )
    # 0.5 x 1,000 = 500 at bar 2's open 101, the other 100 at bar 3's open 102;
    # 0.01 per share: 5.00 and 1.00
    partial = "partial: volume limit 0.5 x bar volume 1000"
    assert _fills(result) == [
        (datetime(2024, 1, 4), 500.0, 101.0, pytest.approx(5.0, rel=1e-12), partial),
        (datetime(2024, 1, 5), 100.0, 102.0, pytest.approx(1.0, rel=1e-12), None),
    ]
    # still the preset's cash_policy "allow": 10,000 - 50,500 - 10,200 - 6 = -50,706
    assert result.portfolio_df["cash"][-1] == pytest.approx(-50_706.0, rel=1e-12)


def test_config_preset_explicit_false_overrides_preset_true(project: Path) -> None:
    cfg = write(
        project / "bt.yaml",
        """
        preset: vectorbt
        one_order_per_bar: false
        exit_slippage: true
        exit_base: fill_price
        """,
    )
    broker = run(cfg, {}).metadata["broker"]
    assert broker["one_order_per_bar"] is False
    assert broker["exit_slippage"] is True
    assert broker["exit_base"] == "fill_price"
    assert broker["fill_timing"] == "same_bar_close"  # the preset's, not given


def test_config_preset_same_bar_second_order_rejected_unless_overridden(project: Path) -> None:
    # two buys on bar 1 fill at its close 101: the second is rejected under the preset
    script = {1: [("buy", 10), ("buy", 5)]}
    strategy = Recorder(script)
    cfg = write(project / "bt.yaml", "preset: vectorbt")
    result = BacktestEngine.from_config(load_config(cfg), strategy=strategy).run()
    assert result.fills_df["quantity"].to_list() == [10.0]
    [(_, reason)] = strategy.rejected
    assert reason.startswith("one order per bar"), reason
    cfg = write(project / "bt.yaml", "preset: vectorbt\none_order_per_bar: false")
    assert run(cfg, script).fills_df["quantity"].to_list() == [10.0, 5.0]


# --- bad values -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("execution", "words"),
    [
        pytest.param(
            "preset: quantopian",
            ["execution.preset", "vectorbt", "backtrader", "zipline"],
            id="unknown-preset",
        ),
        pytest.param(
            "preset: zipline\nvolume_limit: 1.5",
            ["execution.volume_limit", "(0, 1]"],
            id="bad-override",
        ),
        pytest.param(
            "preset: backtrader\naccount: cash\nallow_short: true",
            ["execution.allow_short", "cash"],
            id="override-conflict",
        ),
    ],
)
def test_config_preset_bad_value_names_file_and_key(
    project: Path, execution: str, words: list[str]
) -> None:
    cfg = write(project / "bad.yaml", execution)
    strategy = Recorder({1: [("buy", 1)]})
    with pytest.raises(ConfigError) as info:
        BacktestEngine.from_config(load_config(cfg), strategy=strategy)
    msg = str(info.value)
    assert "bad.yaml" in msg, msg
    for word in words:
        assert word in msg, (word, msg)
    assert not strategy.started


def test_config_preset_cost_model_blocked_names_preset_key(project: Path) -> None:
    cfg = write(project / "bad.yaml", "preset: zipline")
    cfg.write_text(cfg.read_text() + "plugins: {block: [ml4t.backtest.builtin.commission]}\n")
    strategy = Recorder({1: [("buy", 1)]})
    with pytest.raises(ConfigError) as info:
        BacktestEngine.from_config(load_config(cfg), strategy=strategy)
    msg = str(info.value)
    assert "bad.yaml" in msg and "execution.preset.commission" in msg and "per_share" in msg, msg
    assert not strategy.started
