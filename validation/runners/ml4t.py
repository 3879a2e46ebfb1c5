"""Run a scenario through ml4t.backtest with a framework's preset.

The strategy below implements the neutral semantics of :mod:`validation.scenario` with the
public API only (``Strategy`` helpers, ``SimulationBroker.preset``). Two modes run the same
strategy: ``"strategy"`` builds the broker in Python, ``"config"`` builds the whole engine
from a config mapping (``execution.preset``) the way ``ml4t-backtest run`` does; the harness
requires them to agree. The batch and declarative modes join here when they exist.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ml4t.backtest import (
    BacktestEngine,
    BacktestResult,
    PolarsDataFeed,
    SimulationBroker,
    Strategy,
)
from ml4t.backtest.config import BacktestConfig, engine_from_config

from ..scenario import Costs, Fill, Orders, RunResult, Scenario, Signals, TargetWeights

__all__ = ["MODES", "broker_settings", "run"]

MODES = ("strategy", "config")


def _commission(costs: Costs) -> dict[str, Any] | str:
    if costs.commission_rate and (costs.commission_per_share or costs.commission_minimum):
        raise ValueError("scenario costs: combine either a rate or a per-share commission")
    if costs.commission_rate:
        return {
            "model": "percentage",
            "params": {"rate": costs.commission_rate, "minimum": costs.commission_minimum},
        }
    if costs.commission_per_share or costs.commission_minimum:
        return {
            "model": "per_share",
            "params": {
                "cost_per_share": costs.commission_per_share,
                "minimum": costs.commission_minimum,
            },
        }
    return "none"


def _slippage(costs: Costs) -> dict[str, Any] | str:
    if costs.slippage_fixed and costs.slippage_rate:
        raise ValueError("scenario costs: give either fixed or percentage slippage")
    if costs.slippage_fixed:
        return {"model": "fixed", "params": {"amount": costs.slippage_fixed}}
    if costs.slippage_rate:
        return {"model": "percentage", "params": {"rate": costs.slippage_rate}}
    return "none"


def broker_settings(scenario: Scenario, preset: str) -> dict[str, Any]:
    """Return the keyword overrides applied on top of ``preset`` for ``scenario``.

    The scenario fixes what it states (fill timing, costs, exits, whole shares, no volume
    limit); everything else is the preset's convention.
    """
    out: dict[str, Any] = {
        "fill_timing": scenario.fill_timing,
        "commission": _commission(scenario.costs),
        "slippage": _slippage(scenario.costs),
        "volume_limit": None,
    }
    if scenario.sizing.integer:
        out["fractional"] = False
    ex = scenario.exits
    if ex.any:
        out["exits"] = {
            k: v
            for k, v in (
                ("stop_loss", ex.stop_loss),
                ("take_profit", ex.take_profit),
                ("trailing_stop", ex.trailing_stop),
            )
            if v is not None
        }
    return out


def all_in_quantity(cash: float, price: float, costs: Costs, integer: bool) -> float:
    """Return the largest quantity whose cost at ``price`` (slipped) plus commission fits.

    ``price`` is the signal bar's close; slippage moves it up first. This is the neutral
    ``all_in`` sizing of :class:`validation.scenario.Sizing`.
    """
    p = price * (1 + costs.slippage_rate) + costs.slippage_fixed
    unit = p * (1 + costs.commission_rate) + costs.commission_per_share
    q = cash / unit
    if costs.commission_minimum and q * (unit - p) < costs.commission_minimum:
        q = max(cash - costs.commission_minimum, 0.0) / p
    return float(math.floor(q + 1e-9)) if integer else q


class ScenarioStrategy(Strategy):
    """Place the scenario's orders (see :mod:`validation.scenario` for the semantics)."""

    def __init__(self, scenario: Scenario) -> None:
        super().__init__()
        self.scenario = scenario
        self.index = scenario.bars.row_of
        self.program = scenario.compiled
        self.seen = -1
        self.orders_by_bar: dict[int, list[Any]] = {}
        if isinstance(self.program, Orders):
            for spec in self.program.orders:
                self.orders_by_bar.setdefault(spec.bar, []).append(spec)

    def on_market_data(self, event: Any, context: Any) -> None:
        t = self.index[event.timestamp.replace(tzinfo=None)]
        if t == self.seen:
            return
        self.seen = t
        prog = self.program
        if isinstance(prog, Signals):
            self._signals(prog, t)
        elif isinstance(prog, TargetWeights):
            row = prog.weights[t]
            if not np.isnan(row).all():
                names = self.scenario.bars.assets
                self.rebalance_to_weights(
                    {a: float(np.nan_to_num(w)) for a, w in zip(names, row, strict=True)}
                )
        else:
            for spec in self.orders_by_bar.get(t, ()):
                kw: dict[str, Any] = {}
                if spec.kind == "limit":
                    kw["limit_price"] = spec.price
                elif spec.kind == "stop":
                    kw["stop_price"] = spec.price
                if spec.quantity > 0:
                    self.buy(spec.asset, spec.quantity, **kw)
                else:
                    self.sell(spec.asset, -spec.quantity, **kw)

    def _size(self, asset: str, j: int, t: int) -> float:
        sz = self.scenario.sizing
        close = float(self.scenario.bars.close[t, j])
        if sz.kind == "fixed":
            q = sz.value
        elif sz.kind == "percent_equity":
            q = sz.value * self.get_equity() / close
        else:
            return all_in_quantity(self.get_cash(), close, self.scenario.costs, sz.integer)
        return float(math.floor(q + 1e-9)) if sz.integer else float(q)

    def _signals(self, prog: Signals, t: int) -> None:
        short = self.scenario.direction == "long_short"
        for j, asset in enumerate(self.scenario.bars.assets):
            pos = self.get_position(asset)
            closes_short = short and prog.short_exits is not None and prog.short_exits[t, j]
            if (pos > 0 and prog.exits[t, j]) or (pos < 0 and closes_short):
                self.order_target_quantity(asset, 0.0)
                pos = 0.0
            if prog.entries[t, j] and pos <= 0 and (pos == 0 or short):
                self.order_target_quantity(asset, self._size(asset, j, t))
            elif short and prog.short_entries is not None and prog.short_entries[t, j] and pos >= 0:
                self.order_target_quantity(asset, -self._size(asset, j, t))


