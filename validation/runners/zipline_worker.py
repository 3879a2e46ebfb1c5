"""Run one serialised scenario through Zipline-reloaded (runs inside the Zipline venv).

Usage: ``python zipline_worker.py IN.json OUT.json``. ``IN.json`` describes the scenario
(see ``validation/runners/zipline.py``, which writes it) and names an ``.npz`` file beside
it with the arrays (bars and signals or weights). This script imports only the standard
library, NumPy, pandas and Zipline, so it runs in Zipline's own virtual environment.

It registers a bundle holding the scenario's daily bars, ingests it into a temporary
``ZIPLINE_ROOT`` (calendar XNYS), runs ``zipline.run_algorithm`` with an algorithm that
implements the neutral semantics of ``validation/scenario.py`` through Zipline's public API
(``order``, ``order_target_percent``, ``LimitOrder``/``StopOrder``, ``set_commission``,
``set_slippage``, ``cancel_order``, ``get_order``) and writes the fills, the per-session
``portfolio_value`` / ``ending_cash`` and notes to ``OUT.json``. A scenario the worker finds
it cannot express is reported as ``{"unsupported": "..."}``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

# This file sits beside ``zipline.py`` (the host-side runner); drop its folder from the
# import path so that ``import zipline`` finds the Zipline package, not that module.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != _HERE]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

BUNDLE = "ml4t-validation"
CALENDAR = "XNYS-ML4T"
EPS = 1e-9  # tolerance when flooring quantities to whole shares


class UnsupportedScenario(Exception):
    """Something only the worker can detect that Zipline cannot express."""


# --- the calendar and the bundle ------------------------------------------------------------
def register_calendar(dates: pd.DatetimeIndex) -> Any:
    """Register the XNYS calendar under ``CALENDAR`` with bounds covering ``dates``.

    exchange_calendars builds calendars from 20 years ago to one year ahead by default
    (``GLOBAL_DEFAULT_START`` / ``GLOBAL_DEFAULT_END``) and ``bundles.ingest`` asks for the
    bundle's calendar by name without bounds, so synthetic sessions past next year need an
    XNYS calendar whose default bounds (``default_start`` / ``default_end``, the documented
    override points) cover the data. Sessions and holidays are XNYS's own rules.
    """
    from exchange_calendars import register_calendar_type
    from exchange_calendars.exchange_calendar_xnys import XNYSExchangeCalendar
    from zipline.utils.calendar_utils import get_calendar

    first = min(pd.Timestamp("1990-01-01"), dates[0] - pd.Timedelta(days=30))
    last = dates[-1] + pd.Timedelta(days=30)

    class ScenarioXNYS(XNYSExchangeCalendar):  # type: ignore[misc]
        # bar readers look their calendar up again by this name
        name = CALENDAR  # type: ignore[assignment]

        @classmethod
        def default_start(cls) -> pd.Timestamp:
            return first

        @classmethod
        def default_end(cls) -> pd.Timestamp:
            return max(last, XNYSExchangeCalendar.default_end())

    register_calendar_type(CALENDAR, ScenarioXNYS, force=True)
    return get_calendar(CALENDAR)


def ingest_bundle(spec: dict[str, Any], arrays: Any, root: Path) -> None:
    """Register and ingest a bundle with the scenario's daily bars into ``root``."""
    from zipline.data import bundles

    dates = pd.DatetimeIndex(pd.to_datetime(spec["dates"]))
    calendar = register_calendar(dates)
    sessions = calendar.sessions_in_range(dates[0], dates[-1])
    if len(sessions) != len(dates) or not (sessions.tz_localize(None) == dates).all():
        missing = sessions.tz_localize(None).difference(dates)
        extra = dates.difference(sessions.tz_localize(None))
        raise UnsupportedScenario(
            "bar dates are not the XNYS sessions between the first and last bar — Zipline's "
            "daily bar writer needs one bar per session of the calendar "
            f"(missing sessions: {list(missing[:5].strftime('%Y-%m-%d'))}, "
            f"non-sessions: {list(extra[:5].strftime('%Y-%m-%d'))}; "
            "source: zipline/data/bcolz_daily_bars.py BcolzDailyBarWriter.write)"
        )
    assets = spec["assets"]

    def ingest(
        environ: Any,
        asset_db_writer: Any,
        minute_bar_writer: Any,
        daily_bar_writer: Any,
        adjustment_writer: Any,
        calendar: Any,
        start_session: Any,
        end_session: Any,
        cache: Any,
        show_progress: bool,
        output_dir: str,
    ) -> None:
        def frames() -> Any:
            for sid in range(len(assets)):
                df = pd.DataFrame(
                    {
                        name: np.asarray(arrays[name][:, sid], dtype=float)
                        for name in ("open", "high", "low", "close", "volume")
                    },
                    index=dates,
                )
                yield sid, df

        daily_bar_writer.write(frames(), show_progress=False)
        equities = pd.DataFrame(
            {
                "symbol": assets,
                "asset_name": assets,
                "start_date": [dates[0]] * len(assets),
                "end_date": [dates[-1]] * len(assets),
                "first_traded": [dates[0]] * len(assets),
                "auto_close_date": [dates[-1] + pd.Timedelta(days=1)] * len(assets),
                "exchange": ["NYSE"] * len(assets),
            },
            index=pd.RangeIndex(len(assets), name="sid"),
        )
        exchanges = pd.DataFrame(
            {"exchange": ["NYSE"], "canonical_name": ["NYSE"], "country_code": ["US"]}
        )
        asset_db_writer.write(equities=equities, exchanges=exchanges)
        adjustment_writer.write()

    bundles.register(
        BUNDLE,
        ingest,
        calendar_name=CALENDAR,
        start_session=dates[0],
        end_session=dates[-1],
    )
    bundles.ingest(BUNDLE, environ=_environ(root), show_progress=False)


