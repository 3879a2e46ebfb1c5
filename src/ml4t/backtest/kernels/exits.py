"""Position exits in the signal kernel: stop-loss, take-profit, trailing stop, time exit.

They follow the position as the broker's ``order_links._sync_exits`` does: a fill that
opens (or flips) a position creates its exits from the base price (the fill's average
cost, or the bar's close with ``exit_base="bar_close"``), one that grows it moves the
stop-loss and take-profit, one that closes it ends them (:func:`exits_after_fill_nb`).
Each timestamp, the working exits that the bar's path reaches become match candidates
(:func:`gather_exits_nb`), and after the bar is matched trailing references move
(:func:`move_trails_nb`). One slot per exit kind and asset (``G_*``, :mod:`._layout`).
"""

from __future__ import annotations

import numpy as np

from ._jit import jit_inline
from ._layout import (
    AT_CLOSE,
    AT_OPEN,
    FP_SL,
    FP_TP,
    FP_TRAIL_AMT,
    FP_TRAIL_PCT,
    G_SIZE,
    G_STOP,
    G_TAKE,
    G_TIME,
    G_TRAIL,
    IP_EXIT_BASE_CLOSE,
    IP_MAX_BARS,
    IP_MODE,
    IP_TRAIL_CLOSE,
    KF_PRICE,
    KF_TIME,
    KI_ADDS,
    KI_ID,
    KI_NOT_STOP,
    KI_REF,
    KI_SOURCE,
    KI_TAG,
    PATH_START,
    S_HELD,
    S_NEXT_ID,
    SOURCE_EXIT,
    TAG_STOP,
    TAG_TAKE,
    TAG_TIME,
    TAG_TRAIL,
    Account,
    Bars,
    Exits,
    Settings,
)
from .matching import path_nb, touch_nb

__all__ = ["exits_after_fill_nb", "gather_exits_nb", "move_trails_nb"]


@jit_inline
def _new_exit(exits: Exits, st_i: np.ndarray, code: int, slot: int) -> None:
    """Open exit ``slot`` of asset ``code`` with the next order id."""
    exits.ids[code, slot] = st_i[S_NEXT_ID]
    exits.open[code, slot] = 1
    st_i[S_NEXT_ID] += 1


@jit_inline
def exits_after_fill_nb(
    code: int,
    close: float,
    k: int,
    old: float,
    new: float,
    ip: np.ndarray,
    fp: np.ndarray,
    account: Account,
    exits: Exits,
) -> None:
    """Move asset ``code``'s exits after a fill took its position ``old`` -> ``new``.

    ``close`` is the fill bar's close; ``ip``/``fp`` the settings arrays.
    """
    st_i, avg = account.st_i, account.avg
    flipped = old == 0 or (old > 0) != (new > 0)
    if new == 0 or flipped:
        exits.active[code] = 0
        if new != 0:
            exits.exit_k[code] = k
            exits.active[code] = 1
            exits.created[code] = k
            base_px = close if ip[IP_EXIT_BASE_CLOSE] != 0 else avg[code]
            d = 1.0 if new > 0 else -1.0
            for slot in range(G_SIZE):
                exits.open[code, slot] = 0
                exits.ids[code, slot] = -1
            if fp[FP_SL] == fp[FP_SL]:
                exits.stop[code] = base_px * (1 - d * fp[FP_SL])
                _new_exit(exits, st_i, code, G_STOP)
            if fp[FP_TP] == fp[FP_TP]:
                exits.take[code] = base_px * (1 + d * fp[FP_TP])
                _new_exit(exits, st_i, code, G_TAKE)
            if fp[FP_TRAIL_PCT] == fp[FP_TRAIL_PCT] or fp[FP_TRAIL_AMT] == fp[FP_TRAIL_AMT]:
                exits.trail_ref[code] = base_px
                _new_exit(exits, st_i, code, G_TRAIL)
            if ip[IP_MAX_BARS] > 0:
                _new_exit(exits, st_i, code, G_TIME)
    elif abs(new) > abs(old):
        d = 1.0 if new > 0 else -1.0
        if fp[FP_SL] == fp[FP_SL] and exits.open[code, G_STOP]:
            grown = close if ip[IP_EXIT_BASE_CLOSE] != 0 else avg[code]
            exits.stop[code] = grown * (1 - d * fp[FP_SL])
        if fp[FP_TP] == fp[FP_TP] and exits.open[code, G_TAKE]:
            grown = close if ip[IP_EXIT_BASE_CLOSE] != 0 else avg[code]
            exits.take[code] = grown * (1 + d * fp[FP_TP])


