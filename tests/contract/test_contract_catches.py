"""Each check of the broker contract fails for a broker that breaks it.

Every case is ``MinimalBroker`` with one fault; the contract test named beside it must
fail for it (``TestMinimalBrokerContract`` shows the sound broker passes them all).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from ml4t.backtest import Broker, Order, OrderStatus
from ml4t.backtest.testing import BrokerContract

from .minimal_broker import MinimalBroker


class NoPortfolio(MinimalBroker):
    def __init__(self) -> None:
        super().__init__()
        del self.portfolio


class OddSizing(MinimalBroker):
    order_sizing = "whenever"


class DoubleCash(MinimalBroker):
    def setup(self, asset_ids: Any, listener: Any, clock: Any) -> None:
        super().setup(asset_ids, listener, clock)
        self.portfolio.cash *= 2


class AlwaysPending(MinimalBroker):
    def setup(self, asset_ids: Any, listener: Any, clock: Any) -> None:
        super().setup(asset_ids, listener, clock)
        self.has_pending = True


class OpaqueSettings(MinimalBroker):
    def settings(self) -> dict[str, Any]:
        return {"model": object()}


class RoundsUp(MinimalBroker):
    def round_quantity(self, asset_id: str, quantity: float) -> float:
        return float(math.ceil(quantity))


class FillsInSubmit(MinimalBroker):
    def submit_order(self, order: Order) -> Order:
        super().submit_order(order)
        if order.is_open:
            self.process_now(order)
        return order

    def process_now(self, order: Order) -> None:
        code = self.portfolio.code_of[order.asset_id]
        clock = self._clock
        when = clock.to_datetime(clock.now_ns)
        self._fill(order, code, self.portfolio.price_of(code), clock.now_ns, clock.now_index, when)
        self._working.remove(order)


class ReportsTwice(MinimalBroker):
    def setup(self, asset_ids: Any, listener: Any, clock: Any) -> None:
        super().setup(asset_ids, _Echo(listener), clock)


class HiddenFee(MinimalBroker):
    def _fill(self, order: Order, code: int, price: float, ts: int, index: int, when: Any) -> None:
        self.portfolio.cash -= 1.0  # charged, but neither in the ledger nor in the fill
        super()._fill(order, code, price, ts, index, when)


class NoFilledRecord(MinimalBroker):
    def _log(self, order: Order, event: str, reason: str | None, ts: int | None = None) -> None:
        if event != "filled":
            super()._log(order, event, reason, ts)


class FloatTimestamps(MinimalBroker):
    def _log(self, order: Order, event: str, reason: str | None, ts: int | None = None) -> None:
        super()._log(order, event, reason, ts)
        self._records[-1] = self._records[-1]._replace(timestamp_ns=float(self._records[-1][0]))


class SilentCancel(MinimalBroker):
    def cancel_order(self, order_id: int) -> bool:
        listener, self._listener = self._listener, _Deaf()
        try:
            return super().cancel_order(order_id)
        finally:
            self._listener = listener


class CancelsAnything(MinimalBroker):
    def cancel_order(self, order_id: int) -> bool:
        super().cancel_order(order_id)
        return True


class OwnCancelWording(MinimalBroker):
    def cancel_order(self, order_id: int) -> bool:
        order = next((o for o in self._working if o.order_id == order_id), None)
        if order is None:
            return False
        self._working.remove(order)
        order.status, order.reason = OrderStatus.CANCELLED, "cancel requested"
        self._log(order, "cancelled", order.reason)
        assert self._listener is not None
        self._listener.order_cancelled(order, order.reason)
        return True


class RaisesOnInvalid(MinimalBroker):
    def submit_order(self, order: Order) -> Order:
        problem = order.validation_error()
        if problem is not None:
            raise ValueError(problem)
        return super().submit_order(order)


class WrongIndex(MinimalBroker):
    def _fill(self, order: Order, code: int, price: float, ts: int, index: int, when: Any) -> None:
        super()._fill(order, code, price, ts, 0, when)  # books the fill at the first bar


class NoReset(MinimalBroker):
    def setup(self, asset_ids: Any, listener: Any, clock: Any) -> None:
        next_id = self._next_id
        super().setup(asset_ids, listener, clock)
        self._next_id = next_id


class Generous(MinimalBroker):
    def _fill(self, order: Order, code: int, price: float, ts: int, index: int, when: Any) -> None:
        super()._fill(order, code, price - order.side.sign, ts, index, when)


class EndSessionRaises(MinimalBroker):
    def end_session(self, last_ts_ns: int) -> None:
        raise RuntimeError("cannot end a session")


class ExitsValueError(MinimalBroker):
    def set_exits(self, asset_id: str, rules: Any) -> None:
        raise ValueError("no exits")


class ReplaceDoesNothing(MinimalBroker):
    def replace_order(self, order_id: int, **changes: Any) -> Order:
        return next(o for o in self._working if o.order_id == order_id)


class KeepsLimitsSilently(MinimalBroker):
    def _refusal(self, order: Order) -> str | None:
        if order.order_type.value in ("limit", "stop"):
            return None
        return super()._refusal(order)

    def process_open(self, chunk: Any, i: int) -> None:
        keep = [o for o in self._working if o.order_type.value != "market"]
        self._working = [o for o in self._working if o.order_type.value == "market"]
        super().process_open(chunk, i)
        self._working += keep
        self.has_pending = bool(self._working)


class _Echo:
    """Reports every fill twice."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def order_filled(self, order: Order, fill: object) -> None:
        self.inner.order_filled(order, fill)
        self.inner.order_filled(order, fill)


