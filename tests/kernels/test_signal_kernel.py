"""The compiled SignalStrategy kernel reproduces the event path exactly.

Random small backtests (1-4 assets, 20-200 bars, random consistent OHLC, signals with
NaNs, assets missing bars) with random rules, sizers, position exits, cost models and the
broker settings the kernel supports run twice: compiled (``metadata["mode"] ==
"compiled"``) and on the event path (``compiled=False``, the definition of the rules).
``fills_df``, ``trades_df`` and ``portfolio_df`` must be equal exactly, and so must the
number of rejected orders. Also: the fallback to the event path for a cost model without
a kernel version, ``compiled=True`` refusing it, and invalid rules and sizers.
"""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from ml4t.backtest import (
    BacktestEngine,
    BacktestResult,
    BasisPointsSlippage,
    ConfidenceSizer,
    ConfigError,
    FixedCommission,
    FixedSizer,
    FixedSlippage,
    IBKRFixedCommission,
    KernelFallbackWarning,
    NoCommission,
    NoSlippage,
    PercentageCommission,
    PercentageSlippage,
    PercentSizer,
    PerShareCommission,
    PolarsDataFeed,
    Rule,
    SignalStrategy,
    SimulationBroker,
    TopKSizer,
    VolumeShareSlippage,
)

START = datetime(2024, 1, 1)
SIGNALS = ("sig", "sig2", "conf", "score")

# --- random scenarios ------------------------------------------------------------------


def make_frame(n_assets: int, n_bars: int, seed: int, missing: float, nan: float) -> pl.DataFrame:
    """Random-walk OHLC per asset, four signal columns, some NaNs and missing bars."""
    rng = np.random.default_rng(seed)
    frames = []
    for a in range(n_assets):
        base = float(rng.uniform(5.0, 300.0))
        vol = float(rng.uniform(0.005, 0.05))
        close = base * np.exp(np.cumsum(rng.normal(0.0, vol, n_bars)))
        open_ = np.r_[base, close[:-1]] * np.exp(rng.normal(0.0, vol / 2, n_bars))
        high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0.0, vol, n_bars)))
        low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0.0, vol, n_bars)))
        cols: dict[str, Any] = {
            "timestamp": [START + timedelta(days=k) for k in range(n_bars)],
            "asset_id": [f"A{a}"] * n_bars,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.uniform(1e3, 1e6, n_bars),
            "sig": rng.normal(0.0, 1.0, n_bars),
            "sig2": rng.normal(0.0, 1.0, n_bars),
            "conf": rng.uniform(0.0, 1.0, n_bars),
            "score": np.round(rng.normal(0.0, 1.0, n_bars), 1),  # ties
        }
        for name in SIGNALS:
            cols[name] = np.where(rng.random(n_bars) < nan, np.nan, cols[name])
        keep = rng.random(n_bars) >= missing
        keep[0] = True
        frames.append(pl.DataFrame(cols).filter(pl.Series(keep)))
    return pl.concat(frames).sort("timestamp", "asset_id")


threshold = st.integers(-15, 15).map(lambda k: k / 10.0)
signal_rule = st.one_of(
    st.builds(Rule.signal_above, st.sampled_from(["sig", "sig2"]), threshold),
    st.builds(Rule.signal_below, st.sampled_from(["sig", "sig2"]), threshold),
    st.tuples(threshold, threshold).map(lambda t: Rule.signal_between("sig", min(t), max(t))),
)
fraction = st.floats(0.005, 0.2)
commissions = st.one_of(
    st.just(NoCommission()),
    st.builds(PercentageCommission, st.floats(0.0, 0.01), st.sampled_from([0.0, 1.0])),
    st.builds(
        PerShareCommission,
        st.floats(0.0, 0.05),
        st.sampled_from([0.0, 1.0]),
        st.none() | st.floats(0.001, 0.02),
    ),
    st.builds(IBKRFixedCommission),
    st.builds(FixedCommission, st.floats(0.0, 5.0)),
)
slippages = st.one_of(
    st.just(NoSlippage()),
    st.builds(FixedSlippage, st.floats(0.0, 0.5)),
    st.builds(PercentageSlippage, st.floats(0.0, 0.01)),
    st.builds(BasisPointsSlippage, st.floats(0.0, 50.0)),
)


