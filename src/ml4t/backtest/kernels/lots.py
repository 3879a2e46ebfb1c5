"""Lot rounding shared by the kernels and the fill-time intents."""

from __future__ import annotations

import numpy as np

from ._jit import jit

__all__ = ["round_lot_nb"]


@jit
def round_lot_nb(q: float, lot: float) -> float:
    """Round ``q`` toward zero to whole lots of ``lot`` (0: unchanged); 1e-9 tolerance."""
    if lot <= 0:
        return q
    lots = q / lot
    nearest = np.round(lots)
    tol = abs(lots) * 1e-12
    if tol < 1e-9:
        tol = 1e-9
    count = nearest if abs(lots - nearest) <= tol else np.trunc(lots)
    return count * lot + 0.0
