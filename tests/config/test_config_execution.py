"""Configuration of execution realism: accounts, volume limits, assets, corporate actions,
exits, risk limits, the new cost models and presets (``execution.preset``, explicit keys
winning), from YAML, with errors naming file and key.

Bars (``make_bars``, daily from Tue 2 Jan 2024): closes 100, 101, ..., each bar k >= 1
opening at the previous close 99 + k, volume 1,000 and a ``spread`` column of 0.04. A
market order placed on bar k fills at bar k+1's open.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from ml4t.backtest import (
    BacktestEngine,
    BacktestResult,
    ConfigError,
    DataValidationError,
    load_config,
)
from ml4t.backtest.testing import ScriptedStrategy, make_bars

BASE = """
backtest: {name: exec_cfg, initial_capital: CASH}
data:
  asset_data: {path: bars.parquet, columns: {signals: [spread]}}
execution:
  EXEC
"""

EVERYTHING = """
  commission: {model: tiered, params: {minimum: 0.35}}
  slippage: {model: spread, params: {column: spread, fraction: 0.5}}
  account: margin
  initial_margin: 0.5
  maintenance_margin: 0.25
  max_leverage: 1.6
  borrow_rate: 0.1
  margin_call: liquidate_all
  volume_limit: 0.5
  intrabar: high_first
  trail_reference: close
  assets: {A: {tick_size: 0.01, lot_size: 1}}
  corporate_actions: actions/ca.csv
  exits: {stop_loss: 0.1, take_profit: 0.2, max_bars: 3}
  risk_limits: {max_position_weight: 0.9, max_positions: 2, on_breach: resize}
  order_sizing: at_order
