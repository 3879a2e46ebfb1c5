"""One lifecycle for every mode: the per-bar loop, the batch loop and the compiled kernel.

``on_start``/``on_end``, the run hooks, error wrapping and the result are run once, in
one place (``core/loop.py``), whichever runner runs the bars. Before, the compiled path
called ``on_end`` unwrapped, so a failing ``on_end`` raised a bare exception there and a
``StrategyError`` on the event path.
"""

from __future__ import annotations

from typing import Any

import pytest

from ml4t.backtest import (
    BacktestEngine,
    BatchStrategy,
    FixedSizer,
    PolarsDataFeed,
    Rule,
    SignalStrategy,
    Strategy,
    StrategyError,
    hookimpl,
)
from ml4t.backtest.testing import make_bars

MODES = ("event", "batch", "compiled", "fallback")


def _feed() -> PolarsDataFeed:
    frame = make_bars(8, score=[0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    return PolarsDataFeed(frame, asset_id="A", signal_columns=["score"])


class PerBar(Strategy):
    def on_market_data(self, event: Any, context: Any) -> None:
        if event.signals["score"] > 0.5:  # as FixedSizer(1): add on every signal
            self.buy("A", 1)


class Batch(BatchStrategy):
    def on_timestamp(self, timestamp: Any, asset_batch: Any, context: Any) -> None:
        if self.batch["score"][0] > 0.5:
            self.buy("A", 1)


def _signal(compiled: bool | None) -> type[SignalStrategy]:
    class Signals(SignalStrategy):
        def __init__(self) -> None:
            super().__init__(
                entry_rules=[Rule.signal_above("score", 0.5)],
                position_sizer=FixedSizer(1),
                compiled=compiled,
            )

    return Signals


def _strategy(mode: str, base: type[Any] | None = None) -> Any:
    cls: type[Any] = {
        "event": PerBar,
        "batch": Batch,
        "compiled": _signal(True),
        "fallback": _signal(False),
    }[mode]
    if base is None:
        return cls()
    return type(f"{base.__name__}{cls.__name__}", (base, cls), {})()


class Hooks:
    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def ml4t_run_start(self, engine: Any) -> None:
        self.calls.append("run_start")

    @hookimpl
    def ml4t_run_end(self, engine: Any, result: Any) -> None:
        self.calls.append(f"run_end complete={result.complete}")


class FailingEnd:
    def on_end(self, result: Any) -> None:
        raise RuntimeError("boom in on_end")


@pytest.mark.parametrize("mode", MODES)
def test_hooks_and_result_once_per_run_in_every_mode(mode: str) -> None:
    hooks = Hooks()
    result = BacktestEngine(_feed(), _strategy(mode), plugins=[hooks]).run()
    assert hooks.calls == ["run_start", "run_end complete=True"]
    expected = {"event": "event", "batch": "batch", "compiled": "compiled", "fallback": "event"}
    assert result.metadata["mode"] == expected[mode]
    assert result.fills_df.height == 3  # bars 1, 3, 5 buy (bar 7 has no next bar)


@pytest.mark.parametrize("mode", MODES)
def test_failing_on_end_is_a_strategy_error_with_the_result_in_every_mode(mode: str) -> None:
    with pytest.raises(StrategyError, match="raised RuntimeError in on_end: boom") as info:
        BacktestEngine(_feed(), _strategy(mode, FailingEnd)).run()
    partial = info.value.partial_result
    assert partial is not None and partial.complete
    assert partial.metadata["mode"] == {"fallback": "event"}.get(mode, mode)
    assert partial.fills_df.height == 3


@pytest.mark.parametrize("mode", ["event", "batch", "fallback"])
def test_on_start_runs_once_before_the_first_bar(mode: str) -> None:
    class Counting:
        started = 0

        def on_start(self) -> None:
            type(self).started += 1
            super().on_start()  # type: ignore[misc]

    strategy = _strategy(mode, Counting)
    BacktestEngine(_feed(), strategy).run()
    assert type(strategy).started == 1


def test_compiled_mode_checks_the_signal_columns() -> None:
    """The kernel mode checks the rules' columns before any bar (in on_start)."""

    class Missing(SignalStrategy):
        def __init__(self) -> None:
            super().__init__(
                entry_rules=[Rule.signal_above("no_such_column", 0.5)],
                position_sizer=FixedSizer(1),
                compiled=True,
            )

    with pytest.raises(Exception, match="no_such_column"):
        BacktestEngine(_feed(), Missing()).run()
