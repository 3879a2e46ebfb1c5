"""The result of a backtest: frames, metrics and metadata, and how they are written."""

from __future__ import annotations

import json
import math
import platform
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args, get_type_hints

import numpy as np
import polars as pl

from .exit_trades import EXIT_TRADE_SCHEMA, exit_trade_columns
from .metrics import compute_metrics
from .orders import OrderRecord
from .run_warnings import emit_run_warnings, order_warnings, unfilled_counts

if TYPE_CHECKING:
    from .clock import Clock
    from .ledger import LedgerRow
    from .portfolio import Portfolio
    from .trades import ClosedTrades

__all__ = ["BacktestResult", "RunRecord", "build_result"]


@dataclass(frozen=True)
class RunRecord:
    """What a run hands to :func:`build_result` besides its books.

    ``orders`` are the broker's order records, ``provenance`` the plugins to record in
    the metadata, ``price_of`` the latest close of an asset code (for open positions).
    """

    name: str
    strategy: str
    clock: Clock
    portfolio: Portfolio
    context_names: tuple[str, ...]
    price_of: Callable[[int], float]
    orders: Sequence[OrderRecord]
    broker_settings: dict[str, Any]
    broker_metrics: dict[str, Any]
    feeds: list[str]
    calendar: str | None
    outside_session_bars: int
    run_info: dict[str, Any]
    provenance: list[dict[str, Any]]


