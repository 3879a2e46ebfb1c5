"""Run a :class:`SignalStrategy` in the Numba kernel, block by block.

The set-up and the result are the event engine's: the same clock and blocks (so lazy
feeds stay bounded in memory), the same portfolio ledger, trade tracker, marking and
result builder. Only the per-timestamp work moves into
:func:`ml4t.backtest.kernels.signal.signal_run_nb`; its fills are booked into the
portfolio after each call, which rebuilds the same ledger the event path writes.

:func:`kernel_problem` says why a run cannot use the kernel (a broker setting, a cost
model without ``kernel_params``, a strategy that overrides a callback, a calendar); the
engine then runs the event path and says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.marking import Marker
from ..core.results import build_result
from ..kernels import signal as K
from .rules import ConfidenceSizer, FixedSizer, PercentSizer, TopKSizer

if TYPE_CHECKING:
    from ..core.data import Block
    from ..core.engine import BacktestEngine
    from ..core.results import BacktestResult
    from .strategy import SignalStrategy

__all__ = ["kernel_problem", "run_compiled"]

_TAGS = (None, "stop_loss", "take_profit", "trailing_stop", "time_exit")
_TIMINGS = {"next_bar_open": 0, "same_bar_close": 1}
_MODES = ("conservative", "high_first", "low_first", "nearest", "close_only")
_CALLBACKS = (
    "on_start",
    "before_trading_start",
    "on_timestamp",
    "on_market_data",
    "on_fill",
    "on_order_rejected",
    "on_order_cancelled",
    "after_trading_end",
)


def kernel_problem(engine: BacktestEngine, strategy: SignalStrategy) -> str | None:
    """Return why ``engine`` cannot run ``strategy`` in the kernel, or None if it can."""
    from ..builtin.sim_broker import SimulationBroker
    from .strategy import SignalStrategy

    for name in _CALLBACKS:
        if getattr(type(strategy), name) is not getattr(SignalStrategy, name):
            return f"the strategy overrides {name}()"
    broker = engine.broker
    if not isinstance(broker, SimulationBroker):
        return f"the broker {type(broker).__name__} is not a SimulationBroker"
    if engine.calendar is not None:
        return "a trading calendar is set (the kernel has no session events)"
    if engine.plugin_manager.has_impls("ml4t_session_end"):
        return "a plugin implements ml4t_session_end"
    problem = broker.kernel_problem()
    if problem is not None:
        return problem
    checks = (
        (broker.fill_timing not in _TIMINGS, f"fill_timing={broker.fill_timing!r}"),
        (broker.corporate_actions is not None, "corporate_actions are set"),
        (broker.exit_base != "fill_price", f"exit_base={broker.exit_base!r}"),
        (
            broker.exits is not None and strategy.exits is not None,
            "both the broker and the strategy set position exits",
        ),
    )
    for bad, why in checks:
        if bad:
            return why
    return None


class _Order:
    """What the ledger and the trade tracker need of an order."""

    __slots__ = ("_context_snapshot", "_signals_snapshot", "order_id", "tag")

    def __init__(self, order_id: int, tag: str | None, signals: Any, context: Any) -> None:
        self.order_id = order_id
        self.tag = tag
        self._signals_snapshot = signals
        self._context_snapshot = context


class _State:
    """Kernel state carried across blocks (arrays indexed by asset code)."""

    def __init__(self, n: int, cash: float) -> None:
        self.st_i = np.zeros(5, dtype=np.int64)
        self.st_f = np.array([cash])
        self.qty = np.zeros(n)
        self.avg = np.zeros(n)
        self.last = np.full(n, np.nan)
        self.held = np.zeros(max(n, 1), dtype=np.int64)
        self.g_active = np.zeros(n, dtype=np.int8)
        self.g_id = np.full((n, 4), -1, dtype=np.int64)
        self.g_open = np.zeros((n, 4), dtype=np.int8)
        self.g_created = np.zeros(n, dtype=np.int64)
        self.g_exitk = np.zeros(n, dtype=np.int64)
        self.g_sl = np.zeros(n)
        self.g_tp = np.zeros(n)
        self.g_ref = np.zeros(n)
        self._pending(4 * n + 64)
        cap_f = 8 * n + 4096
        self.f_i = np.zeros((cap_f, 8), dtype=np.int64)
        self.f_f = np.zeros((cap_f, 8))

    def _pending(self, cap: int) -> None:
        old = getattr(self, "p_code", None)
        arrays = [
            np.zeros(cap, dtype=np.int64),
            np.zeros(cap, dtype=np.int64),
            np.zeros(cap),
            np.zeros(cap, dtype=np.int64),
            np.zeros(cap, dtype=np.int64),
            np.zeros(cap, dtype=np.int64),
        ]
        if old is not None:
            n = int(self.st_i[K.S_PENDING])
            for new, cur in zip(arrays, self.pending_arrays(), strict=True):
                new[:n] = cur[:n]
        self.p_code, self.p_side, self.p_qty, self.p_id, self.p_k, self.p_row = arrays

    def pending_arrays(self) -> tuple[np.ndarray, ...]:
        return (self.p_code, self.p_side, self.p_qty, self.p_id, self.p_k, self.p_row)


def _settings(engine: BacktestEngine, strategy: SignalStrategy) -> tuple[Any, ...]:
    broker = engine.broker
    ip, fp = broker.kernel_settings()
    ip[K.IP_ASSETS] = len(engine.clock.asset_ids)
    ip[K.IP_TIMING] = _TIMINGS[broker.fill_timing]
    ip[K.IP_MODE] = _MODES.index(broker.intrabar)
    ip[K.IP_TRAIL_CLOSE] = int(broker.trail_reference == "close")
    columns = list(strategy.columns)
    sizer = strategy.position_sizer
    if isinstance(sizer, PercentSizer):
        ip[K.IP_SIZER], fp[K.FP_SIZE_VALUE] = K.SZ_PERCENT, sizer.percent
    elif isinstance(sizer, FixedSizer):
        ip[K.IP_SIZER], fp[K.FP_SIZE_VALUE] = K.SZ_FIXED, sizer.quantity
    elif isinstance(sizer, ConfidenceSizer):
        ip[K.IP_SIZER], fp[K.FP_SIZE_VALUE] = K.SZ_CONFIDENCE, sizer.max_percent
        fp[K.FP_MIN_CONF] = sizer.min_confidence
        ip[K.IP_SIZER_COL] = columns.index(sizer.column)
    else:
        assert isinstance(sizer, TopKSizer)
        ip[K.IP_SIZER], ip[K.IP_TOPK] = K.SZ_TOPK, sizer.k
        ip[K.IP_SIZER_COL] = columns.index(sizer.column)
    exits = strategy.exits if strategy.exits is not None else broker.exits
    if exits is not None:
        ip[K.IP_HAS_EXITS] = 1
        for attr, slot in (
            ("stop_loss", K.FP_SL),
            ("take_profit", K.FP_TP),
            ("trailing_stop", K.FP_TRAIL_PCT),
            ("trailing_amount", K.FP_TRAIL_AMT),
        ):
            value = getattr(exits, attr)
            if value is not None:
                fp[slot] = value
        ip[K.IP_MAX_BARS] = exits.max_bars or 0
    kinds = {"signal_above": K.R_ABOVE, "signal_below": K.R_BELOW, "signal_between": K.R_BETWEEN}
    kinds.update(in_position=K.R_IN, not_in_position=K.R_NOT_IN)
    rules = [(r, 0) for r in strategy.entry_rules] + [(r, 1) for r in strategy.exit_signals]
    rules_i = np.zeros((len(rules), 3), dtype=np.int64)
    rules_f = np.zeros((len(rules), 2))
    for j, (rule, is_exit) in enumerate(rules):
        col = columns.index(rule.column) if rule.column else 0
        rules_i[j] = (kinds[rule.kind], col, is_exit)
        rules_f[j] = (rule.low, rule.high)
    ip[K.IP_RULES] = len(rules)
    return ip, fp, rules_i, rules_f, columns


def _warm_up(ip: np.ndarray, fp: np.ndarray, rules_i: np.ndarray, rules_f: np.ndarray) -> float:
    """Compile (or load from the on-disk cache) the kernel; return the seconds it took."""
    t0 = time.perf_counter()
    state = _State(1, 1.0)
    ip1 = ip.copy()
    ip1[K.IP_ASSETS] = 1
    empty = np.zeros(0)
    K.signal_run_nb(
        0,
        0,
        np.zeros(1, dtype=np.int64),
        np.zeros(0, dtype=np.int64),
        empty,
        empty,
        empty,
        empty,
        empty,
        np.zeros((max(rules_i.shape[0], 1), 0)),
        ip1,
        fp,
        rules_i,
        rules_f,
        *_state_args(state),
    )
    return time.perf_counter() - t0


def _state_args(s: _State) -> tuple[np.ndarray, ...]:
    return (
        s.st_i,
        s.st_f,
        s.qty,
        s.avg,
        s.last,
        s.held,
        s.g_active,
        s.g_id,
        s.g_open,
        s.g_created,
        s.g_exitk,
        s.g_sl,
        s.g_tp,
        s.g_ref,
        *s.pending_arrays(),
        s.f_i,
        s.f_f,
    )


def run_compiled(
    engine: BacktestEngine, strategy: SignalStrategy, progress: Callable[[float], None] | None
) -> BacktestResult:
    """Run the backtest in the kernel and build the result exactly as the engine does."""
    from ..core.history import History

    t_start = time.perf_counter()
    clock, broker = engine.clock, engine.broker
    extra: dict[str, tuple[np.ndarray, ...]] = {}
    for f in engine.feeds:
        extra.update(f.context_frames())
    engine.context.bind(clock, clock.timezone, extra)
    windows = clock.windows()
    broker.setup(clock.asset_ids, engine, clock)
    engine.history = History(clock, engine.history_bars)
    pf = broker.portfolio
    pf.price_of = engine.price_of
    pf.trades.scanner = engine.history.extremes
    clock.override_ns, clock.base_index, clock.i = -1, 0, 0
    engine._chunk = None
    strategy._bind(engine)
    available = set(strategy.batch_columns())
    missing = [c for c in strategy.columns if c not in available]
    if missing:
        from ..errors import ConfigError

        raise ConfigError(
            f"SignalStrategy uses column(s) {missing} that the feeds do not provide as "
            f"signals or indicators (have: {sorted(available)})"
        )
    pm = engine.plugin_manager
    if pm.has_impls("ml4t_run_start"):
        pm.call_hook("ml4t_run_start", engine=engine)
    ip, fp, rules_i, rules_f, columns = _settings(engine, strategy)
    compile_seconds = _warm_up(ip, fp, rules_i, rules_f)
    state = _State(len(clock.asset_ids), pf.initial_cash)
    marker = Marker(pf.initial_cash, pf.mult, pf.is_future)
    ts_parts: list[np.ndarray] = []
    snapshots: dict[int, tuple[Any, Any]] = {}  # order id -> (signals, context)
    k0 = 0
    kernel_seconds = 0.0
    span = (windows[0][0], windows[-1][1]) if windows else (0, 1)
    last_ts = -1
    for block in clock.blocks():
        engine.history.add_block(block)
        T = block.ts.shape[0]
        offsets = np.ascontiguousarray(block.offsets, dtype=np.int64)
        code = np.ascontiguousarray(block.code, dtype=np.int64)
        px = [
            np.ascontiguousarray(block.cols[c], dtype=np.float64)
            for c in ("open", "high", "low", "close", "volume")
        ]
        if columns:
            sig = np.vstack([np.asarray(block.cols[c][:], dtype=np.float64) for c in columns])
        else:
            sig = np.zeros((1, code.shape[0]))
        t = 0
        while True:
            t1 = time.perf_counter()
            t = K.signal_run_nb(  # type: ignore[call-arg]
                k0, t, offsets, code, *px, sig, ip, fp, rules_i, rules_f, *_state_args(state)
            )
            kernel_seconds += time.perf_counter() - t1
            _book(engine, block, k0, state, snapshots)
            if t >= T:
                break
            if (
                state.st_i[K.S_PENDING] + int(offsets[t + 1] - offsets[t]) + len(clock.asset_ids)
                > state.p_code.shape[0]
            ):
                state._pending(2 * state.p_code.shape[0])
        _carry_snapshots(engine, block, k0, state, snapshots)
        ts_parts.append(block.ts)
        marker.mark_block(block, pf.fills, T)
        pf.trades.checkpoint(int(block.ts[-1]))
        k0 += T
        last_ts = int(block.ts[-1])
        if progress is not None:
            lo, hi = span
            progress(min(max((last_ts - lo) / max(hi - lo, 1), 0.0), 1.0))
    if k0:
        clock.override_ns = last_ts
        pf.trades.close_all_open(last_ts, k0 - 1, engine.price_of)
    if progress is not None:
        progress(1.0)
    engine.run_info = {
        "mode": "compiled",
        "compile_seconds": compile_seconds,
        "kernel_seconds": kernel_seconds,
        "orders_log": "not recorded in compiled mode (fills, trades and books are)",
    }
    result = build_result(
        engine, ts_parts, marker.arrays(), time.perf_counter() - t_start, complete=True
    )
    result.metrics["num_rejected_orders"] = int(state.st_i[K.S_REJECTED])
    if pm.has_impls("ml4t_run_end"):
        pm.call_hook("ml4t_run_end", engine=engine, result=result)
    strategy.on_end(result)
    return result


def _book(
    engine: BacktestEngine,
    block: Block,
    k0: int,
    state: _State,
    snapshots: dict[int, tuple[Any, Any]],
) -> None:
    """Book the kernel's fills into the portfolio (the event path's ledger and trades)."""
    n = int(state.st_i[K.S_FILLS])
    if not n:
        return
    pf = engine.broker.portfolio
    clock = engine.clock
    names = clock.signal_names
    cols = {k: np.asarray(block.cols[k][:], dtype=np.float64) for k in names}
    has_context = len(engine.context) > 0
    fi = state.f_i[:n].tolist()
    ff = state.f_f[:n].tolist()
    ids = clock.asset_ids
    ts_arr = block.ts
    for (k, _row, code, oid, tag, reason, dec_row, dec_k), (
        signed,
        price,
        commission,
        slip,
        _base,
        requested,
        need,
        cash,
    ) in zip(fi, ff, strict=True):
        ts = int(ts_arr[k - k0])
        if tag == K.TAG_SIGNAL:
            if dec_row >= 0:
                signals = {name: cols[name][dec_row].item() for name in names}
                context = dict(engine.context.as_of(int(ts_arr[dec_k - k0]))) if has_context else {}
            else:
                signals, context = snapshots.pop(oid, None) or _late_snapshot(  # type: ignore[arg-type]
                    engine, code, dec_k, k0, ts_arr
                )
            order = _Order(oid, None, signals, context)
        else:
            order = _Order(oid, _TAGS[tag], None, None)
        text = None
        if reason == K.REASON_RESIZED:
            why = (
                f"insufficient cash: need {need:,.2f} to buy {requested:g} {ids[code]} at "
                f"{price:,.4f}, have {cash:,.2f}"
            )
            text = f"resized from {requested:g} to {abs(signed):g}: {why}"
        pf.apply_fill(code, signed, price, commission, slip, ts, k, order, 0.0, text)
    state.st_i[K.S_FILLS] = 0
    clock.override_ns = -1


def _late_snapshot(
    engine: BacktestEngine, code: int, dec_k: int, k0: int, ts_arr: np.ndarray
) -> tuple[Any, Any]:
    """Snapshot of an order placed on a bar where its asset had no row (history as-of)."""
    clock = engine.clock
    if 0 <= dec_k - k0 < ts_arr.shape[0]:
        clock.override_ns = int(ts_arr[dec_k - k0])
    signals = engine.signals_now(code)
    context = engine.context_now()
    return signals, context


def _carry_snapshots(
    engine: BacktestEngine,
    block: Block,
    k0: int,
    state: _State,
    snapshots: dict[int, tuple[Any, Any]],
) -> None:
    """Record the snapshots of orders still working at the end of a block (rows expire)."""
    n = int(state.st_i[K.S_PENDING])
    for j in range(n):
        oid = int(state.p_id[j])
        if oid not in snapshots:
            snapshots[oid] = _late_snapshot(
                engine, int(state.p_code[j]), int(state.p_k[j]), k0, block.ts
            )
        state.p_row[j] = -1
    engine.clock.override_ns = -1
