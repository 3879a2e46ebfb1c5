"""Warnings about orders that ended without filling for reasons the strategy did not choose.

A run that rejects orders (no cash, no shares to sell, one order per bar, a bad price) or
whose broker cancels orders the strategy did not cancel (a reduce-only order with nothing
left to reduce, a target order already at its target, a margin call) must say so: the
result's ``warnings`` list carries one line per kind of problem, ``summary()`` prints it,
the metadata keeps it, and one :class:`RejectedOrdersWarning` is emitted at the end of
the run.

The lines are built from ``orders_df`` (events ``rejected`` and ``cancelled``), grouped by
reason: numbers become ``#`` and the order's asset ``<asset>``, so "insufficient cash: need
50,123.00 to buy 100 AAPL …" and the same text for another order count as one kind. Paths
that do not log every order (the compiled kernel) pass their counts by reason instead.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence

import polars as pl

from ..errors import RejectedOrdersWarning

__all__ = [
    "EXPECTED_CANCELS",
    "RejectedOrdersWarning",
    "emit_run_warnings",
    "order_warnings",
    "unfilled_counts",
]


#: reasons of cancellations the strategy asked for (directly or by the order's own terms):
#: its own cancels, protective exits no longer needed, OCO siblings, the children of an
#: unfilled parent (the parent's rejection is reported), IOC/FOK orders not marketable
EXPECTED_CANCELS = (
    "cancelled by the strategy",
    "cancelled: position exit no longer needed",
    "cancelled: OCO sibling",
    "cancelled: parent order",
    "cancelled: IOC",
    "cancelled: FOK",
)

#: a number (sign, thousands separators, decimals, exponent) not glued to a word ("A1" stays)
_NUMBER = r"(^|[^\w-])-?\d+(?:[.,]\d+)*(?:[eE][-+]?\d+)?"
_SHOWN = 3  # kinds of reasons named per line
#: extra advice for a kind of reason (matched at its start)
_HINTS = {
    "insufficient cash": (
        'with SimulationBroker(cash_policy="resize") such orders are cut to what the cash '
        "allows instead"
    ),
}


def order_warnings(
    orders_df: pl.DataFrame, unlogged: Sequence[tuple[str, str, int]] = ()
) -> list[str]:
    """Return one line for rejected orders and one for unrequested cancellations.

    Parameters
    ----------
    orders_df : polars.DataFrame
        The run's order events (``event``, ``reason``, ``asset_id`` columns).
    unlogged : sequence of (event, reason, count)
        Orders that ended without a ``orders_df`` row (the compiled path): event
        ``"rejected"`` or ``"cancelled"``, a reason text and how many.

    Returns
    -------
    list of str
        Empty when nothing was rejected or cancelled unasked.
    """
    counts: dict[str, dict[str, int]] = {"rejected": {}, "cancelled": {}}
    for event, reason, count in _logged_kinds(orders_df):
        bucket = counts[event]
        bucket[reason] = bucket.get(reason, 0) + count
    for event, reason, count in unlogged:
        if count and event in counts and not _expected(reason):
            bucket = counts[event]
            key = _strip(reason)
            bucket[key] = bucket.get(key, 0) + int(count)
    out = []
    for event, head, where in (
        ("rejected", "{n} {orders} rejected", "orders_df rows with event 'rejected'"),
        (
            "cancelled",
            "{n} {orders} cancelled by the broker, not by the strategy",
            "orders_df rows with event 'cancelled'",
        ),
    ):
        kinds = sorted(counts[event].items(), key=lambda kv: -kv[1])  # stable: first seen
        total = sum(c for _, c in kinds)
        if not total:
            continue
        parts = [f"{c:,} × {reason!r}" for reason, c in kinds[:_SHOWN]]
        if len(kinds) > _SHOWN:
            rest = sum(c for _, c in kinds[_SHOWN:])
            parts.append(f"{rest:,} more of {len(kinds) - _SHOWN} other kinds")
        orders = "order was" if total == 1 else "orders were"
        line = head.format(n=f"{total:,}", orders=orders) + ": " + ", ".join(parts)
        hints = [h for k, h in _HINTS.items() if any(r.startswith(k) for r, _ in kinds)]
        missing = sum(int(c) for e, r, c in unlogged if e == event and not _expected(r))
        if missing >= total:
            line += " (orders_df has no rows for them: this mode does not log orders)"
        elif missing:
            line += (
                f" (see {where}; {missing:,} of them have no row: this mode does not log orders)"
            )
        else:
            line += f" (see {where})"
        if hints:
            line += "; " + "; ".join(hints)
        out.append(line)
    return out


def unfilled_counts(
    orders_df: pl.DataFrame, unlogged: Sequence[tuple[str, str, int]] = ()
) -> tuple[int, int]:
    """Return ``(rejected, cancelled unasked)`` order counts (see :func:`order_warnings`)."""
    rejected = cancelled = 0
    if orders_df.height:
        unasked = ~_asked(pl.col("reason").fill_null(""))
        rejected = orders_df.filter(pl.col("event") == "rejected").height
        cancelled = orders_df.filter((pl.col("event") == "cancelled") & unasked).height
    for event, reason, count in unlogged:
        if event == "rejected":
            rejected += int(count)
        elif event == "cancelled" and not _expected(reason):
            cancelled += int(count)
    return rejected, cancelled


def emit_run_warnings(lines: Sequence[str], stacklevel: int) -> None:
    """Emit one :class:`RejectedOrdersWarning` carrying ``lines`` (nothing if empty)."""
    if lines:
        warnings.warn("\n".join(lines), RejectedOrdersWarning, stacklevel=stacklevel + 1)


def _logged_kinds(orders_df: pl.DataFrame) -> list[tuple[str, str, int]]:
    """``(event, kind of reason, count)`` of the rejected and unasked cancelled orders."""
    if orders_df.height == 0:
        return []
    reason = pl.col("reason").fill_null("no reason given")
    unasked = ~_asked(reason)
    ended = orders_df.filter(
        (pl.col("event") == "rejected") | ((pl.col("event") == "cancelled") & unasked)
    )
    if ended.height == 0:
        return []
    combos = (
        ended.select(
            "event",
            reason.str.replace_all(_NUMBER, "${1}#").alias("text"),
            pl.col("asset_id").fill_null("").str.replace_all(_NUMBER, "${1}#").alias("asset"),
        )
        .group_by("event", "text", "asset", maintain_order=True)
        .len()
    )
    out = []
    patterns: dict[str, re.Pattern[str]] = {}
    for event, text, asset, count in combos.iter_rows():
        if asset:
            pat = patterns.get(asset)
            if pat is None:
                pat = patterns[asset] = re.compile(rf"(?<![\w#]){re.escape(asset)}(?![\w#])")
            text = pat.sub("<asset>", text)
        out.append((event, _strip(text), count))
    return out


def _asked(reason: pl.Expr) -> pl.Expr:
    """Whether a cancellation reason is one the strategy asked for (expression)."""
    return pl.any_horizontal(reason.str.starts_with(p) for p in EXPECTED_CANCELS)


def _expected(reason: str) -> bool:
    return reason.startswith(EXPECTED_CANCELS)


def _strip(reason: str) -> str:
    return reason.removeprefix("cancelled: ")
