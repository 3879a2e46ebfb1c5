"""The three ways to write a strategy give identical fills, trades and equity.

A per-bar :class:`Strategy` (``on_market_data`` and the ordinary helpers), a
:class:`BatchStrategy` (``on_timestamp`` with ``self.batch`` arrays) and the compiled
:class:`SignalStrategy` implement the same rules on shared scenarios: one asset and several
(shared cash, assets missing bars), with and without costs, with position exits, with
``PercentSizer``/``FixedSizer`` entries and a ``TopKSizer`` rebalance. ``fills_df``,
``trades_df`` and ``portfolio_df`` must be equal exactly, order ids included: the
hand-written strategies submit in the same order as ``SignalStrategy`` (asset order, and
per asset an exit before an entry; a rebalance sells before it buys, held assets first),
so the broker numbers the orders identically. Also the BatchStrategy contract: the
``asset_batch`` rows, zero-copy numpy views, read-only arrays and the list form of
``order_target_percent``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ml4t.backtest import (
    BacktestEngine,
    BacktestResult,
    BatchStrategy,
    Context,
    FixedSizer,
    MarketEvent,
    PercentageCommission,
    PercentageSlippage,
    PercentSizer,
    PolarsDataFeed,
    Rule,
    SignalStrategy,
    SimulationBroker,
    Strategy,
    TopKSizer,
    read_ohlcv_csv,
)
from ml4t.backtest.testing import make_long_bars

REAL = Path(__file__).resolve().parents[2] / "validation" / "real_data"  # in the repository
ENTRY, EXIT = 0.03, -0.02  # momentum thresholds


def _with_momentum(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``signal``: the 10-bar return of each asset (NaN for the first 10 bars)."""
    mom = pl.col("close") / pl.col("close").shift(10).over("asset_id") - 1.0
    return frame.with_columns(mom.fill_null(float("nan")).alias("signal")).sort(
        "timestamp", "asset_id"
    )


def real_frame(names: tuple[str, ...] = ("nvda", "orcl", "yhoo")) -> pl.DataFrame:
    """Daily NVDA, ORCL and YHOO bars, 2006-2008 (shared cash across three stocks)."""
    frames = [
        read_ohlcv_csv(REAL / f"{n}_daily_yahoo.csv", asset_id=n.upper())
        .select("timestamp", "asset_id", "open", "high", "low", "close", "volume")
        .filter(pl.col("timestamp").is_between(datetime(2006, 1, 1), datetime(2008, 12, 31)))
        for n in names
    ]
    return _with_momentum(pl.concat(frames))


def generated_frame() -> pl.DataFrame:
    """Five random-walk assets, 300 days, about 15 % of the bars missing."""
    frame = make_long_bars(["A", "B", "C", "D", "E"], 300, seed=5)
    keep = np.random.default_rng(1).random(frame.height) >= 0.15
    return _with_momentum(frame.filter(pl.Series(keep)))


# --- the same rules, three ways -----------------------------------------------------------


class PerBarRules(Strategy):
    """Exit below EXIT, else enter when flat above ENTRY (per bar, in asset order)."""

    def __init__(self, assets: list[str], sizer: tuple[str, float], exits: dict[str, float]):
        self.assets, self.sizer, self.exits = assets, sizer, exits

    def on_start(self) -> None:
        if self.exits:
            for asset in self.assets:
                self.set_exits(asset, **self.exits)

    def on_market_data(self, event: MarketEvent, context: Context) -> None:
        asset, sig = event.asset_id, event.signals["signal"]
        pos = self.get_position(asset)
        if pos != 0 and sig < EXIT:
            self.close_position(asset)
        elif pos == 0 and sig > ENTRY:
            kind, value = self.sizer
            if kind == "percent":
                self.buy_percent(asset, value)
            else:
                self.buy(asset, value)


class BatchRules(BatchStrategy):
    """The rules of :class:`PerBarRules`, once per timestamp over ``self.batch``."""

    def __init__(self, assets: list[str], sizer: tuple[str, float], exits: dict[str, float]):
        self.assets, self.sizer, self.exits = assets, sizer, exits

    def on_start(self) -> None:
        if self.exits:
            for asset in self.assets:
                self.set_exits(asset, **self.exits)

    def on_timestamp(self, timestamp: datetime, asset_batch: pl.DataFrame, context: Any) -> None:
        signal = self.batch["signal"]
        kind, value = self.sizer
        for j, asset in enumerate(self.batch.asset_ids):
            pos = self.get_position(asset)
            if pos != 0 and signal[j] < EXIT:
                self.close_position(asset)
            elif pos == 0 and signal[j] > ENTRY:
                if kind == "percent":
                    self.buy_percent(asset, value)
                else:
                    self.buy(asset, value)


