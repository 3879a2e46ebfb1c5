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
from typing import TYPE_CHECKING, Any

import numpy as np

from ..builtin.fills import cash_text, intent_change_reason, resized_text
from ..builtin.sim_broker import SimulationBroker
from ..core.loop import Run
from ..core.trades import OpenTrade, closed_columns
from ..kernels import _layout as L
from ..kernels import signal as K
from ..kernels.matching import INTRABAR_MODES
from .rules import ConfidenceSizer, FixedSizer, PercentSizer, TopKSizer

if TYPE_CHECKING:
    from ..core.data import Block
    from ..core.runtime import Progress
    from .strategy import SignalStrategy

__all__ = ["SignalKernelRunner", "kernel_problem"]

_TAGS = (None, "stop_loss", "take_profit", "trailing_stop", "time_exit")
_TIMINGS = {"next_bar_open": 0, "same_bar_close": 1, "next_bar_close": 2}
#: kernel counters of strategy orders that ended unfilled: (slot, orders_df event, why)
_UNFILLED = (
    (L.S_REJ_INVALID, "rejected", "invalid quantity (zero, not finite or not a whole lot)"),
    (L.S_REJ_ONE_BAR, "rejected", "one order per bar: the asset already traded on the bar"),
    (L.S_REJ_SHORT, "rejected", "short selling is disabled"),
    (L.S_REJ_CASH, "rejected", "insufficient cash"),
    (L.S_REJ_PRICE, "rejected", "the slippage model returned an invalid price"),
    (L.S_CXL_NOTHING, "cancelled", "reduce-only order, no position left to reduce"),
    (L.S_CXL_AT_TARGET, "cancelled", "target order, the position is already at its target"),
    (L.S_CXL_PAST_TARGET, "cancelled", "target order, the position is already past its target"),
)
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


def kernel_problem(run: Run, strategy: SignalStrategy) -> str | None:
    """Return why ``run`` cannot run ``strategy`` in the kernel, or None if it can."""
    from .strategy import SignalStrategy

    for name in _CALLBACKS:
        if getattr(type(strategy), name) is not getattr(SignalStrategy, name):
            return f"the strategy overrides {name}()"
    broker = run.broker
    if not isinstance(broker, SimulationBroker):
        return f"the broker {type(broker).__name__} is not a SimulationBroker"
    if run.calendar is not None:
        return "a trading calendar is set (the kernel has no session events)"
    if run.setup.observers.session_end is not None:
        return "a plugin implements ml4t_session_end"
    problem = broker.kernel_problem()
    if problem is not None:
        return problem
    checks = (
        (broker.fill_timing not in _TIMINGS, f"fill_timing={broker.fill_timing!r}"),
        (broker.corporate_actions is not None, "corporate_actions are set"),
        (
            broker.exits is not None and strategy.exits is not None,
            "both the broker and the strategy set position exits",
        ),
    )
    for bad, why in checks:
        if bad:
            return why
    return None


#: the pending-order arrays of the kernel, in its parameter order
_PENDING = ("p_code", "p_side", "p_qty", "p_id", "p_k", "p_row", "p_intent", "p_target")


class _State:
    """Kernel state carried across blocks (arrays indexed by asset code)."""

    # the pending orders (set by _pending, named by _PENDING)
    p_code: np.ndarray
    p_side: np.ndarray
    p_qty: np.ndarray
    p_id: np.ndarray
    p_k: np.ndarray
    p_row: np.ndarray
    p_intent: np.ndarray
    p_target: np.ndarray

    def __init__(self, n: int, cash: float) -> None:
        self.st_i = np.zeros(L.S_I_SIZE, dtype=np.int64)
        self.st_f = np.array([cash, 0.0, 0.0])
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
        self.tr_i = np.zeros((n, 7), dtype=np.int64)
        self.tr_i[:, L.TI_TRADED_K] = -1
        self.tr_f = np.zeros((n, 11))
        self._pending(4 * n + 64)
        cap = 8 * n + 65_536
        self.f_i = np.zeros((cap, 8), dtype=np.int64)
        self.f_f = np.zeros((cap, L.FF_SIZE))
        self.c_i = np.zeros((cap, 10), dtype=np.int64)
        self.c_f = np.zeros((cap, 10))

    def _pending(self, cap: int) -> None:
        old = getattr(self, "p_code", None)
        arrays = [
            np.zeros(cap, dtype=np.int64),
            np.zeros(cap, dtype=np.int64),
            np.zeros(cap),
            np.zeros(cap, dtype=np.int64),
            np.zeros(cap, dtype=np.int64),
            np.zeros(cap, dtype=np.int64),
            np.zeros(cap, dtype=np.int64),
            np.zeros(cap),
        ]
        if old is not None:
            n = int(self.st_i[L.S_PENDING])
            for new, cur in zip(arrays, self.pending_arrays(), strict=True):
                new[:n] = cur[:n]
        for name, array in zip(_PENDING, arrays, strict=True):
            setattr(self, name, array)

    def pending_arrays(self) -> tuple[np.ndarray, ...]:
        return tuple(getattr(self, name) for name in _PENDING)

    def args(self) -> tuple[np.ndarray, ...]:
        """The kernel's state and output arguments, in its parameter order."""
        return (
            self.st_i,
            self.st_f,
            self.qty,
            self.avg,
            self.last,
            self.held,
            self.g_active,
            self.g_id,
            self.g_open,
            self.g_created,
            self.g_exitk,
            self.g_sl,
            self.g_tp,
            self.g_ref,
            *self.pending_arrays(),
            self.f_i,
            self.f_f,
            self.tr_i,
            self.tr_f,
            self.c_i,
            self.c_f,
        )


