"""Synthetic OHLCV frames that always pass feed validation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

__all__ = ["make_bars", "make_long_bars"]


def make_bars(
    closes: Sequence[float] | int = 20,
    *,
    opens: Sequence[float] | None = None,
    highs: Sequence[float] | None = None,
    lows: Sequence[float] | None = None,
    volume: float | Sequence[float] = 1_000.0,
    start: datetime = datetime(2024, 1, 2),
    step: timedelta = timedelta(days=1),
    timestamps: Sequence[datetime] | None = None,
    asset_id: str | None = None,
    seed: int | None = None,
    **columns: Sequence[float] | float,
) -> pl.DataFrame:
    """Return a valid OHLCV frame.

    Parameters
    ----------
    closes : sequence of float or int
        Close prices, or a number of bars: a random walk from 100 (``seed``) or, without a
        seed, ``100, 101, 102, ...``.
    opens, highs, lows : sequence of float, optional
        ``open`` defaults to the previous close (the first bar opens at its close);
        ``high``/``low`` default to 1 above/below the larger/smaller of open and close.
    volume : float or sequence of float
        Bar volume.
    start, step : datetime, timedelta
        Naive timestamps ``start + k * step``.
    timestamps : sequence of datetime, optional
        The bars' timestamps, instead of ``start`` and ``step``.
    asset_id : str, optional
        Adds an ``asset_id`` column (for long multi-asset frames).
    seed : int, optional
        Seed of the random walk when ``closes`` is a number.
    **columns
        Extra columns (signals, indicators): a sequence per bar or a scalar.
    """
    if isinstance(closes, int):
        n = closes
        if seed is None:
            c = [100.0 + k for k in range(n)]
        else:
            steps = np.random.default_rng(seed).normal(0.0, 0.01, n)
            c = (100.0 * np.exp(np.cumsum(steps))).tolist()
    else:
        c = [float(x) for x in closes]
        n = len(c)
    o = [float(x) for x in opens] if opens is not None else [c[0], *c[:-1]] if n else []
    h = (
        [float(x) for x in highs]
        if highs is not None
        else [max(a, b) + 1 for a, b in zip(o, c, strict=True)]
    )
    lo = (
        [float(x) for x in lows]
        if lows is not None
        else [min(a, b) - 1 for a, b in zip(o, c, strict=True)]
    )
    vol = [float(volume)] * n if isinstance(volume, int | float) else [float(v) for v in volume]
    data: dict[str, Any] = {
        "timestamp": list(timestamps)
        if timestamps is not None
        else [start + step * k for k in range(n)],
        "open": o,
        "high": h,
        "low": lo,
        "close": c,
        "volume": vol,
    }
    for name, values in columns.items():
        data[name] = (
            [float(values)] * n if isinstance(values, int | float) else [float(v) for v in values]
        )
    df = pl.DataFrame(data).with_columns(pl.col("timestamp").cast(pl.Datetime("us")))
    if asset_id is not None:
        df = df.with_columns(pl.lit(asset_id).alias("asset_id"))
    return df


def make_long_bars(
    asset_ids: Sequence[str], n: int = 20, *, seed: int = 0, **kwargs: Any
) -> pl.DataFrame:
    """Return a long frame (``timestamp, asset_id, OHLCV``) of random walks, one per asset.

    Rows are sorted by timestamp, then asset. ``kwargs`` go to :func:`make_bars`.
    """
    frames = [make_bars(n, asset_id=a, seed=seed + k, **kwargs) for k, a in enumerate(asset_ids)]
    return pl.concat(frames).sort("timestamp", "asset_id")