class _Deaf:
    def order_filled(self, order: Order, fill: object) -> None:
        pass

    def order_rejected(self, order: Order, reason: str) -> None:
        pass

    def order_cancelled(self, order: Order, reason: str) -> None:
        pass


SHORT = frozenset({"short"})
#: (broken broker, what it declares, the contract test that must fail)
CASES: list[tuple[type[MinimalBroker], frozenset[str], str]] = [
    (NoPortfolio, SHORT, "test_is_a_broker"),
    (OddSizing, SHORT, "test_is_a_broker"),
    (MinimalBroker, frozenset({"shorts"}), "test_is_a_broker"),
    (DoubleCash, SHORT, "test_setup_creates_the_portfolio"),
    (AlwaysPending, SHORT, "test_setup_creates_the_portfolio"),
    (OpaqueSettings, SHORT, "test_settings_metrics_and_rounding"),
    (RoundsUp, SHORT, "test_settings_metrics_and_rounding"),
    (FillsInSubmit, SHORT, "test_market_buy_fills_once"),
    (ReportsTwice, SHORT, "test_market_buy_fills_once"),
    (HiddenFee, SHORT, "test_market_buy_fills_once"),
    (NoFilledRecord, SHORT, "test_market_buy_fills_once"),
    (FloatTimestamps, SHORT, "test_market_buy_fills_once"),
    (SilentCancel, SHORT, "test_cancel_and_open_orders"),
    (CancelsAnything, SHORT, "test_cancel_and_open_orders"),
    (OwnCancelWording, SHORT, "test_cancel_and_open_orders"),
    (RaisesOnInvalid, SHORT, "test_invalid_orders_are_rejected"),
    (WrongIndex, SHORT, "test_full_backtest_books"),
    (NoReset, SHORT, "test_full_backtest_books"),
    (Generous, SHORT, "test_flat_round_trip_makes_no_money"),
    (EndSessionRaises, SHORT, "test_sessions"),
    (MinimalBroker, SHORT | {"limit"}, "test_limit_orders"),
    (KeepsLimitsSilently, SHORT, "test_limit_orders"),
    (KeepsLimitsSilently, SHORT, "test_stop_orders"),
    (MinimalBroker, SHORT | {"bracket"}, "test_brackets"),
    (MinimalBroker, SHORT | {"oco"}, "test_oco"),
    (MinimalBroker, SHORT | {"oto"}, "test_oto"),
    (ReplaceDoesNothing, SHORT, "test_replace"),
    (ExitsValueError, SHORT, "test_exits"),
    (MinimalBroker, frozenset(), "test_short_selling"),
]


def _contract(broker: type[MinimalBroker], supports: frozenset[str]) -> BrokerContract:
    class Contract(BrokerContract):
        initial_cash = 100_000.0

        def make_broker(self) -> Broker:
            return broker()

    Contract.supports = supports
    return Contract()


@pytest.mark.parametrize(
    ("broker", "supports", "test"), CASES, ids=[f"{b.__name__}-{t[5:]}" for b, _, t in CASES]
)
def test_the_contract_catches(
    broker: type[MinimalBroker], supports: frozenset[str], test: str
) -> None:
    expected = RuntimeError if broker is EndSessionRaises else AssertionError
    with pytest.raises(expected):
        getattr(_contract(broker, supports), test)()


def test_every_contract_test_can_fail() -> None:
    tests = {name for name in dir(BrokerContract) if name.startswith("test_")}
    assert tests == {test for _, _, test in CASES}
