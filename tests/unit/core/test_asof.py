"""AsOfTable against a naive per-row search; duration parsing and duplicate-row checks.

Covers :class:`AsOfTable` (``index``, ``lookup``, ``scalar``, ``take``, ``nominal_ts``)
with random rows for several keys, availability times later than the nominal time,
revisions sharing a nominal time, queries before any visible row and ``max_staleness``;
:func:`parse_duration_ns`; and ``check_rows`` (duplicate ``(asset, timestamp, visible)``).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml4t.backtest import DataValidationError
from ml4t.backtest.core.asof import AsOfRows, AsOfTable, check_rows, parse_duration_ns

H = 3_600_000_000_000  # one hour in ns
Row = tuple[int, int, int, float]  # key, nominal ts, visible, value (ns for times)


def naive_row(rows: list[Row], t: int, key: int, stale: int | None) -> int:
    """Return the position in ``rows`` serving ``(t, key)``, or -1: a plain loop."""
    best = -1
    for j, (code, ts, visible, _) in enumerate(rows):
        if code != key or visible > t:
            continue
        if best < 0 or (ts, visible) > (rows[best][1], rows[best][2]):
            best = j
    if best >= 0 and stale is not None and t - rows[best][1] > stale:
        return -1
    return best


def make_table(rows: list[Row], n_keys: int, stale: int | None = None) -> AsOfTable:
    """Index ``rows``; column ``pos`` holds each row's position, ``v`` its value."""
    code = np.array([r[0] for r in rows], dtype=np.int64)
    ts = np.array([r[1] for r in rows], dtype=np.int64)
    visible = np.array([r[2] for r in rows], dtype=np.int64)
    values = {
        "pos": np.arange(len(rows), dtype=np.float64),
        "v": np.array([r[3] for r in rows], dtype=np.float64),
    }
    return AsOfTable(AsOfRows(code, ts, visible, values, stale, "test rows"), n_keys)


def hours(*rows: tuple[int, float, float, float]) -> list[Row]:
    """Rows given in hours: ``(key, ts_h, visible_h, value)``."""
    return [(k, int(ts * H), int(vis * H), v) for k, ts, vis, v in rows]


def assert_same(got: np.ndarray, want: list[float]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got.tolist(), want, strict=True):
        assert g == w or (math.isnan(g) and math.isnan(w)), (got.tolist(), want)


@st.composite
def scenarios(draw: Any) -> tuple[list[Row], int, int | None]:
    n_keys = draw(st.integers(1, 3))
    raw = draw(
        st.lists(
            st.tuples(
                st.integers(0, n_keys - 1),
                st.integers(0, 30),  # nominal time (hours)
                st.integers(0, 6),  # availability delay (hours)
                st.integers(-50, 50),
            ),
            max_size=25,
            unique_by=lambda r: (r[0], r[1], r[2]),
        )
    )
    rows = [(k, ts * H, (ts + d) * H, float(v)) for k, ts, d, v in raw]
    stale = draw(st.one_of(st.none(), st.integers(1, 12).map(lambda h: h * H)))
    return rows, n_keys, stale