"""

# a dividend of 0.50 going ex on Sat 6 Jan 2024 (bar 4), paid on Mon 8 Jan (bar 6)
CA_CSV = "asset_id,action,ex_date,ratio,amount,pay_date\nA,dividend,2024-01-06,,0.5,2024-01-08\n"


class Recorder(ScriptedStrategy):
    """The scripted strategy, also recording whether the run started at all."""

    def __init__(self, script: dict[int, list[tuple[str, float]]] | None = None) -> None:
        super().__init__(script=script)
        self.started = False

    def on_start(self) -> None:
        self.started = True


@pytest.fixture
def project(tmp_path: Path) -> Path:
    make_bars(10, asset_id="A", spread=0.04).write_parquet(tmp_path / "bars.parquet")
    (tmp_path / "actions").mkdir()
    (tmp_path / "actions" / "ca.csv").write_text(CA_CSV)
    return tmp_path


def write(path: Path, execution: str, cash: float = 100_000) -> Path:
    body = dedent(execution).strip("\n").replace("\n", "\n  ")
    path.write_text(BASE.replace("EXEC", body).replace("CASH", str(cash)))
    return path


def run(path: Path, script: dict[int, list[tuple[str, float]]]) -> BacktestResult:
    cfg = load_config(path)
    return BacktestEngine.from_config(cfg, strategy=Recorder(script)).run()


def _fills(result: BacktestResult) -> list[tuple[Any, ...]]:
    cols = ("timestamp", "quantity", "price", "commission", "reason")
    return result.fills_df.select(*cols).rows()


# --- every key at once ------------------------------------------------------------------------
def test_config_every_execution_key_reaches_the_broker(project: Path) -> None:
    result = run(write(project / "bt.yaml", EVERYTHING), {1: [("buy", 600)]})
    broker = result.metadata["broker"]
    assert broker["account"] == "margin"
    assert broker["initial_margin"] == pytest.approx(0.625)  # max(0.5, 1 / 1.6)
    assert broker["maintenance_margin"] == 0.25
    assert broker["borrow_rate"] == 0.1
    assert broker["margin_call"] == "liquidate_all"
    assert broker["volume_limit"] == 0.5
    assert broker["intrabar"] == "high_first"
    assert broker["trail_reference"] == "close"
    assert broker["order_sizing"] == "at_order"
    assert broker["allow_short"] is True  # a margin account's default
    assert broker["exits"] == {"stop_loss": 0.1, "take_profit": 0.2, "max_bars": 3}
    assert broker["risk_limits"] == {
        "max_position_weight": 0.9,
        "max_positions": 2,
        "on_breach": "resize",
    }
    assert broker["commission"].startswith("TieredCommission(")
    assert broker["commission"].endswith("minimum=0.35, maximum_rate=0.01)")
    assert broker["slippage"] == "SpreadSlippage(column='spread', fraction=0.5, relative=False)"
    assert "source='execution.assets'" in broker["assets"]
    # the CSV path is resolved against the config file's directory
    assert str(project / "actions" / "ca.csv") in broker["corporate_actions"]
    assert "dividends=1" in broker["corporate_actions"]


def test_config_every_execution_key_changes_the_fills(project: Path) -> None:
    result = run(write(project / "bt.yaml", EVERYTHING), {1: [("buy", 600)]})
    fills = result.fills_df.select("quantity", "price", "commission", "tag", "reason").rows()
    # volume_limit 0.5 x 1,000 = 500 per bar; spread 0.04 x 0.5 = 0.02 against the trader;
    # tiered 0.0035/share: 500 -> 1.75, then the order's 600 -> 2.10 less 1.75 paid = 0.35.
    # buy on bar 1 -> bar 2 open 101 + 0.02, rest at bar 3 open 102 + 0.02;
    # time exit max_bars 3 after the entry bar 2 -> market sell at bar 5: open 104 - 0.02,
    # rest at bar 6 open 105 - 0.02
    partial = "partial: volume limit 0.5 x bar volume 1000"
    expected = [
        (500.0, 101.02, 1.75, None, partial),
        (100.0, 102.02, 0.35, None, None),
        (500.0, 103.98, 1.75, "time_exit", partial),
        (100.0, 104.98, 0.35, "time_exit", None),
    ]
    assert len(fills) == len(expected)
    for got, want in zip(fills, expected, strict=True):
        assert got[:3] == pytest.approx(want[:3], rel=1e-12)
        assert got[3:] == want[3:]
    # the dividend: 600 held at the ex-date x 0.50 = 300, accrued then paid on bar 6
    events = result.account_events_df.select("event", "amount").rows()
    assert events == [
        ("dividend_ex", pytest.approx(300.0)),
        ("dividend_paid", pytest.approx(300.0)),
    ]
    assert result.metrics["dividends_earned"] == pytest.approx(300.0)
    assert result.metrics["borrow_fees"] == 0.0  # long only: no borrow fee
    # cash: -500 x 101.02 - 100 x 102.02 + 500 x 103.98 + 100 x 104.98 + 300 - 4.20
    #     = -60,712 + 62,488 + 300 - 4.20 = 2,071.80
    assert result.final_equity == pytest.approx(100_000 + 2_071.80, rel=1e-12)
    assert result.trades_df["exit_reason"].to_list() == ["time_exit"]


# --- assets from a file, cost models by name ---------------------------------------------
ASSETS_YAML = """
A: {lot_size: 100, min_quantity: 100, tick_size: 0.05}
"""


def test_config_assets_file_is_resolved_against_config_dir(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "specs").mkdir()
    (project / "specs" / "assets.yaml").write_text(dedent(ASSETS_YAML))
    cfg = write(
        project / "bt.yaml",
        """
        commission: ibkr_fixed
        slippage: {model: bps, params: {bps: 10}}
        account: cash
        assets: specs/assets.yaml
        """,
    )
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the relative path must not depend on the working directory
    strategy = Recorder({1: [("buy", 150), ("buy", 200)]})
    result = BacktestEngine.from_config(load_config(cfg), strategy=strategy).run()
    assert str(project / "specs" / "assets.yaml") in result.metadata["broker"]["assets"]
    # 150 is not a multiple of the lot size 100: rejected at submission
    assert len(strategy.rejected) == 1
    assert "lot size 100" in strategy.rejected[0][1]
    # 200 at bar 2's open 101 x (1 + 10 bp) = 101.101, rounded up to the 0.05 tick: 101.15;
    # IBKR fixed: max(1.00, 200 x 0.005 = 1.00) = 1.00, below the 1 % cap
    fill = result.fills_df.row(0, named=True)
    assert result.fills_df.height == 1
    assert (fill["quantity"], fill["price"], fill["commission"]) == pytest.approx(
        (200.0, 101.15, 1.0), rel=1e-12
    )


@pytest.mark.parametrize(
    ("commission", "slippage", "price", "fee", "reprs"),
    [
        # fixed 2.50 per order; fixed slippage 0.05: 101 + 0.05
        (
            "{model: fixed, params: {amount: 2.5}}",
            "{model: fixed, params: {amount: 0.05}}",
            101.05,
            2.5,
            ("FixedCommission(amount=2.5)", "FixedSlippage(amount=0.05)"),
        ),
        # tiered: max(0.35, 10 x 0.0035 = 0.035) = 0.35; 20 bp: 101 x 1.002 = 101.202
        (
            "tiered",
            "{model: bps, params: {bps: 20}}",
            101.202,
            0.35,
            ("TieredCommission(", "BasisPointsSlippage("),
        ),
        # IBKR fixed: max(1.00, 10 x 0.005) = 1.00; volume share: 10 / 1,000 = 0.01 of the
        # volume, 101 x (1 + 0.1 x 0.01^2) = 101.00101
        (
            "ibkr_fixed",
            "{model: volume_share, params: {volume_limit: 0.025, price_impact: 0.1}}",
            101.00101,
            1.0,
            ("IBKRFixedCommission(", "VolumeShareSlippage(volume_limit=0.025"),
        ),
        # spread from the data's signal column: 101 + 0.5 x 0.04 = 101.02
        (
            "{model: TieredCommission, params: {minimum: 0.0}}",
            "{model: spread, params: {column: spread}}",
            101.02,
            0.035,  # 10 x 0.0035, no minimum
            ("TieredCommission(", "SpreadSlippage(column='spread'"),
        ),
    ],
)
def test_config_cost_models_by_name_price_the_fill(
    project: Path, commission: str, slippage: str, price: float, fee: float, reprs: Any
) -> None:
    cfg = write(project / "bt.yaml", f"commission: {commission}\nslippage: {slippage}")
    result = run(cfg, {1: [("buy", 10)]})
    fill = result.fills_df.row(0, named=True)
    assert (fill["price"], fill["commission"]) == pytest.approx((price, fee), rel=1e-12)
    broker = result.metadata["broker"]
    assert broker["commission"].startswith(reprs[0])
    assert broker["slippage"].startswith(reprs[1])


def test_config_spread_column_may_be_an_indicator(project: Path) -> None:
    cfg = write(project / "bt.yaml", "slippage: {model: spread, params: {column: spread}}")
    text = cfg.read_text().replace("{signals: [spread]}", "{signals: [], indicators: [spread]}")
    cfg.write_text(text)
    result = run(cfg, {1: [("buy", 10)]})
    # 101 + 0.5 x 0.04 = 101.02
    assert result.fills_df["price"].to_list() == pytest.approx([101.02], rel=1e-12)


def test_config_spread_column_missing_from_data_fails_before_strategy(project: Path) -> None:
    cfg = write(project / "bt.yaml", "slippage: {model: spread, params: {column: spread}}")
    cfg.write_text(cfg.read_text().replace("{signals: [spread]}", "{signals: []}"))
    strategy = Recorder({1: [("buy", 10)]})
    engine = BacktestEngine.from_config(load_config(cfg), strategy=strategy)
    with pytest.raises(ConfigError, match=r"needs column\(s\) \['spread'\]"):
        engine.run()
    assert not strategy.started


# --- bad values: file and key named, nothing run -------------------------------------------------
BAD = [
    pytest.param(
        "exits: {stop_loss: 0.05, stop_los: 0.1}",
        ["execution.exits", "stop_los"],
        id="exits-unknown-key",
    ),
    pytest.param(
        "exits: {stop_loss: 1.5}", ["execution.exits", "stop_loss", "1.5"], id="exits-stop-loss"
    ),
    pytest.param(
        "risk_limits: {on_breach: warn}",
        ["execution.risk_limits", "on_breach", "warn"],
        id="risk-limits-on-breach",
    ),
    pytest.param("volume_limit: 0", ["execution.volume_limit", "(0, 1]"], id="volume-limit-0"),
    pytest.param(
        "volume_limit: 1.5", ["execution.volume_limit", "(0, 1]"], id="volume-limit-above-1"
    ),
    pytest.param(
        "account: cash\nallow_short: true",
        ["execution.allow_short", "cash"],
        id="cash-account-short",
    ),
    pytest.param("borrow_rate: -0.1", ["execution.borrow_rate", "-0.1"], id="borrow-rate"),
    pytest.param(
        "order_sizing: later", ["execution.order_sizing", "at_fill", "at_order"], id="order-sizing"
    ),
    pytest.param("max_leverage: 0.5", ["execution.max_leverage", "0.5"], id="max-leverage"),
    pytest.param(
        "account: margin\ninitial_margin: 0.3\nmaintenance_margin: 0.4",
        ["execution.maintenance_margin", "0.4"],
        id="maintenance-above-initial",
    ),
    pytest.param("intrabar: sideways", ["execution.intrabar", "high_first"], id="intrabar"),
    pytest.param(
        "assets: {A: {tick_size: -1}}",
        ["execution.assets", "'A'", "tick_size"],
        id="assets-inline-tick",
    ),
    pytest.param(
        "assets: specs/missing.yaml",
        ["execution.assets", "missing.yaml", "no such file"],
        id="assets-file-missing",
    ),
    # presets: an unknown name, and a bad or conflicting key on top of one
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
]


@pytest.mark.parametrize(("execution", "words"), BAD)
def test_config_bad_execution_value_names_file_and_key(
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


def test_config_corporate_actions_bad_ratio_names_csv_and_row(project: Path) -> None:
    # row 0 is a valid dividend; row 1 is a split with a negative ratio
    (project / "actions" / "bad.csv").write_text(CA_CSV + "A,split,2024-01-05,-2,,\n")
    cfg = write(project / "bt.yaml", "corporate_actions: actions/bad.csv")
    strategy = Recorder({1: [("buy", 1)]})
    with pytest.raises(DataValidationError) as info:
        BacktestEngine.from_config(load_config(cfg), strategy=strategy)
    msg = str(info.value)
    assert "bad.csv" in msg and "row 1" in msg and "'ratio'" in msg and "-2" in msg, msg
    assert not strategy.started


# --- presets: execution.preset, explicit keys winning ----------------------------------------
# a preset by name -----------------------------------------------------------------------
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


def test_config_preset_cost_model_blocked_names_preset_key(project: Path) -> None:
    cfg = write(project / "bad.yaml", "preset: zipline")
    cfg.write_text(cfg.read_text() + "plugins: {block: [ml4t.backtest.builtin.commission]}\n")
    strategy = Recorder({1: [("buy", 1)]})
    with pytest.raises(ConfigError) as info:
        BacktestEngine.from_config(load_config(cfg), strategy=strategy)
    msg = str(info.value)
    assert "bad.yaml" in msg and "execution.preset.commission" in msg and "per_share" in msg, msg
    assert not strategy.started