def _settings(run: Run, strategy: SignalStrategy) -> tuple[Any, ...]:
    broker = run.broker
    assert isinstance(broker, SimulationBroker)  # kernel_problem checked it
    ip, fp = broker.kernel_settings()
    ip[L.IP_ASSETS] = len(run.clock.asset_ids)
    ip[L.IP_TIMING] = _TIMINGS[broker.fill_timing]
    ip[L.IP_MODE] = INTRABAR_MODES.index(broker.intrabar)
    ip[L.IP_TRAIL_CLOSE] = int(broker.trail_reference == "close")
    ip[L.IP_EXIT_BASE_CLOSE] = int(broker.exit_base == "bar_close")
    columns = list(strategy.columns)
    sizer = strategy.position_sizer
    if isinstance(sizer, PercentSizer):
        ip[L.IP_SIZER], fp[L.FP_SIZE_VALUE] = L.SZ_PERCENT, sizer.percent
    elif isinstance(sizer, FixedSizer):
        ip[L.IP_SIZER], fp[L.FP_SIZE_VALUE] = L.SZ_FIXED, sizer.quantity
    elif isinstance(sizer, ConfidenceSizer):
        ip[L.IP_SIZER], fp[L.FP_SIZE_VALUE] = L.SZ_CONFIDENCE, sizer.max_percent
        fp[L.FP_MIN_CONF] = sizer.min_confidence
        ip[L.IP_SIZER_COL] = columns.index(sizer.column)
    else:
        assert isinstance(sizer, TopKSizer)
        ip[L.IP_SIZER], ip[L.IP_TOPK] = L.SZ_TOPK, sizer.k
        ip[L.IP_SIZER_COL] = columns.index(sizer.column)
    exits = strategy.exits if strategy.exits is not None else broker.exits
    if exits is not None:
        ip[L.IP_HAS_EXITS] = 1
        for attr, slot in (
            ("stop_loss", L.FP_SL),
            ("take_profit", L.FP_TP),
            ("trailing_stop", L.FP_TRAIL_PCT),
            ("trailing_amount", L.FP_TRAIL_AMT),
        ):
            value = getattr(exits, attr)
            if value is not None:
                fp[slot] = value
        ip[L.IP_MAX_BARS] = exits.max_bars or 0
    kinds = {"signal_above": L.R_ABOVE, "signal_below": L.R_BELOW, "signal_between": L.R_BETWEEN}
    kinds.update(in_position=L.R_IN, not_in_position=L.R_NOT_IN)
    rules = [(r, 0) for r in strategy.entry_rules] + [(r, 1) for r in strategy.exit_signals]
    rules_i = np.zeros((len(rules), 3), dtype=np.int64)
    rules_f = np.zeros((len(rules), 2))
    for j, (rule, is_exit) in enumerate(rules):
        col = columns.index(rule.column) if rule.column else 0
        rules_i[j] = (kinds[rule.kind], col, is_exit)
        rules_f[j] = (rule.low, rule.high)
    return ip, fp, rules_i, rules_f, columns


