"""As-of alignment through the engine against a naive per-row search.

Covers ``PolarsDataFeed(signal_data=..., available_at=..., signal_max_staleness=...)`` as
seen by a strategy (``event.signals`` and ``Strategy.history``), the ``align_asof``
helper, and :class:`Context` (gaps, null/NaN observations, an availability column,
``max_staleness``, ``get``/``event.context``/``join``/``as_frame``/``values_at``): random
bars with missing assets, rows available after their timestamp, revisions, bars before
any visible row; minute bars with daily predictions; and the validation messages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml4t.backtest import Context, DataValidationError, PolarsDataFeed, align_asof
from ml4t.backtest.testing import make_bars as kit_bars

T0 = datetime(2024, 1, 1)
HOUR = timedelta(hours=1)
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
DT = pl.Datetime("us")
SCHEMA = {"timestamp": DT, "asset_id": pl.String, "pred": pl.Float64, "available_at": DT}


@dataclass(frozen=True)
class Obs:
    """One observation: asset ('' for a market-wide series), times, value."""

    asset: str
    ts: datetime
    available_at: datetime | None
    value: float


def naive_asof(obs: list[Obs], t: datetime, asset: str, stale: timedelta | None) -> float | None:
    """Return the value served for ``asset`` at ``t`` (``None``: nothing), by a plain loop."""
    best: Obs | None = None
    best_key: tuple[datetime, datetime] | None = None
    for o in obs:
        visible = o.ts if o.available_at is None else max(o.ts, o.available_at)
        if o.asset != asset or visible > t:
            continue
        if best_key is None or (o.ts, visible) > best_key:
            best, best_key = o, (o.ts, visible)
    if best is None or (stale is not None and t - best.ts > stale):
        return None
    return best.value


def obs_frame(obs: list[Obs], drop: tuple[str, ...] = ()) -> pl.DataFrame:
    """The ``signal_data`` frame of ``obs``, without the ``drop`` columns."""
    rows = [(o.ts, o.asset, o.value, o.available_at) for o in obs]
    return pl.DataFrame(rows, schema=SCHEMA, orient="row").drop(drop)


def same_nan(got: float, want: float | None) -> bool:
    """Engine side: a missing value is NaN."""
    return math.isnan(got) if want is None else got == want


def naive(t: datetime) -> datetime:
    return t.replace(tzinfo=None)


def zoned(df: pl.DataFrame, tz: str | None, cols: list[str]) -> pl.DataFrame:
    return df if tz is None else df.with_columns(pl.col(cols).dt.replace_time_zone(tz))


@st.composite
def staleness(draw: Any) -> tuple[timedelta | None, Any]:
    """``(max_staleness, how it is given)``: a timedelta, hours or minutes as text."""
    h = draw(st.one_of(st.none(), st.integers(1, 10)))
    if h is None:
        return None, None
    return h * HOUR, draw(st.sampled_from([h * HOUR, f"{h}h", f"{h * 60}m"]))


def record(strategy: Any, event: Any, context: Any) -> None:
    """on_bar callback: the bar's served ``pred`` and its 3-bar history."""
    key = (naive(event.timestamp), event.asset_id)
    strategy.state[key] = (event.signals["pred"], strategy.history(event.asset_id, "pred", 3))


# --- signal_data: random scenarios -----------------------------------------------------
@dataclass
class SignalScenario:
    bars: pl.DataFrame
    bar_keys: list[tuple[datetime, str]]
    obs: list[Obs]
    preds: pl.DataFrame
    avail_name: str | None
    stale: timedelta | None
    stale_arg: Any
    lazy: bool


