"""The clock: walks merged blocks of every feed in time order.

The clock owns "now": the engine advances it once per timestamp, and the strategy,
broker and history all read it, so none of them can look past the bar being handled.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, time
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataValidationError
from .asof import AsOfColumn, AsOfRows, AsOfTable, BlockAsOf
from .data import Block, Feed, RawBlock, make_ts_converter, merge_raw_blocks

__all__ = ["Clock"]

_DEFAULT_WINDOW = "1mo"


class Clock:
    """Merge several feeds chronologically with a stable asset order.

    Parameters
    ----------
    feeds : sequence of Feed
        The feeds; asset codes are assigned feed by feed, each feed's assets sorted.

    Attributes
    ----------
    asset_ids : list of str
        Every asset, in code order (the order assets appear within a timestamp).
    now_ns : int
        Timestamp being handled (int ns UTC); ``-1`` before the first bar.
    now_index : int
        Number of timestamps handled before the current one.

    Notes
    -----
    The engine moves the clock by setting ``i`` (the position in the current chunk's
    timestamps), one attribute write per timestamp; ``now_ns`` is derived from it unless
    ``override_ns`` is set (before a session starts, "now" is just before its first bar).
    """

    def __init__(self, feeds: Sequence[Feed], names: Sequence[str] | None = None) -> None:
        if not feeds:
            raise DataValidationError("no data feed given")
        self.feeds = list(feeds)
        labels = list(names) if names is not None else [f.name for f in self.feeds]
        if len(set(labels)) < len(labels):
            labels = [f"feed {k} ({label})" for k, label in enumerate(labels)]
        self.feed_names = labels
        zones = {f.timezone for f in self.feeds}
        if len({z is None for z in zones}) > 1:
            described = ", ".join(
                f"{label}: {f.timezone or 'naive'}"
                for label, f in zip(labels, self.feeds, strict=True)
            )
            raise DataValidationError(
                f"feeds mix timezone-aware and naive timestamps ({described}); make all of "
                "them timezone-aware or all naive"
            )
        self.timezone: str | None = self.feeds[0].timezone
        self.to_datetime: Callable[[int], datetime] = make_ts_converter(self.timezone)
        self.asset_ids: list[str] = []
        self._maps: list[np.ndarray] = []
        owner: dict[str, str] = {}
        for label, feed in zip(labels, self.feeds, strict=True):
            codes = []
            for a in feed.asset_ids:
                if a in owner:
                    raise DataValidationError(
                        f"asset {a!r} is provided by two feeds ({owner[a]!r} and {label!r})"
                    )
                owner[a] = label
                codes.append(len(self.asset_ids))
                self.asset_ids.append(a)
            self._maps.append(np.asarray(codes, dtype=np.int32))
        sig: dict[str, None] = {}
        ind: dict[str, None] = {}
        for feed in self.feeds:
            sig.update(dict.fromkeys(feed.signal_names))
            ind.update(dict.fromkeys(feed.indicator_names))
        self.signal_names = tuple(sig)
        self.indicator_names = tuple(ind)
        self.columns = ("open", "high", "low", "close", "volume", *sig, *ind)
        self.asof: AsOfTable | None = self._asof_table()
        self.asof_names: tuple[str, ...] = () if self.asof is None else tuple(self.asof.values)
        self._merge_columns = tuple(c for c in self.columns if c not in self.asof_names)
        self.i = 0
        self.chunk_ts: list[int] = []
        self.base_index = 0
        self.override_ns: int | None = -1
        #: the run period ``[start_ns, end_ns)`` (``None`` = open); set by the engine
        self.period: tuple[int | None, int | None] = (None, None)
        self._rows_known: tuple[tuple[int, int], bool] | None = None

    def _asof_table(self) -> AsOfTable | None:
        """Combine the feeds' lower-frequency rows (global codes) into one as-of table."""
        parts: list[AsOfRows] = []
        for feed, mapping in zip(self.feeds, self._maps, strict=True):
            get = getattr(feed, "asof_rows", None)
            rows = get() if get is not None else None
            if rows is not None:
                parts.append(
                    AsOfRows(
                        mapping[rows.code].astype(np.int64),
                        rows.ts,
                        rows.visible,
                        rows.values,
                        rows.max_stale_ns,
                        rows.source,
                    )
                )
        if not parts:
            return None
        names = set(parts[0].values)
        for other in parts[1:]:
            if set(other.values) != names or other.max_stale_ns != parts[0].max_stale_ns:
                raise DataValidationError(
                    f"feeds {parts[0].source!r} and {other.source!r} give signal_data with "
                    "different columns or staleness; give one signal_data for all assets"
                )
        merged = AsOfRows(
            np.concatenate([p.code for p in parts]),
            np.concatenate([p.ts for p in parts]),
            np.concatenate([p.visible for p in parts]),
            {n: np.concatenate([p.values[n] for p in parts]) for n in parts[0].values},
            parts[0].max_stale_ns,
            parts[0].source if len(parts) == 1 else "signal_data",
        )
        return AsOfTable(merged, len(self.asset_ids))

    @property
    def now_ns(self) -> int:
        """Current timestamp (int ns UTC); -1 before the first bar."""
        if self.override_ns is not None:
            return self.override_ns
        return self.chunk_ts[self.i]

    @property
    def now_index(self) -> int:
        """Number of timestamps before the current one (global bar index)."""
        return self.base_index + self.i

    def windows(self) -> list[tuple[int, int]]:
        """Return the ``[start, end)`` time windows blocks are loaded in.

        Windows are cut at the union of two kinds of edges: calendar boundaries of the
        smallest duration ``chunk_size`` among the feeds (days, Mondays, month or year
        starts, counted from the one at or before the first bar), and the timestamps each
        feed's ``window_edges(lo, hi)`` returns (row limits). Every edge is a timestamp, so
        a window never splits the rows of one timestamp. No edge at all gives one window.

        Raises
        ------
        DataValidationError
            When there is nothing to run: every feed is empty, or the period
            (:attr:`period`) selects no bar. The message names the feeds, the requested
            period and the data's first and last timestamp. A period that lies within the
            data but between bars is found through the feeds' optional ``has_rows``; for a
            feed without it, :meth:`blocks` raises the same error once every window came
            back empty.
        """
        bounds = [f.time_bounds() for f in self.feeds]
        bounds = [b for b in bounds if b[1] >= b[0]]
        if not bounds:
            raise self._no_bars(None)
        first = min(b[0] for b in bounds)
        last = max(b[1] for b in bounds)
        lo, hi = first, last + 1
        start, end = self.period
        lo = lo if start is None else max(lo, start)
        hi = hi if end is None else min(hi, end)
        if hi <= lo or not self._any_rows(lo, hi):
            raise self._no_bars((first, last))
        cuts: set[int] = set()
        sizes: list[str] = [s for f in self.feeds if (s := getattr(f, "chunk_size", None))]
        if sizes:
            cuts.update(_duration_cuts(lo, hi, min(sizes, key=_approx_days)))
        for feed in self.feeds:
            edges_of = getattr(feed, "window_edges", None)
            edges = edges_of(lo, hi) if callable(edges_of) else None
            if edges:
                cuts.update(int(e) for e in edges)
        inner = sorted(e for e in cuts if lo < e < hi)
        return list(itertools.pairwise([lo, *inner, hi]))

    def _any_rows(self, lo: int, hi: int) -> bool:
        """Return False only when every feed says it has no row in ``[lo, hi)``.

        Needed only with a period: without one ``[lo, hi)`` spans the data's own first
        and last bar. A feed that cannot tell (no ``has_rows``) counts as having rows.
        The answer is kept, since the engine asks for the windows more than once a run.
        """
        if self.period == (None, None):
            return True
        if self._rows_known is not None and self._rows_known[0] == (lo, hi):
            return self._rows_known[1]
        found = False
        for feed in self.feeds:
            has_rows = getattr(feed, "has_rows", None)
            if not callable(has_rows) or has_rows(lo, hi):
                found = True
                break
        self._rows_known = ((lo, hi), found)
        return found

    def _no_bars(self, data_range: tuple[int, int] | None) -> DataValidationError:
        """The error for a run with no bar: ``data_range`` is ``None`` when all are empty."""
        names = ", ".join(repr(n) for n in self.feed_names)
        of = f"feed {names}" if len(self.feed_names) == 1 else f"feeds {names}"
        start, end = self.period
        if data_range is None:
            has = "has" if len(self.feed_names) == 1 else "have"
            text = f"no bars to run: {of} {has} no rows"
            if start is not None or end is not None:
                text += f" (requested period {self._describe_period()})"
            return DataValidationError(text)
        first, last = (self._show(ts) for ts in data_range)
        return DataValidationError(
            f"no bars to run: the requested period {self._describe_period()} selects no bar "
            f"of {of}, whose data runs from {first} to {last}; check start=/end= (or "
            "backtest.start_date/end_date)"
        )

    def _describe_period(self) -> str:
        start, end = self.period
        lo = "the start of the data" if start is None else self._show(start)
        if end is None:
            hi = "the end of the data"
        elif self.to_datetime(end).time() == time(0):  # a whole day: show the last one
            hi = self.to_datetime(end - 1).date().isoformat()
        else:
            hi = self._show(end - 1)
        return f"from {lo} to {hi}"

    def _show(self, ns: int) -> str:
        """Return a timestamp for messages: the date alone at midnight."""
        when = self.to_datetime(ns)
        return when.date().isoformat() if when.time() == time(0) else when.isoformat()

    def blocks(self) -> Iterator[Block]:
        """Yield merged blocks in time order.

        Raises :class:`DataValidationError` (as :meth:`windows` does) if no window has a
        bar, which only a feed without ``has_rows`` lets through to here.
        """
        empty = True
        for start, end in self.windows():
            parts = []
            for feed, mapping in zip(self.feeds, self._maps, strict=True):
                raw = feed.load(start, end)
                parts.append(RawBlock(raw.ts, mapping[raw.code], raw.cols))
            block = merge_raw_blocks(parts, self._merge_columns)
            if block.ts.shape[0]:
                if self.asof is not None:
                    index = BlockAsOf(self.asof, block)
                    for name in self.asof_names:
                        block.cols[name] = AsOfColumn(index, name)  # type: ignore[assignment]
                empty = False
                yield block
        if empty:
            bounds = [b for f in self.feeds if (b := f.time_bounds())[1] >= b[0]]
            if not bounds:  # pragma: no cover - windows() raised already
                raise self._no_bars(None)
            raise self._no_bars((min(b[0] for b in bounds), max(b[1] for b in bounds)))