@st.composite
def strategies(draw: st.DrawFn) -> dict[str, Any]:
    """Keyword arguments of a SignalStrategy (without ``compiled``)."""
    kind = draw(st.sampled_from(["percent", "fixed", "confidence", "topk"]))
    sizer: Any
    if kind == "topk":
        sizer = TopKSizer(draw(st.integers(1, 4)), "score")
        entry = draw(st.lists(signal_rule, max_size=2))
    else:
        position = st.sampled_from([Rule.not_in_position(), Rule.in_position()])
        entry = draw(st.lists(signal_rule, max_size=2))
        entry += draw(st.lists(position, min_size=0 if entry else 1, max_size=1))
        sizer = {
            "percent": st.builds(PercentSizer, st.floats(0.05, 1.0)),
            "fixed": st.builds(FixedSizer, st.sampled_from([1.0, 10.0, 2.5, 100.0])),
            "confidence": st.builds(
                ConfidenceSizer, st.just("conf"), st.floats(0.05, 1.0), st.floats(0.0, 0.5)
            ),
        }[kind]
        sizer = draw(sizer)
    exits: list[Rule] = draw(st.lists(signal_rule, max_size=2))
    if draw(st.booleans()):
        exits.append(Rule.stop_loss(draw(fraction)))
    if draw(st.booleans()):
        exits.append(Rule.take_profit(draw(fraction)))
    trail = draw(st.sampled_from(["none", "fraction", "amount"]))
    if trail == "fraction":
        exits.append(Rule.trailing_stop(draw(fraction)))
    elif trail == "amount":
        exits.append(Rule.trailing_stop(amount=draw(st.floats(0.1, 5.0))))
    if draw(st.booleans()):
        exits.append(Rule.max_holding_bars(draw(st.integers(1, 10))))
    return {"entry_rules": entry, "exit_rules": exits, "position_sizer": sizer}


brokers = st.fixed_dictionaries(
    {
        "initial_cash": st.sampled_from([1_000.0, 25_000.0, 1e6]),
        "fill_timing": st.sampled_from(["next_bar_open", "same_bar_close", "next_bar_close"]),
        "account": st.sampled_from(["cash", "simple"]),
        "one_order_per_bar": st.booleans(),
        "exit_base": st.sampled_from(["fill_price", "bar_close"]),
        "intrabar": st.sampled_from(
            ["conservative", "high_first", "low_first", "nearest", "close_only"]
        ),
        "trail_reference": st.sampled_from(["high_low", "close"]),
        "cash_policy": st.sampled_from(["reject", "resize", "allow"]),
        "fractional": st.booleans(),
        "exit_slippage": st.booleans(),
        "slippage_within_bar": st.booleans(),
        "commission": commissions,
        "slippage": slippages,
    }
)
frames = st.builds(
    make_frame,
    st.integers(1, 4),
    st.integers(20, 200),
    st.integers(0, 2**32 - 1),
    st.sampled_from([0.0, 0.1, 0.3]),
    st.sampled_from([0.0, 0.1, 0.3]),
)


def run(
    frame: pl.DataFrame,
    strategy: SignalStrategy,
    broker: dict[str, Any],
    chunk_size: str | int | None = None,
) -> BacktestResult:
    feed = PolarsDataFeed(frame, signal_columns=list(SIGNALS), chunk_size=chunk_size)
    return BacktestEngine(feed, strategy, SimulationBroker(**broker)).run()


def assert_same_run(a: BacktestResult, b: BacktestResult) -> None:
    assert_frame_equal(a.fills_df, b.fills_df, check_exact=True)
    assert_frame_equal(a.trades_df, b.trades_df, check_exact=True)
    assert_frame_equal(a.portfolio_df, b.portfolio_df, check_exact=True)
    assert a.metrics["num_rejected_orders"] == b.metrics["num_rejected_orders"]


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(frames, strategies(), brokers, st.sampled_from([None, "2w", 37]))
def test_compiled_equals_event_path(
    frame: pl.DataFrame, kwargs: dict[str, Any], broker: dict[str, Any], chunk: str | int | None
) -> None:
    # chunk: several blocks, so state carries across block edges in both paths
    compiled = run(frame, SignalStrategy(**kwargs), broker, chunk)
    event = run(frame, SignalStrategy(**kwargs, compiled=False), broker, chunk)
    assert compiled.metadata["mode"] == "compiled"
    assert event.metadata["mode"] == "event"
    assert_same_run(compiled, event)


