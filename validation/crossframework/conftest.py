"""Shared bars, runners and comparisons for the cross-framework tests.

The same :class:`Bars` go through ml4t.backtest, Backtrader (``Cerebro`` with its default
``BackBroker``) and VectorBT (``Portfolio.from_signals``), each configured only through its
documented API. Every runner reports fills as :class:`Fill` (bar index into the bars,
signed quantity, price), so a test compares like with like. VectorBT is imported once per
session (its first simulation compiles with numba and takes seconds).

Backtrader and VectorBT come with the ``validation`` extra. Neither is imported when this
file loads: without Backtrader, ``test_vs_backtrader.py`` skips as a module; without
VectorBT, the ``vbt`` fixture skips each test that asks for it. Both say what to install.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from ml4t.backtest import BacktestEngine, BacktestResult, PolarsDataFeed, SimulationBroker
from ml4t.backtest.testing import ScriptedStrategy

ASSET = "A"
#: the real daily files carried by the repository (validation/real_data/README.md)
REAL_DATA = Path(__file__).resolve().parents[1] / "real_data"
REL = 1e-9  # prices and quantities: equal to floating point
CASH_ABS = 1e-6  # cash and equity
#: why a test skips when an optional framework is missing
MISSING = "{} is not installed: install the validation extra (pip install '.[validation]')"


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``crossframework`` marker (deselect with ``-m 'not crossframework'``)."""
    config.addinivalue_line(
        "markers",
        "crossframework: compares ml4t.backtest with Backtrader / VectorBT "
        "(deselect locally with -m 'not crossframework')",
    )


# --- data ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bars:
    """Daily OHLCV bars shared by all engines (naive timestamps, one per calendar day)."""

    open: tuple[float, ...]
    high: tuple[float, ...]
    low: tuple[float, ...]
    close: tuple[float, ...]
    volume: tuple[float, ...]
    dates: tuple[datetime, ...]

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[tuple[float, float, float, float]],
        volume: float | Sequence[float] = 1_000.0,
        start: datetime = datetime(2024, 1, 1),
    ) -> Bars:
        """Build bars from ``(open, high, low, close)`` rows, one day apart."""
        o, h, lo, c = (tuple(float(x) for x in col) for col in zip(*rows, strict=True))
        n = len(rows)
        vol = (
            (float(volume),) * n
            if isinstance(volume, int | float)
            else tuple(float(v) for v in volume)
        )
        dates = tuple(start + timedelta(days=k) for k in range(n))
        return cls(o, h, lo, c, vol, dates)

    @classmethod
    def from_csv(cls, path: Path, first: str, last: str) -> Bars:
        """Read a Yahoo daily CSV between two ISO dates (inclusive) with the csv module."""
        cols: dict[str, list[float]] = {k: [] for k in ("Open", "High", "Low", "Close", "Volume")}
        dates: list[datetime] = []
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                if first <= row["Date"] <= last:
                    dates.append(datetime.fromisoformat(row["Date"]))
                    for k, values in cols.items():
                        values.append(float(row[k]))
        return cls(
            tuple(cols["Open"]),
            tuple(cols["High"]),
            tuple(cols["Low"]),
            tuple(cols["Close"]),
            tuple(cols["Volume"]),
            tuple(dates),
        )

    @classmethod
    def from_real(cls, name: str, first: str, last: str) -> Bars:
        """Read ``validation/real_data/<name>_daily_yahoo.csv`` (nvda, orcl or yhoo)."""
        return cls.from_csv(REAL_DATA / f"{name}_daily_yahoo.csv", first, last)

    def __len__(self) -> int:
        return len(self.close)

    def index_of(self, when: datetime) -> int:
        """Return the bar index of a timestamp."""
        return self.dates.index(when.replace(tzinfo=None))

    def polars(self) -> pl.DataFrame:
        """Return the bars as the frame ml4t.backtest reads."""
        return pl.DataFrame(
            {
                "timestamp": list(self.dates),
                "open": list(self.open),
                "high": list(self.high),
                "low": list(self.low),
                "close": list(self.close),
                "volume": list(self.volume),
            }
        ).with_columns(pl.col("timestamp").cast(pl.Datetime("us")))

    def pandas(self) -> pd.DataFrame:
        """Return the bars as the frame Backtrader and VectorBT read."""
        return pd.DataFrame(
            {
                "open": self.open,
                "high": self.high,
                "low": self.low,
                "close": self.close,
                "volume": self.volume,
            },
            index=pd.DatetimeIndex(list(self.dates), name="datetime"),
        )


# --- results ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fill:
    """One execution: bar index, signed quantity (+ buy, - sell), price."""

    bar: int
    qty: float
    price: float


