""":class:`SignalStrategy`: entry and exit rules plus a position sizer, no Python per bar.

The class is a :class:`~ml4t.backtest.BatchStrategy` whose ``on_timestamp`` implements
the rules with the ordinary helpers: that is the event path, and the definition of what
the rules mean. When the broker's settings and cost models all have kernel versions, the
engine instead runs the whole backtest in one Numba kernel
(:mod:`ml4t.backtest.declarative.compiled`), which produces the same fills; otherwise it
falls back to the event path and says why (a ``KernelFallbackWarning`` and
``result.metadata["fallback_reason"]``).

Per timestamp and asset (in asset order): a held asset whose exit signal rules fire is
closed with a market order (and is not re-entered on that bar); otherwise, when every
entry rule holds, the sizer places the entry. ``TopKSizer`` instead rebalances the whole
cross-section every timestamp.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from ..builtin.risk import ExitRules
from ..core.batch import BatchStrategy
from ..errors import ConfigError, KernelFallbackWarning
from .rules import (
    EXIT_KINDS,
    POSITION_KINDS,
    SIGNAL_KINDS,
    ConfidenceSizer,
    FixedSizer,
    PercentSizer,
    Rule,
    Sizer,
    TopKSizer,
)

if TYPE_CHECKING:
    from ..core.context import Context
    from ..core.runtime import Runner, RunView

__all__ = ["SignalStrategy"]

_EXIT_FIELDS = {
    "stop_loss": "stop_loss",
    "take_profit": "take_profit",
    "trailing_stop": "trailing_stop",
    "trailing_amount": "trailing_amount",
    "max_holding_bars": "max_bars",
}


#: callbacks the kernel does not call: a subclass overriding one runs on the event path
_CALLBACKS = (
    "on_start",
    "before_trading_start",
    "on_timestamp",
    "on_market_data",
    "on_fill",
    "on_trade",
    "on_order_rejected",
    "on_order_cancelled",
    "after_trading_end",
)


class SignalStrategy(BatchStrategy):
    """A strategy declared as rules, compiled into a Numba kernel when possible.

    Parameters
    ----------
    entry_rules : sequence of Rule
        Signal and position rules, all of which must hold to enter (ANDed).
    exit_rules : sequence of Rule
        Signal rules (any one closes the position: ORed) and position exits
        (``Rule.stop_loss``, ``take_profit``, ``trailing_stop``, ``max_holding_bars``).
    position_sizer : PercentSizer, FixedSizer, ConfidenceSizer or TopKSizer
        How much to buy on an entry (``TopKSizer``: the whole portfolio's targets).
    compiled : bool, optional
        ``None`` (default): use the kernel when possible, else the event path with a
        warning; ``True``: require the kernel (a ConfigError says why it cannot run);
        ``False``: always the event path.

    Examples
    --------
    >>> s = SignalStrategy(
    ...     entry_rules=[Rule.signal_above("pred", 0.8), Rule.not_in_position()],
    ...     exit_rules=[Rule.signal_below("pred", 0.4), Rule.stop_loss(0.05)],
    ...     position_sizer=PercentSizer(0.95),
    ... )
    """

    def __init__(
        self,
        entry_rules: Sequence[Rule] = (),
        exit_rules: Sequence[Rule] = (),
        position_sizer: Sizer | None = None,
        *,
        compiled: bool | None = None,
    ) -> None:
        self.entry_rules = tuple(entry_rules)
        self.exit_rules = tuple(exit_rules)
        if not isinstance(position_sizer, PercentSizer | FixedSizer | ConfidenceSizer | TopKSizer):
            raise ConfigError(
                "SignalStrategy position_sizer: give PercentSizer, FixedSizer, ConfidenceSizer "
                f"or TopKSizer, got {position_sizer!r}"
            )
        self.position_sizer = position_sizer
        if compiled not in (None, True, False):
            raise ConfigError(
                f"SignalStrategy compiled: must be None, True or False, got {compiled!r}"
            )
        self.compiled = compiled
        topk = isinstance(position_sizer, TopKSizer)
        for rule in self.entry_rules:
            if not isinstance(rule, Rule) or rule.kind not in (*SIGNAL_KINDS, *POSITION_KINDS):
                raise ConfigError(f"entry_rules: {rule!r} is not a signal or position rule")
            if topk and rule.kind in POSITION_KINDS:
                raise ConfigError(
                    f"entry_rules: {rule.kind} does not combine with TopKSizer, which decides "
                    "holdings for the whole cross-section"
                )
        exits: dict[str, Any] = {}
        for rule in self.exit_rules:
            if not isinstance(rule, Rule) or rule.kind not in (*SIGNAL_KINDS, *EXIT_KINDS):
                raise ConfigError(
                    f"exit_rules: {rule!r} is not a signal rule or a position exit "
                    "(stop_loss, take_profit, trailing_stop, max_holding_bars)"
                )
            if rule.kind in EXIT_KINDS:
                key = _EXIT_FIELDS[rule.kind]
                if key in exits or (
                    key.startswith("trailing") and any(k.startswith("trailing") for k in exits)
                ):
                    raise ConfigError(f"exit_rules: more than one {rule.kind} rule")
                exits[key] = int(rule.low) if key == "max_bars" else rule.low
        self.exits: ExitRules | None = ExitRules(**exits) if exits else None
        self.exit_signals = tuple(r for r in self.exit_rules if r.kind in SIGNAL_KINDS)
        if not topk and not self.entry_rules:
            raise ConfigError("SignalStrategy needs at least one entry rule")
        names: dict[str, None] = {}
        for rule in (*self.entry_rules, *self.exit_signals):
            if rule.column is not None:
                names[rule.column] = None
        if isinstance(position_sizer, ConfidenceSizer | TopKSizer):
            names[position_sizer.column] = None
        self.columns: tuple[str, ...] = tuple(names)

    def __repr__(self) -> str:
        return (
            f"SignalStrategy(entry_rules={list(self.entry_rules)}, "
            f"exit_rules={list(self.exit_rules)}, position_sizer={self.position_sizer})"
        )

    # --- the event path ------------------------------------------------------------------
    def on_start(self) -> None:
        """Check the signal columns and (on the event path) install the position exits."""
        self.check_columns()
        if self.exits is not None and self._run.mode != "compiled":
            for asset in self._pf.asset_ids:
                self.set_exits(asset, self.exits)

    def check_columns(self) -> None:
        """Raise ConfigError if a rule or sizer names a column the feeds do not provide."""
        clock = self._run.clock
        available = {*clock.signal_names, *clock.indicator_names}
        missing = [c for c in self.columns if c not in available]
        if missing:
            raise ConfigError(
                f"SignalStrategy uses column(s) {missing} that the feeds do not provide as "
                f"signals or indicators (have: {sorted(available)})"
            )

    def on_timestamp(
        self, timestamp: datetime, asset_batch: pl.DataFrame, context: Context
    ) -> None:
        """Apply the rules to every asset's bar (the event path)."""
        view = self.batch
        ids = view.asset_ids
        cols = {name: view[name] for name in self.columns}
        sizer = self.position_sizer
        if isinstance(sizer, TopKSizer):
            self._rebalance_top_k(ids, cols, sizer)
            return
        nan = math.nan
        for j, asset in enumerate(ids):
            pos = self.get_position(asset)
            if pos != 0 and any(
                r.holds(cols[r.column][j], pos) for r in self.exit_signals if r.column
            ):
                self.close_position(asset)
                continue
            if not all(
                r.holds(cols[r.column][j] if r.column else nan, pos) for r in self.entry_rules
            ):
                continue
            if isinstance(sizer, PercentSizer):
                self.buy_percent(asset, sizer.percent)
            elif isinstance(sizer, FixedSizer):
                self.buy(asset, sizer.quantity)
            else:
                self.size_by_confidence(
                    asset,
                    float(cols[sizer.column][j]),
                    max_percent=sizer.max_percent,
                    min_confidence=sizer.min_confidence,
                )

    def _rebalance_top_k(
        self, ids: list[str], cols: dict[str, np.ndarray], sizer: TopKSizer
    ) -> None:
        score = cols[sizer.column]
        keep = np.isfinite(score)
        for rule in self.entry_rules:
            keep &= np.fromiter((rule.holds(x, 0.0) for x in cols[rule.column or ""]), bool)
        for rule in self.exit_signals:
            keep &= ~np.fromiter((rule.holds(x, 0.0) for x in cols[rule.column or ""]), bool)
        rows = np.flatnonzero(keep)
        ranked = rows[np.argsort(-score[rows], kind="stable")][: sizer.k]
        weight = 1.0 / sizer.k
        self.rebalance_to_weights({ids[j]: weight for j in ranked.tolist()})

    # --- the compiled path ---------------------------------------------------------------
    def compiled_runner(self, run: RunView) -> Runner | None:
        """Return the kernel runner, or None (saying why) when the run needs the event path."""
        from ..core.run import Run
        from .compiled import SignalKernelRunner, kernel_problem

        if self.compiled is False:
            run.note_fallback("compiled=False")
            return None
        assert isinstance(run, Run)
        overridden = [
            n for n in _CALLBACKS if getattr(type(self), n) is not getattr(SignalStrategy, n)
        ]
        problem = (
            f"the strategy overrides {overridden[0]}()" if overridden else kernel_problem(run, self)
        )
        if problem is None:
            return SignalKernelRunner(self)
        if self.compiled:
            raise ConfigError(f"SignalStrategy(compiled=True) cannot run in the kernel: {problem}")
        warnings.warn(
            f"SignalStrategy runs on the event path (slower, same results): {problem}",
            KernelFallbackWarning,
            stacklevel=4,
        )
        run.note_fallback(problem)
        return None
