"""Run a :class:`~validation.scenario.Scenario` through VectorBT 1.2.0 (open source).

Only the documented public API is used: ``vbt.Portfolio.from_signals`` for signal programs
and ``vbt.Portfolio.from_orders`` for target weights, explicit market orders and signal
programs sized by a percent of equity. Every run is one group with one shared cash pool
(``cash_sharing=True, group_by=True``), so ``equity`` and ``cash`` are portfolio totals.

How the neutral semantics map onto VectorBT (sources are ``vectorbt/portfolio/*.py`` of
vectorbt 1.2.0):

* Fill timing: ``same_bar_close`` fills at the signal bar's close (``price=close``);
  ``next_bar_open`` and ``next_bar_close`` shift the signals, weights or orders one bar
  forward (the ``from_signals`` docstring's own hint, base.py:2313) and fill at that bar's
  open or close. Targets are then valued at the signal bar's close (``val_price=-np.inf``
  = previous close, nb.py:1464).
* Costs: ``commission_rate`` -> ``fees``; ``slippage_rate`` -> ``slippage``; a fixed
  ``slippage_fixed`` per share becomes the per-bar fraction ``slippage_fixed / fill price``
  (VectorBT's slippage is a fraction only, base.py:1693; ``adj_price = price * (1 +
  slippage)``, nb.py:90/233).
* Exits: ``stop_loss`` -> ``sl_stop``; ``take_profit`` -> ``tp_stop``; ``trailing_stop`` ->
  ``sl_stop`` with ``sl_trail=True``; VectorBT's default ``stop_entry_price='close'`` and
  ``stop_exit_price='stoplimit'`` are kept.
* Everything runs with ``log=True`` so refused orders can be counted from the log records.

Argument kinds (2-D float arrays, 0-d floats, booleans) are the same on every call, so numba
compiles each simulation function once per process and array layout: pandas hands VectorBT a
one-column ``close`` as a C-ordered array and a wider one as F-ordered, so single- and
multi-asset scenarios compile one specialisation each.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..scenario import (
    BarSet,
    Fill,
    Orders,
    RunResult,
    Scenario,
    Signals,
    TargetWeights,
    Unsupported,
)

__all__ = ["run"]

_NB = "vectorbt/portfolio/nb.py"
_BASE = "vectorbt/portfolio/base.py"
_FILLED, _REJECTED = 0, 2  # vectorbt.portfolio.enums.OrderStatus (enums.py:460-463)
_AMOUNT = 0  # vectorbt.portfolio.enums.SizeType.Amount
_BUY = 0  # vectorbt.portfolio.enums.OrderSide.Buy


def run(scenario: Scenario) -> RunResult:
    """Run one scenario through VectorBT and report it in the common schema.

    Parameters
    ----------
    scenario
        The framework-neutral scenario (see :mod:`validation.scenario`).

    Returns
    -------
    RunResult
        Fills in execution order, equity (``pf.value()``) and cash (``pf.cash()``) per bar,
        the number of orders VectorBT rejected, and notes on how the scenario was expressed.

    Raises
    ------
    Unsupported
        When VectorBT OSS cannot express the scenario (the message says what and why).
    """
    import vectorbt as vbt  # type: ignore[import-untyped]

    bars = scenario.bars
    program = scenario.compiled
    notes: list[str] = []
    _check_costs(scenario)
    if isinstance(program, Signals):
        pf = _run_signals(vbt, scenario, bars, program, notes)
    elif isinstance(program, TargetWeights):
        pf = _run_weights(vbt, scenario, bars, program, notes)
    elif isinstance(program, Orders):
        pf = _run_orders(vbt, scenario, bars, program, notes)
    else:  # pragma: no cover - the schema has three program kinds
        raise TypeError(f"unknown program {type(program).__name__}")
    return _result(pf, bars, notes)


# --- shared pieces ------------------------------------------------------------------------
def _f2(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64)


def _b2(a: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    if a is None:
        return np.zeros(shape, dtype=np.bool_)
    arr = np.ascontiguousarray(a, dtype=np.bool_)
    if arr.shape != shape:
        raise ValueError(f"signal array shape {arr.shape}, expected {shape}")
    return arr


def _shift(a: np.ndarray, fill: Any) -> np.ndarray:
    """Move every row one bar later (row 0 gets ``fill``; the last row is dropped)."""
    out = np.empty_like(a)
    out[0] = fill
    out[1:] = a[:-1]
    return out


def _timing(scenario: Scenario, bars: BarSet) -> tuple[bool, np.ndarray]:
    """Return (shift one bar?, fill-price array) for the scenario's fill timing."""
    if scenario.fill_timing == "same_bar_close":
        return False, _f2(bars.close)
    if scenario.fill_timing == "next_bar_open":
        return True, _f2(bars.open)
    if scenario.fill_timing == "next_bar_close":
        return True, _f2(bars.close)
    raise ValueError(f"unknown fill_timing {scenario.fill_timing!r}")


