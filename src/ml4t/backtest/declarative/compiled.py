"""Run a :class:`SignalStrategy` in the Numba kernel, block by block.

The set-up and the result are the event engine's: the same clock and blocks (so lazy
feeds stay bounded in memory), the same portfolio ledger, trade tracker, marking and
result builder. Only the per-timestamp work moves into
:func:`ml4t.backtest.kernels.signal_kernel.signal_run_nb`; its fills are booked into the
portfolio after each call, which rebuilds the same ledger the event path writes.

:func:`kernel_problem` says why a run cannot use the kernel (a broker setting, a cost
model without ``kernel_params``, a strategy that overrides a callback, a calendar); the
engine then runs the event path and says so.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..builtin.fills import cash_text, intent_change_reason, resized_text
from ..builtin.sim_broker import SimulationBroker
from ..core.run import Run
from ..core.trades import OpenTrade, TradeArrays, closed_columns
from ..kernels import _layout as layout
from ..kernels.matching import INTRABAR_MODES
from ..kernels.signal_kernel import signal_run_nb
from .rules import ConfidenceSizer, FixedSizer, PercentSizer, RuleSet, TopKSizer

if TYPE_CHECKING:
    from ..core.data import Block
    from ..core.runtime import Progress

__all__ = ["SignalKernelRunner", "kernel_problem"]

#: fill tag -> the ledger's tag (None: a strategy order)
_TAGS: dict[int, str | None] = {
    layout.TAG_SIGNAL: None,
    layout.TAG_STOP: "stop_loss",
    layout.TAG_TAKE: "take_profit",
    layout.TAG_TRAIL: "trailing_stop",
    layout.TAG_TIME: "time_exit",
}
_TIMINGS = {
    "next_bar_open": layout.TIMING_NEXT_OPEN,
    "same_bar_close": layout.TIMING_SAME_CLOSE,
    "next_bar_close": layout.TIMING_NEXT_CLOSE,
}
#: kernel counters of strategy orders that ended unfilled: (slot, orders_df event, why)
_UNFILLED = (
    (layout.S_REJ_INVALID, "rejected", "invalid quantity (zero, not finite or not a whole lot)"),
    (layout.S_REJ_ONE_BAR, "rejected", "one order per bar: the asset already traded on the bar"),
    (layout.S_REJ_SHORT, "rejected", "short selling is disabled"),
    (layout.S_REJ_CASH, "rejected", "insufficient cash"),
    (layout.S_REJ_PRICE, "rejected", "the slippage model returned an invalid price"),
    (layout.S_CXL_NOTHING, "cancelled", "reduce-only order, no position left to reduce"),
    (layout.S_CXL_AT_TARGET, "cancelled", "target order, the position is already at its target"),
    (
        layout.S_CXL_PAST_TARGET,
        "cancelled",
        "target order, the position is already past its target",
    ),
)


def kernel_problem(run: Run, strategy: RuleSet) -> str | None:
    """Return why ``run`` cannot run ``strategy``'s rules in the kernel, or None if it can.

    The strategy's own callbacks are checked by ``SignalStrategy.compiled_runner``.
    """
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


class _State:
    """Kernel state carried across blocks (arrays indexed by asset code), and its outputs.

    Attributes are the kernel's arguments of the same names
    (:mod:`ml4t.backtest.kernels._layout`).
    """

    def __init__(self, n: int, cash: float) -> None:
        st_f = np.zeros(layout.S_F_SIZE)
        st_f[layout.S_CASH] = cash
        self.account = layout.Account(
            st_i=np.zeros(layout.S_I_SIZE, dtype=np.int64),
            st_f=st_f,
            qty=np.zeros(n),
            avg=np.zeros(n),
            last=np.full(n, np.nan),
            held=np.zeros(max(n, 1), dtype=np.int64),
        )
        self.exits = layout.Exits(
            active=np.zeros(n, dtype=np.int8),
            ids=np.full((n, layout.G_SIZE), -1, dtype=np.int64),
            open=np.zeros((n, layout.G_SIZE), dtype=np.int8),
            created=np.zeros(n, dtype=np.int64),
            exit_k=np.zeros(n, dtype=np.int64),
            stop=np.zeros(n),
            take=np.zeros(n),
            trail_ref=np.zeros(n),
        )
        self.pending = _pending(4 * n + 64)
        cap = 8 * n + 65_536
        self.fills = layout.Fills(
            ints=np.zeros((cap, layout.FI_SIZE), dtype=np.int64),
            floats=np.zeros((cap, layout.FF_SIZE)),
        )
        open_i = np.zeros((n, layout.TI_SIZE), dtype=np.int64)
        open_i[:, layout.TI_TRADED_K] = -1
        self.trades = layout.Trades(
            open_i=open_i,
            open_f=np.zeros((n, layout.TF_SIZE)),
            closed_i=np.zeros((cap, layout.CI_SIZE), dtype=np.int64),
            closed_f=np.zeros((cap, layout.TF_SIZE)),
        )

    @property
    def st_i(self) -> np.ndarray:
        """The integer state (``S_*``)."""
        return self.account.st_i

    def grow_pending(self, cap: int) -> None:
        """Make room for ``cap`` pending orders, keeping those working."""
        n = int(self.st_i[layout.S_PENDING])
        grown = _pending(cap)
        for new, cur in zip(grown, self.pending, strict=True):
            new[:n] = cur[:n]
        self.pending = grown


def _pending(cap: int) -> layout.Pending:
    """Empty pending-order arrays of capacity ``cap``."""
    return layout.Pending(
        code=np.zeros(cap, dtype=np.int64),
        side=np.zeros(cap, dtype=np.int64),
        qty=np.zeros(cap),
        order_id=np.zeros(cap, dtype=np.int64),
        k=np.zeros(cap, dtype=np.int64),
        row=np.zeros(cap, dtype=np.int64),
        intent=np.zeros(cap, dtype=np.int64),
        target=np.zeros(cap),
    )


def _settings(run: Run, strategy: RuleSet) -> tuple[layout.Settings, list[str]]:
    """The kernel's settings for ``strategy`` on ``run``, and its signal columns."""
    broker = run.broker
    assert isinstance(broker, SimulationBroker)  # kernel_problem checked it
    ip, fp = broker.kernel_settings()
    ip[layout.IP_ASSETS] = len(run.clock.asset_ids)
    ip[layout.IP_TIMING] = _TIMINGS[broker.fill_timing]
    ip[layout.IP_MODE] = INTRABAR_MODES.index(broker.intrabar)
    ip[layout.IP_TRAIL_CLOSE] = int(broker.trail_reference == "close")
    ip[layout.IP_EXIT_BASE_CLOSE] = int(broker.exit_base == "bar_close")
    columns = list(strategy.columns)
    sizer = strategy.position_sizer
    if isinstance(sizer, PercentSizer):
        ip[layout.IP_SIZER], fp[layout.FP_SIZE_VALUE] = layout.SZ_PERCENT, sizer.percent
    elif isinstance(sizer, FixedSizer):
        ip[layout.IP_SIZER], fp[layout.FP_SIZE_VALUE] = layout.SZ_FIXED, sizer.quantity
    elif isinstance(sizer, ConfidenceSizer):
        ip[layout.IP_SIZER], fp[layout.FP_SIZE_VALUE] = layout.SZ_CONFIDENCE, sizer.max_percent
        fp[layout.FP_MIN_CONF] = sizer.min_confidence
        ip[layout.IP_SIZER_COL] = columns.index(sizer.column)
    else:
        assert isinstance(sizer, TopKSizer)
        ip[layout.IP_SIZER], ip[layout.IP_TOPK] = layout.SZ_TOPK, sizer.k
        ip[layout.IP_SIZER_COL] = columns.index(sizer.column)
    exits = strategy.exits if strategy.exits is not None else broker.exits
    if exits is not None:
        ip[layout.IP_HAS_EXITS] = 1
        for attr, slot in (
            ("stop_loss", layout.FP_SL),
            ("take_profit", layout.FP_TP),
            ("trailing_stop", layout.FP_TRAIL_PCT),
            ("trailing_amount", layout.FP_TRAIL_AMT),
        ):
            value = getattr(exits, attr)
            if value is not None:
                fp[slot] = value
        ip[layout.IP_MAX_BARS] = exits.max_bars or 0
    kinds = {
        "signal_above": layout.R_ABOVE,
        "signal_below": layout.R_BELOW,
        "signal_between": layout.R_BETWEEN,
    }
    kinds.update(in_position=layout.R_IN, not_in_position=layout.R_NOT_IN)
    rules = [(r, 0) for r in strategy.entry_rules] + [(r, 1) for r in strategy.exit_signals]
    rules_i = np.zeros((len(rules), layout.RI_SIZE), dtype=np.int64)
    rules_f = np.zeros((len(rules), layout.RF_SIZE))
    for j, (rule, is_exit) in enumerate(rules):
        rules_i[j, layout.RI_KIND] = kinds[rule.kind]
        rules_i[j, layout.RI_COLUMN] = columns.index(rule.column) if rule.column else 0
        rules_i[j, layout.RI_IS_EXIT] = is_exit
        rules_f[j, layout.RF_LOW] = rule.low
        rules_f[j, layout.RF_HIGH] = rule.high
    return layout.Settings(ip=ip, fp=fp, rules_i=rules_i, rules_f=rules_f), columns