def one_asset(
    opens: list[float], highs: list[float], lows: list[float], closes: list[float], sig: list[float]
) -> pl.DataFrame:
    """A hand-written frame of asset A0 (every signal column is ``sig``)."""
    n = len(closes)
    days = [START + timedelta(days=k) for k in range(n)]
    cols = {"open": opens, "high": highs, "low": lows, "close": closes, "volume": [1e3] * n}
    signals = {name: sig for name in SIGNALS}
    return pl.DataFrame({"timestamp": days, "asset_id": ["A0"] * n, **cols, **signals})


def test_close_only_stop_is_not_triggered_by_the_open() -> None:
    # Regression (found by the hypothesis test): the kernel started the exits' bar path at
    # the open even in close_only mode. By hand: buy at bar 1's open (100), 5 % stop at
    # 95; bar 2 opens at 90, but in close_only the bar is its close (101): no stop.
    frame = one_asset(
        [100.0, 100.0, 90.0, 101.0],
        [101.0, 101.0, 102.0, 103.0],
        [99.0, 99.0, 89.0, 100.0],
        [100.0, 100.0, 101.0, 102.0],
        [1.0, 0.0, 0.0, 0.0],
    )
    kwargs: dict[str, Any] = {
        "entry_rules": [Rule.signal_above("sig", 0.5)],
        "exit_rules": [Rule.stop_loss(0.05)],
        "position_sizer": FixedSizer(1.0),
    }
    broker = {"intrabar": "close_only"}
    for compiled in (None, False):
        result = run(frame, SignalStrategy(**kwargs, compiled=compiled), broker)
        fills = result.fills_df.select("timestamp", "side", "price").rows()
        assert fills == [(START + timedelta(days=1), "buy", 100.0)], result.metadata["mode"]


def test_every_exit_kind_fires_and_paths_agree() -> None:
    """A fixed scenario in which each position exit and the signal exit close trades."""
    frame = make_frame(3, 200, 7, 0.1, 0.1)
    broker = {"initial_cash": 1e5, "commission": PercentageCommission(0.001)}
    reasons: set[str] = set()
    trailing = (Rule.trailing_stop(0.06), Rule.trailing_stop(amount=8.0))
    for trail in trailing:
        kwargs: dict[str, Any] = {
            "entry_rules": [Rule.signal_above("sig", 0.8), Rule.not_in_position()],
            "exit_rules": [
                Rule.signal_below("sig2", -1.0),
                Rule.stop_loss(0.06),
                Rule.take_profit(0.08),
                trail,
                Rule.max_holding_bars(5),
            ],
            "position_sizer": PercentSizer(0.3),
        }
        compiled = run(frame, SignalStrategy(**kwargs), broker)
        event = run(frame, SignalStrategy(**kwargs, compiled=False), broker)
        assert compiled.metadata["mode"] == "compiled"
        assert_same_run(compiled, event)
        reasons |= set(compiled.trades_df["exit_reason"].drop_nulls().to_list())
    assert {"stop_loss", "take_profit", "trailing_stop", "time_exit", "signal"} <= reasons


def test_flip_fill_keeps_the_entry_signals() -> None:
    # Regression: in compiled mode a trade opened by a fill that flips the position
    # (short -> long) once got NaN entry signals instead of its order's.
    # Top-1 by score, simple account (shorts allowed): A0 is bought, then has no bar on
    # days 2-3, so the rebalance sells it on both days (target helpers ignore working
    # orders); both sells fill on day 4 (short 10) and day 4's rebalance buys 20, filling
    # on day 5: the flip opens a long whose entry signals are day 4's (sig = 0.4).
    rows = []
    for d in range(7):
        for a in ("A0", "A1"):
            if a == "A0" and d in (2, 3):
                continue
            score = (2.0 if d not in (2, 3) else -1.0) if a == "A0" else 0.0
            ts = START + timedelta(days=d)
            rows.append((ts, a, 100.0, 101.0, 99.0, 100.0, 1e3, 0.1 * d, 0.0, 0.5, score))
    cols = ["timestamp", "asset_id", "open", "high", "low", "close", "volume", *SIGNALS]
    frame = pl.DataFrame(rows, schema=cols, orient="row")
    kwargs: dict[str, Any] = {"position_sizer": TopKSizer(1, "score")}
    broker = {"account": "simple", "fractional": False, "initial_cash": 1000.0}
    compiled = run(frame, SignalStrategy(**kwargs), broker)
    event = run(frame, SignalStrategy(**kwargs, compiled=False), broker)
    for result in (event, compiled):
        last = result.trades_df.filter(pl.col("is_open")).row(0, named=True)
        assert (last["asset_id"], last["direction"], last["quantity"]) == ("A0", "long", 10.0)
        assert last["entry_signal_sig"] == 0.1 * 4, result.metadata["mode"]
    assert_same_run(compiled, event)