class BacktestResult:
    """Everything a run produced.

    Attributes
    ----------
    trades_df : polars.DataFrame
        One row per round trip, flat to flat (see ``docs/results.md``).
    exit_trades_df : polars.DataFrame
        One row per fill that reduces a position (or per reducing part of a fill that
        flips it), against the position's average cost; positions still open at the end
        as one open row each (see ``docs/results.md``).
    fills_df : polars.DataFrame
        One row per fill.
    orders_df : polars.DataFrame
        Every order event: submitted, filled, rejected, cancelled, expired, with reasons.
    portfolio_df : polars.DataFrame
        One row per timestamp: equity, cash, accrued dividends, positions value,
        leverage, returns.
    account_events_df : polars.DataFrame
        Account events that are not fills: splits (with the cash paid for a fractional
        remainder), dividends earned at the ex-date and paid at the pay date, borrow fees.
    metrics : dict
        Performance metrics (see :mod:`ml4t.backtest.core.metrics`).
    metadata : dict
        Run name, strategy, broker settings, feeds, versions, ``complete``, ``warnings``.
    warnings : list of str
        Problems the run met without failing: orders rejected, orders cancelled by the
        broker that the strategy did not cancel (how many and the main reasons). Empty for
        a clean run; ``summary()`` prints them.
    elapsed_time : float
        Wall-clock seconds of the run.
    complete : bool
        False for the partial result attached to a :class:`StrategyError`.
    """

    def __init__(
        self,
        trades_df: pl.DataFrame,
        fills_df: pl.DataFrame,
        orders_df: pl.DataFrame,
        portfolio_df: pl.DataFrame,
        metrics: dict[str, Any],
        metadata: dict[str, Any],
        elapsed_time: float,
        complete: bool,
        account_events_df: pl.DataFrame | None = None,
        exit_trades_df: pl.DataFrame | None = None,
        warnings: list[str] | None = None,
    ) -> None:
        self.account_events_df = (
            account_events_df if account_events_df is not None else _account_frame([], None)
        )
        self.exit_trades_df = (
            exit_trades_df if exit_trades_df is not None else _exit_trades_frame(None, None)
        )
        self.warnings = list(warnings or [])
        self.trades_df = trades_df
        self.fills_df = fills_df
        self.orders_df = orders_df
        self.portfolio_df = portfolio_df
        self.metrics = metrics
        self.metadata = metadata
        self.elapsed_time = elapsed_time
        self.complete = complete

    @property
    def final_equity(self) -> float:
        """Equity at the last timestamp."""
        return float(self.metrics["final_equity"])

    @property
    def total_return(self) -> float:
        """``final_equity / initial_cash - 1``."""
        return float(self.metrics["total_return"])

    def summary(self) -> str:
        """Return a printable table of the main metrics."""
        rows = [
            ("complete", str(self.complete)),
            ("bars (timestamps)", f"{self.portfolio_df.height:,}"),
        ]
        fmt = {
            "initial_cash": "{:,.2f}",
            "final_equity": "{:,.2f}",
            "total_return": "{:.2%}",
            "cagr": "{:.2%}",
            "volatility": "{:.2%}",
            "sharpe_ratio": "{:.3f}",
            "sortino_ratio": "{:.3f}",
            "max_drawdown": "{:.2%}",
            "calmar_ratio": "{:.3f}",
            "num_trades": "{:d}",
            "win_rate": "{:.2%}",
            "profit_factor": "{:.3f}",
            "avg_trade_pnl": "{:,.2f}",
            "avg_holding_period": "{:.1f} bars",
            "num_exit_trades": "{:d}",
            "exit_win_rate": "{:.2%}",
            "exit_profit_factor": "{:.3f}",
            "avg_exit_trade_pnl": "{:,.2f}",
            "exposure": "{:.2%}",
            "turnover": "{:.2f}",
            "total_commission": "{:,.2f}",
            "total_slippage": "{:,.2f}",
            "total_impact": "{:,.2f}",
            "num_rejected_orders": "{:d}",
            "num_broker_cancelled_orders": "{:d}",
        }
        for key, f in fmt.items():
            value = self.metrics.get(key)
            if value is None:
                continue
            text = "nan" if isinstance(value, float) and math.isnan(value) else f.format(value)
            rows.append((key, text))
        rows.append(("elapsed_time", f"{self.elapsed_time:.3f} s"))
        width = max(len(k) for k, _ in rows)
        lines = [f"{k:<{width}}  {v:>18}" for k, v in rows]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def to_parquet(self, directory: str | Path) -> Path:
        """Write every frame as Parquet plus ``metrics.json`` and ``metadata.json``.

        Returns the directory. The metadata is also stored in each Parquet file's
        key-value metadata under ``ml4t.backtest``.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        meta = json.dumps(self.metadata, default=str)
        for name in ("trades", "exit_trades", "fills", "orders", "portfolio", "account_events"):
            frame: pl.DataFrame = getattr(self, f"{name}_df")
            frame.write_parquet(out / f"{name}.parquet", metadata={"ml4t.backtest": meta})
        (out / "metrics.json").write_text(json.dumps(_jsonable(self.metrics), indent=2))
        (out / "metadata.json").write_text(json.dumps(self.metadata, indent=2, default=str))
        return out

    def __repr__(self) -> str:
        return (
            f"BacktestResult(final_equity={self.final_equity:,.2f}, "
            f"total_return={self.total_return:.4%}, trades={self.trades_df.height}, "
            f"complete={self.complete})"
        )


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, float) and not math.isfinite(v):
            out[k] = None if math.isnan(v) else ("inf" if v > 0 else "-inf")
        else:
            out[k] = v
    return out


def _dt(values: Any, timezone: str | None) -> pl.Series:
    s = pl.Series(values, dtype=pl.Int64).cast(pl.Datetime("ns"))
    if timezone is not None:
        s = s.dt.replace_time_zone("UTC").dt.convert_time_zone(timezone)
    return s


def build_result(
    run: RunRecord,
    ts_parts: list[np.ndarray],
    books: dict[str, np.ndarray],
    elapsed: float,
    complete: bool,
    stacklevel: int = 2,
) -> BacktestResult:
    """Assemble the result frames from the fill ledger and the marked books.

    ``run.run_info["unfilled_orders"]`` are ``(event, reason, count)`` of orders that
    ended without an ``orders_df`` row (event ``"rejected"`` or ``"cancelled"``; the
    compiled path, which does not log orders, counts them by reason). They are counted in
    the metrics and the warnings. A complete run with warnings emits one
    :class:`RejectedOrdersWarning` at ``stacklevel`` (counted from the caller).
    """
    clock = run.clock
    pf = run.portfolio
    tz = clock.timezone
    cash, net, gross, npos = books["cash"], books["net"], books["gross"], books["npos"]
    accrued = books["accrued"]
    n = cash.shape[0]
    ts = np.concatenate(ts_parts)[:n] if ts_parts else np.empty(0, dtype=np.int64)
    equity = cash + accrued + net
    initial = pf.initial_cash
    prev = np.concatenate(([initial], equity[:-1])) if n else np.empty(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        portfolio_df = pl.DataFrame(
            {
                "timestamp": _dt(ts, tz),
                "equity": equity,
                "cash": cash,
                "accrued_dividends": accrued,
                "positions_value": net,
                "num_positions": npos,
                "gross_leverage": gross / equity,
                "net_leverage": books["signed"] / equity,
                "return": equity / prev - 1.0,
                "cumulative_return": equity / initial - 1.0,
            }
        )
    ledger = pf.fills
    is_fill = np.asarray([k == "fill" for k in ledger.column("kind")], dtype=bool)
    fill_rows = np.flatnonzero(is_fill)

    def col(field: str, rows: np.ndarray = fill_rows) -> Any:
        values = ledger.column(field)
        if isinstance(values, np.ndarray):
            return values[rows]
        return [values[r] for r in rows.tolist()]

    signed = col("quantity")
    fills_df = pl.DataFrame(
        {
            "timestamp": _dt(col("timestamp"), tz),
            "order_id": pl.Series(col("order_id"), dtype=pl.Int64),
            "asset_id": pl.Series(col("asset_id"), dtype=pl.String),
            "side": pl.Series(np.where(signed > 0, "buy", "sell"), dtype=pl.String),
            "quantity": pl.Series(np.abs(signed), dtype=pl.Float64),
            "price": pl.Series(col("price"), dtype=pl.Float64),
            "commission": pl.Series(col("commission"), dtype=pl.Float64),
            "slippage": pl.Series(col("slippage"), dtype=pl.Float64),
            "impact": pl.Series(col("impact"), dtype=pl.Float64),
            "tag": pl.Series(col("tag"), dtype=pl.String),
            "realized_pnl": pl.Series(col("realized_pnl"), dtype=pl.Float64),
            "reason": pl.Series(col("reason"), dtype=pl.String),
        }
    ).with_columns((pl.col("quantity") * pl.col("price")).alias("value"))
    account_df = _account_frame([ledger[r] for r in np.flatnonzero(~is_fill).tolist()], tz)
    orders_df = _orders_frame(run.orders, tz)
    trades_df = _trades_frame(
        pf.trades.closed, clock.signal_names, list(run.context_names), tz, pf.trades.bulk
    )
    closed = trades_df.filter(~pl.col("is_open"))
    still_open = trades_df.filter(pl.col("is_open"))["asset_id"].to_list()
    codes = [pf.code_of[a] for a in still_open]
    exit_trades_df = _exit_trades_frame(
        exit_trade_columns(
            ledger,
            is_fill,
            pf.asset_ids,
            pf.mult,
            pf.is_future,
            {c: float(run.price_of(c)) for c in codes},
            (int(ts[-1]) if n else 0, n - 1),
        ),
        tz,
    )
    closed_exits = exit_trades_df.filter(~pl.col("is_open"))
    metrics = compute_metrics(
        ts,
        equity,
        initial,
        npos,
        closed["pnl_net"].to_numpy(),
        closed["holding_period_bars"].to_numpy(),
        closed["holding_period"].dt.total_seconds().to_numpy().astype(np.float64),
        fills_df["value"].to_numpy(),
        exit_pnl=closed_exits["pnl_net"].to_numpy(),
        exit_returns=closed_exits["return"].to_numpy(),
    )
    metrics["total_commission"] = pf.total_commission
    metrics["total_slippage"] = pf.total_slippage
    metrics["total_impact"] = pf.total_impact
    for key, value in getattr(pf, "income", {}).items():
        metrics[key] = value
    metrics.update(run.broker_metrics)
    metrics["num_fills"] = fills_df.height
    run_info = run.run_info
    given = run_info.get("unfilled_orders", ())
    unlogged = [(str(e), str(r), int(c)) for e, r, c in given]
    rejected, cancelled = unfilled_counts(orders_df, unlogged)
    metrics["num_rejected_orders"] = rejected
    metrics["num_broker_cancelled_orders"] = cancelled
    run_warnings = order_warnings(orders_df, unlogged)
    metadata = {
        "name": run.name,
        "strategy": run.strategy,
        "broker": run.broker_settings,
        "feeds": run.feeds,
        "assets": len(clock.asset_ids),
        "timezone": tz,
        "calendar": run.calendar,
        "outside_session_bars": run.outside_session_bars,
        "plugins": run.provenance,
        "complete": complete,
        "warnings": run_warnings,
        **run_info,
        "created_at": datetime.now(UTC).isoformat(),
        "versions": _versions(),
    }
    if complete:
        emit_run_warnings(run_warnings, stacklevel=stacklevel + 1)
    return BacktestResult(
        trades_df,
        fills_df,
        orders_df,
        portfolio_df,
        metrics,
        metadata,
        elapsed,
        complete,
        account_df,
        exit_trades_df,
        list(run_warnings),
    )


def _exit_trades_frame(columns: dict[str, Any] | None, tz: str | None) -> pl.DataFrame:
    """Build ``exit_trades_df`` from :func:`exit_trade_columns` (None: an empty frame)."""
    data = columns or {k: [] for k in EXIT_TRADE_SCHEMA}
    df = pl.DataFrame(
        {k: pl.Series(data[k], dtype=dtype) for k, dtype in EXIT_TRADE_SCHEMA.items()}
    )
    df = df.with_columns(
        _dt(df["entry_timestamp"], tz).alias("entry_timestamp"),
        _dt(df["exit_timestamp"], tz).alias("exit_timestamp"),
    )
    return df.with_columns(
        (pl.col("exit_timestamp") - pl.col("entry_timestamp")).alias("holding_period")
    )


def _account_frame(events: list[LedgerRow], tz: str | None) -> pl.DataFrame:
    """Return the account events (ledger entries that are not fills) as a frame."""
    return pl.DataFrame(
        {
            "timestamp": _dt([e.timestamp for e in events], tz),
            "asset_id": pl.Series([e.asset_id for e in events], dtype=pl.String),
            "event": pl.Series([e.kind for e in events], dtype=pl.String),
            "quantity_change": pl.Series([e.quantity for e in events], dtype=pl.Float64),
            "price": pl.Series([e.price for e in events], dtype=pl.Float64),
            "amount": pl.Series([e.amount for e in events], dtype=pl.Float64),
            "cash_after": pl.Series([e.cash_after for e in events], dtype=pl.Float64),
            "position_after": pl.Series([e.position_after for e in events], dtype=pl.Float64),
            "note": pl.Series([e.reason for e in events], dtype=pl.String),
        }
    )


def _orders_frame(records: Sequence[OrderRecord], tz: str | None) -> pl.DataFrame:
    """Return the orders log as a frame: one column per :class:`OrderRecord` field.

    Columns are named after the fields (``timestamp_ns`` becomes the datetime column
    ``timestamp``) and typed by the fields' annotations.
    """
    data: dict[str, pl.Series] = {}
    # one pass per field (zip(*records) would allocate an iterator per record, which in a
    # long run wakes the garbage collector over every live object)
    for position, field in enumerate(OrderRecord._fields):
        column = list(map(itemgetter(position), records))
        if field == "timestamp_ns":
            data["timestamp"] = _dt(column, tz)
        else:
            data[field] = pl.Series(column, dtype=_ORDER_DTYPES[field])
    return pl.DataFrame(data)


def _polars_dtype(hint: Any) -> Any:
    """The polars dtype of a field annotated ``int``, ``float`` or ``str`` (or ``| None``)."""
    kinds = get_args(hint) or (hint,)
    for kind, dtype in ((int, pl.Int64), (float, pl.Float64), (str, pl.String)):
        if kind in kinds:
            return dtype
    raise TypeError(f"no polars dtype for {hint!r}")


#: :class:`OrderRecord` field -> its ``orders_df`` dtype
_ORDER_DTYPES = {f: _polars_dtype(h) for f, h in get_type_hints(OrderRecord).items()}


def _trades_frame(
    closed: ClosedTrades,
    signal_names: tuple[str, ...],
    context_names: list[str],
    tz: str | None,
    bulk: list[dict[str, Any]] | None = None,
) -> pl.DataFrame:
    """Build the trades frame: bulk column chunks first, then the tracker's trades."""
    nan = float("nan")
    base = [k for k in _EMPTY_TRADE if not k.startswith("_")]
    cols = closed.columns
    data: dict[str, Any] = {k: cols[k] for k in base}
    extra: list[str] = []
    for prefix, key, names in (
        ("entry_signal_", "_entry_signals", signal_names),
        ("exit_signal_", "_exit_signals", signal_names),
        ("entry_context_", "_entry_context", context_names),
        ("exit_context_", "_exit_context", context_names),
    ):
        for name in names:
            extra.append(prefix + name)
            data[prefix + name] = [t.get(name, nan) for t in cols[key]]
    schema = {k: _EMPTY_TRADE[k] for k in base}

    def frame(columns: dict[str, Any]) -> pl.DataFrame:
        return pl.DataFrame(
            {
                k: pl.Series(
                    np.asarray(columns[k]) if isinstance(columns[k], array) else columns[k],
                    dtype=schema.get(k, pl.Float64),
                )
                for k in (*base, *extra)
            }
        )

    parts = [frame(chunk) for chunk in bulk or ()]
    df = pl.concat([*parts, frame(data)], how="vertical") if parts else frame(data)
    df = df.with_columns(
        _dt(df["entry_timestamp"], tz).alias("entry_timestamp"),
        _dt(df["exit_timestamp"], tz).alias("exit_timestamp"),
    )
    df = df.with_columns(
        (pl.col("exit_timestamp") - pl.col("entry_timestamp")).alias("holding_period")
    )
    return df


_EMPTY_TRADE: dict[str, Any] = {
    "trade_id": pl.Int64,
    "asset_id": pl.String,
    "direction": pl.String,
    "entry_timestamp": pl.Int64,
    "exit_timestamp": pl.Int64,
    "entry_price": pl.Float64,
    "exit_price": pl.Float64,
    "quantity": pl.Float64,
    "entry_commission": pl.Float64,
    "exit_commission": pl.Float64,
    "commission": pl.Float64,
    "slippage": pl.Float64,
    "pnl_gross": pl.Float64,
    "pnl_net": pl.Float64,
    "pnl_percent": pl.Float64,
    "holding_period_bars": pl.Int64,
    "mfe": pl.Float64,
    "mae": pl.Float64,
    "mfe_pct": pl.Float64,
    "mae_pct": pl.Float64,
    "dividends": pl.Float64,
    "borrow_fees": pl.Float64,
    "exit_reason": pl.String,
    "is_open": pl.Boolean,
    "_entry_signals": None,
    "_exit_signals": None,
    "_entry_context": None,
    "_exit_context": None,
}


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("ml4t-backtest", "polars", "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out