@st.composite
def signal_scenarios(draw: Any) -> SignalScenario:
    tz = draw(st.sampled_from([None, "UTC", "Asia/Tokyo"]))
    assets = ["A", "B", "C"][: draw(st.integers(1, 3))]
    frames, bar_keys = [], []
    for a in assets:  # each asset has its own bar times: some assets miss some bars
        offsets = sorted(draw(st.sets(st.integers(0, 40), min_size=1, max_size=12)))
        stamps = [T0 + h * HOUR for h in offsets]
        frames.append(kit_bars(len(stamps), timestamps=stamps, asset_id=a))
        bar_keys += [(t, a) for t in stamps]
    bars = zoned(pl.concat(frames).sort("timestamp", "asset_id"), tz, ["timestamp"])
    row = st.tuples(
        st.sampled_from([*assets, "Z"]),  # Z: an asset the bars do not have
        st.integers(-4, 44),  # nominal time (hours)
        st.one_of(st.none(), st.integers(-3, 6)),  # available_at - nominal (hours)
        st.integers(-99, 99),
    )
    raw = draw(st.lists(row, max_size=16))
    revision = st.tuples(st.integers(0, 15), st.integers(1, 8), st.integers(-99, 99))
    for i, later, v in draw(st.lists(revision, max_size=4)):
        if i < len(raw):  # same asset and nominal time, known later
            a, h, d = raw[i][:3]
            raw.append((a, h, max(d or 0, 0) + later, v))
    avail_name = draw(st.sampled_from(["available_at", "known_at", None]))
    if avail_name is None:
        raw = [(a, h, None, v) for a, h, _, v in raw]
    # one row per (asset, nominal time, visible time): duplicates are an error
    raw = list({(a, h, max(d or 0, 0)): (a, h, d, v) for a, h, d, v in raw}.values())
    obs = [
        Obs(a, T0 + h * HOUR, None if d is None else T0 + (h + d) * HOUR, float(v))
        for a, h, d, v in raw
    ]
    preds = obs_frame(obs, () if avail_name else ("available_at",))
    if avail_name is not None:
        preds = preds.rename({"available_at": avail_name})
    preds = zoned(preds, tz, [c for c in ("timestamp", avail_name) if c is not None])
    stale, stale_arg = draw(staleness())
    lazy = draw(st.booleans())
    return SignalScenario(bars, bar_keys, obs, preds, avail_name, stale, stale_arg, lazy)


@SETTINGS
@given(signal_scenarios())
def test_signal_data_engine_history_and_align_asof_match_naive(
    run_backtest: Any, sc: SignalScenario
) -> None:
    stale, stale_arg = sc.stale, sc.stale_arg
    avail = None if sc.avail_name == "available_at" else sc.avail_name  # detected by name
    want = {(t, a): naive_asof(sc.obs, t, a, stale) for t, a in sc.bar_keys}

    feed = PolarsDataFeed(
        sc.bars.lazy() if sc.lazy else sc.bars,
        signal_data=sc.preds,
        available_at=avail,
        signal_max_staleness=stale_arg,
        chunk_size="1d" if sc.lazy else None,
    )
    _, strategy = run_backtest(feed, record)
    seen = strategy.state
    assert set(seen) == set(want)
    for (t, a), (value, hist) in seen.items():
        assert same_nan(value, want[(t, a)]), (t, a, value, want[(t, a)])
        own = sorted(u for u, b in sc.bar_keys if b == a and u <= t)[-3:]
        assert len(hist) == len(own)
        for got, u in zip(hist.tolist(), own, strict=True):
            assert same_nan(got, want[(u, a)]), (t, a, hist, own)

    out = align_asof(sc.bars, sc.preds, available_at=avail, max_staleness=stale_arg)
    assert out.drop("pred").equals(sc.bars)
    keys = zip(sc.bars["timestamp"].to_list(), sc.bars["asset_id"].to_list(), strict=True)
    expected = [want[(naive(t), a)] for t, a in keys]
    assert out["pred"].to_list() == expected  # missing -> null (None), never NaN


def test_signal_data_single_asset_feed_without_asset_column(run_backtest: Any) -> None:
    bars = kit_bars(5, step=HOUR, start=T0)
    obs = [Obs("X", T0 + HOUR, T0 + 3 * HOUR, 1.0), Obs("X", T0 + 2 * HOUR, None, 2.0)]
    preds = obs_frame(obs, ("asset_id",))
    _, strategy = run_backtest(PolarsDataFeed(bars, "X", signal_data=preds), record)
    expected = [naive_asof(obs, T0 + k * HOUR, "X", None) for k in range(5)]
    assert expected == [None, None, 2.0, 2.0, 2.0]  # hand check of the reference
    got = [strategy.state[(T0 + k * HOUR, "X")][0] for k in range(5)]
    assert all(same_nan(v, e) for v, e in zip(got, expected, strict=True))
    assert align_asof(bars, preds)["pred"].to_list() == expected


