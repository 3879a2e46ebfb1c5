"""Shared pieces of the benchmark workloads: outcomes, runner and workload descriptions.

A *workload* (W1, W2, W3) generates its data once per invocation into a temporary
directory (:meth:`Workload.materialise`, untimed, in the parent process), so every worker
sees the same bars; a *runner* is one framework or ml4t mode on that workload, split into
an untimed ``prepare`` and a timed ``execute``. Sizes are ``(assets, periods)`` pairs;
a smaller size is always a prefix (first assets, first periods) of the full data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "INITIAL_CASH",
    "Outcome",
    "Runner",
    "Size",
    "Target",
    "Workload",
    "ar1",
    "bt_version",
    "data_path",
    "load_arrays",
    "ml4t_metadata",
    "ml4t_outcome",
    "ml4t_version",
    "outcome_from_fills",
    "regime_signal",
    "save_arrays",
    "vbt_outcome",
    "vbt_version",
]

INITIAL_CASH = 1_000_000.0
Size = tuple[int, int]  # (assets, periods)


# --- outcome ----------------------------------------------------------------------------
@dataclass
class Outcome:
    """What a run produced, for the cross-framework sanity check.

    ``first_entry_price`` / ``last_exit_price`` are the earliest buy and the latest sell
    fill, ties at one timestamp broken by asset id, so the order in which a framework
    lists the fills of one bar does not matter.
    """

    entries: int  # buy fills
    exits: int  # sell fills
    final_value: float  # cash + positions marked at the last close
    traded_value: float = float("nan")  # sum of |quantity| * price over all fills
    first_entry_price: float = float("nan")
    last_exit_price: float = float("nan")

    @property
    def trades(self) -> int:
        """Buy fills (for W1: round trips entered; the last may still be open)."""
        return self.entries

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["trades"] = self.trades
        return d


def outcome_from_fills(
    ts: np.ndarray,
    asset: np.ndarray,
    is_buy: np.ndarray,
    qty: np.ndarray,
    price: np.ndarray,
    final_value: float,
) -> Outcome:
    """Build an :class:`Outcome` from fill columns (any order within a timestamp)."""
    ts = np.asarray(ts)
    order = np.lexsort((np.asarray(asset), ts))
    buy = np.asarray(is_buy, dtype=bool)[order]
    px = np.asarray(price, dtype=np.float64)[order]
    buys, sells = px[buy], px[~buy]
    return Outcome(
        entries=int(buys.shape[0]),
        exits=int(sells.shape[0]),
        final_value=float(final_value),
        traded_value=float(np.sum(np.abs(np.asarray(qty, dtype=np.float64)) * price)),
        first_entry_price=float(buys[0]) if buys.shape[0] else float("nan"),
        last_exit_price=float(sells[-1]) if sells.shape[0] else float("nan"),
    )


def ml4t_outcome(result: Any) -> Outcome:
    fills = result.fills_df
    return outcome_from_fills(
        fills["timestamp"].dt.epoch("ns").to_numpy(),
        fills["asset_id"].to_numpy(),
        (fills["side"] == "buy").to_numpy(),
        fills["quantity"].to_numpy(),
        fills["price"].to_numpy(),
        float(result.final_equity),
    )


def ml4t_metadata(result: Any) -> dict[str, Any]:
    """The run metadata the report shows (mode, fallback reason, numba compile time)."""
    meta = getattr(result, "metadata", {}) or {}
    return {k: meta[k] for k in ("mode", "fallback_reason", "compile_seconds") if k in meta}


def vbt_outcome(pf: Any) -> Outcome:
    rec = pf.orders.values
    index = np.asarray(pf.wrapper.index.values).astype("datetime64[ns]").astype(np.int64)
    return outcome_from_fills(
        index[rec["idx"]],
        rec["col"],
        rec["side"] == 0,
        rec["size"],
        rec["price"],
        float(np.asarray(pf.final_value()).sum()),
    )


def ml4t_version() -> str:
    from importlib.metadata import version

    return version("ml4t-backtest")


def vbt_version() -> str:
    import vectorbt as vbt  # type: ignore[import-untyped]

    return str(vbt.__version__)


def bt_version() -> str:
    import backtrader as bt  # type: ignore[import-untyped]

    return str(bt.__version__)


# --- runners and workloads --------------------------------------------------------------
@dataclass(frozen=True)
class Runner:
    """One framework or ml4t mode on one workload.

    ``prepare(data_dir, size)`` (untimed) loads the data in the framework's natural input;
    ``execute(prepared)`` (timed) returns ``(raw, phases)``, the framework's own result and
    named sub-timings in seconds; ``outcome(raw)`` reads what it produced.
    """

    name: str  # "ml4t-bar", "ml4t-batch", "ml4t-signal", "vectorbt", "backtrader", "loop"
    framework: str  # what to import before timing: "ml4t", "vectorbt", "backtrader", "loop"
    prepare: Callable[[Path, Size], Any]
    execute: Callable[[Any], tuple[Any, dict[str, float]]]
    outcome: Callable[[Any], Outcome]
    version: Callable[[], str]
    notes: str
    metadata: Callable[[Any], dict[str, Any]] = field(default=lambda raw: {})

    @property
    def mode(self) -> str | None:
        """The ml4t mode (``bar``, ``batch``, ``signal``) or None for other frameworks."""
        return self.name.split("-", 1)[1] if self.name.startswith("ml4t-") else None


@dataclass(frozen=True)
class Target:
    """A target from the issue: ``bars_per_s`` at least, or ``seconds`` / ``rss_mib`` at most."""

    text: str
    bars_per_s: float | None = None
    seconds: float | None = None
    rss_mib: float | None = None

    def verdict(self, bars_per_s: float, seconds: float, rss_mib: float | None) -> bool:
        ok = True
        if self.bars_per_s is not None:
            ok = ok and bars_per_s >= self.bars_per_s
        if self.seconds is not None:
            ok = ok and seconds <= self.seconds
        if self.rss_mib is not None:
            ok = ok and rss_mib is not None and rss_mib <= self.rss_mib
        return ok


@dataclass(frozen=True)
class Workload:
    """A benchmark workload: its data, sizes, runners and targets."""

    key: str  # "w1"
    title: str
    unit: str  # "bars" or "asset-bars"
    full: Size
    quick: Size
    backtrader: Size  # Backtrader runs on this prefix (extrapolated per bar)
    backtrader_quick: Size
    warmup: Size
    materialise: Callable[[Path, Size, list[Size]], None]  # (dir, full size, other sizes)
    runners: dict[str, Runner]
    targets: dict[str, Target]  # by runner name; "memory" applies to every ml4t mode
    semantics: str  # one line on fills and sizing, printed above the sanity check
    # Differences between ml4t and a framework that make its numbers only approximately
    # equal (by runner name); runners not listed must agree to 1e-9.
    approximate: dict[str, str] = field(default_factory=dict)


# --- data files -------------------------------------------------------------------------
def _stem(data_dir: Path, key: str, size: Size) -> Path:
    return data_dir / f"{key}_{size[0]}x{size[1]}"


def save_arrays(data_dir: Path, key: str, size: Size, arrays: dict[str, np.ndarray]) -> None:
    """Save each array as ``<key>_<assets>x<periods>.<name>.npy``."""
    stem = _stem(data_dir, key, size)
    for name, arr in arrays.items():
        np.save(f"{stem}.{name}.npy", arr)


def load_arrays(
    data_dir: Path, key: str, size: Size, names: tuple[str, ...], mmap: bool = False
) -> dict[str, np.ndarray]:
    """Load arrays saved by :func:`save_arrays` (into memory unless ``mmap``)."""
    stem = _stem(data_dir, key, size)
    mode = "r" if mmap else None
    return {n: np.load(f"{stem}.{n}.npy", mmap_mode=mode) for n in names}


def data_path(data_dir: Path, key: str, size: Size, suffix: str) -> Path:
    return Path(f"{_stem(data_dir, key, size)}.{suffix}")


def ar1(x: np.ndarray, phi: float, axis: int = 0) -> np.ndarray:
    """Return y with y[t] = phi * y[t-1] + x[t] along ``axis`` (y[-1] = 0)."""
    try:
        from scipy.signal import lfilter  # type: ignore[import-untyped]
    except ImportError:  # scipy comes with vectorbt; without it, a plain loop (not timed)
        moved = np.moveaxis(x, axis, 0)
        out = np.empty_like(moved)
        acc = np.zeros(moved.shape[1:])
        for i in range(moved.shape[0]):
            acc = phi * acc + moved[i]
            out[i] = acc
        return np.moveaxis(out, 0, axis)
    return np.asarray(lfilter([1.0], [1.0, -phi], x, axis=axis))


def regime_signal(noise: np.ndarray, phi: float, threshold: float) -> np.ndarray:
    """AR(1)-smoothed unit-variance noise thresholded to {-1, 0, +1} (float64)."""
    smooth = ar1(noise, phi) * math.sqrt(1.0 - phi * phi)
    return np.where(smooth > threshold, 1.0, np.where(smooth < -threshold, -1.0, 0.0))
