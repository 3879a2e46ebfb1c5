"""Strategy hooks the compatibility layers build on: on_trade, record/records_df, history_frame.

Expected values are worked out by hand from the bars: with ``fill_timing="next_bar_open"``
an order placed on bar k fills at bar k+1's open, which ``make_bars`` sets to bar k's
close (``100 + k`` without a seed).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import polars as pl
import pytest

from ml4t.backtest import (
    BacktestEngine,
    PercentageCommission,
    PolarsDataFeed,
    SimulationBroker,
    Strategy,
    TradeEvent,
)
from ml4t.backtest.testing import make_bars


class Recorder(Strategy):
    """Buys, reverses and closes on fixed bars; records what it is told, in order."""

    def __init__(self, script: dict[int, tuple[str, float]]) -> None:
        self.script = script
        self.calls: list[tuple[str, Any]] = []
        self.k = 0

    def on_market_data(self, event: Any, context: Any) -> None:
        action = self.script.get(self.k)
        if action is not None:
            side, qty = action
            (self.buy if side == "buy" else self.sell)(event.asset_id, qty)
        self.record(bar=self.k)
        if self.k % 3 == 0:
            self.record(every_third=float(self.k), label=f"b{self.k}")
        self.k += 1

    def on_fill(self, fill: Any) -> None:
        self.calls.append(("fill", fill.order_id))

    def on_trade(self, trade: TradeEvent) -> None:
        self.calls.append(("trade", trade))


def _run(strategy: Strategy, n: int = 10, **broker: Any) -> Any:
    feed = PolarsDataFeed(make_bars(n), asset_id="A")
    return BacktestEngine(feed, strategy, SimulationBroker(initial_cash=10_000, **broker)).run()


def test_on_trade_reports_open_then_close_after_the_fill() -> None:
    strat = Recorder({0: ("buy", 10), 3: ("sell", 10)})
    result = _run(strat)
    kinds = [(k, v if k == "fill" else v.status) for k, v in strat.calls]
    assert kinds == [("fill", 0), ("trade", "open"), ("fill", 1), ("trade", "closed")]
    opened, closed = strat.calls[1][1], strat.calls[3][1]
    assert opened.trade_id == closed.trade_id == 0
    assert (opened.asset_id, opened.direction, opened.quantity) == ("A", "long", 10)
    assert opened.entry_price == 100.0 and math.isnan(opened.exit_price)
    assert opened.exit_timestamp is None and not opened.is_closed
    assert opened.entry_timestamp == datetime(2024, 1, 3)
    # bought at bar 1's open (100), sold at bar 4's open (103)
    assert (closed.entry_price, closed.exit_price, closed.quantity) == (100.0, 103.0, 10)
    assert closed.pnl_gross == pytest.approx(30.0) and closed.is_closed
    assert closed.exit_timestamp == datetime(2024, 1, 6)
    row = result.trades_df.row(0, named=True)
    assert closed.pnl_net == row["pnl_net"] and closed.commission == row["commission"]


def test_on_trade_reversal_closes_then_opens_and_nets_commission() -> None:
    strat = Recorder({0: ("buy", 10), 2: ("sell", 30)})
    _run(strat, commission=PercentageCommission(0.001), allow_short=True, account="margin")
    trades = [v for k, v in strat.calls if k == "trade"]
    assert [(t.trade_id, t.status, t.direction) for t in trades] == [
        (0, "open", "long"),
        (0, "closed", "long"),
        (1, "open", "short"),
    ]
    # the reversing fill (30 at 102) pays 0.1 %; a third of it belongs to the closed trade
    closed, reopened = trades[1], trades[2]
    assert closed.commission == pytest.approx(100 * 10 * 0.001 + 102 * 30 * 0.001 / 3)
    assert closed.pnl_net == pytest.approx(closed.pnl_gross - closed.commission)
    assert reopened.quantity == 20 and reopened.entry_price == 102.0
    assert reopened.commission == pytest.approx(102 * 30 * 0.001 * 2 / 3)


def test_strategy_without_on_trade_is_not_slowed_by_trade_events() -> None:
    class Plain(Strategy):
        def on_market_data(self, event: Any, context: Any) -> None:
            if not self.get_position(event.asset_id):
                self.buy(event.asset_id, 1)

    engine = BacktestEngine(PolarsDataFeed(make_bars(5), asset_id="A"), Plain())
    engine.run()
    assert engine.broker.portfolio.trades.listener is None


def test_records_df_has_one_row_per_timestamp_carried_forward() -> None:
    strat = Recorder({})
    result = _run(strat, n=7)
    rec = result.records_df
    assert rec.columns == ["timestamp", "bar", "every_third", "label"]
    assert rec["timestamp"].to_list() == result.portfolio_df["timestamp"].to_list()
    assert rec["bar"].to_list() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert rec["every_third"].to_list() == [0.0, 0.0, 0.0, 3.0, 3.0, 3.0, 6.0]
    assert rec["label"].to_list() == ["b0", "b0", "b0", "b3", "b3", "b3", "b6"]
    assert rec.schema["bar"] == pl.Float64 and rec.schema["label"] == pl.String


def test_records_before_the_first_record_are_null_and_last_value_wins() -> None:
    class Late(Strategy):
        def on_market_data(self, event: Any, context: Any) -> None:
            bar = self.history(event.asset_id, "close", 1)[0] - 100
            if bar >= 2:
                self.record(x=bar, flag=bar > 3)
                self.record(x=-bar)  # same timestamp: the last value wins

    result = BacktestEngine(PolarsDataFeed(make_bars(5), asset_id="A"), Late()).run()
    assert result.records_df["x"].to_list() == [None, None, -2.0, -3.0, -4.0]
    assert result.records_df["flag"].to_list() == [None, None, False, False, True]


def test_nothing_recorded_gives_a_timestamp_only_frame_and_no_parquet(tmp_path: Any) -> None:
    class Idle(Strategy):
        def on_market_data(self, event: Any, context: Any) -> None:
            return None

    result = BacktestEngine(PolarsDataFeed(make_bars(4), asset_id="A"), Idle()).run()
    assert result.records_df.columns == ["timestamp"]
    assert result.records_df.height == 4
    result.to_parquet(tmp_path)
    assert not (tmp_path / "records.parquet").exists()


def test_records_are_written_to_parquet(tmp_path: Any) -> None:
    result = _run(Recorder({}), n=4)
    result.to_parquet(tmp_path)
    assert pl.read_parquet(tmp_path / "records.parquet").equals(result.records_df)


def test_record_rejects_bad_names_and_calls_after_the_run() -> None:
    class Bad(Strategy):
        def on_market_data(self, event: Any, context: Any) -> None:
            self.record(timestamp=1.0)

    with pytest.raises(Exception, match=r"record\(timestamp=\.\.\.\) is not allowed"):
        BacktestEngine(PolarsDataFeed(make_bars(3), asset_id="A"), Bad()).run()

    class AfterRun(Strategy):
        def on_market_data(self, event: Any, context: Any) -> None:
            return None

        def on_end(self, result: Any) -> None:
            self.record(late=1.0)

    with pytest.raises(Exception, match=r"record\(\) after the last bar"):
        BacktestEngine(PolarsDataFeed(make_bars(3), asset_id="A"), AfterRun()).run()


def test_history_frame_is_point_in_time_with_timestamps() -> None:
    seen: list[pl.DataFrame] = []

    class Looker(Strategy):
        def on_market_data(self, event: Any, context: Any) -> None:
            seen.append(self.history_frame(event.asset_id, 3))

    frame = make_bars(5, score=[0.1, 0.2, 0.3, 0.4, 0.5])
    feed = PolarsDataFeed(frame, asset_id="A", signal_columns=["score"])
    BacktestEngine(feed, Looker()).run()
    assert [f.height for f in seen] == [1, 2, 3, 3, 3]
    last = seen[-1]
    assert last.columns == ["timestamp", "open", "high", "low", "close", "volume", "score"]
    assert last["timestamp"].to_list() == [datetime(2024, 1, d) for d in (4, 5, 6)]
    assert last["close"].to_list() == [102.0, 103.0, 104.0]
    assert last["score"].to_list() == [0.3, 0.4, 0.5]


def test_history_frame_keeps_the_data_time_zone_and_chosen_fields() -> None:
    seen: list[pl.DataFrame] = []

    class Looker(Strategy):
        def on_market_data(self, event: Any, context: Any) -> None:
            seen.append(self.history_frame(event.asset_id, 2, fields=["close"]))

    frame = make_bars(3).with_columns(
        pl.col("timestamp").dt.replace_time_zone("America/New_York")
    )
    BacktestEngine(PolarsDataFeed(frame, asset_id="A"), Looker()).run()
    last = seen[-1]
    assert last.columns == ["timestamp", "close"]
    assert str(last.schema["timestamp"].time_zone) == "America/New_York"  # type: ignore[union-attr]
    assert last["timestamp"].dt.day().to_list() == [3, 4]