def _bars(block: Block, columns: list[str]) -> layout.Bars:
    """One block's bars and signal columns as the kernel takes them."""
    code = np.ascontiguousarray(block.code, dtype=np.int64)
    if columns:
        sig = np.vstack([np.asarray(block.cols[c][:], dtype=np.float64) for c in columns])
    else:
        sig = np.zeros((1, code.shape[0]))
    return layout.Bars(
        offsets=np.ascontiguousarray(block.offsets, dtype=np.int64),
        code=code,
        open=np.ascontiguousarray(block.cols["open"], dtype=np.float64),
        high=np.ascontiguousarray(block.cols["high"], dtype=np.float64),
        low=np.ascontiguousarray(block.cols["low"], dtype=np.float64),
        close=np.ascontiguousarray(block.cols["close"], dtype=np.float64),
        volume=np.ascontiguousarray(block.cols["volume"], dtype=np.float64),
        signals=sig,
        ts=np.ascontiguousarray(block.ts, dtype=np.int64),
    )


def _books(T: int) -> layout.Books:
    """Empty books for ``T`` timestamps."""
    return layout.Books(
        cash=np.empty(T), net=np.empty(T), gross=np.empty(T), npos=np.empty(T, dtype=np.int64)
    )


def _warm_up(settings: layout.Settings) -> float:
    """Compile (or load from the on-disk cache) the kernel; return the seconds it took."""
    t0 = time.perf_counter()
    state = _State(1, 1.0)
    ip1 = settings.ip.copy()
    ip1[layout.IP_ASSETS] = 1
    empty = np.zeros(0)
    none = np.zeros(0, dtype=np.int64)
    bars = layout.Bars(
        offsets=np.zeros(1, dtype=np.int64),
        code=none,
        open=empty,
        high=empty,
        low=empty,
        close=empty,
        volume=empty,
        signals=np.zeros((max(settings.rules_i.shape[0], 1), 0)),
        ts=none,
    )
    signal_run_nb(
        0,
        0,
        bars,
        settings._replace(ip=ip1),
        state.account,
        state.exits,
        state.pending,
        state.fills,
        state.trades,
        _books(0),
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
        self.carried: dict[int, _Snapshot] = {}

    def drain(self, block: Block, k0: int) -> None:
        """Book the fills and closed trades the kernel produced since the last drain."""
        st = self.state
        n = int(st.st_i[layout.S_FILLS])
        if n:
            self._fills(block, k0, st.fills.ints[:n], st.fills.floats[:n])
            st.st_i[layout.S_FILLS] = 0
        m = int(st.st_i[layout.S_TRADES])
        if m:
            self._trades(st.trades.closed_i[:m], st.trades.closed_f[:m])
            st.st_i[layout.S_TRADES] = 0

    def _fills(self, block: Block, k0: int, fi: np.ndarray, ff: np.ndarray) -> None:
        run, pf = self.run, self.pf
        ids = run.clock.asset_ids
        ts = block.ts[fi[:, layout.FI_K] - k0]
        cols = {k: np.asarray(block.cols[k][:], dtype=np.float64) for k in self.names}
        tags = fi[:, layout.FI_TAG]
        rows = fi[:, layout.FI_DEC_ROW]
        codes = fi[:, layout.FI_CODE]
        dec_k = fi[:, layout.FI_DEC_K]
        oids = fi[:, layout.FI_ORDER_ID].tolist()
        direct = np.flatnonzero((tags == layout.TAG_SIGNAL) & (rows >= 0))
        late = np.flatnonzero((tags == layout.TAG_SIGNAL) & (rows < 0))
        new_oid = [fi[direct, layout.FI_ORDER_ID]]
        new_val = [
            np.column_stack([cols[k][rows[direct]] for k in self.names])
            if self.names
            else np.empty((direct.shape[0], 0))
        ]
        if self.has_context:
            for f in direct.tolist():
                decided = int(block.ts[dec_k[f] - k0])
                self.snap_ctx[oids[f]] = dict(run.context.as_of(decided))
        for f in late.tolist():
            oid = oids[f]
            got = self.carried.pop(oid, None)
            if got is None:
                got = _late_snapshot(run, int(codes[f]), int(dec_k[f]), k0, block)
            new_oid.append(np.array([oid], dtype=np.int64))
            row = [got.signals.get(k, float("nan")) for k in self.names]
            new_val.append(np.array([row], dtype=np.float64).reshape(1, len(self.names)))
            if self.has_context:
                self.snap_ctx[oid] = got.context
        if direct.shape[0] or late.shape[0]:
            all_oid = np.concatenate([self.snap_oid, *new_oid])
            all_val = np.concatenate([self.snap_val, *new_val])
            order = np.argsort(all_oid, kind="stable")
            self.snap_oid, self.snap_val = all_oid[order], all_val[order]
        reasons: list[str | None] = [None] * fi.shape[0]
        flags = fi[:, layout.FI_REASON]
        for f in np.flatnonzero(flags != layout.REASON_NONE).tolist():
            signed, price = float(ff[f, layout.FF_QTY]), float(ff[f, layout.FF_PRICE])
            requested = float(ff[f, layout.FF_REQUESTED])
            parts = []
            if flags[f] & layout.REASON_RESIZED:
                need, cash = float(ff[f, layout.FF_NEED]), float(ff[f, layout.FF_CASH_BEFORE])
                why = cash_text(need, requested, ids[codes[f]], price, cash)
                parts.append(resized_text(requested, abs(signed), why))
            if flags[f] & layout.REASON_INTENT:
                target = float(ff[f, layout.FF_TARGET])
                goal = None if target != target else target
                parts.append(intent_change_reason(float(ff[f, layout.FF_ASKED]), requested, goal))
            reasons[f] = "; ".join(parts)
        m = fi.shape[0]
        pf.fills.extend_columns(
            {
                "timestamp": ts,
                "ts_index": fi[:, layout.FI_K],
                "order_id": fi[:, layout.FI_ORDER_ID],
                "asset_id": [ids[c] for c in codes.tolist()],
                "quantity": ff[:, layout.FF_QTY],
                "price": ff[:, layout.FF_PRICE],
                "commission": ff[:, layout.FF_COMMISSION],
                "slippage": ff[:, layout.FF_SLIPPAGE],
                "tag": [_TAGS[t] for t in tags.tolist()],
                "realized_pnl": ff[:, layout.FF_REALIZED],
                "code": codes,
                "cash_after": ff[:, layout.FF_CASH_AFTER],
                "position_after": ff[:, layout.FF_QTY_AFTER],
                "impact": np.zeros(m),
                "kind": ["fill"] * m,
                "avg_cost_after": ff[:, layout.FF_AVG_AFTER],
                "accrued_after": np.zeros(m),
                "reason": reasons,
                "amount": np.zeros(m),
            }
        )
        realized = pf.realized
        for code, value in zip(codes.tolist(), ff[:, layout.FF_REALIZED].tolist(), strict=True):
            if value:
                realized[code] += value

    def _trades(self, ci: np.ndarray, cf: np.ndarray) -> None:
        ids = self.run.clock.asset_ids
        tags = ci[:, layout.CI_EXIT_TAG]
        reasons = [_TAGS[t] or "signal" for t in tags.tolist()]
        closed = TradeArrays(
            trade_id=ci[:, layout.CI_ID],
            code=ci[:, layout.CI_CODE],
            direction=ci[:, layout.CI_DIR],
            entry_index=ci[:, layout.CI_ENTRY_K],
            exit_index=ci[:, layout.CI_EXIT_K],
            entry_ts=ci[:, layout.CI_ENTRY_TS],
            exit_ts=ci[:, layout.CI_EXIT_TS],
            entry_qty=cf[:, layout.TF_ENTRY_QTY],
            entry_value=cf[:, layout.TF_ENTRY_VALUE],
            entry_commission=cf[:, layout.TF_ENTRY_COMMISSION],
            entry_slippage=cf[:, layout.TF_ENTRY_SLIPPAGE],
            exit_qty=cf[:, layout.TF_EXIT_QTY],
            exit_value=cf[:, layout.TF_EXIT_VALUE],
            exit_commission=cf[:, layout.TF_EXIT_COMMISSION],
            exit_slippage=cf[:, layout.TF_EXIT_SLIPPAGE],
            high=cf[:, layout.TF_HIGH],
            low=cf[:, layout.TF_LOW],
        )
        cols = closed_columns(closed, ids, reasons)
        nan = float("nan")
        entry_oid = ci[:, layout.CI_ENTRY_OID]
        exit_oid = np.where(tags == layout.TAG_SIGNAL, ci[:, layout.CI_EXIT_OID], -1)
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
        pending = self.state.pending
        run = self.run
        for j in range(int(self.state.st_i[layout.S_PENDING])):
            oid = int(pending.order_id[j])
            row = int(pending.row[j])
            if oid in self.carried:
                pass
            elif row >= 0:  # decided on a row of this block: read it there
                signals = {k: float(block.cols[k][row]) for k in self.names}
                context: dict[str, float] = {}
                if self.has_context:
                    decided = int(block.ts[int(pending.k[j]) - k0])
                    context = dict(run.context.as_of(decided))
                self.carried[oid] = _Snapshot(signals, context)
            else:
                self.carried[oid] = _late_snapshot(
                    run, int(pending.code[j]), int(pending.k[j]), k0, block
                )
            pending.row[j] = -1
        self.run.clock.override_ns = -1

    def finish(self, last_ts: int) -> None:
        """Copy the final state into the portfolio; open trades go to the trade tracker."""
        account, pf = self.state.account, self.pf
        st_i, st_f = account.st_i, account.st_f
        pf.cash = float(st_f[layout.S_CASH])
        pf.total_commission = float(st_f[layout.S_COMMISSION])
        pf.total_slippage = float(st_f[layout.S_SLIPPAGE])
        for c in range(len(pf.asset_ids)):
            pf.qty[c] = float(account.qty[c])
            pf.avg_cost[c] = float(account.avg[c])
        for c in account.held[: int(st_i[layout.S_HELD])].tolist():
            pf._set_held(c, pf.asset_ids[c], pf.qty[c])
        tracker = pf.trades
        tracker._next_id = int(st_i[layout.S_NEXT_TRADE])
        open_i, open_f = self.state.trades.open_i, self.state.trades.open_f
        for c in np.flatnonzero(open_i[:, layout.TI_OPEN]).tolist():
            ti, tf = open_i[c], open_f[c].tolist()
            oid = int(ti[layout.TI_ENTRY_OID])
            values = self.snapshot_values(np.array([oid], dtype=np.int64))[0].tolist()
            signals = dict(zip(self.names, values, strict=True))
            holder = _Order(oid, None, signals, self.snap_ctx.get(oid, {}))
            trade = OpenTrade(
                int(ti[layout.TI_ID]),
                c,
                pf.asset_ids[c],
                int(ti[layout.TI_DIR]),
                int(ti[layout.TI_ENTRY_TS]),
                int(ti[layout.TI_ENTRY_K]),
                holder,
            )
            trade.qty = tf[layout.TF_QTY]
            trade.entry_qty = tf[layout.TF_ENTRY_QTY]
            trade.entry_value = tf[layout.TF_ENTRY_VALUE]
            trade.entry_commission = tf[layout.TF_ENTRY_COMMISSION]
            trade.entry_slippage = tf[layout.TF_ENTRY_SLIPPAGE]
            trade.exit_qty = tf[layout.TF_EXIT_QTY]
            trade.exit_value = tf[layout.TF_EXIT_VALUE]
            trade.exit_commission = tf[layout.TF_EXIT_COMMISSION]
            trade.exit_slippage = tf[layout.TF_EXIT_SLIPPAGE]
            trade.hi = tf[layout.TF_HIGH]
            trade.lo = tf[layout.TF_LOW]
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

    def __init__(self, strategy: RuleSet) -> None:
        self.strategy = strategy

    def salvage(self, run: Run) -> bool:
        """The kernel keeps no books an error could leave half-marked: no partial result."""
        return False

    def run(self, run: Run, progress: Progress | None) -> None:
        """Run every block in the kernel and book its fills, trades and marked books."""
        clock, broker = run.clock, run.broker
        pf = broker.portfolio
        settings, columns = _settings(run, self.strategy)
        compile_seconds = _warm_up(settings)
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
            bars = _bars(block, columns)
            books = _books(T)
            t = 0
            while True:
                t1 = time.perf_counter()
                t = signal_run_nb(
                    k0,
                    t,
                    bars,
                    settings,
                    state.account,
                    state.exits,
                    state.pending,
                    state.fills,
                    state.trades,
                    books,
                )
                kernel_seconds += time.perf_counter() - t1
                ledger.drain(block, k0)
                if t >= T:
                    break
                need = (
                    state.st_i[layout.S_PENDING]
                    + int(bars.offsets[t + 1] - bars.offsets[t])
                    + len(clock.asset_ids)
                )
                capacity = state.pending.code.shape[0]
                if need > capacity:
                    state.grow_pending(2 * capacity)
            ledger.carry(block, k0)
            run.ts_parts.append(block.ts)
            timestamp_books.append_books(*books)
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


class _Snapshot(NamedTuple):
    """The signals and context an order was decided on."""

    signals: dict[str, float]
    context: dict[str, float]


def _late_snapshot(run: Run, code: int, dec_k: int, k0: int, block: Block) -> _Snapshot:
    """Snapshot of an order placed where its asset had no row, or in an earlier block."""
    clock = run.clock
    if 0 <= dec_k - k0 < block.ts.shape[0]:
        clock.override_ns = int(block.ts[dec_k - k0])
    signals = run.signals_now(code)
    context = run.context_now()
    clock.override_ns = -1
    return _Snapshot(signals, context)