def test_signal_data_shared_by_two_feeds(run_backtest: Any) -> None:
    obs = [Obs("A", T0, None, 1.0), Obs("B", T0 + HOUR, T0 + 2 * HOUR, 2.0), Obs("Z", T0, None, 9)]
    preds = obs_frame(obs)
    feeds = {
        k: PolarsDataFeed(kit_bars(4, step=HOUR, start=T0, asset_id=k), signal_data=preds)
        for k in ("A", "B")
    }
    _, strategy = run_backtest(feeds, record)
    for (t, a), (value, _) in strategy.state.items():
        assert same_nan(value, naive_asof(obs, t, a, None))
    assert math.isnan(strategy.state[(T0 + HOUR, "B")][0])
    assert strategy.state[(T0 + 2 * HOUR, "B")][0] == 2.0


# --- minute bars, daily predictions stamped at midnight, known at 09:45 -----------------
@pytest.mark.parametrize(
    ("stale", "early"), [(None, (0.5, 1.0)), ("36h", (0.5, 1.0)), ("30h", (None, None))]
)
def test_minute_bars_see_daily_prediction_only_from_its_availability(
    run_backtest: Any, stale: str | None, early: tuple[float | None, float | None]
) -> None:
    days = [datetime(2024, 1, d) for d in (1, 2, 3)]
    known = [d + timedelta(hours=9, minutes=45) for d in days]
    preds = pl.DataFrame(
        {"timestamp": days, "asset_id": "A", "pred": [0.5, 1.0, 2.0], "available_at": known}
    )
    stamps = [d + timedelta(hours=9, minutes=30 + m) for d in days[1:] for m in range(21)]
    bars = kit_bars(len(stamps), timestamps=stamps, asset_id="A")
    # 09:30-09:44: the previous day's prediction, 33h30m-33h44m old (within 36h, beyond
    # 30h); from 09:45 the day's own one (9h45m-9h50m old)
    expected = [early[k] if m < 15 else (1.0, 2.0)[k] for k in (0, 1) for m in range(21)]
    feed = PolarsDataFeed(bars, signal_data=preds, signal_max_staleness=stale)
    _, strategy = run_backtest(feed, record)
    got = [strategy.state[(t, "A")][0] for t in stamps]
    assert all(same_nan(g, w) for g, w in zip(got, expected, strict=True)), got
    assert align_asof(bars, preds, max_staleness=stale)["pred"].to_list() == expected


# --- Context: gaps, availability, staleness ----------------------------------------------
@dataclass
class ContextScenario:
    bars: pl.DataFrame
    bar_times: list[datetime]
    wide: pl.DataFrame
    obs: dict[str, list[Obs]]
    avail_name: str | None
    stale: timedelta | None
    stale_arg: Any
    tz: str | None


@st.composite
def context_scenarios(draw: Any) -> ContextScenario:
    tz = draw(st.sampled_from([None, "UTC", "Asia/Tokyo"]))
    offsets = sorted(draw(st.sets(st.integers(0, 30), min_size=1, max_size=15)))
    bar_times = [T0 + h * HOUR for h in offsets]
    bars = zoned(kit_bars(len(bar_times), timestamps=bar_times), tz, ["timestamp"])
    hours = sorted(draw(st.sets(st.integers(-4, 34), max_size=10)))  # gaps between rows
    value = st.one_of(st.none(), st.just(math.nan), st.integers(-50, 50).map(float))
    cols = {n: [draw(value) for _ in hours] for n in ("VIX", "SPY")}
    avail_name = draw(st.sampled_from(["available_at", "known_at", None]))
    delays = [draw(st.one_of(st.none(), st.integers(-2, 5))) for _ in hours]
    if avail_name is None:
        delays = [None] * len(hours)
    known = [None if d is None else T0 + (h + d) * HOUR for h, d in zip(hours, delays, strict=True)]
    obs = {  # a null or NaN is a missing observation: not a row of the series
        n: [
            Obs("", T0 + h * HOUR, k, v)
            for h, k, v in zip(hours, known, vals, strict=True)
            if v is not None and not math.isnan(v)
        ]
        for n, vals in cols.items()
    }
    wide = pl.DataFrame(
        {
            "timestamp": pl.Series([T0 + h * HOUR for h in hours], dtype=DT),
            **{n: pl.Series(vals, dtype=pl.Float64) for n, vals in cols.items()},
        }
    )
    if avail_name is not None:
        wide = wide.with_columns(pl.Series(avail_name, known, dtype=DT))
    wide = zoned(wide, tz, [c for c in ("timestamp", avail_name) if c is not None])
    stale, stale_arg = draw(staleness())
    return ContextScenario(bars, bar_times, wide, obs, avail_name, stale, stale_arg, tz)


