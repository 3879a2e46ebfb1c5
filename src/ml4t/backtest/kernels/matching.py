"""Where a bar's assumed price path first reaches a level: the one source of the rule.

A bar is walked as open -> first extreme -> second extreme -> close; ``mode`` (the index
of its name in :data:`INTRABAR_MODES`) picks the first extreme: ``CONSERVATIVE`` adverse
to the order, ``HIGH_FIRST``, ``LOW_FIRST``, ``NEAREST`` to the open (ties conservative),
``CLOSE_ONLY`` (every point is the close). :func:`touch` returns ``(time, price)``: the
segment index plus the fraction travelled (so orders on one bar can be ranked) and the
fill price (the start when it already satisfies the level: a gap), or ``(-1, nan)`` when
the path never reaches the level.

:func:`path` and :func:`touch` are plain functions: the broker's Python fill path
(``builtin.matching``) calls them as they are, the kernels call them jitted
(:func:`path_nb`, :func:`touch_nb`).
"""

from __future__ import annotations

import math
from typing import Literal, get_args

from ._jit import jit

__all__ = [
    "CLOSE_ONLY",
    "CONSERVATIVE",
    "HIGH_FIRST",
    "INTRABAR_MODES",
    "LOW_FIRST",
    "NEAREST",
    "BarPath",
    "IntrabarMode",
    "path",
    "path_nb",
    "touch",
    "touch_nb",
]

#: An intrabar mode's name (for settings' type hints).
IntrabarMode = Literal["conservative", "high_first", "low_first", "nearest", "close_only"]
#: The names of the intrabar modes; a mode's code (what the kernels take) is its index.
INTRABAR_MODES: tuple[IntrabarMode, ...] = get_args(IntrabarMode)
CONSERVATIVE, HIGH_FIRST, LOW_FIRST, NEAREST, CLOSE_ONLY = range(len(INTRABAR_MODES))

#: ``(open, first extreme, second extreme, close)``
BarPath = tuple[float, float, float, float]


def path(o: float, h: float, lo: float, c: float, side: int, mode: int) -> BarPath:
    """Return the assumed path ``(open, first extreme, second extreme, close)``."""
    if mode == CLOSE_ONLY:
        return (c, c, c, c)
    if mode == CONSERVATIVE:
        high_first = side > 0
    elif mode == HIGH_FIRST:
        high_first = True
    elif mode == LOW_FIRST:
        high_first = False
    else:  # NEAREST
        up = h - o
        down = o - lo
        high_first = up < down if up != down else side > 0
    return (o, h, lo, c) if high_first else (o, lo, h, c)


def touch(path: BarPath, k0: int, start: float, level: float, up: bool) -> tuple[float, float]:
    """Return where the ``path`` from point ``k0`` (at ``start``) first reaches ``level``.

    ``up`` means reaching ``price >= level``, else ``price <= level``. If ``start``
    already satisfies it, the price is ``start`` (a gap); otherwise it is ``level``, on
    the first segment whose end crosses it. ``(-1, nan)``: the path never reaches it.
    """
    if (start >= level) if up else (start <= level):
        return float(k0), start
    a = start
    for k in range(k0 + 1, 4):
        b = path[k]
        if (b >= level) if up else (b <= level):
            span = b - a
            frac = (level - a) / span if span else 0.0
            return k - 1 + frac, level
        a = b
    return -1.0, math.nan


path_nb = jit(path)
touch_nb = jit(touch)
