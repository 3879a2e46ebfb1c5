"""MarketEvent and FillEvent: immutable, with read-only signal/indicator mappings."""

from __future__ import annotations

import dataclasses
import math
import pickle
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pytest

from ml4t.backtest import BacktestEngine, FillEvent, MarketEvent, PolarsDataFeed, Strategy


class _Keep(Strategy):
    def __init__(self) -> None:
        self.events: list[MarketEvent] = []

    def on_market_data(self, event: MarketEvent, context: Any) -> None:
        self.events.append(event)


@pytest.fixture
def events(make_bars: Any) -> list[MarketEvent]:
    """Three bars of asset "A" with signals pred (NaN on bar 1), conf and indicator rsi."""
    df = make_bars(3, pred=[0.1, float("nan"), 0.3], conf=[1.0, 2.0, 3.0], rsi=[30.0, 40.0, 50.0])
    feed = PolarsDataFeed(
        df, asset_id="A", signal_columns=["pred", "conf"], indicator_columns=["rsi"]
    )
    strategy = _Keep()
    BacktestEngine(feed, strategy).run()
    return strategy.events


def test_market_event_fields_match_the_bar(events: list[MarketEvent]) -> None:
    e = events[1]  # make_bars row 1: close 101, open 100.5, high 102, low 99.5, volume 1001
    assert e.timestamp == datetime(2024, 1, 3)
    assert e.timestamp_ns == 1_704_240_000_000_000_000
    assert (e.open, e.high, e.low, e.close, e.volume) == (100.5, 102.0, 99.5, 101.0, 1001.0)
    assert e.asset_id == "A"


def test_market_event_symbol_aliases_asset_id(events: list[MarketEvent]) -> None:
    assert [e.symbol for e in events] == ["A", "A", "A"]
    assert all(e.symbol == e.asset_id for e in events)


@pytest.mark.parametrize("field", ["close", "open", "timestamp", "asset_id", "signals", "symbol"])
def test_market_event_attribute_assignment_raises(events: list[MarketEvent], field: str) -> None:
    e = events[0]
    before = getattr(e, field)
    with pytest.raises(AttributeError):
        setattr(e, field, 1.0)
    assert getattr(e, field) == before


def test_market_event_new_attribute_raises(events: list[MarketEvent]) -> None:
    with pytest.raises(AttributeError):
        events[0].note = "x"  # type: ignore[attr-defined]


def test_market_event_item_assignment_raises(events: list[MarketEvent]) -> None:
    e = events[0]
    with pytest.raises(TypeError):
        e[0] = 0  # type: ignore[index]
    with pytest.raises(TypeError):
        e[2] = 1.0  # type: ignore[index]
    assert e.close == 100.0


def test_market_event_is_not_picklable_with_clear_message(events: list[MarketEvent]) -> None:
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(events[0])


def test_market_event_repr_names_asset_and_close(events: list[MarketEvent]) -> None:
    text = repr(events[2])
    assert "2024-01-04" in text
    assert "A" in text
    assert "c=102" in text


# --- signals / indicators mappings --------------------------------------------------------


def test_signals_are_read_only_mapping(events: list[MarketEvent]) -> None:
    sig = events[0].signals
    assert isinstance(sig, Mapping)
    assert not hasattr(sig, "__setitem__")
    assert not hasattr(sig, "__delitem__")
    with pytest.raises(TypeError):
        sig["pred"] = 5.0  # type: ignore[index]
    assert sig["pred"] == 0.1


def test_indicators_are_read_only_mapping(events: list[MarketEvent]) -> None:
    ind = events[0].indicators
    assert isinstance(ind, Mapping)
    assert not hasattr(ind, "__setitem__")
    with pytest.raises(TypeError):
        ind["rsi"] = 5.0  # type: ignore[index]
    assert dict(ind) == {"rsi": 30.0}


def test_signals_unknown_name_keyerror_lists_available(events: list[MarketEvent]) -> None:
    with pytest.raises(KeyError) as info:
        events[0].signals["prediction"]
    msg = str(info.value)
    assert "prediction" in msg
    assert "pred" in msg
    assert "conf" in msg


def test_indicators_unknown_name_keyerror_lists_available(events: list[MarketEvent]) -> None:
    with pytest.raises(KeyError) as info:
        events[0].indicators["macd"]
    assert "rsi" in str(info.value)


def test_signals_len_iter_contains(events: list[MarketEvent]) -> None:
    sig = events[2].signals
    assert len(sig) == 2
    assert list(sig) == ["pred", "conf"]
    assert "pred" in sig
    assert "rsi" not in sig
    assert sig.get("missing") is None
    assert dict(sig.items()) == {"pred": 0.3, "conf": 3.0}


def test_signals_views_are_per_bar(events: list[MarketEvent]) -> None:
    assert [e.signals["conf"] for e in events] == [1.0, 2.0, 3.0]
    assert [e.indicators["rsi"] for e in events] == [30.0, 40.0, 50.0]


def test_signals_nan_passes_through(events: list[MarketEvent]) -> None:
    value = events[1].signals["pred"]
    assert isinstance(value, float)
    assert math.isnan(value)


def test_empty_signals_mapping_without_signal_columns(make_bars: Any) -> None:
    strategy = _Keep()
    BacktestEngine(PolarsDataFeed(make_bars(2), asset_id="A"), strategy).run()
    sig = strategy.events[0].signals
    assert len(sig) == 0
    assert list(sig) == []
    with pytest.raises(KeyError):
        sig["pred"]


# --- FillEvent ------------------------------------------------------------------------------


def _fill(side: str = "buy") -> FillEvent:
    return FillEvent(
        order_id=3,
        asset_id="A",
        timestamp=datetime(2024, 1, 3),
        side=side,
        quantity=10.0,
        price=101.5,
        commission=1.0,
        slippage=5.0,
        base_price=101.0,
        tag="entry",
    )


def test_fill_event_is_frozen() -> None:
    fill = _fill()
    with pytest.raises(dataclasses.FrozenInstanceError):
        fill.price = 1.0  # type: ignore[misc]
    assert fill.price == 101.5


def test_fill_event_signed_quantity_and_value() -> None:
    assert _fill("buy").signed_quantity == 10.0
    assert _fill("sell").signed_quantity == -10.0
    assert _fill().value == 1015.0