def _check_costs(scenario: Scenario) -> None:
    c = scenario.costs
    if c.commission_per_share:
        raise Unsupported(
            "commission_per_share — VectorBT charges fees as a fraction of order value plus a "
            f"fixed amount per order, with no per-share term ({_NB}:149 buy_nb "
            f"'req_fees = req_cash * fees + fixed_fees', {_NB}:311 sell_nb)"
        )
    if c.commission_minimum:
        raise Unsupported(
            "commission_minimum — VectorBT has no minimum commission per order; fees are "
            f"'req_cash * fees + fixed_fees' ({_NB}:149, {_NB}:311)"
        )
    if c.slippage_fixed < 0 or c.slippage_rate < 0:
        raise Unsupported(f"negative slippage — VectorBT requires slippage >= 0 ({_NB}:409)")


def _slippage(scenario: Scenario, fill_price: np.ndarray, notes: list[str]) -> np.ndarray:
    """Per-bar slippage fraction: ``slippage_rate + slippage_fixed / fill price``."""
    c = scenario.costs
    slip = np.full(fill_price.shape, float(c.slippage_rate))
    if c.slippage_fixed:
        slip = slip + float(c.slippage_fixed) / fill_price
        notes.append(
            f"slippage_fixed {c.slippage_fixed} per share expressed as the fraction "
            "slippage_fixed / fill price per bar (VectorBT slippage is a fraction only, "
            f"{_BASE}:1693): the fill is price * (1 ± fixed/price), equal to price ± fixed "
            "up to float rounding (~1e-14 relative)"
        )
    return _f2(slip)


def _granularity(scenario: Scenario) -> float:
    return 1.0 if scenario.sizing.integer else float("nan")


def _frame(bars: BarSet, field_name: str) -> pd.DataFrame:
    return pd.DataFrame(
        _f2(getattr(bars, field_name)),
        index=pd.DatetimeIndex(bars.dates, name="datetime"),
        columns=list(bars.assets),
    )


def _freq(bars: BarSet) -> str:
    return "1min" if bars.frequency == "minute" else "1D"


def _common(scenario: Scenario, bars: BarSet) -> dict[str, Any]:
    return dict(
        fees=float(scenario.costs.commission_rate),
        size_granularity=_granularity(scenario),
        init_cash=float(scenario.initial_cash),
        cash_sharing=True,
        group_by=True,
        log=True,
        freq=_freq(bars),
    )


def _result(pf: Any, bars: BarSet, notes: list[str]) -> RunResult:
    records = np.sort(pf.order_records, order="id")
    fills = [
        Fill(
            bar=int(r["idx"]),
            asset=bars.assets[int(r["col"])],
            quantity=float(r["size"]) if int(r["side"]) == _BUY else -float(r["size"]),
            price=float(r["price"]),
            commission=float(r["fees"]),
        )
        for r in records
    ]
    logs = pf.log_records
    rejected = int(np.count_nonzero(logs["res_status"] == _REJECTED))
    req = np.abs(logs["req_size"])
    smaller = (
        (logs["res_status"] == _FILLED)
        & (logs["req_size_type"] == _AMOUNT)
        & np.isfinite(req)
        & (logs["res_size"] < req * (1 - 1e-12))
    )
    if smaller.any():
        notes.append(
            f"{int(smaller.sum())} order(s) filled below the requested size (VectorBT resizes "
            f"a buy to the cash available, allow_partial=True, {_NB}:158-174; or "
            "size_granularity floored it)"
        )
    return RunResult(
        framework="vectorbt",
        fills=fills,
        equity=np.asarray(pf.value(), dtype=float).reshape(-1),
        cash=np.asarray(pf.cash(), dtype=float).reshape(-1),
        rejected=rejected,
        notes=notes,
    )


