"""Where a bar's assumed price path first reaches a level (kernel of ``builtin.matching``).

A bar is walked as open -> first extreme -> second extreme -> close; ``mode`` picks the
first extreme (0 conservative: adverse to the order; 1 high first; 2 low first; 3 nearest
to the open, ties conservative; 4 close only: every point is the close). ``touch_nb``
returns ``(time, price)``: the segment index plus the fraction travelled (so orders on
one bar can be ranked) and the fill price (the start when it already satisfies the level:
a gap), or ``(-1, nan)`` when the path never reaches the level.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit

__all__ = ["MODES", "path_nb", "touch_nb"]

MODES = ("conservative", "high_first", "low_first", "nearest", "close_only")


@jit
def path_nb(o: float, h: float, lo: float, c: float, side: int, mode: int) -> np.ndarray:
    """Return the assumed path ``[open, first extreme, second extreme, close]``."""
    out = np.empty(4)
    if mode == 4:
        out[:] = c
        return out
    if mode == 0:
        high_first = side > 0
    elif mode == 1:
        high_first = True
    elif mode == 2:
        high_first = False
    else:
        up = h - o
        down = o - lo
        high_first = up < down if up != down else side > 0
    out[0] = o
    out[3] = c
    if high_first:
        out[1] = h
        out[2] = lo
    else:
        out[1] = lo
        out[2] = h
    return out


@jit
def touch_nb(
    path: np.ndarray, k0: int, start: float, level: float, up: bool
) -> tuple[float, float]:
    """Return where the path from point ``k0`` (at ``start``) first reaches ``level``."""
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
    return -1.0, np.nan