_CHUNK = re.compile(r"^(\d+)(mo|w|d|y)$")
_UNIT_DAYS = {"mo": 30.0, "w": 7.0, "d": 1.0, "y": 365.0}
_UNIT_FREQ = {"mo": "MS", "w": "W-MON", "d": "D", "y": "YS"}


def _split_size(size: str) -> tuple[int, str]:
    match = _CHUNK.match(size.strip().lower())
    if match is None or int(match.group(1)) <= 0:
        raise ConfigError(
            f"a feed's chunk_size is {size!r}; a feed must give it as <n>mo, <n>w, <n>d or "
            "<n>y with n >= 1 (e.g. '1mo', '2w')"
        )
    return int(match.group(1)), match.group(2)


def _approx_days(size: str) -> float:
    n, unit = _split_size(size)
    return n * _UNIT_DAYS[unit]


_UNIT_MIN_DAYS = {"mo": 28, "w": 7, "d": 1, "y": 365}


def _duration_cuts(lo: int, hi: int, size: str) -> list[int]:
    """Return the calendar edges in ``(lo, hi)`` of windows of ``size`` (int ns UTC).

    Edges are ``anchor + k * size`` for ``k >= 1``, where ``anchor`` is the unit boundary
    (UTC midnight, Monday, first of the month or year) at or before ``lo``; so a duration
    longer than the data gives no edge (one window).
    """
    n, unit = _split_size(size)
    first = pd.Timestamp(lo).floor("D")
    if unit == "w":
        first -= pd.Timedelta(days=first.day_of_week)
    elif unit == "mo":
        first = first.replace(day=1)
    elif unit == "y":
        first = first.replace(month=1, day=1)
    if n * _UNIT_MIN_DAYS[unit] * 86_400 * 10**9 >= hi - first.value:
        return []
    edges = pd.date_range(first, pd.Timestamp(hi), freq=f"{n}{_UNIT_FREQ[unit]}")
    return [e for e in edges.asi8.tolist() if lo < e < hi]


def describe_ts(to_dt: Callable[[int], datetime], ts: Any) -> str:
    """Return a readable timestamp for messages."""
    try:
        return to_dt(int(ts)).isoformat()
    except (TypeError, ValueError, OverflowError):
        return str(ts)
