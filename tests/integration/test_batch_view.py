"""``BatchStrategy.batch.positions``: the quantity held of each row's asset, current."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from ml4t.backtest import BacktestEngine, BatchStrategy, PolarsDataFeed, SimulationBroker


class _Recorder(BatchStrategy):
    """Buys A on day 0 and B on day 1 (1 and 2 units); records positions as it goes."""

    def __init__(self) -> None:
        self.seen: list[tuple[list[str], list[float], list[float]]] = []

    def on_timestamp(self, timestamp: Any, asset_batch: pl.DataFrame, context: Any) -> None:
        ids = self.batch.asset_ids
        held = [self.get_position(a) for a in ids]
        self.seen.append((ids, self.batch.positions.tolist(), held))
        day = len(self.seen) - 1
        if day == 0:
            self.buy("A", 1.0)
        elif day == 1:
            self.buy("B", 2.0)


def test_batch_positions_follow_the_portfolio() -> None:
    start = datetime(2024, 1, 2)
    rows = [
        (start + timedelta(days=d), a, 10.0, 11.0, 9.0, 10.0, 100.0)
        for d in range(4)
        for a in ("A", "B", "C")
        if not (a == "C" and d == 2)
    ]
    frame = pl.DataFrame(
        rows,
        schema=["timestamp", "asset_id", "open", "high", "low", "close", "volume"],
        orient="row",
    )
    strategy = _Recorder()
    BacktestEngine(PolarsDataFeed(frame), strategy, SimulationBroker(initial_cash=1_000)).run()
    expected = [
        (["A", "B", "C"], [0.0, 0.0, 0.0]),
        (["A", "B", "C"], [1.0, 0.0, 0.0]),  # A filled at day 1's open
        (["A", "B"], [1.0, 2.0]),  # C has no bar on day 2
        (["A", "B", "C"], [1.0, 2.0, 0.0]),
    ]
    assert [(ids, pos) for ids, pos, _ in strategy.seen] == expected
    for _, pos, held in strategy.seen:
        np.testing.assert_array_equal(pos, held)
