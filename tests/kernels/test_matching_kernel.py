"""The matching rule has one source: ``kernels.matching.path`` and ``touch``.

The kernels call them jitted (``path_nb``, ``touch_nb``) and ``builtin.matching`` calls the
plain functions, so the two paths share one implementation by construction; the tests
check that it is the same function underneath, and that the jitted compile gives the same
bits as the plain function on random consistent OHLC bars (``low <= open, close <= high``),
drawn from a coarse price grid as well so that ties (open equidistant from high and low,
levels equal to a path point, flat segments) come up often.
"""

from __future__ import annotations

import math

import numba
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ml4t.backtest.builtin import matching as builtin_matching
from ml4t.backtest.kernels.matching import (
    CLOSE_ONLY,
    CONSERVATIVE,
    HIGH_FIRST,
    INTRABAR_MODES,
    LOW_FIRST,
    NEAREST,
    path,
    path_nb,
    touch,
    touch_nb,
)

SETTINGS = settings(max_examples=400, deadline=None)

grid = st.integers(0, 16).map(lambda k: 100.0 + k / 4.0)
fine = st.floats(50.0, 150.0, allow_nan=False)
price = st.one_of(grid, fine)
sides = st.sampled_from([1, -1])
modes = st.sampled_from(range(len(INTRABAR_MODES)))


@st.composite
def bars(draw: st.DrawFn) -> tuple[float, float, float, float]:
    """Return a consistent ``(open, high, low, close)``."""
    o, c = draw(price), draw(price)
    h = max(o, c) + draw(st.sampled_from([0.0, 0.25, 1.0]) | st.floats(0.0, 5.0))
    lo = min(o, c) - draw(st.sampled_from([0.0, 0.25, 1.0]) | st.floats(0.0, 5.0))
    return o, h, lo, c


def _bits(values: tuple[float, ...]) -> list[str]:
    """Exact representation: tells -0.0 from 0.0, and NaN equals NaN."""
    return [float(v).hex() for v in values]


def test_python_path_and_kernels_share_one_function() -> None:
    if numba.config.DISABLE_JIT:  # type: ignore[attr-defined]
        assert path_nb is path
        assert touch_nb is touch
    else:
        assert path_nb.py_func is path  # type: ignore[attr-defined]
        assert touch_nb.py_func is touch  # type: ignore[attr-defined]
    # builtin.matching holds the same functions, not copies
    assert vars(builtin_matching)["_kernel_path"] is path
    assert vars(builtin_matching)["_kernel_touch"] is touch


def test_one_list_of_mode_names_and_codes() -> None:
    assert builtin_matching.INTRABAR_MODES is INTRABAR_MODES
    assert INTRABAR_MODES == ("conservative", "high_first", "low_first", "nearest", "close_only")
    codes = (CONSERVATIVE, HIGH_FIRST, LOW_FIRST, NEAREST, CLOSE_ONLY)
    assert [INTRABAR_MODES[code] for code in codes] == list(INTRABAR_MODES)


@SETTINGS
@given(bars(), sides, modes)
@example((100.0, 101.0, 99.0, 100.5), 1, NEAREST)  # tie: conservative for a buy
@example((100.0, 101.0, 99.0, 100.5), -1, NEAREST)  # tie: conservative for a sell
def test_path_jitted_equals_plain(
    bar: tuple[float, float, float, float], side: int, mode: int
) -> None:
    o, h, lo, c = bar
    want = path(o, h, lo, c, side, mode)
    assert _bits(path_nb(o, h, lo, c, side, mode)) == _bits(want)
    # the Python path's entry point: the mode by name
    assert _bits(builtin_matching.bar_path(o, h, lo, c, side, INTRABAR_MODES[mode])) == _bits(want)


@SETTINGS
@given(
    bars(),
    sides,
    modes,
    st.integers(0, 3),
    st.booleans(),
    st.booleans(),
    st.integers(0, 3) | price | st.just(math.nan),
    st.booleans(),
)
def test_touch_jitted_equals_plain(
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
    p = path(o, h, lo, c, side, mode)
    start = p[k0] if start_on_path else (o + c) / 2.0
    if level_on_path and not math.isnan(level_draw):
        level = p[int(level_draw) % 4]
    else:
        level = float(level_draw)
    want = touch(p, k0, start, level, up)
    assert _bits(touch_nb(path_nb(o, h, lo, c, side, mode), k0, start, level, up)) == _bits(want)
    # the Python path's entry point: None for a miss, else the same (time, price)
    got = builtin_matching.touch(p, k0, start, level, up)
    if want[0] < 0:
        assert got is None and math.isnan(want[1])
    else:
        assert got is not None and _bits(got) == _bits(want)


def test_touch_hand_checked() -> None:
    # path 100 -> 102 -> 98 -> 101 (a buy in conservative mode goes to the high first)
    p = path_nb(100.0, 102.0, 98.0, 101.0, 1, CONSERVATIVE)
    assert p == (100.0, 102.0, 98.0, 101.0)
    assert path_nb(100.0, 102.0, 98.0, 101.0, -1, CONSERVATIVE) == (100.0, 98.0, 102.0, 101.0)
    assert path_nb(100.0, 102.0, 98.0, 101.0, 1, CLOSE_ONLY) == (101.0,) * 4
    assert touch_nb(p, 0, 100.0, 101.0, True) == (0.5, 101.0)  # half way up segment 0
    assert touch_nb(p, 0, 100.0, 99.0, False) == (1.75, 99.0)  # 3/4 of the way down
    assert touch_nb(p, 0, 100.0, 100.0, True) == (0.0, 100.0)  # already there: a gap
    t, price_ = touch_nb(p, 0, 100.0, 103.0, True)
    assert t == -1.0 and math.isnan(price_)
