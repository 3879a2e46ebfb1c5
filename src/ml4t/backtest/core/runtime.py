"""What strategies and runners see of a run: protocols only, no behaviour.

The run itself is :class:`ml4t.backtest.core.loop.Run`; the public engine
(:class:`ml4t.backtest.BacktestEngine`) assembles it. These protocols let the strategy
base class, the hook specifications and the compiled runner of a declarative strategy
name what they use without importing the modules that use them back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .broker import Broker
    from .calendar import Session, SessionCalendar
    from .clock import Clock
    from .context import Context
    from .history import History

__all__ = ["Progress", "RunView", "Runner"]

#: called with the fraction of the period done (0..1)
Progress = Callable[[float], None]


class RunView(Protocol):
    """The run as a strategy sees it: the clock, the broker, data as of now."""

    clock: Clock
    broker: Broker
    context: Context
    history: History
    calendar: SessionCalendar | None
    #: ``"event"``, ``"batch"`` or ``"compiled"``, set before ``on_start``
    mode: str

    @property
    def session(self) -> Session | None:
        """The current calendar session (``None`` without a calendar)."""
        ...

    def price_of(self, code: int) -> float:
        """Return the latest close of asset ``code`` at or before now."""
        ...

    def signals_now(self, code: int) -> dict[str, float]:
        """Return the latest signal values of asset ``code`` at or before now."""
        ...

    def context_now(self) -> dict[str, float]:
        """Return the context values as of now."""
        ...

    def record(self, values: dict[str, Any]) -> None:
        """Record values at the current timestamp (``result.records_df``)."""
        ...

    def note_fallback(self, reason: str) -> None:
        """Record why a strategy that could run in a kernel runs on the per-bar loop."""
        ...


class Runner(Protocol):
    """Runs a prepared run's bars: the per-bar loop, or a whole run in a kernel.

    A strategy declares that it can run in a kernel by returning a runner from
    :meth:`~ml4t.backtest.Strategy.compiled_runner`; otherwise the per-bar loop runs it.
    The lifecycle around the runner (``on_start``, hooks, error wrapping, the result,
    ``on_end``) is the same for every runner.
    """

    #: recorded as ``result.metadata["mode"]``
    mode: str

    def run(self, run: Any, progress: Progress | None) -> None:
        """Run every bar, appending timestamps and marked books to the run."""
        ...

    def salvage(self, run: Any) -> bool:
        """After an error, book what happened so far; False when no partial result exists."""
        ...
