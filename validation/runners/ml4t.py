"""Run a scenario through ml4t.backtest with a framework's preset, in one of four modes.

The strategies below implement the neutral semantics of :mod:`validation.scenario` with the
public API only (``Strategy`` helpers, ``SimulationBroker.preset``). The harness requires
the four modes to agree exactly:

``"strategy"``
    a per-bar :class:`~ml4t.backtest.Strategy`, broker built in Python;
``"config"``
    the same strategy, the whole engine built from a config mapping (``execution.preset``)
    the way ``ml4t-backtest run`` does;
``"batch"``
    a :class:`~ml4t.backtest.BatchStrategy` doing per timestamp what the per-bar strategy
    does per bar (the same orders in the same order: rows in asset order);
``"declarative"``
    a :class:`~ml4t.backtest.SignalStrategy` built from the scenario's signals, sizing and
    exits, run in the Numba kernel when the broker allows (``result.metadata["mode"]``
    says ``"compiled"`` or ``"event"``). :func:`declarative_problem` says why a scenario
    cannot be declared (explicit orders, shorts, target weights, ...); :func:`run` then
    raises :class:`~validation.scenario.Unsupported`.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ml4t.backtest import (
    BacktestConfig,
    BacktestEngine,
    BacktestResult,
    BatchStrategy,
    FixedSizer,
    KernelFallbackWarning,
    PercentSizer,
    PolarsDataFeed,
    Rule,
    SignalStrategy,
    SimulationBroker,
    Strategy,
)

from ..scenario import (
    Costs,
    Fill,
    Orders,
    RunResult,
    Scenario,
    Signals,
    TargetWeights,
    Unsupported,
)

__all__ = ["MODES", "broker_settings", "declarative_problem", "run"]

MODES = ("strategy", "config", "batch", "declarative")
#: signal columns the declarative mode adds to the feed (1.0 where the scenario signals)
ENTRY, EXIT = "scenario_entry", "scenario_exit"


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


class _Program:
    """The scenario's decisions for one timestamp, placed through a strategy's helpers.

    Shared by the per-bar and the batch strategy so both place the same orders in the same
    order; ``rows`` yields ``(column, asset, close)`` in asset order.
    """

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.index = scenario.bars.row_of
        self.program = scenario.compiled
        self.orders_by_bar: dict[int, list[Any]] = {}
        if isinstance(self.program, Orders):
            for spec in self.program.orders:
                self.orders_by_bar.setdefault(spec.bar, []).append(spec)

    def step(self, s: Strategy, t: int, rows: Iterable[tuple[int, str, float]]) -> None:
        prog = self.program
        if isinstance(prog, Signals):
            self._signals(s, prog, t, rows)
        elif isinstance(prog, TargetWeights):
            row = prog.weights[t]
            if not np.isnan(row).all():
                s.rebalance_to_weights(
                    {a: float(np.nan_to_num(row[j])) for j, a, _ in rows},
                )
        else:
            for spec in self.orders_by_bar.get(t, ()):
                kw: dict[str, Any] = {}
                if spec.kind == "limit":
                    kw["limit_price"] = spec.price
                elif spec.kind == "stop":
                    kw["stop_price"] = spec.price
                if spec.quantity > 0:
                    s.buy(spec.asset, spec.quantity, **kw)
                else:
                    s.sell(spec.asset, -spec.quantity, **kw)

    def _size(self, s: Strategy, close: float) -> float:
        sz = self.scenario.sizing
        if sz.kind == "fixed":
            q = sz.value
        elif sz.kind == "percent_equity":
            q = sz.value * s.get_equity() / close
        else:
            return all_in_quantity(s.get_cash(), close, self.scenario.costs, sz.integer)
        return float(math.floor(q + 1e-9)) if sz.integer else float(q)

    def _signals(
        self, s: Strategy, prog: Signals, t: int, rows: Iterable[tuple[int, str, float]]
    ) -> None:
        short = self.scenario.direction == "long_short"
        for j, asset, close in rows:
            pos = s.get_position(asset)
            closes_short = short and prog.short_exits is not None and prog.short_exits[t, j]
            if (pos > 0 and prog.exits[t, j]) or (pos < 0 and closes_short):
                s.order_target_quantity(asset, 0.0)
                pos = 0.0
            if prog.entries[t, j] and pos <= 0 and (pos == 0 or short):
                s.order_target_quantity(asset, self._size(s, close))
            elif short and prog.short_entries is not None and prog.short_entries[t, j] and pos >= 0:
                s.order_target_quantity(asset, -self._size(s, close))


class ScenarioStrategy(Strategy):
    """Place the scenario's orders bar by bar (see :mod:`validation.scenario`)."""

    def __init__(self, scenario: Scenario) -> None:
        super().__init__()
        self.plan = _Program(scenario)
        self.seen = -1

    def on_market_data(self, event: Any, context: Any) -> None:
        t = self.plan.index[event.timestamp.replace(tzinfo=None)]
        if t == self.seen:
            return
        self.seen = t
        bars = self.plan.scenario.bars
        rows = ((j, a, float(bars.close[t, j])) for j, a in enumerate(bars.assets))
        self.plan.step(self, t, rows)


class BatchScenarioStrategy(BatchStrategy):
    """Place the scenario's orders once per timestamp from the batch's rows."""

    def __init__(self, scenario: Scenario) -> None:
        super().__init__()
        self.plan = _Program(scenario)

    def on_timestamp(self, timestamp: datetime, asset_batch: pl.DataFrame, context: Any) -> None:
        t = self.plan.index[timestamp.replace(tzinfo=None)]
        column = self.plan.scenario.bars.column
        view = self.batch
        closes = view["close"].tolist()
        rows = [(column(a), a, c) for a, c in zip(view.asset_ids, closes, strict=True)]
        self.plan.step(self, t, rows)