def _warm_up(ip: np.ndarray, fp: np.ndarray, rules_i: np.ndarray, rules_f: np.ndarray) -> float:
    """Compile (or load from the on-disk cache) the kernel; return the seconds it took."""
    t0 = time.perf_counter()
    state = _State(1, 1.0)
    ip1 = ip.copy()
    ip1[L.IP_ASSETS] = 1
    empty = np.zeros(0)
    none = np.zeros(0, dtype=np.int64)
    K.signal_run_nb(  # type: ignore[call-arg]
        0,
        0,
        np.zeros(1, dtype=np.int64),
        none,
        empty,
        empty,
        empty,
        empty,
        empty,
        np.zeros((max(rules_i.shape[0], 1), 0)),
        none,
        ip1,
        fp,
        rules_i,
        rules_f,
        *state.args(),
        empty,
        empty,
        empty,
        none,
    )
    return time.perf_counter() - t0


class _LedgerWriter:
    """Turns the kernel's fill and trade arrays into the portfolio's ledger and trades."""

    def __init__(self, run: Run, state: _State) -> None:
        self.run = run
        self.state = state
        self.pf = run.broker.portfolio
        self.names = run.clock.signal_names
        self.has_context = len(run.context) > 0
        #: signal values (columns in ``names`` order) at the decision of every filled
        #: strategy order, rows sorted by order id (``snap_oid``); contexts by order id
        self.snap_oid = np.empty(0, dtype=np.int64)
        self.snap_val = np.empty((0, len(self.names)))
        self.snap_ctx: dict[int, dict[str, float]] = {}
        #: order id -> snapshot of orders still working when their block ended
        self.carried: dict[int, tuple[dict[str, float], dict[str, float]]] = {}

    def drain(self, block: Block, k0: int) -> None:
        """Book the fills and closed trades the kernel produced since the last drain."""
        st = self.state
        n = int(st.st_i[L.S_FILLS])
        if n:
            self._fills(block, k0, st.f_i[:n], st.f_f[:n])
            st.st_i[L.S_FILLS] = 0
        m = int(st.st_i[L.S_TRADES])
        if m:
            self._trades(st.c_i[:m], st.c_f[:m])
            st.st_i[L.S_TRADES] = 0

    def _fills(self, block: Block, k0: int, fi: np.ndarray, ff: np.ndarray) -> None:
        run, pf = self.run, self.pf
        ids = run.clock.asset_ids
        ts = block.ts[fi[:, 0] - k0]
        cols = {k: np.asarray(block.cols[k][:], dtype=np.float64) for k in self.names}
        tags = fi[:, 4]
        rows = fi[:, 6]
        oids = fi[:, 3].tolist()
        direct = np.flatnonzero((tags == L.TAG_SIGNAL) & (rows >= 0))
        late = np.flatnonzero((tags == L.TAG_SIGNAL) & (rows < 0))
        new_oid = [fi[direct, 3]]
        new_val = [
            np.column_stack([cols[k][rows[direct]] for k in self.names])
            if self.names
            else np.empty((direct.shape[0], 0))
        ]
        if self.has_context:
            for f in direct.tolist():
                decided = int(block.ts[fi[f, 7] - k0])
                self.snap_ctx[oids[f]] = dict(run.context.as_of(decided))
        for f in late.tolist():
            oid = oids[f]
            got = self.carried.pop(oid, None)
            if got is None:
                got = _late_snapshot(run, int(fi[f, 2]), int(fi[f, 7]), k0, block)
            new_oid.append(np.array([oid], dtype=np.int64))
            row = [got[0].get(k, float("nan")) for k in self.names]
            new_val.append(np.array([row], dtype=np.float64).reshape(1, len(self.names)))
            if self.has_context:
                self.snap_ctx[oid] = got[1]
        if direct.shape[0] or late.shape[0]:
            all_oid = np.concatenate([self.snap_oid, *new_oid])
            all_val = np.concatenate([self.snap_val, *new_val])
            order = np.argsort(all_oid, kind="stable")
            self.snap_oid, self.snap_val = all_oid[order], all_val[order]
        reasons: list[str | None] = [None] * fi.shape[0]
        for f in np.flatnonzero(fi[:, 5] != L.REASON_NONE).tolist():
            signed, price, requested, need, cash, asked, target = ff[
                f, [0, 1, 5, 6, 7, L.FF_ASKED, L.FF_TARGET]
            ].tolist()
            parts = []
            if fi[f, 5] & L.REASON_RESIZED:
                why = cash_text(need, requested, ids[fi[f, 2]], price, cash)
                parts.append(resized_text(requested, abs(signed), why))
            if fi[f, 5] & L.REASON_INTENT:
                goal = None if target != target else target
                parts.append(intent_change_reason(asked, requested, goal))
            reasons[f] = "; ".join(parts)
        m = fi.shape[0]
        pf.fills.extend_columns(
            {
                "timestamp": ts,
                "ts_index": fi[:, 0],
                "order_id": fi[:, 3],
                "asset_id": [ids[c] for c in fi[:, 2].tolist()],
                "quantity": ff[:, 0],
                "price": ff[:, 1],
                "commission": ff[:, 2],
                "slippage": ff[:, 3],
                "tag": [_TAGS[t] for t in tags.tolist()],
                "realized_pnl": ff[:, L.FF_REALIZED],
                "code": fi[:, 2],
                "cash_after": ff[:, L.FF_CASH_AFTER],
                "position_after": ff[:, L.FF_QTY_AFTER],
                "impact": np.zeros(m),
                "kind": ["fill"] * m,
                "avg_cost_after": ff[:, L.FF_AVG_AFTER],
                "accrued_after": np.zeros(m),
                "reason": reasons,
                "amount": np.zeros(m),
            }
        )
        realized = pf.realized
        for code, value in zip(fi[:, 2].tolist(), ff[:, L.FF_REALIZED].tolist(), strict=True):
            if value:
                realized[code] += value

    def _trades(self, ci: np.ndarray, cf: np.ndarray) -> None:
        ids = self.run.clock.asset_ids
        tags = ci[:, L.CI_EXIT_TAG].tolist()
        reasons = [_TAGS[t] or "signal" for t in tags]
        cols = closed_columns(ci, cf, ids, reasons)
        nan = float("nan")
        entry_oid = ci[:, L.CI_ENTRY_OID]
        exit_oid = np.where(ci[:, L.CI_EXIT_TAG] == L.TAG_SIGNAL, ci[:, L.CI_EXIT_OID], -1)
        for prefix, wanted in (("entry_", entry_oid), ("exit_", exit_oid)):
            values = self.snapshot_values(wanted)
            for j, name in enumerate(self.names):
                cols[f"{prefix}signal_{name}"] = values[:, j]
            for name in self.run.context.names:
                cols[f"{prefix}context_{name}"] = [
                    self.snap_ctx.get(o, {}).get(name, nan) for o in wanted.tolist()
                ]
        self.pf.trades.bulk.append(cols)

    def snapshot_values(self, oids: np.ndarray) -> np.ndarray:
        """Signal values at the decision of each order id (NaN rows for unknown ids)."""
        out = np.full((oids.shape[0], len(self.names)), np.nan)
        if not self.snap_oid.shape[0]:
            return out
        at = np.searchsorted(self.snap_oid, oids)
        at = np.minimum(at, self.snap_oid.shape[0] - 1)
        found = self.snap_oid[at] == oids
        out[found] = self.snap_val[at[found]]
        return out

    def carry(self, block: Block, k0: int) -> None:
        """Snapshot orders still working at the end of a block (their rows expire)."""
        st = self.state
        run = self.run
        for j in range(int(st.st_i[L.S_PENDING])):
            oid = int(st.p_id[j])
            row = int(st.p_row[j])
            if oid in self.carried:
                pass
            elif row >= 0:  # decided on a row of this block: read it there
                signals = {k: float(block.cols[k][row]) for k in self.names}
                context: dict[str, float] = {}
                if self.has_context:
                    decided = int(block.ts[int(st.p_k[j]) - k0])
                    context = dict(run.context.as_of(decided))
                self.carried[oid] = (signals, context)
            else:
                self.carried[oid] = _late_snapshot(
                    run, int(st.p_code[j]), int(st.p_k[j]), k0, block
                )
            st.p_row[j] = -1
        self.run.clock.override_ns = -1

    def finish(self, last_ts: int) -> None:
        """Copy the final state into the portfolio; open trades go to the trade tracker."""
        st, pf = self.state, self.pf
        pf.cash = float(st.st_f[L.S_CASH])
        pf.total_commission = float(st.st_f[L.S_COMMISSION])
        pf.total_slippage = float(st.st_f[L.S_SLIPPAGE])
        for c in range(len(pf.asset_ids)):
            pf.qty[c] = float(st.qty[c])
            pf.avg_cost[c] = float(st.avg[c])
        for c in st.held[: int(st.st_i[L.S_HELD])].tolist():
            pf._set_held(c, pf.asset_ids[c], pf.qty[c])
        tracker = pf.trades
        tracker._next_id = int(st.st_i[L.S_NEXT_TRADE])
        for c in np.flatnonzero(st.tr_i[:, L.TI_OPEN]).tolist():
            ti, tf = st.tr_i[c], st.tr_f[c]
            oid = int(ti[L.TI_ENTRY_OID])
            values = self.snapshot_values(np.array([oid], dtype=np.int64))[0].tolist()
            signals = dict(zip(self.names, values, strict=True))
            holder = _Order(oid, None, signals, self.snap_ctx.get(oid, {}))
            trade = OpenTrade(
                int(ti[L.TI_ID]),
                c,
                pf.asset_ids[c],
                int(ti[L.TI_DIR]),
                int(ti[L.TI_ENTRY_TS]),
                int(ti[L.TI_ENTRY_K]),
                holder,
            )
            (
                trade.qty,
                trade.entry_qty,
                trade.entry_value,
                trade.entry_commission,
                trade.entry_slippage,
                trade.exit_qty,
                trade.exit_value,
                trade.exit_commission,
                trade.exit_slippage,
                trade.hi,
                trade.lo,
            ) = tf.tolist()
            trade.scan_from = last_ts + 1  # the kernel has scanned every bar already
            tracker.open[c] = trade


