"""A self-contained demo: a walk-forward ridge model traded on real daily bars.

``ml4t-backtest demo`` (or :func:`run_demo`) loads the small dataset shipped inside the
package (NVDA, ORCL and YHOO daily bars, 2005-2014), fits a ridge regression of the next
day's return on lagged returns, walk-forward, and trades its predictions with
:class:`~ml4t.backtest.Strategy` under percentage costs.

The predictions are built only from data available at each point in time: a model
fitted on date ``F`` sees only rows whose target (the return to the next bar) was
already known at ``F``'s close, and it predicts dates from ``F`` until the next refit.
:func:`walk_forward_predictions` is the reusable piece; the no-look-ahead property is
tested by truncating the data and comparing predictions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from .builtin.commission import PercentageCommission
from .builtin.feeds import PolarsDataFeed
from .builtin.sim_broker import SimulationBroker
from .builtin.slippage import PercentageSlippage
from .core.sources import read_ohlcv_csv
from .core.strategy import Strategy
from .engine import BacktestEngine

if TYPE_CHECKING:
    from .core.context import Context
    from .core.events import MarketEvent
    from .core.results import BacktestResult

__all__ = [
    "DEMO_ASSETS",
    "DemoMLStrategy",
    "build_demo_dataset",
    "feature_names",
    "load_demo_data",
    "make_features",
    "run_demo",
    "walk_forward_predictions",
]

#: Assets in the embedded dataset.
DEMO_ASSETS: tuple[str, ...] = ("NVDA", "ORCL", "YHOO")
DEMO_FILE = "demo_daily.parquet"
DEFAULT_OUTPUT_DIR = "ml4t_demo_output"
_COLUMNS = ("timestamp", "asset_id", "open", "high", "low", "close", "volume", "adj_close")

COMMISSION_RATE = 0.0005  # 5 bps of traded value per fill
SLIPPAGE_RATE = 0.0002  # 2 bps adverse price move per fill


# --- the embedded dataset -------------------------------------------------------------
def build_demo_dataset(
    src_dir: str | Path,
    out_path: str | Path,
    *,
    assets: Sequence[str] = DEMO_ASSETS,
    start: datetime = datetime(2005, 1, 1),
    end: datetime = datetime(2014, 12, 31),
) -> Path:
    """Build the embedded demo dataset from Yahoo daily CSV files.

    Parameters
    ----------
    src_dir : str or Path
        Folder holding ``<asset>_daily_yahoo.csv`` (lower-case asset names), e.g. the
        Backtrader sample data folder.
    out_path : str or Path
        Parquet file to write (zstd level 19, one long frame sorted by timestamp, asset).
    assets : sequence of str
        Assets to include.
    start, end : datetime
        Inclusive date range.

    Returns
    -------
    Path
        ``out_path``.
    """
    frames = []
    for asset in assets:
        df = read_ohlcv_csv(Path(src_dir) / f"{asset.lower()}_daily_yahoo.csv", asset)
        frames.append(df.filter(pl.col("timestamp").is_between(start, end)))
    out = (
        pl.concat(frames)
        .select(_COLUMNS)
        .with_columns(pl.col("volume").cast(pl.Int64))
        .sort("timestamp", "asset_id")
    )
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.write_parquet(path, compression="zstd", compression_level=19, statistics=True)
    return path


def load_demo_data() -> pl.DataFrame:
    """Return the embedded daily bars of :data:`DEMO_ASSETS`, 2005-2014.

    Columns: ``timestamp, asset_id, open, high, low, close, volume, adj_close``.
    Prices are split-adjusted but not dividend-adjusted; ``adj_close`` is adjusted for
    both (see ``ml4t/backtest/data/README.md`` for provenance).
    """
    ref = resources.files("ml4t.backtest").joinpath("data", DEMO_FILE)
    with resources.as_file(ref) as path:
        return pl.read_parquet(path)


# --- features and the walk-forward model ----------------------------------------------
def make_features(bars: pl.DataFrame, *, lags: int = 5, window: int = 20) -> pl.DataFrame:
    """Add per-asset features, the next-day target and the time that target is known.

    Parameters
    ----------
    bars : polars.DataFrame
        Long frame with ``timestamp, asset_id, close``.
    lags : int
        Number of lagged close-to-close returns (``ret_lag1`` is the return ending at
        this bar's close).
    window : int
        Window of the momentum (``mom``) and volatility (``vol``) features.

    Returns
    -------
    polars.DataFrame
        ``timestamp, asset_id`` plus the feature columns, ``target`` (return from this
        close to the asset's next close) and ``target_known_at`` (timestamp of that next
        bar; null on the asset's last bar). Features use only this and earlier bars.
    """
    a = "asset_id"
    df = bars.select("timestamp", a, "close").sort(a, "timestamp")
    df = df.with_columns(pl.col("close").pct_change().over(a).alias("ret_lag1"))
    lagged = (pl.col("ret_lag1").shift(k).over(a).alias(f"ret_lag{k + 1}") for k in range(1, lags))
    df = df.with_columns(
        *lagged,
        (pl.col("close") / pl.col("close").shift(window) - 1).over(a).alias("mom"),
        pl.col("ret_lag1").rolling_std(window).over(a).alias("vol"),
        pl.col("ret_lag1").shift(-1).over(a).alias("target"),
        pl.col("timestamp").shift(-1).over(a).alias("target_known_at"),
    )
    return df.drop("close").sort("timestamp", a)


def feature_names(lags: int = 5) -> list[str]:
    """Return the feature columns :func:`make_features` produces, in model order."""
    return [f"ret_lag{k}" for k in range(1, lags + 1)] + ["mom", "vol"]


def walk_forward_predictions(
    bars: pl.DataFrame,
    *,
    lags: int = 5,
    window: int = 20,
    train_days: int = 504,
    refit_every: int = 21,
    min_train_rows: int = 750,
    alpha: float = 1.0,
) -> pl.DataFrame:
    """Predict each bar's next-day return with a ridge model refitted walk-forward.

    The model is pooled across assets. It is refitted every ``refit_every`` distinct
    timestamps; a fit on date ``F`` uses rows from the trailing ``train_days`` timestamps
    whose target was known at ``F`` (``target_known_at <= F``), so neither the features
    nor the targets of the training set come from after ``F``. That fit predicts every
    bar from ``F`` up to (not including) the next refit date, from features computed
    with data up to each bar's own close. Refit dates are counted from the first
    timestamp, so data after a date never moves the schedule before it.

    Parameters
    ----------
    bars : polars.DataFrame
        Long frame with ``timestamp, asset_id, close``.
    lags, window : int
        Passed to :func:`make_features`.
    train_days : int
        Trailing window of distinct timestamps for training.
    refit_every : int
        Distinct timestamps between refits.
    min_train_rows : int
        No model (and NaN predictions) until this many complete training rows exist.
    alpha : float
        Ridge penalty per training row on standardised features.

    Returns
    -------
    polars.DataFrame
        ``timestamp, asset_id, prediction, fit_timestamp`` sorted by timestamp and asset;
        ``prediction`` is NaN where no model exists yet or a feature is missing.
    """
    feats = make_features(bars, lags=lags, window=window)
    names = feature_names(lags)
    x = feats.select(names).to_numpy().astype(np.float64)
    y = feats["target"].fill_null(float("nan")).to_numpy().astype(np.float64)
    ts = feats["timestamp"].dt.epoch("us").to_numpy()
    known = feats["target_known_at"].dt.epoch("us").fill_null(np.iinfo(np.int64).max).to_numpy()
    dates = np.unique(ts)
    x_ok = np.isfinite(x).all(axis=1)
    trainable = x_ok & np.isfinite(y)
    pred = np.full(ts.shape[0], np.nan)
    fitted_at = np.full(ts.shape[0], -1, dtype=np.int64)
    for k in range(0, dates.shape[0], refit_every):
        fit_ts = dates[k]
        first_train = dates[max(0, k - train_days)]
        train = trainable & (known <= fit_ts) & (ts >= first_train)
        if int(train.sum()) < min_train_rows:
            continue
        end = dates[k + refit_every] if k + refit_every < dates.shape[0] else np.iinfo(np.int64).max
        target_rows = x_ok & (ts >= fit_ts) & (ts < end)
        pred[target_rows] = _ridge_predict(x[train], y[train], x[target_rows], alpha)
        fitted_at[target_rows] = fit_ts
    tz = getattr(feats.schema["timestamp"], "time_zone", None)
    fit = pl.Series("fit_timestamp", fitted_at).cast(pl.Datetime("us", tz))
    fit = fit.set(pl.Series(fitted_at < 0), None)  # null where no model was fitted yet
    return feats.select("timestamp", "asset_id").with_columns(pl.Series("prediction", pred), fit)


def _ridge_predict(x: np.ndarray, y: np.ndarray, x_new: np.ndarray, alpha: float) -> np.ndarray:
    # Standardise with training statistics only; the intercept is the training mean.
    mu, sd = x.mean(axis=0), x.std(axis=0)
    sd[sd == 0] = 1.0
    xs = (x - mu) / sd
    gram = xs.T @ xs + alpha * x.shape[0] * np.eye(x.shape[1])
    beta = np.linalg.solve(gram, xs.T @ (y - y.mean()))
    return y.mean() + ((x_new - mu) / sd) @ beta  # type: ignore[no-any-return]


# --- the strategy ----------------------------------------------------------------------
class DemoMLStrategy(Strategy):
    """Hold a fixed slot of each asset while its predicted next-day return is positive.

    Enter (``order_target_percent`` to ``slot`` of equity) when the prediction exceeds
    ``entry``; close when it falls below ``exit``. Bars without a prediction are skipped.

    Parameters
    ----------
    slot : float
        Fraction of equity per held asset.
    entry, exit : float
        Prediction thresholds (expected next-day return, a fraction).
    """

    def __init__(self, slot: float, entry: float = 0.0005, exit: float = 0.0) -> None:
        self.slot, self.entry, self.exit = slot, entry, exit

    def on_market_data(self, event: MarketEvent, context: Context) -> None:
        """Trade the asset of ``event`` on its ``prediction`` signal."""
        pred = event.signals["prediction"]
        if math.isnan(pred):
            return
        held = self.get_position(event.asset_id) > 0
        if not held and pred > self.entry:
            self.order_target_percent(event.asset_id, self.slot, tag="model_long")
        elif held and pred < self.exit:
            self.close_position(event.asset_id, tag="model_exit")


# --- the demo --------------------------------------------------------------------------
def run_demo(output_dir: str | Path | None = None, *, quiet: bool = False) -> BacktestResult:
    """Run the demo backtest, print a report and write the result files.

    Parameters
    ----------
    output_dir : str or Path, optional
        Where :meth:`BacktestResult.to_parquet` writes; ``./ml4t_demo_output`` by default.
    quiet : bool
        Print nothing.

    Returns
    -------
    BacktestResult
    """
    from ._version import __version__

    def say(text: str = "") -> None:
        if not quiet:
            print(text)

    out_dir = Path(output_dir if output_dir is not None else DEFAULT_OUTPUT_DIR)
    bars = load_demo_data()
    preds = walk_forward_predictions(bars)
    data = bars.join(preds.drop("fit_timestamp"), on=["timestamp", "asset_id"], how="left")
    first, last = bars["timestamp"].min(), bars["timestamp"].max()
    say(f"ml4t.backtest {__version__} demo: a walk-forward ML signal traded on real daily bars")
    say("=" * 78)
    say(
        f"data   : {', '.join(DEMO_ASSETS)}, {bars.height:,} daily bars, "
        f"{_day(first)} .. {_day(last)}"
    )
    say("         Yahoo Finance via the Backtrader sample data; split- but not dividend-adjusted")
    say("model  : pooled ridge regression of the next day's close-to-close return on the last")
    say("         5 daily returns, 20-day momentum and 20-day volatility; refitted every 21")
    say("         trading days on the trailing 504 days of rows whose target was already known")
    ic = _ic(bars, preds)
    say(f"signal : out-of-sample IC (corr. of prediction and next-day return) {ic:+.4f}")
    slot = 0.95 / len(DEMO_ASSETS)
    say(f"trading: hold {slot:.1%} of equity in an asset while its prediction > +5 bps, exit")
    say(
        f"         below 0; fills at the next open; commission {COMMISSION_RATE:.2%}, "
        f"slippage {SLIPPAGE_RATE:.2%} per fill"
    )
    feed = PolarsDataFeed(data, signal_columns=["prediction"], name="demo_daily")
    broker = SimulationBroker(
        initial_cash=100_000.0,
        commission=PercentageCommission(COMMISSION_RATE),
        slippage=PercentageSlippage(SLIPPAGE_RATE),
        cash_policy="resize",  # a buy that outgrows the cash left is shrunk, not rejected
    )
    strategy = DemoMLStrategy(slot=slot)
    engine = BacktestEngine(feed, strategy, broker, name="ml4t-demo")
    result = engine.run()
    say("-" * 78)
    say(result.summary())
    say("-" * 78)
    trades = result.trades_df
    n_open = int(trades["is_open"].sum())
    say(f"trades : {trades.height - n_open:,} closed round trips, {n_open} open at the end")
    say(f"benchmark: equal-weight buy and hold over the data, no costs: {_buy_and_hold(bars):+.2%}")
    written = result.to_parquet(out_dir)
    say(f"results written to {written.resolve()}")
    say()
    say("This demo shows the mechanics (walk-forward predictions, next-bar fills, costs,")
    say("results); it is not investment advice. Costs are assumed, dividends are ignored,")
    say("and three stocks over one decade say little about whether the signal would persist.")
    return result


def _day(value: Any) -> str:
    return value.strftime("%Y-%m-%d") if hasattr(value, "strftime") else str(value)


def _ic(bars: pl.DataFrame, preds: pl.DataFrame) -> float:
    target = make_features(bars).select("timestamp", "asset_id", "target")
    both = preds.join(target, on=["timestamp", "asset_id"]).filter(
        pl.col("prediction").is_not_nan() & pl.col("target").is_not_null()
    )
    value = both.select(pl.corr("prediction", "target")).item()
    return float(value) if value is not None else math.nan


def _buy_and_hold(bars: pl.DataFrame) -> float:
    close = pl.col("close").sort_by("timestamp")
    growth = bars.group_by("asset_id").agg(close.last() / close.first())
    return float(growth["close"].to_numpy().mean()) - 1.0