def _environ(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["ZIPLINE_ROOT"] = str(root)
    return env


# --- the algorithm ---------------------------------------------------------------------------
def _models(spec: dict[str, Any]) -> tuple[Any, Any]:
    """The commission and slippage models the scenario's costs map to."""
    from zipline.finance import commission, slippage

    c = spec["costs"]
    if c["commission_rate"]:
        comm = commission.PerDollar(cost=c["commission_rate"])
    elif c["commission_per_share"] or c["commission_minimum"]:
        comm = commission.PerShare(
            cost=c["commission_per_share"], min_trade_cost=c["commission_minimum"]
        )
    else:
        comm = commission.NoCommission()
    if c["slippage_rate"]:
        slip = slippage.FixedBasisPointsSlippage(
            basis_points=c["slippage_rate"] * 1e4, volume_limit=spec["volume_limit"]
        )
    elif c["slippage_fixed"]:
        slip = slippage.FixedSlippage(spread=2.0 * c["slippage_fixed"])
    else:
        slip = slippage.NoSlippage()
    return comm, slip


def _floor(q: float) -> float:
    return float(math.floor(q + EPS))


def make_algorithm(spec: dict[str, Any], arrays: Any) -> tuple[Any, Any, dict[str, Any]]:
    """Build ``initialize`` and ``handle_data`` for the scenario; return them and a state."""
    from zipline.api import (
        cancel_order,
        get_datetime,
        get_order,
        order,
        order_target_percent,
        set_commission,
        set_slippage,
        symbol,
    )
    from zipline.finance.execution import LimitOrder, StopOrder
    from zipline.finance.order import ORDER_STATUS

    live = (ORDER_STATUS.OPEN, ORDER_STATUS.HELD)

    dates = pd.DatetimeIndex(pd.to_datetime(spec["dates"]))
    index_of = {d: i for i, d in enumerate(dates)}
    names = spec["assets"]
    program = spec["program"]
    sizing = spec["sizing"]
    exits_cfg = spec["exits"]
    long_short = spec["direction"] == "long_short"
    state: dict[str, Any] = {"first_handle_data_bar": None, "notes": []}

    orders_by_bar: dict[int, list[dict[str, Any]]] = {}
    for o in program.get("orders", []):
        orders_by_bar.setdefault(int(o["bar"]), []).append(o)

    def initialize(context: Any) -> None:
        comm, slip = _models(spec)
        set_commission(us_equities=comm)
        set_slippage(us_equities=slip)
        context.assets = [symbol(n) for n in names]
        context.awaiting = {}  # asset index -> id of the order opening a position
        context.exit_ids = {}  # asset index -> ids of its stop-loss / take-profit orders

    def bar_index() -> int:
        day = get_datetime().tz_convert(None).normalize()
        return index_of[day]

    # -- position exits (stop-loss / take-profit as stop / limit orders) --------------------
    def cancel_exits(context: Any, j: int) -> None:
        for oid in context.exit_ids.pop(j, []):
            o = get_order(oid)
            if o is not None and o.status in live:
                cancel_order(oid)

    def maintain_exits(context: Any) -> None:
        if not (exits_cfg["stop_loss"] or exits_cfg["take_profit"]):
            return
        for j, asset in enumerate(context.assets):
            pos = context.portfolio.positions[asset].amount
            if j in context.exit_ids and pos == 0:
                cancel_exits(context, j)  # one of the pair filled: drop the other
            oid = context.awaiting.get(j)
            if oid is None:
                continue
            o = get_order(oid)
            if o.status in live:
                continue
            del context.awaiting[j]
            if pos == 0 or o.filled == 0:
                continue
            # cost_basis = average opening price + the order's commission spread over the
            # position (ledger/position.py adjust_commission_cost_basis), so remove it.
            p = context.portfolio.positions[asset]
            entry = p.cost_basis - o.commission / p.amount
            ids = []
            side = 1.0 if pos > 0 else -1.0
            if exits_cfg["stop_loss"]:
                level = entry * (1.0 - side * exits_cfg["stop_loss"])
                ids.append(order(asset, -pos, style=StopOrder(level)))
            if exits_cfg["take_profit"]:
                level = entry * (1.0 + side * exits_cfg["take_profit"])
                ids.append(order(asset, -pos, style=LimitOrder(level)))
            context.exit_ids[j] = [i for i in ids if i is not None]

    # -- programs ---------------------------------------------------------------------------
    def entry_size(context: Any, data: Any, asset: Any, pos: float, budget: list[float]) -> float:
        price = float(data.current(asset, "price"))
        kind, value = sizing["kind"], float(sizing["value"])
        if kind == "fixed":
            qty = value
        elif kind == "percent_equity":
            qty = value * context.portfolio.portfolio_value / price
        else:  # all_in: the cash left after closing any opposite position
            qty = max(budget[0] + pos * price, 0.0) / price
        if sizing["integer"]:
            qty = _floor(qty)
        if kind == "all_in":
            budget[0] -= qty * price
        return qty

    def run_signals(context: Any, data: Any, t: int) -> None:
        budget = [float(context.portfolio.cash)]  # all_in: shared cash within the bar
        for j, asset in enumerate(context.assets):
            pos = float(context.portfolio.positions[asset].amount)
            target = pos
            if arrays["exits"][t, j] and target > 0:
                target = 0.0
            if long_short and arrays["short_exits"][t, j] and target < 0:
                target = 0.0
            if arrays["entries"][t, j] and target <= 0:
                target = entry_size(context, data, asset, target, budget)
            elif long_short and arrays["short_entries"][t, j] and target >= 0:
                target = -entry_size(context, data, asset, target, budget)
            delta = target - pos
            if delta == 0:
                continue
            cancel_exits(context, j)
            context.awaiting.pop(j, None)
            oid = order(asset, delta)
            if oid is not None and target != 0:
                context.awaiting[j] = oid

    def run_weights(context: Any, data: Any, t: int) -> None:
        row = arrays["weights"][t]
        if np.all(np.isnan(row)):
            return
        equity = context.portfolio.portfolio_value
        plan = []
        for j, asset in enumerate(context.assets):
            if np.isnan(row[j]):
                continue
            pos = context.portfolio.positions[asset].amount
            price = float(data.current(asset, "price"))
            plan.append((row[j] * equity / price - pos, j, asset))
        for _delta, j, asset in sorted(plan, key=lambda p: (p[0] >= 0, p[1])):  # sells first
            order_target_percent(asset, float(row[j]))

    def run_orders(context: Any, t: int) -> None:
        for o in orders_by_bar.get(t, []):
            asset = context.assets[names.index(o["asset"])]
            qty = float(o["quantity"])
            if o["kind"] == "limit":
                order(asset, qty, style=LimitOrder(float(o["price"])))
            elif o["kind"] == "stop":
                order(asset, qty, style=StopOrder(float(o["price"])))
            else:
                order(asset, qty)

    def handle_data(context: Any, data: Any) -> None:
        t = bar_index()
        if state["first_handle_data_bar"] is None:
            state["first_handle_data_bar"] = t
        maintain_exits(context)
        if program["kind"] == "signals":
            run_signals(context, data, t)
        elif program["kind"] == "weights":
            run_weights(context, data, t)
        else:
            run_orders(context, t)

    return initialize, handle_data, state


# --- results ---------------------------------------------------------------------------------
def collect(perf: pd.DataFrame, spec: dict[str, Any]) -> dict[str, Any]:
    """Fills (with per-fill commission), equity and cash per bar from the perf frame."""
    dates = pd.DatetimeIndex(pd.to_datetime(spec["dates"]))
    index_of = {d: i for i, d in enumerate(dates)}
    days = pd.DatetimeIndex(perf.index)
    if days.tz is not None:
        days = days.tz_convert(None)
    days = days.normalize()
    bars = [index_of[d] for d in days]
    fills: list[dict[str, Any]] = []
    paid: dict[str, float] = {}  # order id -> commission already attributed
    rejected = 0
    seen_rejected: set[str] = set()
    for t, txns, orders in zip(bars, perf["transactions"], perf["orders"], strict=True):
        # Each order dict is a snapshot at the session's end; its ``commission`` is the
        # order's cumulative commission (blotter.get_transactions adds each fill's share).
        # In daily mode an order fills at most once per session, so the increase since the
        # previous snapshot is this session's fill's commission.
        by_id = {o["id"]: o for o in orders}
        for o in orders:
            if int(o["status"]) == 3 and o["id"] not in seen_rejected:  # ORDER_STATUS.REJECTED
                seen_rejected.add(o["id"])
                rejected += 1
        for txn in txns:
            oid = txn["order_id"]
            total = float(by_id[oid]["commission"]) if oid in by_id else paid.get(oid, 0.0)
            fee = total - paid.get(oid, 0.0)
            paid[oid] = total
            fills.append(
                {
                    "bar": t,
                    "asset": str(txn["sid"].symbol),
                    "quantity": float(txn["amount"]),
                    "price": float(txn["price"]),
                    "commission": fee,
                    "order_id": oid,
                }
            )
    equity = [math.nan] * len(dates)
    cash = [math.nan] * len(dates)
    for t, v, c in zip(bars, perf["portfolio_value"], perf["ending_cash"], strict=True):
        equity[t] = float(v)
        cash[t] = float(c)
    return {"fills": fills, "equity": equity, "cash": cash, "rejected": rejected}


def main(argv: list[str]) -> int:
    """Entry point: ``zipline_worker.py IN.json OUT.json``."""
    if len(argv) != 3:
        print("usage: zipline_worker.py IN.json OUT.json", file=sys.stderr)
        return 2
    src, dst = Path(argv[1]), Path(argv[2])
    spec = json.loads(src.read_text())
    with np.load(src.parent / spec["arrays"], allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    warnings.filterwarnings("ignore")
    out: dict[str, Any]
    try:
        import zipline
        from zipline import run_algorithm
        from zipline.utils.calendar_utils import get_calendar

        with tempfile.TemporaryDirectory(prefix="zipline-root-") as tmp:
            root = Path(tmp)
            t0 = time.perf_counter()
            ingest_bundle(spec, arrays, root)
            t1 = time.perf_counter()
            initialize, handle_data, state = make_algorithm(spec, arrays)
            dates = pd.DatetimeIndex(pd.to_datetime(spec["dates"]))
            perf = run_algorithm(
                start=dates[0],
                end=dates[-1],
                initialize=initialize,
                handle_data=handle_data,
                capital_base=float(spec["initial_cash"]),
                data_frequency="daily",
                bundle=BUNDLE,
                trading_calendar=get_calendar(CALENDAR),
                benchmark_returns=pd.Series(0.0, index=dates.tz_localize("UTC")),
                environ=_environ(root),
            )
            t2 = time.perf_counter()
        out = collect(perf, spec)
        out["notes"] = state["notes"]
        out["first_handle_data_bar"] = state["first_handle_data_bar"]
        out["timing"] = {"ingest_s": t1 - t0, "run_s": t2 - t1}
        out["versions"] = {
            "zipline": zipline.__version__,
            "pandas": pd.__version__,
            "numpy": np.__version__,
        }
    except UnsupportedScenario as exc:
        out = {"unsupported": str(exc)}
    dst.write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