@dataclass(frozen=True)
class Trade:
    """One closed round trip (long only in these tests)."""

    entry_bar: int
    entry_price: float
    exit_bar: int
    exit_price: float
    qty: float
    pnl: float


@dataclass
class Run:
    """What one engine did with the bars."""

    fills: list[Fill]
    cash: float
    value: float
    trades: list[Trade] = field(default_factory=list)
    raw: Any = None


def assert_same_fills(ours: Sequence[Fill], theirs: Sequence[Fill]) -> None:
    """Assert equal fill lists: same bars, quantities and prices within 1e-9 relative."""
    assert len(ours) == len(theirs), f"{len(ours)} fills vs {len(theirs)}:\n{ours}\n{theirs}"
    for k, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a.bar == b.bar, f"fill {k}: bar {a.bar} vs {b.bar} ({a} vs {b})"
        assert a.qty == pytest.approx(b.qty, rel=REL), f"fill {k}: {a} vs {b}"
        assert a.price == pytest.approx(b.price, rel=REL), f"fill {k}: {a} vs {b}"


def assert_same_trades(ours: Sequence[Trade], theirs: Sequence[Trade]) -> None:
    """Assert equal closed trades: bars, prices and quantities 1e-9 relative, P&L 1e-6."""
    assert len(ours) == len(theirs), f"{len(ours)} trades vs {len(theirs)}"
    for k, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert (a.entry_bar, a.exit_bar) == (b.entry_bar, b.exit_bar), f"trade {k}: {a} vs {b}"
        assert a.entry_price == pytest.approx(b.entry_price, rel=REL), f"trade {k}: {a} vs {b}"
        assert a.exit_price == pytest.approx(b.exit_price, rel=REL), f"trade {k}: {a} vs {b}"
        assert a.qty == pytest.approx(b.qty, rel=REL), f"trade {k}: {a} vs {b}"
        assert a.pnl == pytest.approx(b.pnl, rel=REL, abs=CASH_ABS), f"trade {k}: {a} vs {b}"


def assert_same_books(ours: Run, theirs: Run) -> None:
    """Assert equal final cash and equity (1e-6 absolute)."""
    assert ours.cash == pytest.approx(theirs.cash, rel=0, abs=CASH_ABS)
    assert ours.value == pytest.approx(theirs.value, rel=0, abs=CASH_ABS)


# --- ml4t.backtest ------------------------------------------------------------------------
OursOnBar = Callable[[ScriptedStrategy, int], None]


def run_ml4t(
    bars: Bars, on_bar: OursOnBar, initial_cash: float = 10_000.0, **broker_kwargs: Any
) -> Run:
    """Run the bars through ml4t.backtest; ``on_bar(strategy, bar_index)`` places orders."""
    index = {d: k for k, d in enumerate(bars.dates)}

    def call(s: ScriptedStrategy, event: Any, context: Any) -> None:
        on_bar(s, index[event.timestamp.replace(tzinfo=None)])

    strategy = ScriptedStrategy(call)
    broker = SimulationBroker(initial_cash=initial_cash, **broker_kwargs)
    engine = BacktestEngine(PolarsDataFeed(bars.polars(), asset_id=ASSET), strategy, broker)
    result: BacktestResult = engine.run()
    fills = [
        Fill(
            bars.index_of(row["timestamp"]),
            row["quantity"] * (1 if row["side"] == "buy" else -1),
            row["price"],
        )
        for row in result.fills_df.iter_rows(named=True)
    ]
    trades = [
        Trade(
            bars.index_of(row["entry_timestamp"]),
            row["entry_price"],
            bars.index_of(row["exit_timestamp"]),
            row["exit_price"],
            row["quantity"],
            row["pnl_net"],
        )
        for row in result.trades_df.iter_rows(named=True)
        if not row["is_open"]
    ]
    cash = float(result.portfolio_df["cash"][-1])
    return Run(fills, cash, result.final_equity, trades, (result, strategy))


# --- Backtrader ---------------------------------------------------------------------------
BtOnBar = Callable[[Any, int], None]  # (bt.Strategy, bar index)


def backtrader() -> ModuleType:
    """Import Backtrader, or skip the calling test when it is not installed."""
    return pytest.importorskip("backtrader", reason=MISSING.format("backtrader"))


