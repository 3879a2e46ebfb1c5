"""Exceptions raised by ml4t.backtest.

Every error raised at a boundary (data, configuration, strategy code) names what is wrong:
the file, column, row, timestamp, asset or key, so the user can fix the input without a
debugger.
"""

from __future__ import annotations

__all__ = [
    "BacktestError",
    "ConfigError",
    "DataValidationError",
    "KernelFallbackWarning",
    "OutputLockError",
    "OutsideSessionWarning",
    "PluginError",
    "RejectOrder",
    "RejectedOrdersWarning",
    "StaleLockWarning",
    "StrategyError",
]


class BacktestError(Exception):
    """Base class of every error raised by ml4t.backtest."""


class DataValidationError(BacktestError, ValueError):
    """Input data failed validation at the feed boundary.

    The message names the source (file or frame), the column and the first offending
    row, timestamp and asset.
    """


class ConfigError(BacktestError, ValueError):
    """A setting (broker, engine, feed) has a bad value; the message names the key."""


class StrategyError(BacktestError):
    """User strategy code raised while handling an event.

    Attributes
    ----------
    timestamp : object
        Timestamp of the bar being handled when the strategy raised.
    asset_id : str or None
        Asset of the bar being handled (``None`` for timestamp-level callbacks).
    partial_result : object
        The :class:`~ml4t.backtest.BacktestResult` built from everything processed before
        the failure, marked ``complete=False``.
    """

    def __init__(
        self,
        message: str,
        *,
        timestamp: object = None,
        asset_id: str | None = None,
        partial_result: object = None,
    ) -> None:
        super().__init__(message)
        self.timestamp = timestamp
        self.asset_id = asset_id
        self.partial_result = partial_result


class PluginError(BacktestError):
    """A plugin failed: it did not import, raised in a hook, or returned the wrong thing.

    The message names the plugin and the distribution it came from, and says how to
    block it. When one of the plugin's models raised during a run, the message also names
    the model, the timestamp and the asset, the original exception is chained
    (``__cause__``) and ``partial_result`` holds the result up to that timestamp.

    Attributes
    ----------
    plugin : str or None
        Registered name of the plugin (the entry-point name for installed plugins).
    distribution : str or None
        Distribution (``pip`` package) that provides it, with its version.
    model : str or None
        The model that raised during a run: its registered name and the function that
        raised (``"commission model 'flaky' (FlakyCommission.calculate)"``).
    timestamp : object
        Timestamp being handled when the model raised (``None`` outside a run).
    asset_id : str or None
        Asset being handled, when it is known.
    partial_result : object
        For a failure during a run: the :class:`~ml4t.backtest.BacktestResult` of the bars
        processed so far, marked ``complete=False``.
    """

    def __init__(
        self,
        message: str,
        *,
        plugin: str | None = None,
        distribution: str | None = None,
        model: str | None = None,
        timestamp: object = None,
        asset_id: str | None = None,
        partial_result: object = None,
    ) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.distribution = distribution
        self.model = model
        self.timestamp = timestamp
        self.asset_id = asset_id
        self.partial_result = partial_result


class OutputLockError(BacktestError):
    """Another run is writing to the same output directory.

    Attributes
    ----------
    path : str
        The output directory.
    holder : dict
        What the other run recorded in the lock file: ``pid``, ``host``, ``started_at``
        and ``config`` (empty when it could not be read).
    """

    def __init__(self, message: str, *, path: str, holder: dict[str, object]) -> None:
        super().__init__(message)
        self.path = path
        self.holder = holder


class StaleLockWarning(UserWarning):
    """A run took over the output directory lock of a run that is no longer running."""


class OutsideSessionWarning(UserWarning):
    """Bars fall outside the trading calendar's sessions (``outside_sessions="warn"``)."""


class KernelFallbackWarning(UserWarning):
    """A :class:`~ml4t.backtest.SignalStrategy` runs on the event path, not the kernel.

    The message says which broker setting, cost model or strategy override has no kernel
    version. Results are the same; only speed differs.
    """


class RejectedOrdersWarning(UserWarning):
    """A run rejected orders, or its broker cancelled orders the strategy did not cancel.

    The message says how many and why (the most frequent reasons with their counts); the
    same lines are in ``result.warnings`` and the orders in ``result.orders_df``.
    """


class RejectOrder(Exception):
    """Raised by a cost model to reject the order it is pricing, with a reason.

    A slippage, impact or commission model that cannot price a fill (an input column is
    missing on this bar, say) raises ``RejectOrder("why")``: the broker rejects the order
    with a reason naming the model, and the strategy's ``on_order_rejected`` is told.
    Returning NaN or infinity instead is an error (:class:`PluginError`) that stops the
    run, because the number would reach the books.
    """