def context_record(strategy: Any, event: Any, context: Any) -> None:
    """on_bar callback: every way of reading the context at this bar."""
    joined = context.join(pl.DataFrame({"x": [0.0]}))
    strategy.state[naive(event.timestamp)] = {
        n: (event.context[n], context.get(n), context[n], joined[n][0]) for n in ("VIX", "SPY")
    }


@SETTINGS
@given(context_scenarios())
def test_context_reads_match_naive(run_backtest: Any, sc: ContextScenario) -> None:
    stale = sc.stale
    avail = None if sc.avail_name == "available_at" else sc.avail_name
    ctx = Context(sc.wide, max_staleness=sc.stale_arg, available_at=avail)
    _, strategy = run_backtest(PolarsDataFeed(sc.bars, "A"), context_record, context=ctx)
    assert sorted(strategy.state) == sc.bar_times
    for t, row in strategy.state.items():
        for n, reads in row.items():
            want = naive_asof(sc.obs[n], t, "", stale)
            assert all(same_nan(r, want) for r in reads), (t, n, reads, want)

    # vectorised lookups at times that are not bars, before the first row and after the last
    query = [T0 + k * HOUR / 2 for k in range(-10, 74)]
    series = pl.Series("timestamp", query, dtype=DT)
    series = series if sc.tz is None else series.dt.replace_time_zone(sc.tz)
    frame = ctx.as_frame(series)
    assert frame["timestamp"].equals(series)
    ns = series.dt.epoch("ns").to_numpy()
    for n in ("VIX", "SPY"):
        want = [naive_asof(sc.obs[n], t, "", stale) for t in query]
        assert all(same_nan(g, w) for g, w in zip(frame[n].to_list(), want, strict=True))
        assert all(same_nan(g, w) for g, w in zip(ctx.values_at(n, ns).tolist(), want, strict=True))


@pytest.mark.parametrize(
    ("stale", "vix", "spy"),
    [
        (None, [20, 20, 20, 30, 30, 30], [None, 400, 400, 400, 410, 410]),
        ("36h", [20, 20, None, 30, 30, None], [None, 400, 400, None, None, None]),
    ],
)
def test_context_gaps_and_availability_hand_checked(
    run_backtest: Any, stale: str | None, vix: list[float | None], spy: list[float | None]
) -> None:
    days = [datetime(2024, 1, d) for d in (2, 3, 4, 5)]
    wide = pl.DataFrame(
        {
            "timestamp": days,
            "VIX": [20.0, math.nan, 25.0, 30.0],  # NaN on 01-03: a gap
            "SPY": [None, 400.0, 410.0, None],
            "known": [None, None, datetime(2024, 1, 5, 12), None],  # 01-04 row known late
        }
    )
    ctx = Context(wide, max_staleness=stale, available_at="known")
    bars = kit_bars(6, start=datetime(2024, 1, 2))  # daily 01-02 .. 01-07
    _, strategy = run_backtest(PolarsDataFeed(bars, "A"), context_record, context=ctx)
    # VIX: 25 (nominal 01-04) becomes visible after 30 (nominal 01-05): never served
    for (t, row), v, s in zip(sorted(strategy.state.items()), vix, spy, strict=True):
        assert all(same_nan(r, v) for r in row["VIX"]), (t, row)
        assert all(same_nan(r, s) for r in row["SPY"]), (t, row)


# --- validation messages ----------------------------------------------------------------
def _bars(tz: str | None = None, **cols: Any) -> pl.DataFrame:
    frames = [kit_bars(3, step=HOUR, start=T0, asset_id=a, **cols) for a in ("A", "B")]
    return zoned(pl.concat(frames).sort("timestamp", "asset_id"), tz, ["timestamp"])