@pytest.mark.parametrize("policy", ["reject", "resize"])
def test_cash_check_tolerance_as_on_the_event_path(policy: str) -> None:
    # Regression: kernels/fills.py fill_terms_nb once resized or rejected as soon as the
    # cost exceeded the cash (+1e-9 * max(1, cash)); the broker also requires the
    # affordable quantity to fall short of the order by more than 1e-9 * max(1, quantity)
    # units (builtin/fills.py _try_fill), else it fills in full.
    # By hand: cash 0.5, bought at the close 100 -> 0.005 units; the next open is
    # 100.00001, so the cost is 5e-8 over the cash but the affordable quantity is only
    # 5e-11 units short: the order fills unchanged under either policy.
    frame = one_asset(
        [100.0, 100.00001, 100.0], [101.0] * 3, [99.0] * 3, [100.0] * 3, [1.0, 0.0, 0.0]
    )
    kwargs: dict[str, Any] = {
        "entry_rules": [Rule.signal_above("sig", 0.5)],
        "position_sizer": PercentSizer(1.0),
    }
    broker = {"initial_cash": 0.5, "cash_policy": policy}
    for compiled in (False, None):
        result = run(frame, SignalStrategy(**kwargs, compiled=compiled), broker)
        rows = result.fills_df.select("quantity", "reason").rows()
        assert rows == [(0.5 / 100.0, None)], result.metadata["mode"]


@pytest.mark.slow
def test_more_fills_than_the_kernel_buffer_holds() -> None:
    """Enter every other bar and leave after one, until the kernel's fill buffer is drained."""
    from ml4t.backtest.declarative.compiled import _State

    capacity = _State(4, 1.0).fills.ints.shape[0]  # only to size the scenario past the buffer
    n_bars = capacity // 4 + 500
    frame = make_frame(4, n_bars, 3, 0.0, 0.0)
    kwargs: dict[str, Any] = {
        "entry_rules": [Rule.not_in_position()],
        "exit_rules": [Rule.max_holding_bars(1)],
        "position_sizer": FixedSizer(1.0),
    }
    broker = {"initial_cash": 1e12}  # never short of cash, whatever the prices
    compiled = run(frame, SignalStrategy(**kwargs), broker)
    event = run(frame, SignalStrategy(**kwargs, compiled=False), broker)
    assert compiled.metadata["mode"] == "compiled"
    assert_same_run(compiled, event)
    # by hand: the order placed on bar 0 fills at bar 1's open, the time exit at bar 2's
    # open, the next entry (placed on bar 2) at bar 3's open, ...: n_bars - 1 fills per asset
    fills = compiled.fills_df
    assert len(fills) == 4 * (n_bars - 1) > capacity
    for asset in ("A0", "A1", "A2", "A3"):
        sides = fills.filter(pl.col("asset_id") == asset)["side"].to_list()
        assert sides == ["buy", "sell"] * ((n_bars - 1) // 2) + ["buy"] * ((n_bars - 1) % 2)


# --- fallback to the event path ----------------------------------------------------------


class TenBpsSlippage:
    """A custom slippage model with no kernel version."""

    def fill_price(
        self, price: float, side: int, quantity: float, volume: float, bar: Any = None
    ) -> float:
        return price * (1.0 + side * 0.001)

    def __repr__(self) -> str:
        return "TenBpsSlippage()"


class RoundedPercentage(PercentageSlippage):
    """Inherits ``kernel_params`` but changes the formula: the kernel must not be used."""

    def fill_price(
        self, price: float, side: int, quantity: float, volume: float, bar: Any = None
    ) -> float:
        return round(super().fill_price(price, side, quantity, volume, bar), 2)

    def __repr__(self) -> str:
        return "RoundedPercentage()"


FALLBACKS = [
    ({"slippage": VolumeShareSlippage()}, "VolumeShareSlippage"),
    ({"slippage": TenBpsSlippage()}, "TenBpsSlippage"),
    ({"slippage": RoundedPercentage(0.001)}, "RoundedPercentage"),
]


def _fallback_kwargs() -> dict[str, Any]:
    return {
        "entry_rules": [Rule.signal_above("sig", 0.5), Rule.not_in_position()],
        "exit_rules": [Rule.signal_below("sig", -0.5), Rule.stop_loss(0.05)],
        "position_sizer": PercentSizer(0.4),
    }


@pytest.mark.parametrize(("broker", "name"), FALLBACKS)
def test_model_without_kernel_falls_back(broker: dict[str, Any], name: str) -> None:
    frame = make_frame(3, 80, 11, 0.1, 0.05)
    with pytest.warns(KernelFallbackWarning, match=name):
        auto = run(frame, SignalStrategy(**_fallback_kwargs()), broker)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KernelFallbackWarning)  # compiled=False: no warning
        event = run(frame, SignalStrategy(**_fallback_kwargs(), compiled=False), broker)
    assert auto.metadata["mode"] == "event"
    assert name in auto.metadata["fallback_reason"]
    assert len(auto.fills_df) > 0
    assert_same_run(auto, event)


