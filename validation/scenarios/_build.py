"""Building blocks for scenario definitions: signal rules computed up front with numpy."""

from __future__ import annotations

import numpy as np

from ..scenario import BarSet, Orders, OrderSpec, Signals, TargetWeights

__all__ = ["crossover", "fixed_signals", "momentum_top_k", "orders", "short_crossover"]


def _sma(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full_like(x, np.nan, dtype=float)
    c = np.cumsum(x, axis=0)
    out[n - 1 :] = c[n - 1 :] - np.vstack([np.zeros((1, x.shape[1])), c[:-n]])
    return out / n


def crossover(fast: int = 5, slow: int = 20, last_bar_flat: bool = True):  # type: ignore[no-untyped-def]
    """Entries when the fast SMA of closes crosses above the slow one, exits when below."""

    def build(bars: BarSet) -> Signals:
        f, s = _sma(bars.close, fast), _sma(bars.close, slow)
        above = np.nan_to_num(f - s) > 0
        prev = np.vstack([np.zeros((1, above.shape[1]), bool), above[:-1]])
        entries = above & ~prev
        exits = ~above & prev
        entries[: slow + 1] = False
        exits[: slow + 1] = False
        if last_bar_flat:  # no signal on the last two bars (each fill timing fills them)
            entries[-2:] = False
            exits[-2:] = False
        return Signals(entries, exits)

    return build


def short_crossover(fast: int = 5, slow: int = 20):  # type: ignore[no-untyped-def]
    """Long on a cross above, short on a cross below (each reverses the other)."""

    def build(bars: BarSet) -> Signals:
        sig = crossover(fast, slow)(bars)
        none = np.zeros_like(sig.entries)
        return Signals(sig.entries, none, short_entries=sig.exits, short_exits=none)

    return build


def fixed_signals(entries: list[int], exits: list[int]):  # type: ignore[no-untyped-def]
    """Single-asset signals at the given bar indices."""

    def build(bars: BarSet) -> Signals:
        e = np.zeros((bars.n_bars, 1), bool)
        x = np.zeros((bars.n_bars, 1), bool)
        e[entries, 0] = True
        x[exits, 0] = True
        return Signals(e, x)

    return build


def momentum_top_k(k: int, lookback: int = 20, every: int = 5):  # type: ignore[no-untyped-def]
    """Every ``every`` bars, equal weights (0.95 / k) in the ``k`` best by past return."""

    def build(bars: BarSet) -> TargetWeights:
        n, m = bars.close.shape
        w = np.full((n, m), np.nan)
        for t in range(lookback, n - 2, every):
            ret = bars.close[t] / bars.close[t - lookback] - 1.0
            best = np.argsort(-ret, kind="stable")[:k]
            w[t] = 0.0
            w[t, best] = 0.95 / k
        w[n - 2] = 0.0  # end flat
        return TargetWeights(w)

    return build


def orders(*specs: tuple[int, str, float, str, float | None]):  # type: ignore[no-untyped-def]
    """Explicit orders ``(bar, asset, signed quantity, kind, price)``."""

    def build(bars: BarSet) -> Orders:
        return Orders(tuple(OrderSpec(b, a, q, k, p) for b, a, q, k, p in specs))  # type: ignore[arg-type]

    return build