class _Order:
    """What the ledger and the trade tracker need of an order."""

    __slots__ = ("_context_snapshot", "_signals_snapshot", "order_id", "tag")

    def __init__(self, order_id: int, tag: str | None, signals: Any, context: Any) -> None:
        self.order_id = order_id
        self.tag = tag
        self._signals_snapshot = signals
        self._context_snapshot = context


class SignalKernelRunner:
    """Runs a :class:`SignalStrategy` whole in the signal kernel (mode ``"compiled"``)."""

    mode = "compiled"

    def __init__(self, strategy: SignalStrategy) -> None:
        self.strategy = strategy

    def salvage(self, run: Run) -> bool:
        """The kernel keeps no books an error could leave half-marked: no partial result."""
        return False

    def run(self, run: Run, progress: Progress | None) -> None:
        """Run every block in the kernel and book its fills, trades and marked books."""
        clock, broker = run.clock, run.broker
        pf = broker.portfolio
        ip, fp, rules_i, rules_f, columns = _settings(run, self.strategy)
        compile_seconds = _warm_up(ip, fp, rules_i, rules_f)
        state = _State(len(clock.asset_ids), pf.initial_cash)
        ledger = _LedgerWriter(run, state)
        timestamp_books = run.books
        assert timestamp_books is not None
        k0 = 0
        kernel_seconds = 0.0
        span = run.span
        last_ts = -1
        for block in clock.blocks():
            run.history.add_block(block)
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
            ts = np.ascontiguousarray(block.ts, dtype=np.int64)
            books_t = (np.empty(T), np.empty(T), np.empty(T), np.empty(T, dtype=np.int64))
            t = 0
            while True:
                t1 = time.perf_counter()
                t = K.signal_run_nb(  # type: ignore[call-arg]
                    k0,
                    t,
                    offsets,
                    code,
                    *px,
                    sig,
                    ts,
                    ip,
                    fp,
                    rules_i,
                    rules_f,
                    *state.args(),
                    *books_t,
                )
                kernel_seconds += time.perf_counter() - t1
                ledger.drain(block, k0)
                if t >= T:
                    break
                need = (
                    state.st_i[L.S_PENDING]
                    + int(offsets[t + 1] - offsets[t])
                    + len(clock.asset_ids)
                )
                if need > state.p_code.shape[0]:
                    state._pending(2 * state.p_code.shape[0])
            ledger.carry(block, k0)
            run.ts_parts.append(block.ts)
            timestamp_books.append_books(*books_t)
            k0 += T
            last_ts = int(block.ts[-1])
            if progress is not None:
                lo, hi = span
                progress(min(max((last_ts - lo) / max(hi - lo, 1), 0.0), 1.0))
        ledger.finish(last_ts)
        if k0:
            clock.override_ns = last_ts
            run.close_open_trades(last_ts, k0 - 1)
        run.run_info.update(
            {
                "compile_seconds": compile_seconds,
                "kernel_seconds": kernel_seconds,
                "orders_log": "not recorded in compiled mode (fills, trades and books are)",
                "unfilled_orders": [
                    (event, why, int(state.st_i[slot]))
                    for slot, event, why in _UNFILLED
                    if state.st_i[slot]
                ],
            }
        )


def _late_snapshot(
    run: Run, code: int, dec_k: int, k0: int, block: Block
) -> tuple[dict[str, float], dict[str, float]]:
    """Snapshot of an order placed where its asset had no row, or in an earlier block."""
    clock = run.clock
    if 0 <= dec_k - k0 < block.ts.shape[0]:
        clock.override_ns = int(block.ts[dec_k - k0])
    signals = run.signals_now(code)
    context = run.context_now()
    clock.override_ns = -1
    return signals, context