def _preds(tz: str | None = None, avail_tz: str | None = None) -> pl.DataFrame:
    rows = [
        Obs("A", T0, None, 1),
        Obs("B", T0 + HOUR, T0 + 2 * HOUR, 2),
        Obs("B", T0 + HOUR, None, 3),
    ]
    df = obs_frame(rows)
    df = zoned(df, tz, ["timestamp"])
    return zoned(df, avail_tz, ["available_at"])


BARS, PREDS, NO_ASSET = _bars(), _preds(), _preds().drop("asset_id")
DUP = PREDS.with_columns(pl.lit(None, DT).alias("available_at"))
Feed, Align = PolarsDataFeed, align_asof
ERRORS = [
    (
        partial(Feed, BARS, signal_data=DUP),
        r"duplicate row for asset 'B' at timestamp 2024-01-01T01",
    ),
    (partial(Feed, BARS, signal_data=_preds("UTC")), r"has timezone 'UTC' but the bars have None"),
    (partial(Feed, _bars("UTC"), signal_data=PREDS), r"has timezone None but the bars have 'UTC'"),
    (
        partial(Feed, BARS, signal_data=_preds(avail_tz="UTC")),
        r"column 'available_at' has timezone 'UTC' but the timestamps have None",
    ),
    (partial(Feed, _bars(pred=0.0), signal_data=PREDS), r"column 'pred' is in both the bars"),
    (
        partial(Feed, BARS, signal_data=PREDS, available_at="known_at"),
        r"signal_data: available_at column 'known_at' not found",
    ),
    (partial(Feed, BARS, signal_data=NO_ASSET), r"signal_data: no 'asset_id' or 'symbol' column"),
    (
        partial(Feed, BARS, signal_data=PREDS, signal_max_staleness="3 fortnights"),
        r"signal_data: max_staleness: '3 fortnights' is not a duration",
    ),
    (partial(Feed, BARS, available_at="x"), r"available_at and signal_max_staleness apply to sig"),
    (partial(Feed, BARS, signal_max_staleness="1d"), r"signal_max_staleness apply to signal_data"),
    (partial(Align, _bars(pred=0.0), PREDS), r"columns \['pred'\] are in both frames"),
    (partial(Align, BARS, NO_ASSET), r"align_asof signals: missing asset column 'asset_id'"),
    (partial(Align, BARS, PREDS, available_at="k"), r"missing available_at column 'k'"),
    (partial(Align, BARS, PREDS, max_staleness="soon"), r"align_asof max_staleness: 'soon' is not"),
    (partial(Context, max_staleness="soon"), r"Context max_staleness: 'soon' is not a duration"),
]


@pytest.mark.parametrize(("build", "match"), ERRORS)
def test_validation_messages_name_the_problem(build: Any, match: str) -> None:
    with pytest.raises(DataValidationError, match=match):
        build()


# align_asof rejects what PolarsDataFeed(signal_data=) rejects: duplicate (asset, timestamp,
# available_at) rows and a naive/aware timezone mismatch
@pytest.mark.parametrize(
    ("bars", "signals", "match"),
    [
        (BARS, DUP, r"duplicate row for asset 'B' at timestamp 2024-01-01T01:00"),
        (_bars("UTC"), PREDS, r"timezone"),
        (BARS, _preds("UTC"), r"timezone"),
    ],
    ids=["duplicate", "aware-bars", "naive-bars"],
)
def test_align_asof_rejects_what_the_feed_rejects(
    bars: pl.DataFrame, signals: pl.DataFrame, match: str
) -> None:
    with pytest.raises(DataValidationError, match=match):
        align_asof(bars, signals)


VIX = pl.DataFrame({"timestamp": [T0], "VIX": [1.0]})


@pytest.mark.parametrize(
    ("ctx", "match"),
    [
        (Context(VIX, available_at="known_at"), r"available_at column 'known_at' not found"),
        (Context(zoned(VIX, "UTC", ["timestamp"])), r"'UTC' but the market data has None"),
    ],
)
def test_context_errors_at_run(run_backtest: Any, ctx: Context, match: str) -> None:
    with pytest.raises(DataValidationError, match=match):
        run_backtest(PolarsDataFeed(kit_bars(2, step=HOUR, start=T0), "A"), context=ctx)