def signal_rules(sizer: tuple[str, float], exits: dict[str, float]) -> SignalStrategy:
    exit_rules = [Rule.signal_below("signal", EXIT)]
    if "stop_loss" in exits:
        exit_rules.append(Rule.stop_loss(exits["stop_loss"]))
    if "take_profit" in exits:
        exit_rules.append(Rule.take_profit(exits["take_profit"]))
    kind, value = sizer
    return SignalStrategy(
        entry_rules=[Rule.signal_above("signal", ENTRY), Rule.not_in_position()],
        exit_rules=exit_rules,
        position_sizer=PercentSizer(value) if kind == "percent" else FixedSizer(value),
    )


def _top(scores: list[tuple[str, float]], k: int) -> list[str]:
    """The k best finite scores; ties keep asset order (the list is in asset order)."""
    finite = [(a, s) for a, s in scores if np.isfinite(s)]
    return [a for a, _ in sorted(finite, key=lambda t: -t[1])[:k]]


class PerBarTopK(Strategy):
    """Collect each bar's score; rebalance to the top k at the end of the (daily) session.

    With daily bars a session is one timestamp, so ``after_trading_end`` sees the same
    cross-section, prices and equity as a per-timestamp callback, and its orders fill at
    the next bar's open like the others.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.scores: list[tuple[str, float]] = []

    def on_market_data(self, event: MarketEvent, context: Context) -> None:
        self.scores.append((event.asset_id, event.signals["signal"]))

    def after_trading_end(self, timestamp: datetime, context: Context) -> None:
        self.rebalance_to_weights({a: 1.0 / self.k for a in _top(self.scores, self.k)})
        self.scores = []


class BatchTopK(BatchStrategy):
    """The top-k rebalance with the list form of ``order_target_percent``.

    Held assets come first (weight 0 unless still in the top k), then the new ones in
    rank order: the order ``rebalance_to_weights`` builds its targets in.
    """

    def __init__(self, k: int) -> None:
        self.k = k

    def on_timestamp(self, timestamp: datetime, asset_batch: pl.DataFrame, context: Any) -> None:
        scores = list(zip(self.batch.asset_ids, self.batch["signal"].tolist(), strict=True))
        top = _top(scores, self.k)
        held = list(self.positions)
        assets = held + [a for a in top if a not in held]
        weights = np.array([1.0 / self.k if a in top else 0.0 for a in assets])
        if assets:
            self.order_target_percent(assets, weights)


# --- running and comparing ----------------------------------------------------------------

COSTS: dict[str, dict[str, Any]] = {
    "no_costs": {},
    "costs": {"commission": PercentageCommission(0.001), "slippage": PercentageSlippage(0.0005)},
}


def run(frame: pl.DataFrame, strategy: Strategy, **broker: Any) -> BacktestResult:
    feed = PolarsDataFeed(frame, signal_columns=["signal"])
    return BacktestEngine(feed, strategy, SimulationBroker(initial_cash=100_000.0, **broker)).run()


def assert_identical(results: list[BacktestResult]) -> None:
    first = results[0]
    for other in results[1:]:
        assert_frame_equal(first.fills_df, other.fills_df, check_exact=True)
        assert_frame_equal(first.trades_df, other.trades_df, check_exact=True)
        assert_frame_equal(first.exit_trades_df, other.exit_trades_df, check_exact=True)
        assert_frame_equal(first.portfolio_df, other.portfolio_df, check_exact=True)


OPEN, CLOSE = "next_bar_open", "same_bar_close"
FRAMES = {"nvda": lambda: real_frame(("nvda",)), "real3": real_frame, "gen5": generated_frame}
RULE_CASES = [
    ("nvda", ("percent", 0.95), {}, "no_costs", OPEN),
    ("nvda", ("percent", 0.95), {}, "costs", CLOSE),
    ("nvda", ("fixed", 100.0), {"stop_loss": 0.05, "take_profit": 0.08}, "costs", OPEN),
    ("real3", ("percent", 0.3), {"stop_loss": 0.05, "take_profit": 0.1}, "costs", OPEN),
    ("real3", ("percent", 0.3), {}, "no_costs", CLOSE),
    (
        "gen5",
        ("fixed", 50.0),
        {"stop_loss": 0.02, "take_profit": 0.03},
        "no_costs",
        OPEN,
    ),
    ("gen5", ("percent", 0.25), {"stop_loss": 0.02}, "costs", OPEN),
]


@pytest.mark.parametrize(("data", "sizer", "exits", "costs", "timing"), RULE_CASES)
def test_rules_same_in_every_mode(
    data: str, sizer: tuple[str, float], exits: dict[str, float], costs: str, timing: str
) -> None:
    frame = FRAMES[data]()
    assets = sorted(frame["asset_id"].unique().to_list())
    broker = {**COSTS[costs], "fill_timing": timing}
    per_bar = run(frame, PerBarRules(assets, sizer, exits), **broker)
    batch = run(frame, BatchRules(assets, sizer, exits), **broker)
    compiled = run(frame, signal_rules(sizer, exits), **broker)
    assert compiled.metadata["mode"] == "compiled"
    assert len(per_bar.fills_df) >= 10
    if exits:
        reasons = set(per_bar.trades_df["exit_reason"].to_list())
        assert {"stop_loss", "signal"} <= reasons
    assert_identical([per_bar, batch, compiled])


@pytest.mark.parametrize("costs", sorted(COSTS))
@pytest.mark.parametrize(("data", "k"), [("real3", 2), ("gen5", 2), ("gen5", 3)])
def test_top_k_same_in_every_mode(data: str, k: int, costs: str) -> None:
    frame = FRAMES[data]()
    per_bar = run(frame, PerBarTopK(k), **COSTS[costs])
    batch = run(frame, BatchTopK(k), **COSTS[costs])
    compiled = run(frame, SignalStrategy(position_sizer=TopKSizer(k, "signal")), **COSTS[costs])
    assert compiled.metadata["mode"] == "compiled"
    assert len(per_bar.fills_df) >= 20
    assert_identical([per_bar, batch, compiled])


def test_rules_match_a_hand_walk_of_the_signal() -> None:
    """Without costs or exits, fills are where a plain walk over the bars puts them."""
    frame = real_frame(("nvda",))
    result = run(frame, signal_rules(("fixed", 100.0), {}))
    opens, signal = frame["open"].to_list(), frame["signal"].to_list()
    ts = frame["timestamp"].to_list()
    expected, held, pending = [], False, None
    for i in range(len(ts)):
        if pending is not None:  # an order placed on the previous bar fills at this open
            expected.append((ts[i], pending, opens[i]))
            held, pending = pending == "buy", None
        if held and signal[i] < EXIT:
            pending = "sell"
        elif not held and signal[i] > ENTRY:
            pending = "buy"
    got = result.fills_df.select("timestamp", "side", "price").rows()
    assert got == expected
    assert len(expected) >= 10


# --- the BatchStrategy contract ------------------------------------------------------------


class Inspector(BatchStrategy):
    """Record what each on_timestamp call sees."""

    def __init__(self) -> None:
        self.rows: list[tuple[datetime, list[str], list[str], list[float], list[int]]] = []
        self.shared: list[bool] = []
        self.read_only: list[bool] = []
        self.errors: list[str] = []

    def on_timestamp(self, timestamp: datetime, asset_batch: pl.DataFrame, context: Any) -> None:
        view = self.batch
        ids = asset_batch["asset_id"].cast(pl.String).to_list()
        self.rows.append(
            (timestamp, ids, view.asset_ids, asset_batch["close"].to_list(), view.codes.tolist())
        )
        for name in ("open", "high", "low", "close", "volume", "signal"):
            self.shared.append(np.shares_memory(asset_batch[name].to_numpy(), view[name]))
            self.read_only.append(not view[name].flags.writeable)
        try:
            view["close"][0] = 1.0
        except ValueError:
            pass
        else:
            self.errors.append("batch array was writable")
        try:
            self.order_target_percent(view.asset_ids, np.full(len(view) + 1, 0.1))
        except ValueError:
            pass
        else:
            self.errors.append("mismatched lengths accepted")


def test_batch_rows_views_and_errors() -> None:
    frame = generated_frame()
    strategy = Inspector()
    result = run(frame, strategy)
    assert len(result.fills_df) == 0  # the mismatched orders were refused
    universe = sorted(frame["asset_id"].unique().to_list())
    expected = [
        (ts, group["asset_id"].to_list(), group["close"].to_list())
        for (ts,), group in frame.sort("timestamp", "asset_id").group_by(
            "timestamp", maintain_order=True
        )
    ]
    assert len(strategy.rows) == len(expected)
    for (ts, ids, view_ids, closes, codes), (ts_x, ids_x, closes_x) in zip(
        strategy.rows, expected, strict=True
    ):
        assert ts == ts_x
        assert ids == view_ids == ids_x  # one row per asset with a bar now, asset order
        assert closes == closes_x
        assert codes == [universe.index(a) for a in ids_x]
    assert any(len(r[1]) < len(universe) for r in strategy.rows)  # some bars are missing
    assert all(strategy.shared) and len(strategy.shared) == 6 * len(expected)
    assert all(strategy.read_only)
    assert strategy.errors == []


def test_order_target_percent_list_form_matches_mapping_form() -> None:
    class ListForm(BatchStrategy):
        def on_timestamp(self, timestamp: datetime, batch: pl.DataFrame, context: Any) -> None:
            self.order_target_percent(self.batch.asset_ids, np.full(len(self.batch), 0.15))

    class MappingForm(BatchStrategy):
        def on_timestamp(self, timestamp: datetime, batch: pl.DataFrame, context: Any) -> None:
            self.order_target_percent(dict.fromkeys(self.batch.asset_ids, 0.15))

    frame = generated_frame()
    a, b = run(frame, ListForm()), run(frame, MappingForm())
    assert len(a.fills_df) > 0
    assert_identical([a, b])
