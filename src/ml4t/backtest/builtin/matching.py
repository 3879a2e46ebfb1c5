"""Where in a bar a priced order triggers and at what price.

A bar only tells us four prices. The broker assumes the price travelled from the open to
one extreme, then to the other, then to the close; ``intrabar`` names which extreme comes
first:

``"conservative"`` (default)
    The extreme adverse to the order comes first: the low for sells, the high for buys.
    A long position's stop-loss and take-profit are both sells, so on a bar that touches
    both the stop (on the way down) fills first; likewise for a short's buy orders.
``"high_first"`` / ``"low_first"``
    Open, high, low, close / open, low, high, close, for every order.
``"nearest"``
    The extreme nearer to the open comes first (ties: conservative).
``"close_only"``
    The bar is its close: limit and stop orders trigger only if the close reaches their
    level, and fill at the close (Zipline's rule; its preset uses it).

On that path an order fills at the first point where it is marketable: at the open when
the bar gaps through its level (a gap through a stop fills at the open, a limit gapped
through fills at the better open), otherwise at its level. A stop-limit triggers at the
stop and then rests as a limit from that point of the path on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.orders import OrderType, trail_level
from ..kernels.matching import INTRABAR_MODES, BarPath
from ..kernels.matching import path as _kernel_path
from ..kernels.matching import touch as _kernel_touch

if TYPE_CHECKING:
    from ..core.orders import Order

__all__ = ["INTRABAR_MODES", "Match", "bar_path", "match_order", "mode_code", "touch"]

#: (time on the bar's path, base price, stop-limit triggered on this bar)
Match = tuple[float, float, bool]

_STOPS = (OrderType.STOP, OrderType.TRAILING_STOP)
_MODE_CODES: dict[str, int] = {name: code for code, name in enumerate(INTRABAR_MODES)}


def mode_code(mode: str) -> int:
    """Return the code of intrabar mode ``mode`` (its index in :data:`INTRABAR_MODES`)."""
    return _MODE_CODES[mode]


def bar_path(o: float, h: float, lo: float, c: float, side: int, mode: str) -> BarPath:
    """Return the assumed price path ``(open, first extreme, second extreme, close)``.

    ``mode`` is one of :data:`INTRABAR_MODES`; the rule is ``kernels.matching.path``,
    which takes the mode's code (:func:`mode_code`): the broker resolves it once per run
    and calls that directly.
    """
    return _kernel_path(o, h, lo, c, side, _MODE_CODES[mode])


def touch(
    path: BarPath, k0: int, start: float, level: float, up: bool
) -> tuple[float, float] | None:
    """Return ``(time, price)`` where the path from ``(k0, start)`` first reaches ``level``.

    ``up`` means reaching ``price >= level``, else ``price <= level``. If ``start``
    already satisfies it, the price is ``start`` (a gap); otherwise it is ``level``, on
    the first segment whose end crosses it. Time is the segment index plus the fraction
    of the segment travelled, so orders on one bar can be ranked. ``None``: the path never
    reaches ``level``. The rule is ``kernels.matching.touch``.
    """
    t, price = _kernel_touch(path, k0, start, level, up)
    return None if t < 0.0 else (t, price)


def match_order(order: Order, path: BarPath, triggered: bool = False) -> Match | None:
    """Return where a limit, stop, stop-limit or trailing order fills on ``path``.

    ``triggered``: the order's stop was reached on an earlier bar (a stop-limit then
    works as a limit, a stop's remainder as a market order). A trailing stop's level is
    measured from its ``trail_reference_price``.

    Returns ``None`` when it does not fill on this bar, and ``(inf, nan, True)`` when a
    stop-limit triggered but its limit was not reached (it rests as a limit).
    """
    buy = order.side.sign > 0
    kind = order.order_type
    o = path[0]
    if kind is OrderType.LIMIT:
        assert order.limit_price is not None
        return _as_match(_kernel_touch(path, 0, o, order.limit_price, not buy), False)
    if kind in _STOPS:
        if triggered:  # triggered earlier and partly filled: now a market order
            return 0.0, o, False
        if kind is OrderType.STOP:
            assert order.stop_price is not None
            level = order.stop_price
        else:
            level = trail_level(order, order.trail_reference_price)
        return _as_match(_kernel_touch(path, 0, o, level, buy), False)
    if kind is OrderType.STOP_LIMIT:
        assert order.limit_price is not None and order.stop_price is not None
        if triggered:
            return _as_match(_kernel_touch(path, 0, o, order.limit_price, not buy), False)
        t, price = _kernel_touch(path, 0, o, order.stop_price, buy)
        if t < 0.0:
            return None
        seg = int(t)
        # continue along the path from the trigger point as a limit order
        rest_t, rest_price = _kernel_touch(path, seg, price, order.limit_price, not buy)
        if rest_t < 0.0:
            return float("inf"), float("nan"), True
        return max(t, rest_t), rest_price, True
    return 0.0, o, False  # market-like: the open


def _as_match(hit: tuple[float, float], triggered: bool) -> Match | None:
    t, price = hit
    return None if t < 0.0 else (t, price, triggered)