def declarative_problem(scenario: Scenario) -> str | None:
    """Return why ``scenario`` cannot be a :class:`SignalStrategy`, or None if it can."""
    prog = scenario.compiled
    if isinstance(prog, Orders):
        return "explicit orders (market/limit/stop at given bars) are not entry/exit rules"
    if isinstance(prog, TargetWeights):
        return (
            "target weights rebalanced on chosen bars: TopKSizer holds 1/k of equity each "
            "and rebalances every timestamp"
        )
    if scenario.direction != "long_only":
        return "short positions: SignalStrategy entries only buy"
    if (prog.entries & prog.exits).any():
        return "an entry and an exit on the same bar (SignalStrategy does not re-enter)"
    sz = scenario.sizing
    if sz.kind == "all_in":
        return (
            "all-in sizing deducts the commission from the quantity; PercentSizer sizes "
            "cash / close"
        )
    if sz.kind == "percent_equity" and len(scenario.bars.assets) > 1:
        return "percent of equity with several assets: PercentSizer takes a fraction of cash"
    return None


def declarative_strategy(scenario: Scenario) -> SignalStrategy:
    """Build the :class:`SignalStrategy` equivalent to ``scenario`` (see the problems)."""
    problem = declarative_problem(scenario)
    if problem is not None:
        raise Unsupported(problem)
    sz = scenario.sizing
    # a single asset entered while flat: cash == equity, so a fraction of cash is the
    # scenario's fraction of equity
    sizer = FixedSizer(sz.value) if sz.kind == "fixed" else PercentSizer(sz.value)
    ex = scenario.exits
    exits = [
        make(v)
        for make, v in (
            (Rule.stop_loss, ex.stop_loss),
            (Rule.take_profit, ex.take_profit),
            (Rule.trailing_stop, ex.trailing_stop),
        )
        if v is not None
    ]
    return SignalStrategy(
        entry_rules=[Rule.signal_above(ENTRY, 0.5), Rule.not_in_position()],
        exit_rules=[Rule.signal_above(EXIT, 0.5), *exits],
        position_sizer=sizer,
    )


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
    # counted by the engine in every mode: the compiled kernel logs no orders_df rows
    rejected = int(res.metrics["num_rejected_orders"])
    return RunResult(
        framework=f"ml4t[{preset}]",
        fills=fills,
        equity=pdf["equity"].to_numpy().astype(float),
        cash=pdf["cash"].to_numpy().astype(float),
        rejected=rejected,
    )


def _run_declarative(scenario: Scenario, preset: str, settings: dict[str, Any]) -> RunResult:
    strategy = declarative_strategy(scenario)
    prog = scenario.compiled
    assert isinstance(prog, Signals)
    settings.pop("exits", None)  # the strategy's exit rules install them
    frame = scenario.bars.polars_long().with_columns(
        pl.Series(ENTRY, prog.entries.ravel().astype(float)),
        pl.Series(EXIT, prog.exits.ravel().astype(float)),
    )
    broker = SimulationBroker.preset(preset, scenario.initial_cash, **settings)
    feed = PolarsDataFeed(frame, signal_columns=[ENTRY, EXIT])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KernelFallbackWarning)  # reported in the metadata
        res = BacktestEngine(feed, strategy, broker).run()
    out = _result(res, scenario, preset)
    meta = res.metadata
    mode = str(meta.get("mode"))
    out.notes.append(mode if mode == "compiled" else f"{mode}: {meta.get('fallback_reason')}")
    return out


def run(
    scenario: Scenario,
    preset: str,
    mode: str = "strategy",
    overrides: Mapping[str, Any] | None = None,
) -> RunResult:
    """Run ``scenario`` through ml4t.backtest with ``preset`` in ``mode``.

    Parameters
    ----------
    scenario : Scenario
        What to run.
    preset : {"vectorbt", "backtrader", "zipline"}
        The framework whose conventions to reproduce.
    mode : {"strategy", "config", "batch", "declarative"}
        Per-bar strategy with the broker built in Python, the same strategy with the
        engine built from a config mapping, the batch strategy, or the declarative
        :class:`SignalStrategy` (its :class:`RunResult` notes say ``"compiled"`` or
        ``"event: <why not compiled>"``).
    overrides : mapping, optional
        Broker settings applied on top of the preset and the scenario's settings (the
        harness sets ``account="cash"`` to reach the kernel).

    Raises
    ------
    Unsupported
        In the declarative mode, when the scenario cannot be declared as rules.
    """
    if mode not in MODES:
        raise ValueError(f"mode: unknown mode {mode!r}; choose one of {MODES}")
    settings = broker_settings(scenario, preset)
    settings.update(overrides or {})
    if mode == "declarative":
        return _run_declarative(scenario, preset, settings)
    frame = scenario.bars.polars_long()
    if mode in ("strategy", "batch"):
        strategy: Strategy = (
            ScenarioStrategy(scenario) if mode == "strategy" else BatchScenarioStrategy(scenario)
        )
        broker = SimulationBroker.preset(preset, scenario.initial_cash, **settings)
        engine = BacktestEngine(PolarsDataFeed(frame), strategy, broker)
        return _result(engine.run(), scenario, preset)
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
        engine = BacktestEngine.from_config(cfg, strategy=ScenarioStrategy(scenario))
        return _result(engine.run(), scenario, preset)