def _result(res: BacktestResult, scenario: Scenario, preset: str) -> RunResult:
    index = scenario.bars.row_of
    fills = [
        Fill(
            index[row["timestamp"].replace(tzinfo=None)],
            row["asset_id"],
            row["quantity"] * (1.0 if row["side"] == "buy" else -1.0),
            row["price"],
            row["commission"],
        )
        for row in res.fills_df.iter_rows(named=True)
    ]
    pdf = res.portfolio_df
    rejected = int((res.orders_df["event"] == "rejected").sum()) if res.orders_df.height else 0
    return RunResult(
        framework=f"ml4t[{preset}]",
        fills=fills,
        equity=pdf["equity"].to_numpy().astype(float),
        cash=pdf["cash"].to_numpy().astype(float),
        rejected=rejected,
    )


def run(scenario: Scenario, preset: str, mode: str = "strategy") -> RunResult:
    """Run ``scenario`` through ml4t.backtest with ``preset`` in ``mode``.

    Parameters
    ----------
    scenario : Scenario
        What to run.
    preset : {"vectorbt", "backtrader", "zipline"}
        The framework whose conventions to reproduce.
    mode : {"strategy", "config"}
        Build the broker in Python, or the engine from a config mapping.
    """
    settings = broker_settings(scenario, preset)
    strategy = ScenarioStrategy(scenario)
    frame = scenario.bars.polars_long()
    if mode == "strategy":
        broker = SimulationBroker.preset(preset, scenario.initial_cash, **settings)
        engine = BacktestEngine(PolarsDataFeed(frame), strategy, broker)
        return _result(engine.run(), scenario, preset)
    if mode != "config":
        raise ValueError(f"mode: unknown mode {mode!r}; choose one of {MODES}")
    with tempfile.TemporaryDirectory(prefix="ml4t-validate-") as tmp:
        path = Path(tmp) / "bars.parquet"
        frame.write_parquet(path)
        execution: dict[str, Any] = {"preset": preset}
        execution.update({k: v for k, v in settings.items() if v is not None})
        cfg = BacktestConfig.model_validate(
            {
                "backtest": {"name": scenario.name, "initial_capital": scenario.initial_cash},
                "data": {"asset_data": {"path": str(path)}},
                "execution": execution,
                "reporting": {"reporters": []},
                "base_dir": tmp,
            }
        )
        engine = engine_from_config(cfg, strategy=strategy)
        return _result(engine.run(), scenario, preset)
