"""Rejected orders and orders the broker cancelled unasked are never silent.

A run that rejects orders says how many and why in ``result.warnings`` (also in the
metadata, ``summary()`` and ``metadata.json``) and emits one ``RejectedOrdersWarning`` at
the end; so does a run whose broker cancels orders the strategy did not cancel. The
scenario of the issue: ``TopKSizer(2)`` with commission and the default
``cash_policy="reject"``.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import polars as pl
import pytest

from ml4t.backtest import (
    BacktestEngine,
    BacktestResult,
    Context,
    MarketEvent,
    PercentageCommission,
    PolarsDataFeed,
    RejectedOrdersWarning,
    SignalStrategy,
    SimulationBroker,
    Strategy,
    StrategyError,
    TopKSizer,
)
from ml4t.backtest.core.run_warnings import order_warnings
from ml4t.backtest.testing import ScriptedStrategy, make_long_bars


def _scored_frame() -> pl.DataFrame:
    frame = make_long_bars(["A", "B", "C", "D", "E"], 200, seed=5)
    mom = pl.col("close") / pl.col("close").shift(10).over("asset_id") - 1.0
    return frame.with_columns(mom.fill_null(float("nan")).alias("signal"))


def _top_k(compiled: bool, **broker: Any) -> BacktestResult:
    feed = PolarsDataFeed(_scored_frame(), signal_columns=["signal"])
    strategy = SignalStrategy(position_sizer=TopKSizer(2, "signal"), compiled=compiled)
    sim = SimulationBroker(initial_cash=100_000.0, commission=PercentageCommission(0.001), **broker)
    return BacktestEngine(feed, strategy, sim).run()


def _no_rejection_warning() -> Any:
    """Context that fails if a RejectedOrdersWarning is emitted."""
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("error", RejectedOrdersWarning)
    return ctx


def test_top_k_event_path_rejections_warn_once_with_count_and_reason(tmp_path: Any) -> None:
    with pytest.warns(RejectedOrdersWarning) as record:
        result = _top_k(compiled=False)
    assert result.metadata["mode"] == "event"
    rejected = result.orders_df.filter(pl.col("event") == "rejected")
    n = rejected.height
    assert n > 50
    assert result.metrics["num_rejected_orders"] == n
    line = result.warnings[0]
    assert line.startswith(f"{n:,} orders were rejected: {n:,} × 'insufficient cash: need #")
    assert 'cash_policy="resize"' in line
    ours = [w for w in record if issubclass(w.category, RejectedOrdersWarning)]
    assert len(ours) == 1  # once, at the end of the run
    assert str(ours[0].message).splitlines()[0] == line
    assert ours[0].filename == __file__  # attributed to the code that called run()
    assert result.metadata["warnings"] == result.warnings
    assert f"warning: {line}" in result.summary()
    out = result.to_parquet(tmp_path)
    assert json.loads((out / "metadata.json").read_text())["warnings"] == result.warnings


def test_top_k_resize_policy_rejects_fewer_orders() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RejectedOrdersWarning)
        reject = _top_k(compiled=False)
        resize = _top_k(compiled=False, cash_policy="resize")
    assert resize.metrics["num_rejected_orders"] < reject.metrics["num_rejected_orders"]


def test_top_k_compiled_path_rejections_warn_like_event_path() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RejectedOrdersWarning)
        event = _top_k(compiled=False)
    with pytest.warns(RejectedOrdersWarning) as record:
        compiled = _top_k(compiled=True)
    assert compiled.metadata["mode"] == "compiled"
    n = event.metrics["num_rejected_orders"]
    assert compiled.metrics["num_rejected_orders"] == n
    assert compiled.warnings[0].startswith(f"{n:,} orders were rejected: {n:,} × ")
    assert "insufficient cash" in compiled.warnings[0]
    assert "orders_df has no rows for them" in compiled.warnings[0]
    ours = [w for w in record if issubclass(w.category, RejectedOrdersWarning)]
    assert len(ours) == 1
    assert ours[0].filename == __file__


def test_top_k_compiled_path_counts_rejections_in_metrics() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RejectedOrdersWarning)
        event = _top_k(compiled=False)
        compiled = _top_k(compiled=True)
    assert compiled.metadata["mode"] == "compiled"
    assert compiled.metrics["num_rejected_orders"] == event.metrics["num_rejected_orders"] > 0


def test_clean_run_has_no_warnings(make_bars: Any, run_backtest: Any) -> None:
    ctx = _no_rejection_warning()
    try:
        result, _ = run_backtest(
            make_bars(10), strategy=ScriptedStrategy(script={1: [("buy", 5)], 5: [("sell", 5)]})
        )
    finally:
        ctx.__exit__(None, None, None)
    assert result.warnings == [] and result.metadata["warnings"] == []
    assert "warning:" not in result.summary()
    assert result.metrics["num_broker_cancelled_orders"] == 0


def test_reduce_only_order_with_nothing_left_warns_as_broker_cancel(
    make_bars: Any, run_backtest: Any
) -> None:
    # two closes of the same 5 shares: the second finds the position flat at its fill
    def on_bar(s: Any, e: Any, c: Any) -> None:
        if s.state.setdefault("n", 0) == 1:
            s.buy("A", 5)
        if s.state["n"] == 3:
            s.close_position("A")
            s.close_position("A")
        s.state["n"] += 1

    with pytest.warns(RejectedOrdersWarning, match="cancelled by the broker") as record:
        result, strat = run_backtest(make_bars(8), on_bar)
    assert len(strat.cancelled) == 1
    assert result.metrics["num_broker_cancelled_orders"] == 1
    assert result.metrics["num_rejected_orders"] == 0
    assert result.warnings == [
        "1 order was cancelled by the broker, not by the strategy: 1 × 'reduce-only order, no "
        "long position in <asset> left to reduce (position #)' (see orders_df rows with "
        "event 'cancelled')"
    ]
    assert len([w for w in record if issubclass(w.category, RejectedOrdersWarning)]) == 1


def test_cancels_the_strategy_asked_for_do_not_warn(make_bars: Any, run_backtest: Any) -> None:
    # the strategy cancels its own limit order; a signal close makes the stop-loss exit
    # unnecessary (the broker cancels it as "position exit no longer needed")
    def on_bar(s: Any, e: Any, c: Any) -> None:
        n = s.state.setdefault("n", 0)
        if n == 0:
            s.state["limit"] = s.buy("A", 1, limit_price=1.0)
            s.buy("A", 5)
        if n == 1:
            s.cancel_order(s.state["limit"])
        if n == 3:
            s.close_position("A")
        s.state["n"] += 1

    ctx = _no_rejection_warning()
    try:
        result, _ = run_backtest(make_bars(8), on_bar, exits={"stop_loss": 0.2})
    finally:
        ctx.__exit__(None, None, None)
    reasons = result.orders_df.filter(pl.col("event") == "cancelled")["reason"].to_list()
    assert "cancelled by the strategy" in reasons
    assert "cancelled: position exit no longer needed" in reasons
    assert result.warnings == []


class RejectedThenRaises(Strategy):
    """Place an order far beyond the cash (rejected), then raise on the fourth bar."""

    def __init__(self) -> None:
        self.n = 0

    def on_market_data(self, event: MarketEvent, context: Context) -> None:
        if self.n == 0:
            self.buy("A", 1e9)
        if self.n == 3:
            raise RuntimeError("boom")
        self.n += 1


def test_partial_result_keeps_warnings_without_emitting(make_bars: Any, run_backtest: Any) -> None:
    ctx = _no_rejection_warning()
    try:
        with pytest.raises(StrategyError) as info:
            run_backtest(make_bars(8), strategy=RejectedThenRaises())
    finally:
        ctx.__exit__(None, None, None)
    partial = info.value.partial_result
    assert isinstance(partial, BacktestResult) and not partial.complete
    assert partial.warnings[0].startswith("1 order was rejected: 1 × 'insufficient cash")


# --- the grouping of reasons --------------------------------------------------------------


def _orders(rows: list[tuple[str, str, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "asset_id": [a for a, _, _ in rows],
            "event": [e for _, e, _ in rows],
            "reason": [r for _, _, r in rows],
        },
        schema={"asset_id": pl.String, "event": pl.String, "reason": pl.String},
    )


def test_order_warnings_group_reasons_by_kind_most_frequent_first() -> None:
    rows = [
        ("AAPL", "rejected", "insufficient cash: need 1,234.50 to buy 10 AAPL at 123.45, have 9.5"),
        ("MSFT", "rejected", "insufficient cash: need 99.00 to buy 1 MSFT at 99.0000, have -3.2"),
        ("A1", "rejected", "one order per bar: A1 already traded on this bar (one_order_per_bar)"),
        ("A1", "rejected", "one order per bar: A1 already traded on this bar (one_order_per_bar)"),
        ("X", "rejected", "insufficient cash: need 5 to buy 1 X at 5, have 1"),
        ("X", "rejected", "nothing to sell: no position in X; short selling is disabled"),
        ("Y", "rejected", "min quantity 10"),
        ("Y", "rejected", None),
        ("Y", "submitted", None),
        ("Y", "cancelled", "cancelled by the strategy"),
        ("Y", "cancelled", "cancelled: OCO sibling order 7 filled"),
        ("Y", "cancelled", "cancelled: target order, Y is already at its target 5"),
    ]
    lines = order_warnings(_orders(rows))
    assert lines == [
        "8 orders were rejected: "
        "3 × 'insufficient cash: need # to buy # <asset> at #, have #', "
        "2 × 'one order per bar: <asset> already traded on this bar (one_order_per_bar)', "
        "1 × 'nothing to sell: no position in <asset>; short selling is disabled', "
        "2 more of 2 other kinds "
        "(see orders_df rows with event 'rejected'); "
        'with SimulationBroker(cash_policy="resize") such orders are cut to what the cash '
        "allows instead",
        "1 order was cancelled by the broker, not by the strategy: "
        "1 × 'target order, <asset> is already at its target #' "
        "(see orders_df rows with event 'cancelled')",
    ]


def test_order_warnings_add_counts_of_unlogged_orders() -> None:
    unlogged = [
        ("rejected", "insufficient cash", 40),
        ("rejected", "short selling is disabled", 0),
        ("cancelled", "target order, the position is already at its target", 3),
    ]
    lines = order_warnings(_orders([]), unlogged)
    assert lines == [
        "40 orders were rejected: 40 × 'insufficient cash' (orders_df has no rows for them: "
        "this mode does not log orders); "
        'with SimulationBroker(cash_policy="resize") such orders are cut to what the cash '
        "allows instead",
        "3 orders were cancelled by the broker, not by the strategy: 3 × 'target order, the "
        "position is already at its target' (orders_df has no rows for them: this mode does "
        "not log orders)",
    ]
    assert order_warnings(_orders([])) == []
    # some logged, some not
    logged = _orders([("A", "rejected", "insufficient cash: need 5 to buy 1 A at 5, have 1")])
    assert order_warnings(logged, [("rejected", "insufficient cash", 2)])[0].startswith(
        "3 orders were rejected: 2 × 'insufficient cash', 1 × 'insufficient cash: need # to "
        "buy # <asset> at #, have #' (see orders_df rows with event 'rejected'; 2 of them have "
        "no row: this mode does not log orders)"
    )
