"""ml4t.backtest: event-driven, point-in-time correct backtesting for ML strategies.

The public API is everything in ``__all__``; see ``docs/user_guide.md``.
"""

from __future__ import annotations

from ._version import __version__
from .kernel_cache import drop_stale_cache

# before any kernel module is imported or compiled: importing any ml4t.backtest module runs
# this file first, so no kernel can load stale from numba's cache (see kernel_cache)
drop_stale_cache()

from .alignment import align_asof
from .builtin.commission import (
    FixedCommission,
    IBKRFixedCommission,
    NoCommission,
    PercentageCommission,
    PerShareCommission,
    TieredCommission,
)
from .builtin.corporate import CorporateActions
from .builtin.feeds import ParquetDataFeed, PolarsDataFeed
from .builtin.impact import NoImpact
from .builtin.reporters import ParquetReporter, SummaryReporter
from .builtin.risk import ExitRules, RiskLimits
from .builtin.sim_broker import SimulationBroker
from .builtin.slippage import (
    BasisPointsSlippage,
    FixedSlippage,
    NoSlippage,
    PercentageSlippage,
    SpreadSlippage,
    VolumeShareSlippage,
)
from .config import BacktestConfig, load_config
from .core.assets import AssetRegistry, AssetSpec
from .core.batch import BatchStrategy
from .core.broker import (
    Broker,
    BrokerListener,
    CommissionModel,
    ImpactModel,
    OrderPort,
    SlippageModel,
)
from .core.calendar import Session
from .core.clock import Clock
from .core.context import Context
from .core.data import Chunk, Feed, RawBlock
from .core.events import FillEvent, MarketEvent, OrderEvent, TradeEvent
from .core.orders import Order, OrderRecord, OrderSide, OrderStatus, OrderType, TimeInForce
from .core.portfolio import Portfolio
from .core.results import BacktestResult
from .core.sources import read_ohlcv_csv
from .core.strategy import Strategy
from .declarative import (
    ConfidenceSizer,
    FixedSizer,
    PercentSizer,
    Rule,
    SignalStrategy,
    TopKSizer,
)
from .demo import load_demo_data, walk_forward_predictions
from .engine import BacktestEngine
from .errors import (
    BacktestError,
    ConfigError,
    DataValidationError,
    KernelFallbackWarning,
    OutputLockError,
    OutsideSessionWarning,
    PluginError,
    RejectedOrdersWarning,
    RejectOrder,
    StaleLockWarning,
    StrategyError,
)
from .markers import hookimpl
from .plugins import PluginManager, get_plugin_manager, list_plugins
from .registry import PluginRegistry
from .runner import run_config

__all__ = [
    "AssetRegistry",
    "AssetSpec",
    "BacktestConfig",
    "BacktestEngine",
    "BacktestError",
    "BacktestResult",
    "BasisPointsSlippage",
    "BatchStrategy",
    "Broker",
    "BrokerListener",
    "Chunk",
    "Clock",
    "CommissionModel",
    "ConfidenceSizer",
    "ConfigError",
    "Context",
    "CorporateActions",
    "DataValidationError",
    "ExitRules",
    "Feed",
    "FillEvent",
    "FixedCommission",
    "FixedSizer",
    "FixedSlippage",
    "IBKRFixedCommission",
    "ImpactModel",
    "KernelFallbackWarning",
    "MarketEvent",
    "NoCommission",
    "NoImpact",
    "NoSlippage",
    "Order",
    "OrderEvent",
    "OrderPort",
    "OrderRecord",
    "OrderSide",
    "OrderStatus",
    "OrderType",
    "OutputLockError",
    "OutsideSessionWarning",
    "ParquetDataFeed",
    "ParquetReporter",
    "PerShareCommission",
    "PercentSizer",
    "PercentageCommission",
    "PercentageSlippage",
    "PluginError",
    "PluginManager",
    "PluginRegistry",
    "PolarsDataFeed",
    "Portfolio",
    "RawBlock",
    "RejectOrder",
    "RejectedOrdersWarning",
    "RiskLimits",
    "Rule",
    "Session",
    "SignalStrategy",
    "SimulationBroker",
    "SlippageModel",
    "SpreadSlippage",
    "StaleLockWarning",
    "Strategy",
    "StrategyError",
    "SummaryReporter",
    "TieredCommission",
    "TimeInForce",
    "TopKSizer",
    "TradeEvent",
    "VolumeShareSlippage",
    "__version__",
    "align_asof",
    "get_plugin_manager",
    "hookimpl",
    "list_plugins",
    "load_config",
    "load_demo_data",
    "read_ohlcv_csv",
    "run_config",
    "walk_forward_predictions",
]
