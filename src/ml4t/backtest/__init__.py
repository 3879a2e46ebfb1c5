"""ml4t.backtest: event-driven, point-in-time correct backtesting for ML strategies.

The public API is everything in ``__all__``; see ``docs/user_guide.md``.
"""

from __future__ import annotations

from .builtin.commission import NoCommission, PercentageCommission, PerShareCommission
from .builtin.feeds import ParquetDataFeed, PolarsDataFeed
from .builtin.impact import NoImpact
from .builtin.reporters import ParquetReporter, SummaryReporter
from .builtin.sim_broker import SimulationBroker
from .builtin.slippage import FixedSlippage, NoSlippage, PercentageSlippage
from .config import BacktestConfig, load_config
from .core.broker import Broker, CommissionModel, ImpactModel, SlippageModel
from .core.context import Context
from .core.data import Feed, RawBlock
from .core.engine import BacktestEngine
from .core.events import FillEvent, MarketEvent, OrderEvent
from .core.orders import Order, OrderSide, OrderStatus, OrderType, TimeInForce
from .core.results import BacktestResult
from .core.strategy import Strategy
from .errors import BacktestError, ConfigError, DataValidationError, PluginError, StrategyError
from .hookspecs import hookimpl
from .io import read_ohlcv_csv
from .plugins import PluginManager, PluginRegistry, get_plugin_manager, list_plugins

__version__ = "0.1.0"

__all__ = [
    "BacktestConfig",
    "BacktestEngine",
    "BacktestError",
    "BacktestResult",
    "Broker",
    "CommissionModel",
    "ConfigError",
    "Context",
    "DataValidationError",
    "Feed",
    "FillEvent",
    "FixedSlippage",
    "ImpactModel",
    "MarketEvent",
    "NoCommission",
    "NoImpact",
    "NoSlippage",
    "Order",
    "OrderEvent",
    "OrderSide",
    "OrderStatus",
    "OrderType",
    "ParquetDataFeed",
    "ParquetReporter",
    "PerShareCommission",
    "PercentageCommission",
    "PercentageSlippage",
    "PluginError",
    "PluginManager",
    "PluginRegistry",
    "PolarsDataFeed",
    "RawBlock",
    "SimulationBroker",
    "SlippageModel",
    "Strategy",
    "StrategyError",
    "SummaryReporter",
    "TimeInForce",
    "__version__",
    "get_plugin_manager",
    "hookimpl",
    "list_plugins",
    "load_config",
    "read_ohlcv_csv",
]