@settings(max_examples=100, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_lookup_matches_naive_search(scenario: tuple[list[Row], int, int | None], rnd: Any) -> None:
    rows, n_keys, stale = scenario
    table = make_table(rows, n_keys, stale)
    # every half hour from before the first row to after the last visibility time, per key
    queries = [(t * H // 2, k) for t in range(-4, 76) for k in range(n_keys)]
    rnd.shuffle(queries)
    ts = np.array([q[0] for q in queries], dtype=np.int64)
    codes = np.array([q[1] for q in queries], dtype=np.int64)
    want = [naive_row(rows, t, k, stale) for t, k in queries]
    want_pos = [float(j) if j >= 0 else math.nan for j in want]
    want_v = [rows[j][3] if j >= 0 else math.nan for j in want]

    assert table.n_rows == len(rows)
    assert_same(table.lookup("pos", ts, codes), want_pos)  # mixed keys in one call
    assert_same(table.lookup("v", ts, codes), want_v)
    idx = table.index(ts, codes)
    if rows:  # an empty table: test_nominal_ts_of_empty_table
        assert table.nominal_ts(idx).tolist() == [rows[j][1] if j >= 0 else -1 for j in want]
    for key in range(n_keys):  # one key for every query: scalar code and uniform array
        mine = codes == key
        sub = [w for w, m in zip(want_pos, mine.tolist(), strict=True) if m]
        assert_same(table.lookup("pos", ts[mine], key), sub)
        assert_same(table.lookup("pos", ts[mine], codes[mine]), sub)
    for (t, k), w in zip(queries[:40], want_v[:40], strict=True):
        assert_same(np.array([table.scalar("v", t, k)]), [w])


def test_revision_with_same_timestamp_wins_once_visible() -> None:
    # prediction for 01:00 known at 01:00, revised (same nominal time) at 03:00
    table = make_table(hours((0, 1, 1, 10.0), (0, 1, 3, 11.0)), 1)
    ts = np.array([0, 1, 2, 3, 4]) * H
    assert_same(table.lookup("v", ts, 0), [math.nan, 10.0, 10.0, 11.0, 11.0])


def test_late_revision_of_older_timestamp_does_not_replace_newer_row() -> None:
    # 01:00 row, 02:00 row, then at 03:00 a revision of the 01:00 row: 02:00 stays served
    table = make_table(hours((0, 1, 1, 10.0), (0, 2, 2, 20.0), (0, 1, 3, 11.0)), 1)
    ts = np.array([1, 2, 3, 4]) * H
    assert_same(table.lookup("v", ts, 0), [10.0, 20.0, 20.0, 20.0])


def test_row_available_after_its_timestamp_is_invisible_until_then() -> None:
    # 01:00 row known only at 05:00; 02:00 row known at 02:00 and is newer anyway;
    # 03:00 row known at 06:00
    rows = hours((0, 1, 5, 10.0), (0, 2, 2, 20.0), (0, 3, 6, 30.0))
    table = make_table(rows, 1)
    ts = np.array([1, 2, 4, 5, 6]) * H
    assert_same(table.lookup("v", ts, 0), [math.nan, 20.0, 20.0, 20.0, 30.0])


def test_staleness_boundary_is_inclusive() -> None:
    table = make_table(hours((0, 1, 1, 10.0)), 1, stale=2 * H)
    ts = np.array([1 * H, 3 * H, 3 * H + 1])
    assert_same(table.lookup("v", ts, 0), [10.0, 10.0, math.nan])
    assert math.isnan(table.scalar("v", 3 * H + 1, 0))
    assert table.scalar("v", 3 * H, 0) == 10.0


def test_staleness_measured_from_nominal_time_not_availability() -> None:
    # nominal 00:00, known at 05:00, staleness 6h: served from 05:00 to 06:00 only
    table = make_table(hours((0, 0, 5, 7.0)), 1, stale=6 * H)
    ts = np.array([4, 5, 6, 7]) * H
    assert_same(table.lookup("v", ts, 0), [math.nan, 7.0, 7.0, math.nan])


def test_key_without_rows_and_empty_table_give_nan() -> None:
    table = make_table(hours((1, 0, 0, 5.0)), 3)
    ts = np.array([0, 1]) * H
    assert_same(table.lookup("v", ts, 0), [math.nan, math.nan])
    assert_same(table.lookup("v", ts, 1), [5.0, 5.0])
    assert_same(table.lookup("v", ts, 2), [math.nan, math.nan])
    empty = make_table([], 2)
    assert empty.n_rows == 0
    assert_same(empty.lookup("v", ts, np.array([0, 1])), [math.nan, math.nan])
    assert_same(empty.take("v", np.array([-1, -1])), [math.nan, math.nan])
    assert table.index(np.array([], dtype=np.int64), 0).shape == (0,)


def test_nominal_ts_of_empty_table() -> None:
    # regression: nominal_ts once indexed self._ts[0] of an empty table (IndexError)
    empty = make_table([], 1)
    idx = empty.index(np.array([0, H]), 0)
    assert empty.nominal_ts(idx).tolist() == [-1, -1]


def test_take_maps_minus_one_to_nan_and_rows_to_values() -> None:
    table = make_table(hours((0, 0, 0, 5.0), (0, 1, 1, 6.0)), 1)
    idx = table.index(np.array([-1, 0, 1]) * H, 0)
    assert idx[0] == -1
    assert_same(table.take("v", idx), [math.nan, 5.0, 6.0])


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3d", 3 * 86_400),
        ("36h", 36 * 3_600),
        ("90m", 90 * 60),
        ("90min", 90 * 60),
        ("2w", 14 * 86_400),
        ("45s", 45),
        ("1.5h", 5_400),
        (" 3 D ", 3 * 86_400),
        (timedelta(hours=36), 36 * 3_600),
        (timedelta(minutes=1, seconds=30), 90),
    ],
)
def test_parse_duration(value: Any, seconds: int) -> None:
    assert parse_duration_ns(value, "here") == seconds * 1_000_000_000


def test_parse_duration_none_stays_none() -> None:
    assert parse_duration_ns(None, "here") is None


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("3 fortnights", r"where: '3 fortnights' is not a duration"),
        ("soon", r"where: 'soon' is not a duration"),
        ("", r"where: '' is not a duration"),
        ("-3d", r"where: '-3d' is not a duration"),
        ("0h", r"where: must be a positive duration, got '0h'"),
        (timedelta(0), r"where: must be a positive duration"),
        (timedelta(hours=-1), r"where: must be a positive duration"),
    ],
)
def test_parse_duration_rejects_bad_values(value: Any, match: str) -> None:
    with pytest.raises(DataValidationError, match=match):
        parse_duration_ns(value, "where")


def _rows(triples: list[tuple[int, int, int]]) -> AsOfRows:
    code, ts, visible = (np.array(c, dtype=np.int64) for c in zip(*triples, strict=True))
    return AsOfRows(code, ts, visible, {"v": np.zeros(len(triples))}, None, "preds")


def test_check_rows_names_asset_and_timestamp_of_duplicate() -> None:
    t = int(np.datetime64("2024-01-02T10:00", "ns").astype(np.int64))
    rows = _rows([(0, t, t), (1, t, t), (1, t + H, t + H), (1, t, t)])
    with pytest.raises(DataValidationError, match=r"preds: duplicate row for asset 'B'") as info:
        check_rows(rows, {0: "A", 1: "B"})
    assert "2024-01-02T10:00" in str(info.value)
    with pytest.raises(DataValidationError, match=r"asset '1'"):  # unnamed code
        check_rows(rows, {})


def test_check_rows_accepts_revisions_and_other_assets() -> None:
    t = 5 * H
    check_rows(_rows([(0, t, t), (0, t, t + H), (1, t, t), (0, t + H, t + H)]), {})
    check_rows(_rows([(0, t, t)]), {})


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=8
    )
)
def test_check_rows_raises_exactly_when_a_row_repeats(triples: list[tuple[int, int, int]]) -> None:
    rows = _rows(triples)
    if len(set(triples)) < len(triples):
        with pytest.raises(DataValidationError, match="duplicate row"):
            check_rows(rows, {0: "A", 1: "B"})
    else:
        check_rows(rows, {0: "A", 1: "B"})