@jit_inline
def gather_exits_nb(
    n: int,
    phase: int,
    at_close: bool,
    fill_at_close: bool,
    k: int,
    bars: Bars,
    settings: Settings,
    account: Account,
    exits: Exits,
    row_now: np.ndarray,
    keys_f: np.ndarray,
    keys_i: np.ndarray,
) -> int:
    """Add the exits the bar reaches in this phase to the candidates from row ``n``.

    ``phase`` 0 matches at the open and along the bar, 1 at the close (``at_close``:
    ``same_bar_close`` timing); ``fill_at_close``: a time exit fills at the close.
    Returns the new number of candidates.
    """
    ip, fp = settings.ip, settings.fp
    o, h, lo, c = bars.open, bars.high, bars.low, bars.close
    qty, held = account.qty, account.held
    max_bars = ip[IP_MAX_BARS]
    mode = ip[IP_MODE]
    for j in range(account.st_i[S_HELD]):
        a = held[j]
        r = row_now[a]
        if r < 0 or exits.active[a] == 0:
            continue
        side = -1 if qty[a] > 0 else 1
        adds = 1 if qty[a] * side >= 0 else 0
        for slot in range(G_SIZE):
            if exits.open[a, slot] == 0:
                continue
            tag = TAG_STOP + slot
            if tag == TAG_TIME:
                if phase == 0 and at_close:
                    continue
                if phase == 0 and exits.created[a] >= k:
                    continue
                if exits.exit_k[a] + max_bars > k:
                    continue
                tm = AT_CLOSE if fill_at_close else AT_OPEN
                px = c[r] if fill_at_close else o[r]
            else:
                if phase == 1 or exits.created[a] >= k:
                    continue
                path = path_nb(o[r], h[r], lo[r], c[r], side, mode)
                start = path[PATH_START]
                if tag == TAG_STOP:
                    tm, px = touch_nb(path, PATH_START, start, exits.stop[a], side > 0)
                elif tag == TAG_TAKE:
                    tm, px = touch_nb(path, PATH_START, start, exits.take[a], side < 0)
                else:
                    if fp[FP_TRAIL_AMT] == fp[FP_TRAIL_AMT]:
                        level = exits.trail_ref[a] + side * fp[FP_TRAIL_AMT]
                    else:
                        level = exits.trail_ref[a] * (1.0 + side * fp[FP_TRAIL_PCT])
                    tm, px = touch_nb(path, PATH_START, start, level, side > 0)
                if tm < 0:
                    continue
            keys_f[n, KF_TIME] = tm
            keys_f[n, KF_PRICE] = px
            keys_i[n, KI_ADDS] = adds
            keys_i[n, KI_NOT_STOP] = 0 if tag in (TAG_STOP, TAG_TRAIL) else 1
            keys_i[n, KI_ID] = exits.ids[a, slot]
            keys_i[n, KI_SOURCE] = SOURCE_EXIT
            keys_i[n, KI_REF] = a * G_SIZE + slot
            keys_i[n, KI_TAG] = tag
            n += 1
    return n


@jit_inline
def move_trails_nb(
    k: int, bars: Bars, settings: Settings, account: Account, exits: Exits, row_now: np.ndarray
) -> None:
    """Move the trailing references to the bar's extreme (or close) after it is matched."""
    at_close = settings.ip[IP_TRAIL_CLOSE] != 0
    h, lo, c = bars.high, bars.low, bars.close
    qty, held = account.qty, account.held
    ref = exits.trail_ref
    for j in range(account.st_i[S_HELD]):
        a = held[j]
        r = row_now[a]
        if r < 0 or exits.active[a] == 0 or exits.open[a, G_TRAIL] == 0 or exits.created[a] >= k:
            continue
        if qty[a] > 0:
            seen = c[r] if at_close else h[r]
            if seen > ref[a]:
                ref[a] = seen
        else:
            seen = c[r] if at_close else lo[r]
            if seen < ref[a]:
                ref[a] = seen