def _no_exits(scenario: Scenario, what: str) -> None:
    if scenario.exits.any:
        raise Unsupported(
            f"exits with {what} — VectorBT's stop exits (sl_stop/tp_stop/sl_trail) exist only "
            f"in Portfolio.from_signals; Portfolio.from_orders has no stop arguments "
            f"({_BASE}:1624 signature)"
        )


# --- signals ------------------------------------------------------------------------------
def _signal_arrays(
    scenario: Scenario, bars: BarSet, program: Signals, shift: bool, notes: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    shape = (bars.n_bars, len(bars.assets))
    le, lx = _b2(program.entries, shape), _b2(program.exits, shape)
    se, sx = _b2(program.short_entries, shape), _b2(program.short_exits, shape)
    if scenario.direction == "long_only":
        if se.any() or sx.any():
            notes.append("long_only scenario: short signals ignored")
        se, sx = np.zeros(shape, np.bool_), np.zeros(shape, np.bool_)
    if (le & lx).any() or (se & sx).any():
        raise Unsupported(
            "an entry and an exit of the same direction on the same bar — the neutral "
            "semantics close and re-open (two orders) or open from flat, but VectorBT places "
            "at most one order per bar and column and by default ignores both signals "
            f"(upon_long_conflict='ignore', {_NB}:1634 resolve_signal_conflict_nb)"
        )
    if (le & se).any():
        raise Unsupported(
            "a long and a short entry on the same bar — the neutral semantics do not order "
            "them and VectorBT ignores both by default (upon_dir_conflict='ignore', "
            f"{_NB}:1685 resolve_dir_conflict_nb)"
        )
    if (lx & se).any() or (sx & le).any():
        notes.append(
            "an exit and an opposite entry on the same bar: VectorBT reverses with ONE order "
            f"(signals_to_size_nb, {_NB}:1758), not a close and a separate open"
        )
    if shift:
        if any(a[-1].any() for a in (le, lx, se, sx)):
            notes.append("signals on the last bar have no next bar to fill on (dropped)")
        le, lx, se, sx = (_shift(a, False) for a in (le, lx, se, sx))
    return le, lx, se, sx


def _stop_args(scenario: Scenario, notes: list[str]) -> tuple[float, float, bool]:
    ex = scenario.exits
    if ex.stop_loss is not None and ex.trailing_stop is not None:
        raise Unsupported(
            "stop_loss together with trailing_stop — VectorBT OSS has one stop-loss slot per "
            f"position (sl_stop, made trailing by sl_trail) ({_BASE}:2229-2235)"
        )
    sl = ex.trailing_stop if ex.trailing_stop is not None else ex.stop_loss
    trail = ex.trailing_stop is not None
    tp = ex.take_profit
    if ex.any:
        notes.append(
            "stops: VectorBT default stop_entry_price='close' (level from the entry BAR's "
            "close, not the fill price), stop_exit_price='stoplimit' (fill at the level, or "
            f"the open on a gap, with no slippage; {_NB}:1616-1631), checked from the bar "
            "after entry, before that bar's signals; the trailing reference starts at the "
            f"entry-bar close and rises to each later bar's high after the check ({_NB}:2120)"
        )
    return (
        float("nan") if sl is None else float(sl),
        float("nan") if tp is None else float(tp),
        bool(trail),
    )


def _run_signals(
    vbt: Any, scenario: Scenario, bars: BarSet, program: Signals, notes: list[str]
) -> Any:
    shift, fill_price = _timing(scenario, bars)
    le, lx, se, sx = _signal_arrays(scenario, bars, program, shift, notes)
    sizing = scenario.sizing
    slippage = _slippage(scenario, fill_price, notes)
    shape = le.shape
    if sizing.kind == "percent_equity":
        if not scenario.exits.any:
            target = _percent_targets(scenario, (le, lx, se, sx), notes)
            return _from_orders(
                vbt, scenario, bars, target, "targetpercent", fill_price, slippage, "default"
            )
        size, size_type = _percent_of_cash(scenario, bars, shift, fill_price, slippage, notes)
    elif sizing.kind == "fixed":
        size, size_type = np.full(shape, float(sizing.value)), "amount"
    elif sizing.kind == "all_in":
        size, size_type = np.full(shape, np.inf), "amount"
        notes.append(
            "all_in: size=np.inf (all cash, fee-aware: (cash - fixed_fees) / (1 + fees), "
            f"{_NB}:162); a short from flat uses 100% of free cash ({_NB}:457, {_NB}:254)"
        )
    else:
        raise ValueError(f"unknown sizing kind {sizing.kind!r}")
    sl_stop, tp_stop, sl_trail = _stop_args(scenario, notes)
    return vbt.Portfolio.from_signals(
        _frame(bars, "close"),
        entries=le,
        exits=lx,
        short_entries=se,
        short_exits=sx,
        size=_f2(size),
        size_type=size_type,
        price=fill_price,
        slippage=slippage,
        open=_f2(bars.open),
        high=_f2(bars.high),
        low=_f2(bars.low),
        sl_stop=sl_stop,
        tp_stop=tp_stop,
        sl_trail=sl_trail,
        **_common(scenario, bars),
    )


def _percent_of_cash(
    scenario: Scenario,
    bars: BarSet,
    shift: bool,
    fill_price: np.ndarray,
    slippage: np.ndarray,
    notes: list[str],
) -> tuple[np.ndarray, str]:
    """Percent of equity as VectorBT's ``SizeType.Percent`` (of cash) for stop scenarios.

    Exact only where equity equals cash at every entry: one asset, long only (entries
    happen while flat). ``Percent`` with ``size=np.inf`` spends ``p * cash`` *including*
    fees at the slipped fill price (nb.py:117, nb.py:162), so ``p`` is scaled per bar by
    ``(1 + fees) * (1 + slippage) * fill price / signal close`` to buy
    ``value * cash / signal close`` shares.
    """
    if len(bars.assets) != 1 or scenario.direction != "long_only":
        raise Unsupported(
            "percent_equity sizing with stop exits on several assets or with shorts — "
            "from_signals sizes by SizeType.Percent = a percent of available cash, not of "
            "equity (vectorbt/portfolio/enums.py:409, vectorbt #713; no reversal with "
            f"Percent, {_NB}:1789), and from_orders, which has target percent of value, has "
            f"no stops ({_BASE}:1624)"
        )
    close = _f2(bars.close)
    signal_close = _shift(close, np.nan) if shift else close
    pct = float(scenario.sizing.value) * (1.0 + float(scenario.costs.commission_rate))
    size = pct * (1.0 + slippage) * fill_price / signal_close
    size[np.isnan(size)] = pct
    notes.append(
        "percent_equity with stops: single asset, long only, so equity = cash at each entry; "
        "from_signals(size_type='percent') with size = value * (1 + fees) * (1 + slippage) "
        "* fill price / signal-bar close (Percent spends that share of cash including fees "
        "at the slipped price); quantity = value * cash / signal close up to float rounding"
    )
    return size, "percent"


def _percent_targets(
    scenario: Scenario,
    signals: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    notes: list[str],
) -> np.ndarray:
    """Percent-of-equity entries as ``targetpercent`` orders at the signal transitions.

    ``from_signals`` only knows ``SizeType.Percent`` = percent of available *cash*
    (enums.py:409, vectorbt #713), so the position path implied by the signals (VectorBT's
    own from_signals rules: exit closes, entry from flat opens, opposite entry reverses,
    repeated entry ignored) is computed here and each transition becomes a
    ``from_orders(size_type='targetpercent')`` order: target ``±value`` on entries, 0 on
    exits. This is only exact without stop exits, which change the path at run time.
    """
    le, lx, se, sx = signals
    pct = float(scenario.sizing.value)
    target = np.full(le.shape, np.nan)
    for j in range(le.shape[1]):
        pos = 0
        for t in range(le.shape[0]):
            if pos > 0:
                if se[t, j]:
                    target[t, j], pos = -pct, -1
                elif lx[t, j]:
                    target[t, j], pos = 0.0, 0
            elif pos < 0:
                if le[t, j]:
                    target[t, j], pos = pct, 1
                elif sx[t, j]:
                    target[t, j], pos = 0.0, 0
            elif le[t, j]:
                target[t, j], pos = pct, 1
            elif se[t, j]:
                target[t, j], pos = -pct, -1
    notes.append(
        "percent_equity: expressed as from_orders(size_type='targetpercent') at the signal "
        "transitions (target ±value on entries, 0 on exits); quantity = value * equity at the "
        "signal bar's close / that close (val_price = order price for same_bar_close, "
        "previous close otherwise); the path assumes every entry fills"
    )
    return target


# --- target weights and explicit orders ---------------------------------------------------
def _from_orders(
    vbt: Any,
    scenario: Scenario,
    bars: BarSet,
    size: np.ndarray,
    size_type: str,
    fill_price: np.ndarray,
    slippage: np.ndarray,
    call_seq: str | np.ndarray,
) -> Any:
    val_price = np.inf if scenario.fill_timing == "same_bar_close" else -np.inf
    return vbt.Portfolio.from_orders(
        _frame(bars, "close"),
        size=_f2(size),
        size_type=size_type,
        price=fill_price,
        slippage=slippage,
        val_price=float(val_price),
        call_seq=call_seq,
        **_common(scenario, bars),
    )


def _run_weights(
    vbt: Any, scenario: Scenario, bars: BarSet, program: TargetWeights, notes: list[str]
) -> Any:
    _no_exits(scenario, "target weights")
    shift, fill_price = _timing(scenario, bars)
    w = _f2(program.weights)
    if w.shape != bars.close.shape:
        raise ValueError(f"weights shape {w.shape}, expected {bars.close.shape}")
    rows = ~np.isnan(w).all(axis=1)
    if (np.isnan(w[rows])).any():
        notes.append("NaN weights inside a rebalance row: no order for those assets")
    if shift:
        w = _shift(w, np.nan)
    notes.append(
        "target weights: from_orders(size_type='targetpercent', call_seq='auto' = sells "
        "first); group value taken once per bar before its orders (update_value=False)"
    )
    slippage = _slippage(scenario, fill_price, notes)
    return _from_orders(vbt, scenario, bars, w, "targetpercent", fill_price, slippage, "auto")


def _run_orders(
    vbt: Any, scenario: Scenario, bars: BarSet, program: Orders, notes: list[str]
) -> Any:
    _no_exits(scenario, "explicit orders")
    kinds = sorted({o.kind for o in program.orders if o.kind != "market"})
    if kinds:
        raise Unsupported(
            f"{'/'.join(kinds)} orders — VectorBT OSS has market orders only; the maintainer: "
            "'Limit orders are only supported in pro' (vectorbt issue #659); from_orders "
            f"takes a size and a price per bar and column ({_BASE}:1624)"
        )
    shift, fill_price = _timing(scenario, bars)
    n, m = bars.close.shape
    size = np.full((n, m), np.nan)
    seq: dict[int, list[int]] = {}
    dropped = 0
    for o in program.orders:
        t = o.bar + 1 if shift else o.bar
        if t >= n:
            dropped += 1
            continue
        j = bars.column(o.asset)
        if not np.isnan(size[t, j]):
            raise Unsupported(
                "two orders for one asset filling on the same bar — VectorBT takes one order "
                f"per bar and column (from_orders size array, {_BASE}:1667)"
            )
        size[t, j] = float(o.quantity)
        seq.setdefault(t, []).append(j)
    if dropped:
        notes.append(f"{dropped} order(s) placed on the last bar have no next bar to fill on")
    call_seq = np.tile(np.arange(m, dtype=np.int64), (n, 1))
    for t, cols in seq.items():
        call_seq[t] = cols + [j for j in range(m) if j not in cols]
    slippage = _slippage(scenario, fill_price, notes)
    return _from_orders(vbt, scenario, bars, size, "amount", fill_price, slippage, call_seq)
