"""The matching kernels equal ``builtin.matching``: same assumed bar path, same touch point.

``kernels.matching.path_nb`` is compared with ``bar_path`` and ``touch_nb`` with ``touch``
on random consistent OHLC bars (``low <= open, close <= high``), drawn from a coarse price
grid as well so that ties (open equidistant from high and low, levels equal to a path
point, flat segments) come up often.
"""

from __future__ import annotations

import math

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ml4t.backtest.builtin.matching import INTRABAR_MODES, bar_path, touch
from ml4t.backtest.kernels.matching import MODES, path_nb, touch_nb

SETTINGS = settings(max_examples=400, deadline=None)

grid = st.integers(0, 16).map(lambda k: 100.0 + k / 4.0)
fine = st.floats(50.0, 150.0, allow_nan=False)
price = st.one_of(grid, fine)
sides = st.sampled_from([1, -1])
modes = st.sampled_from(range(len(MODES)))


@st.composite
def bars(draw: st.DrawFn) -> tuple[float, float, float, float]:
    """Return a consistent ``(open, high, low, close)``."""
    o, c = draw(price), draw(price)
    h = max(o, c) + draw(st.sampled_from([0.0, 0.25, 1.0]) | st.floats(0.0, 5.0))
    lo = min(o, c) - draw(st.sampled_from([0.0, 0.25, 1.0]) | st.floats(0.0, 5.0))
    return o, h, lo, c


def test_mode_names_match() -> None:
    assert tuple(MODES) == tuple(INTRABAR_MODES)


@SETTINGS
@given(bars(), sides, modes)
@example((100.0, 101.0, 99.0, 100.5), 1, 3)  # nearest, tie: conservative for a buy
@example((100.0, 101.0, 99.0, 100.5), -1, 3)  # nearest, tie: conservative for a sell
def test_path_kernel_equals_bar_path(
    bar: tuple[float, float, float, float], side: int, mode: int
) -> None:
    o, h, lo, c = bar
    got = tuple(path_nb(o, h, lo, c, side, mode).tolist())
    want = bar_path(o, h, lo, c, side, MODES[mode])
    assert got == want


@SETTINGS
@given(
    bars(),
    sides,
    modes,
    st.integers(0, 3),
    st.booleans(),
    st.booleans(),
    st.integers(0, 3) | price,
    st.booleans(),
)
def test_touch_kernel_equals_touch(
    bar: tuple[float, float, float, float],
    side: int,
    mode: int,
    k0: int,
    start_on_path: bool,
    level_on_path: bool,
    level_draw: float,
    up: bool,
) -> None:
    o, h, lo, c = bar
    path = bar_path(o, h, lo, c, side, MODES[mode])
    start = path[k0] if start_on_path else (o + c) / 2.0
    level = path[int(level_draw) % 4] if level_on_path else float(level_draw)
    arr = path_nb(o, h, lo, c, side, mode)
    t, p = touch_nb(arr, k0, start, level, up)
    want = touch(path, k0, start, level, up)
    if want is None:
        assert t == -1.0 and math.isnan(p)
    else:
        assert (t, p) == want


def test_touch_hand_checked() -> None:
    # path 100 -> 102 -> 98 -> 101 (a buy in conservative mode goes to the high first)
    path = bar_path(100.0, 102.0, 98.0, 101.0, 1, "conservative")
    assert path == (100.0, 102.0, 98.0, 101.0)
    arr = path_nb(100.0, 102.0, 98.0, 101.0, 1, 0)
    assert touch_nb(arr, 0, 100.0, 101.0, True) == (0.5, 101.0)  # half way up segment 0
    assert touch_nb(arr, 0, 100.0, 99.0, False) == (1.75, 99.0)  # 3/4 of the way down
    assert touch_nb(arr, 0, 100.0, 100.0, True) == (0.0, 100.0)  # already there: a gap
    t, p = touch_nb(arr, 0, 100.0, 103.0, True)
    assert t == -1.0 and math.isnan(p)