@cache
def _bt_script() -> type:
    """The Backtrader strategy class (built on first use: Backtrader is optional)."""
    bt = backtrader()

    class _BtScript(bt.Strategy):  # type: ignore[misc]
        """Call ``fn(strategy, bar_index)`` on every bar; record executions and statuses."""

        params = (("fn", None),)

        def __init__(self) -> None:
            self.executions: list[tuple[datetime, float, float, int]] = []
            self.statuses: list[tuple[int, str]] = []
            self.last: dict[int, Any] = {}

        def next(self) -> None:
            self.p.fn(self, len(self) - 1)

        def notify_order(self, order: Any) -> None:
            for bit in order.executed.iterpending():
                self.executions.append((bt.num2date(bit.dt), bit.size, bit.price, order.ref))
            self.statuses.append((order.ref, order.getstatusname()))
            self.last[order.ref] = order

    return _BtScript


def run_backtrader(
    bars: Bars,
    on_bar: BtOnBar,
    cash: float = 10_000.0,
    filler: Any = None,
) -> Run:
    """Run the bars through Cerebro with the default BackBroker (no commission)."""
    bt = backtrader()
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=bars.pandas()))
    cerebro.addstrategy(_bt_script(), fn=on_bar)
    cerebro.broker.setcash(cash)
    if filler is not None:
        cerebro.broker.set_filler(filler)
    strategy = cerebro.run()[0]
    fills = [Fill(bars.index_of(dt), size, price) for dt, size, price, _ in strategy.executions]
    return Run(fills, cerebro.broker.getcash(), cerebro.broker.getvalue(), raw=strategy)


def backtrader_trades(bars: Bars, fills: Sequence[Fill]) -> list[Trade]:
    """Pair a flat-to-flat fill sequence of one long position into closed trades."""
    trades: list[Trade] = []
    position = cost = 0.0
    entry_bar = -1
    for f in fills:
        if position == 0:
            entry_bar = f.bar
        if f.qty > 0:
            position += f.qty
            cost += f.qty * f.price
        else:
            avg = cost / position
            position += f.qty
            cost = avg * position
            if position == 0:
                trades.append(
                    Trade(entry_bar, avg, f.bar, f.price, -f.qty, -f.qty * (f.price - avg))
                )
    return trades


# --- VectorBT -----------------------------------------------------------------------------
def run_vectorbt(
    vbt: ModuleType,
    bars: Bars,
    entries: Sequence[bool],
    size: float,
    init_cash: float = 10_000.0,
    sl_stop: float = math.nan,
    tp_stop: float = math.nan,
    sl_trail: bool = False,
) -> Run:
    """Run ``Portfolio.from_signals`` with OHLC, a fixed size and no exit signals.

    The keyword set is always the same so numba compiles the simulation only once.
    """
    df = bars.pandas()
    pf = vbt.Portfolio.from_signals(
        df["close"],
        entries=pd.Series(np.asarray(entries, dtype=bool), index=df.index),
        exits=pd.Series(np.zeros(len(df), dtype=bool), index=df.index),
        open=df["open"],
        high=df["high"],
        low=df["low"],
        size=float(size),
        init_cash=float(init_cash),
        sl_stop=float(sl_stop),
        tp_stop=float(tp_stop),
        sl_trail=bool(sl_trail),
        freq="1D",
    )
    fills = [
        Fill(int(r["idx"]), float(r["size"]) * (1 if r["side"] == 0 else -1), float(r["price"]))
        for r in pf.orders.values
    ]
    trades = [
        Trade(
            int(r["entry_idx"]),
            float(r["entry_price"]),
            int(r["exit_idx"]),
            float(r["exit_price"]),
            float(r["size"]),
            float(r["pnl"]),
        )
        for r in pf.trades.values
        if r["status"] == 1
    ]
    return Run(fills, float(pf.cash().iloc[-1]), float(pf.value().iloc[-1]), trades, pf)


# --- fixtures -----------------------------------------------------------------------------
class Harness:
    """The helpers above, served to the tests as one fixture."""

    Bars = Bars
    Fill = Fill
    Trade = Trade
    ml4t = staticmethod(run_ml4t)
    backtrader = staticmethod(run_backtrader)
    backtrader_trades = staticmethod(backtrader_trades)
    same_fills = staticmethod(assert_same_fills)
    same_trades = staticmethod(assert_same_trades)
    same_books = staticmethod(assert_same_books)


@pytest.fixture(scope="session")
def xf() -> Harness:
    """Return the cross-framework helpers."""
    return Harness()


@pytest.fixture(scope="session")
def vbt() -> ModuleType:
    """Import vectorbt once per session, or skip the test when it is not installed."""
    return pytest.importorskip("vectorbt", reason=MISSING.format("vectorbt"))


@pytest.fixture(scope="session")
def vbt_run(vbt: ModuleType) -> Callable[..., Run]:
    """Return :func:`run_vectorbt` bound to the imported module."""

    def run(*args: Any, **kwargs: Any) -> Run:
        return run_vectorbt(vbt, *args, **kwargs)

    return run
