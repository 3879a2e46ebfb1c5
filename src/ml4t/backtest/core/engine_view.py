"""What the run hooks see of the engine: a protocol only.

The hook specifications (:mod:`ml4t.backtest.hookspecs`) type their ``engine`` argument
with it, so they need not import the engine module that imports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .broker import Broker
    from .calendar import SessionCalendar
    from .clock import Clock
    from .context import Context
    from .data import Feed
    from .strategy import Strategy

__all__ = ["EngineView"]


class EngineView(Protocol):
    """What the run hooks (``ml4t_run_start``, ...) read of the engine."""

    name: str
    strategy: Strategy
    broker: Broker
    clock: Clock
    context: Context
    feeds: Sequence[Feed]
    calendar: SessionCalendar | None
    run_info: dict[str, Any]
