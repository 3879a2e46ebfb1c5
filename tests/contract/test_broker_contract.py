"""The broker contract suite run for SimulationBroker in several configurations."""

from __future__ import annotations

from ml4t.backtest import Broker, PercentageCommission, SimulationBroker
from ml4t.backtest.testing import FEATURES, BrokerContract

ALL = FEATURES
LONG_ONLY = FEATURES - {"short"}


class TestDefaultSimulationBroker(BrokerContract):
    """A cash account (no shorting), fractional, next-bar-open fills."""

    supports = LONG_ONLY
    initial_cash = 100_000.0

    def make_broker(self) -> Broker:
        return SimulationBroker()


class TestBacktraderPreset(BrokerContract):
    """Backtrader's conventions: a simple account that shorts, close-referenced trailing."""

    supports = ALL
    initial_cash = 50_000.0

    def make_broker(self) -> Broker:
        return SimulationBroker.preset("backtrader", initial_cash=50_000.0)


class TestVectorbtPreset(BrokerContract):
    """Fills at the signal bar's close (same_bar_close), one order per bar."""

    supports = ALL

    def make_broker(self) -> Broker:
        return SimulationBroker.preset("vectorbt")


class TestZiplinePreset(BrokerContract):
    """Next-bar-close fills, whole units, commission, slippage and a volume limit."""

    supports = ALL

    def make_broker(self) -> Broker:
        return SimulationBroker.preset("zipline")


class TestWholeUnitsSimulationBroker(BrokerContract):
    """fractional=False: quantities round down to whole units."""

    supports = LONG_ONLY

    def make_broker(self) -> Broker:
        return SimulationBroker(fractional=False, order_sizing="at_order")


class TestMarginSimulationBroker(BrokerContract):
    """A margin account: shorting allowed, margin checks at every close."""

    supports = ALL
    initial_cash = 100_000.0
    always_pending = True  # the margin book is checked at every close

    def make_broker(self) -> Broker:
        return SimulationBroker(account="margin", commission=PercentageCommission(0.001))