@pytest.mark.parametrize(("broker", "name"), FALLBACKS)
def test_compiled_true_refuses_a_model_without_kernel(broker: dict[str, Any], name: str) -> None:
    frame = make_frame(1, 30, 3, 0.0, 0.0)
    with pytest.raises(ConfigError, match=name):
        run(frame, SignalStrategy(**_fallback_kwargs(), compiled=True), broker)


def test_compiled_true_runs_when_it_can() -> None:
    frame = make_frame(2, 40, 5, 0.0, 0.0)
    result = run(frame, SignalStrategy(**_fallback_kwargs(), compiled=True), {})
    assert result.metadata["mode"] == "compiled"
    assert result.metadata["compile_seconds"] >= 0


# --- invalid rules and sizers ------------------------------------------------------------

FLAT, ONE = Rule.not_in_position(), FixedSizer(1)
INVALID = {
    "no entry rule": lambda: SignalStrategy([], [], PercentSizer(0.5)),
    "no sizer": lambda: SignalStrategy([FLAT], [], None),
    "exit rule as entry": lambda: SignalStrategy([Rule.stop_loss(0.1)], [], ONE),
    "position rule as exit": lambda: SignalStrategy([FLAT], [Rule.in_position()], ONE),
    "position rule with top k": lambda: SignalStrategy([FLAT], [], TopKSizer(2, "score")),
    "two stop losses": lambda: SignalStrategy([FLAT], [Rule.stop_loss(0.1)] * 2, ONE),
    "two trailing stops": lambda: SignalStrategy(
        [FLAT], [Rule.trailing_stop(0.1), Rule.trailing_stop(amount=1.0)], ONE
    ),
    "not a rule": lambda: SignalStrategy(["sig > 0"], [], ONE),  # type: ignore[list-item]
    "compiled not a bool": lambda: SignalStrategy([FLAT], [], ONE, compiled="y"),  # type: ignore[arg-type]
    "between low above high": lambda: Rule.signal_between("sig", 1.0, 0.0),
    "threshold nan": lambda: Rule.signal_above("sig", float("nan")),
    "empty column": lambda: Rule.signal_above("", 0.0),
    "stop loss 0": lambda: Rule.stop_loss(0.0),
    "stop loss above 1": lambda: Rule.stop_loss(1.5),
    "trailing both": lambda: Rule.trailing_stop(0.1, amount=1.0),
    "trailing neither": lambda: Rule.trailing_stop(),
    "max bars 0": lambda: Rule.max_holding_bars(0),
    "max bars float": lambda: Rule.max_holding_bars(2.5),  # type: ignore[arg-type]
    "percent 0": lambda: PercentSizer(0.0),
    "percent above 1": lambda: PercentSizer(1.5),
    "fixed negative": lambda: FixedSizer(-1.0),
    "top k 0": lambda: TopKSizer(0, "score"),
    "top k bool": lambda: TopKSizer(True, "score"),  # type: ignore[arg-type]
    "confidence min 1": lambda: ConfidenceSizer("conf", 0.5, 1.0),
    "confidence max 0": lambda: ConfidenceSizer("conf", 0.0),
}


@pytest.mark.parametrize("build", INVALID.values(), ids=INVALID.keys())
def test_invalid_rules_and_sizers_raise_config_error(build: Any) -> None:
    with pytest.raises(ConfigError):
        build()


@pytest.mark.parametrize("compiled", [None, False])
def test_missing_signal_column_raises_config_error(compiled: bool | None) -> None:
    frame = make_frame(1, 20, 1, 0.0, 0.0)
    rules = [Rule.signal_above("nope", 0.0)]
    strategy = SignalStrategy(rules, [], FixedSizer(1), compiled=compiled)
    with pytest.raises(ConfigError, match="nope"):
        run(frame, strategy, {})
