"""The framework-neutral scenario: bars, what the strategy does, costs, and what to expect.

A :class:`Scenario` says *what* happens (data, signals or orders, sizing, costs, exits,
fill timing) without naming any framework. Each runner in :mod:`validation.runners`
translates it into one framework's documented API and reports a :class:`RunResult` in the
common schema; :mod:`validation.compare` compares two results under the scenario's named
tolerance.

Semantics every runner implements (bar *t* = the bar whose close the strategy has seen):

Signals
    For each asset, in asset order: an ``exits[t]`` (``short_exits[t]``) closes a long
    (short) position; an ``entries[t]`` (``short_entries[t]``) while flat opens a long
    (short) position sized by :class:`Sizing`; an entry against an open opposite position
    reverses it with one order (long/short scenarios only). An entry while already in
    the same direction does nothing. Signals only place market orders.
TargetWeights
    On every bar whose row is not all NaN, trade every asset to ``weight * equity`` at the
    bar's close (equity measured once per bar, sells before buys, shared cash). Quantities
    are whole shares when ``sizing.integer``.
Orders
    Explicit orders placed after bar ``bar``'s close: market, limit or stop, good until
    cancelled (never cancelled in these scenarios).
Exits
    Fractions of the entry price: stop-loss, take-profit, trailing stop (by percent),
    attached to every position the signals open. They work until the position is flat;
    when a signal exit and an exit can fill on one bar, the first the bar reaches fills
    (the open, a level inside the bar, the close; the exit on a tie) and the other is
    cancelled, so the position closes once and never reverses.
Fill timing
    ``same_bar_close`` (market orders fill at bar *t*'s close), ``next_bar_open`` (bar
    *t+1*'s open) or ``next_bar_close`` (bar *t+1*'s close).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
import pandas as pd
import polars as pl

__all__ = [
    "BarSet",
    "Costs",
    "Difference",
    "Exits",
    "Fill",
    "OrderSpec",
    "Orders",
    "RunResult",
    "Scenario",
    "Signals",
    "Sizing",
    "TargetWeights",
    "Unsupported",
]

FillTiming = Literal["same_bar_close", "next_bar_open", "next_bar_close"]
FRAMEWORKS = ("vectorbt", "backtrader", "zipline")


# --- data ---------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class BarSet:
    """OHLCV bars of one or more assets on common timestamps.

    ``open``/``high``/``low``/``close``/``volume`` are float arrays of shape
    ``(n_bars, n_assets)``; ``dates`` are naive ``datetime64[ns]`` timestamps (daily bars at
    midnight, minute bars at the bar's start time). Every asset has a bar at every
    timestamp.
    """

    dates: np.ndarray
    assets: tuple[str, ...]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    frequency: Literal["daily", "minute"] = "daily"

    def __post_init__(self) -> None:
        n, m = len(self.dates), len(self.assets)
        for name in ("open", "high", "low", "close", "volume"):
            arr = getattr(self, name)
            if arr.shape != (n, m):
                raise ValueError(f"BarSet.{name}: shape {arr.shape}, expected {(n, m)}")

    @property
    def n_bars(self) -> int:
        return len(self.dates)

    @cached_property
    def row_of(self) -> dict[object, int]:
        """Map each timestamp (a naive ``datetime``) to its row index."""
        return {d: k for k, d in enumerate(self.dates.astype("datetime64[us]").tolist())}

    def column(self, asset: str) -> int:
        """Return the column index of ``asset``."""
        return self.assets.index(asset)

    def pandas(self, asset: str) -> pd.DataFrame:
        """One asset's bars as a pandas frame indexed by timestamp (open..volume)."""
        j = self.column(asset)
        return pd.DataFrame(
            {
                "open": self.open[:, j],
                "high": self.high[:, j],
                "low": self.low[:, j],
                "close": self.close[:, j],
                "volume": self.volume[:, j],
            },
            index=pd.DatetimeIndex(self.dates, name="datetime"),
        )

    def wide(self, field_name: str) -> pd.DataFrame:
        """One field for every asset as a wide pandas frame (columns = assets)."""
        return pd.DataFrame(
            getattr(self, field_name),
            index=pd.DatetimeIndex(self.dates, name="datetime"),
            columns=list(self.assets),
        )

    def polars_long(self) -> pl.DataFrame:
        """All bars as the long frame ml4t.backtest reads (timestamp, asset_id, OHLCV)."""
        n, m = self.close.shape
        return pl.DataFrame(
            {
                "timestamp": np.repeat(self.dates, m),
                "asset_id": np.tile(np.array(self.assets, dtype=object), n),
                "open": self.open.ravel(),
                "high": self.high.ravel(),
                "low": self.low.ravel(),
                "close": self.close.ravel(),
                "volume": self.volume.ravel(),
            }
        ).with_columns(pl.col("timestamp").cast(pl.Datetime("us")))


# --- what the strategy does ---------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Signals:
    """Boolean signal arrays of shape ``(n_bars, n_assets)`` (see the module docstring)."""

    entries: np.ndarray
    exits: np.ndarray
    short_entries: np.ndarray | None = None
    short_exits: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class TargetWeights:
    """Target weights ``(n_bars, n_assets)``; a row of NaN means no rebalance that bar."""

    weights: np.ndarray


@dataclass(frozen=True)
class OrderSpec:
    """One explicit order placed after bar ``bar``'s close.

    ``quantity`` is signed (+ buy, - sell); ``price`` is the limit or stop level.
    """

    bar: int
    asset: str
    quantity: float
    kind: Literal["market", "limit", "stop"] = "market"
    price: float | None = None


@dataclass(frozen=True)
class Orders:
    """A list of explicit orders."""

    orders: tuple[OrderSpec, ...]


Program = Signals | TargetWeights | Orders


@dataclass(frozen=True)
class Sizing:
    """How a signal entry is sized.

    ``fixed``: ``value`` shares. ``all_in``: all available cash, commission included
    (quantity = largest affordable). ``percent_equity``: ``value`` (a fraction) of equity
    at the signal bar's close. ``integer`` floors quantities to whole shares.
    """

    kind: Literal["fixed", "all_in", "percent_equity"] = "fixed"
    value: float = 1.0
    integer: bool = False


@dataclass(frozen=True)
class Costs:
    """Transaction costs.

    Commission per order = ``commission_rate * |qty| * fill price`` +
    ``commission_per_share * |qty|``, at least ``commission_minimum`` per order (fill
    price = the slipped price). Slippage moves every market and stop fill against the
    trader by ``slippage_fixed`` currency per share or by ``slippage_rate`` of the price.
    """

    commission_rate: float = 0.0
    commission_per_share: float = 0.0
    commission_minimum: float = 0.0
    slippage_fixed: float = 0.0
    slippage_rate: float = 0.0

    @property
    def any(self) -> bool:
        return any(
            (
                self.commission_rate,
                self.commission_per_share,
                self.commission_minimum,
                self.slippage_fixed,
                self.slippage_rate,
            )
        )


@dataclass(frozen=True)
class Exits:
    """Position exits as fractions of the entry price (None = off)."""

    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None

    @property
    def any(self) -> bool:
        return any(x is not None for x in (self.stop_loss, self.take_profit, self.trailing_stop))


@dataclass(frozen=True)
class Difference:
    """A documented reason why a framework's result differs from ours on a scenario.

    ``reason`` says what differs and why; ``source`` cites the framework's source or docs
    (file and line, issue number) or our ``docs/framework_differences.md`` entry.
    """

    reason: str
    source: str

    def __add__(self, other: Difference) -> Difference:
        """Combine two differences that show in the same cell."""
        return Difference(f"{self.reason} And: {other.reason}", f"{self.source}; {other.source}")


@dataclass(frozen=True, eq=False)
class Scenario:
    """One framework-neutral scenario (see the module docstring for the semantics)."""

    name: str
    description: str
    data: Callable[[], BarSet]
    program: Callable[[BarSet], Program]
    fill_timing: FillTiming = "same_bar_close"
    sizing: Sizing = field(default_factory=Sizing)
    costs: Costs = field(default_factory=Costs)
    exits: Exits = field(default_factory=Exits)
    direction: Literal["long_only", "long_short"] = "long_only"
    initial_cash: float = 100_000.0
    tolerance: str = "exact"
    #: framework -> documented difference (the cell is reported as such, with its size)
    differences: Mapping[str, Difference] = field(default_factory=dict)
    #: frameworks this scenario is meant for (others are reported as not applicable)
    frameworks: tuple[str, ...] = FRAMEWORKS
    tags: tuple[str, ...] = ()

    @cached_property
    def bars(self) -> BarSet:
        """The scenario's bars (built once)."""
        return self.data()

    @cached_property
    def compiled(self) -> Program:
        """The scenario's signals, weights or orders (built once)."""
        return self.program(self.bars)


# --- results in the common schema -----------------------------------------------------------
@dataclass(frozen=True)
class Fill:
    """One execution: bar index, asset, signed quantity (+ buy), price, commission."""

    bar: int
    asset: str
    quantity: float
    price: float
    commission: float = 0.0


@dataclass
class RunResult:
    """What one framework did with a scenario.

    ``fills`` in execution order (bar, then the order the framework executed them);
    ``equity`` and ``cash`` hold one value per bar, at the bar's close, as the framework
    reports them; ``rejected`` counts orders the framework refused.
    """

    framework: str
    fills: list[Fill]
    equity: np.ndarray
    cash: np.ndarray
    rejected: int = 0
    notes: list[str] = field(default_factory=list)


class Unsupported(Exception):
    """Raised by a runner when its framework cannot express the scenario (with why)."""
