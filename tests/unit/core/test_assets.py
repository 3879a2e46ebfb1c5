"""The asset registry: spec validation, loading from mappings/frames/files, arrays, rounding."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from ml4t.backtest.core.assets import AssetRegistry, AssetSpec
from ml4t.backtest.core.orders import round_price, round_to_lot
from ml4t.backtest.errors import ConfigError

ES = {"asset_class": "future", "multiplier": 50, "tick_size": 0.25, "initial_margin": 12_000}


# -- AssetSpec --------------------------------------------------------------------------------


def test_asset_spec_defaults_are_a_plain_usd_equity() -> None:
    spec = AssetSpec()
    assert spec.asset_class == "equity"
    assert spec.multiplier == 1.0
    assert spec.tick_size is None and spec.lot_size is None
    assert spec.min_quantity == 0.0
    assert spec.initial_margin is None and spec.maintenance_margin is None
    assert spec.borrow_rate is None
    assert spec.shortable is True
    assert spec.currency == "USD"
    assert spec.is_future is False


def test_asset_spec_ints_and_case_are_normalised() -> None:
    spec = AssetSpec(asset_class="Future", multiplier=50, initial_margin=12000, currency="usd")  # type: ignore[arg-type]
    assert spec.asset_class == "future" and spec.is_future
    assert spec.multiplier == 50.0 and isinstance(spec.multiplier, float)
    assert spec.initial_margin == 12000.0 and isinstance(spec.initial_margin, float)
    assert spec.currency == "USD"


def test_asset_spec_is_frozen() -> None:
    spec = AssetSpec()
    with pytest.raises(AttributeError):
        spec.multiplier = 2.0  # type: ignore[misc]


def test_asset_spec_direct_bad_value_names_field() -> None:
    with pytest.raises(ConfigError, match=r"^AssetSpec: multiplier must be > 0, got -1$"):
        AssetSpec(multiplier=-1)


def test_asset_spec_future_per_contract_margins_accepted() -> None:
    spec = AssetSpec(asset_class="future", initial_margin=12_000.0, maintenance_margin=11_000.0)
    assert (spec.initial_margin, spec.maintenance_margin) == (12_000.0, 11_000.0)


def test_asset_spec_equity_fraction_margin_accepted() -> None:
    spec = AssetSpec(initial_margin=0.5, maintenance_margin=0.25)
    assert (spec.initial_margin, spec.maintenance_margin) == (0.5, 0.25)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"multiplier": 0}, "multiplier must be > 0, got 0"),
        ({"multiplier": "abc"}, "multiplier must be a number, got 'abc'"),
        ({"multiplier": math.inf}, "multiplier must be a finite number, got inf"),
        ({"multiplier": True}, "multiplier must be a number, got True"),
        ({"tick_size": -0.01}, "tick_size must be > 0, got -0.01"),
        ({"lot_size": 0.0}, "lot_size must be > 0, got 0.0"),
        ({"min_quantity": -1}, "min_quantity must be >= 0, got -1"),
        ({"borrow_rate": -0.02}, "borrow_rate must be >= 0, got -0.02"),
        ({"asset_class": "stock"}, "asset_class must be one of 'equity', 'etf', 'future'"),
        ({"asset_class": "future"}, "initial_margin is required for asset_class 'future'"),
        (
            {"asset_class": "future", "initial_margin": -5},
            "initial_margin must be >= 0 (currency per contract for a future), got -5",
        ),
        (
            {"initial_margin": 1.5},
            "initial_margin must be a fraction of position value in (0, 1] for asset_class "
            "'equity', got 1.5",
        ),
        ({"maintenance_margin": 0}, "maintenance_margin must be a fraction"),
        (
            {"initial_margin": 0.3, "maintenance_margin": 0.5},
            "maintenance_margin (0.5) must be <= initial_margin (0.3)",
        ),
        (
            {"asset_class": "future", "initial_margin": 1000, "maintenance_margin": 1100},
            "maintenance_margin (1100.0) must be <= initial_margin (1000.0)",
        ),
        ({"shortable": "maybe"}, "shortable must be true or false, got 'maybe'"),
        ({"currency": " "}, "currency must be a non-empty string, got ' '"),
    ],
)
def test_registry_bad_field_message_names_source_asset_and_field(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        AssetRegistry({"AAPL": fields})
    assert str(info.value).startswith(f"asset registry: asset 'AAPL': {message}")


def test_registry_unknown_field_lists_fields_and_suggests() -> None:
    with pytest.raises(ConfigError) as info:
        AssetRegistry({"AAPL": {"multipler": 2}})
    text = str(info.value)
    assert text.startswith("asset registry: asset 'AAPL': unknown field 'multipler'")
    assert "did you mean 'multiplier'?" in text
    assert "fields: asset_class, multiplier, tick_size, lot_size, min_quantity" in text


def test_registry_none_field_takes_default() -> None:
    reg = AssetRegistry({"AAPL": {"multiplier": None, "tick_size": None, "shortable": None}})
    assert reg.spec("AAPL") == AssetSpec()


def test_registry_accepts_spec_objects_and_int_keys() -> None:
    spec = AssetSpec(lot_size=100)
    reg = AssetRegistry({"AAPL": spec, 7203: {"lot_size": 100}})
    assert reg.spec("AAPL") is spec
    assert "7203" in reg and reg.spec("7203").lot_size == 100.0


def test_registry_bad_container_rejected() -> None:
    with pytest.raises(
        ConfigError, match="expected a mapping, a DataFrame or a file path, got int"
    ):
        AssetRegistry(5)
    with pytest.raises(ConfigError, match="asset 'AAPL': expected a mapping of fields, got int"):
        AssetRegistry({"AAPL": 5})


# -- default, spec(), container protocol ----------------------------------------------------


def test_registry_default_applies_to_unlisted_assets() -> None:
    reg = AssetRegistry({"ES": ES}, default={"lot_size": 1, "borrow_rate": 0.01})
    assert reg.spec("ES").is_future
    assert reg.spec("AAPL") == AssetSpec(lot_size=1.0, borrow_rate=0.01)
    assert reg.spec("AAPL") is reg.default
    assert "ES" in reg and "AAPL" not in reg
    assert len(reg) == 1


def test_registry_bad_default_is_named() -> None:
    with pytest.raises(ConfigError, match=r"^asset registry: default: lot_size must be > 0, got 0"):
        AssetRegistry(None, default={"lot_size": 0})


def test_registry_empty_uses_plain_default() -> None:
    reg = AssetRegistry()
    assert len(reg) == 0
    assert reg.spec("X") == AssetSpec()


def test_registry_repr_counts_classes() -> None:
    reg = AssetRegistry({"ES": ES, "NQ": {**ES, "multiplier": 20}, "AAPL": {}})
    text = repr(reg)
    assert text.startswith("AssetRegistry(3 assets (1 equity, 2 future), default=AssetSpec(")
    assert "source='asset registry'" in text


def test_registry_specs_is_read_only() -> None:
    reg = AssetRegistry({"AAPL": {}})
    with pytest.raises(TypeError):
        reg.specs["MSFT"] = AssetSpec()  # type: ignore[index]


# -- check() ----------------------------------------------------------------------------------


def test_registry_check_other_currency_raises() -> None:
    reg = AssetRegistry({"SAP": {"currency": "EUR"}, "AAPL": {}})
    with pytest.raises(ConfigError) as info:
        reg.check(["AAPL", "SAP"], account_currency="USD")
    assert str(info.value) == (
        "asset registry: multi-currency accounts are not supported: asset 'SAP' is in EUR, "
        "the account in USD"
    )


def test_registry_check_ignores_listed_assets_not_traded() -> None:
    reg = AssetRegistry({"SAP": {"currency": "EUR"}})
    reg.check(["AAPL", "MSFT"], account_currency="usd")  # SAP is not traded: no error


def test_registry_check_default_currency_applies_to_unlisted() -> None:
    reg = AssetRegistry({}, default={"currency": "EUR"})
    with pytest.raises(ConfigError, match=r"asset 'AAPL' is in EUR \(the registry default\)"):
        reg.check(["AAPL"])
    reg.check(["AAPL"], account_currency="EUR")


# -- arrays() ---------------------------------------------------------------------------------


def test_registry_arrays_values_by_position() -> None:
    reg = AssetRegistry(
        {
            "ES": {**ES, "maintenance_margin": 11_000},
            "AAPL": {"lot_size": 1, "borrow_rate": 0.02, "initial_margin": 0.5},
            "GME": {"shortable": False, "min_quantity": 10},
            "UNUSED": {"multiplier": 7},
        }
    )
    arr = reg.arrays(["AAPL", "ES", "MSFT", "GME"])
    nan = np.nan
    assert arr.asset_ids == ("AAPL", "ES", "MSFT", "GME")
    assert len(arr) == 4
    np.testing.assert_array_equal(arr.multiplier, [1.0, 50.0, 1.0, 1.0])
    np.testing.assert_array_equal(arr.tick_size, [nan, 0.25, nan, nan])
    np.testing.assert_array_equal(arr.lot_size, [1.0, nan, nan, nan])
    np.testing.assert_array_equal(arr.min_quantity, [0.0, 0.0, 0.0, 10.0])
    np.testing.assert_array_equal(arr.initial_margin, [0.5, 12_000.0, nan, nan])
    np.testing.assert_array_equal(arr.maintenance_margin, [nan, 11_000.0, nan, nan])
    np.testing.assert_array_equal(arr.borrow_rate, [0.02, nan, nan, nan])
    np.testing.assert_array_equal(arr.is_future, [False, True, False, False])
    np.testing.assert_array_equal(arr.shortable, [True, True, True, False])
    assert arr.multiplier.dtype == np.float64 and arr.shortable.dtype == np.bool_
    assert 7.0 not in arr.multiplier  # UNUSED is listed but not requested


def test_registry_arrays_are_read_only() -> None:
    arr = AssetRegistry().arrays(["A"])
    with pytest.raises(ValueError):
        arr.multiplier[0] = 2.0


def test_registry_arrays_empty_ids() -> None:
    arr = AssetRegistry({"A": {}}).arrays([])
    assert len(arr) == 0 and arr.multiplier.shape == (0,)


# -- frames -----------------------------------------------------------------------------------


def test_registry_from_polars_frame_nulls_take_defaults() -> None:
    frame = pl.DataFrame(
        {
            "symbol": ["ES", "AAPL"],
            "asset_class": ["future", None],
            "multiplier": [50.0, None],
            "initial_margin": [12_000.0, None],
            "shortable": [True, None],
        }
    )
    reg = AssetRegistry(frame)
    assert reg.spec("ES") == AssetSpec(asset_class="future", multiplier=50, initial_margin=12000)
    assert reg.spec("AAPL") == AssetSpec()


def test_registry_from_pandas_frame_nan_is_missing() -> None:
    frame = pd.DataFrame({"asset_id": ["A", "B"], "tick_size": [0.01, np.nan]})
    reg = AssetRegistry(frame)
    assert reg.spec("A").tick_size == 0.01
    assert reg.spec("B").tick_size is None


def test_registry_frame_duplicate_asset_named() -> None:
    frame = pl.DataFrame({"asset_id": ["A", "B", "A"], "multiplier": [1.0, 2.0, 3.0]})
    with pytest.raises(ConfigError, match=r"asset 'A' is listed twice \(rows 0 and 2\)"):
        AssetRegistry(frame)


def test_registry_frame_bad_value_names_row_and_asset() -> None:
    frame = pl.DataFrame({"asset_id": ["A", "B"], "multiplier": [1.0, 0.0]})
    with pytest.raises(ConfigError) as info:
        AssetRegistry(frame)
    assert str(info.value) == "asset registry: row 1: asset 'B': multiplier must be > 0, got 0.0"


def test_registry_frame_missing_id_column() -> None:
    with pytest.raises(ConfigError, match="missing column 'asset_id' \\(or 'symbol'\\)"):
        AssetRegistry(pl.DataFrame({"ticker": ["A"]}))


def test_registry_frame_unknown_column() -> None:
    with pytest.raises(
        ConfigError, match="unknown column 'tick' \\(did you mean 'tick_size'\\?\\)"
    ):
        AssetRegistry(pl.DataFrame({"asset_id": ["A"], "tick": [0.01]}))


def test_registry_frame_null_asset_id() -> None:
    with pytest.raises(ConfigError, match="row 1: column 'asset_id' is empty"):
        AssetRegistry(pl.DataFrame({"asset_id": ["A", None]}))


# -- files ------------------------------------------------------------------------------------


def test_registry_from_csv_parses_text(tmp_path: Path) -> None:
    path = tmp_path / "assets.csv"
    path.write_text(
        "asset_id,asset_class,multiplier,tick_size,initial_margin,shortable,currency\n"
        "ES,future,50,0.25,12000,true,USD\n"
        "0700,equity,,0.01,,False,\n"
    )
    reg = AssetRegistry(path)
    assert reg.spec("ES") == AssetSpec(
        asset_class="future", multiplier=50.0, tick_size=0.25, initial_margin=12000.0
    )
    # "0700" keeps its leading zero: ids are read as text; empty cells take the default
    assert reg.spec("0700") == AssetSpec(tick_size=0.01, shortable=False)
    assert reg.source == str(path)


def test_registry_from_csv_error_names_file(tmp_path: Path) -> None:
    path = tmp_path / "assets.csv"
    path.write_text("asset_id,multiplier\nAAPL,x\n")
    with pytest.raises(ConfigError) as info:
        AssetRegistry(path)
    assert str(info.value) == f"{path}: row 0: asset 'AAPL': multiplier must be a number, got 'x'"


def test_registry_from_parquet(tmp_path: Path) -> None:
    path = tmp_path / "assets.parquet"
    pl.DataFrame(
        {"asset_id": ["BTC"], "asset_class": ["crypto"], "lot_size": [1e-8], "borrow_rate": [0.1]}
    ).write_parquet(path)
    reg = AssetRegistry(str(path))
    assert reg.spec("BTC") == AssetSpec(asset_class="crypto", lot_size=1e-8, borrow_rate=0.1)


def test_registry_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "assets.yaml"
    path.write_text(
        "ES: {asset_class: future, multiplier: 50, tick_size: 0.25, initial_margin: 12000}\n"
        "7203: {lot_size: 100, currency: JPY}\n"
    )
    reg = AssetRegistry(path)
    assert reg.spec("ES").multiplier == 50.0
    assert reg.spec("7203") == AssetSpec(lot_size=100.0, currency="JPY")


def test_registry_yaml_future_without_margin_names_file(tmp_path: Path) -> None:
    path = tmp_path / "assets.yaml"
    path.write_text("ES: {asset_class: future, multiplier: 50}\n")
    with pytest.raises(ConfigError) as info:
        AssetRegistry(path)
    assert str(info.value) == (
        f"{path}: asset 'ES': initial_margin is required for asset_class 'future'"
    )


def test_registry_yaml_duplicate_key_rejected(tmp_path: Path) -> None:
    path = tmp_path / "assets.yaml"
    path.write_text("AAPL: {lot_size: 1}\nAAPL: {lot_size: 100}\n")
    with pytest.raises(ConfigError, match=r"asset 'AAPL' is listed twice \(line 2\)"):
        AssetRegistry(path)


def test_registry_yaml_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "assets.yml"
    path.write_text("- AAPL\n- MSFT\n")
    with pytest.raises(ConfigError, match=r"expected a mapping asset_id -> fields .* got list"):
        AssetRegistry(path)


def test_registry_yaml_unparsable(tmp_path: Path) -> None:
    path = tmp_path / "assets.yaml"
    path.write_text("AAPL: {lot_size: 1\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}: cannot read"):
        AssetRegistry(path)


def test_registry_empty_yaml_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "assets.yaml"
    path.write_text("")
    assert len(AssetRegistry(path)) == 0


def test_registry_from_json(tmp_path: Path) -> None:
    path = tmp_path / "assets.json"
    path.write_text(json.dumps({"SPY": {"asset_class": "etf", "borrow_rate": 0.003}}))
    assert AssetRegistry(path).spec("SPY") == AssetSpec(asset_class="etf", borrow_rate=0.003)


def test_registry_json_duplicate_key_rejected(tmp_path: Path) -> None:
    path = tmp_path / "assets.json"
    path.write_text('{"SPY": {}, "SPY": {"lot_size": 1}}')
    with pytest.raises(ConfigError, match="asset 'SPY' is listed twice"):
        AssetRegistry(path)


def test_registry_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}: asset file not found$"):
        AssetRegistry(path)


def test_registry_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "assets.txt"
    path.write_text("x")
    with pytest.raises(ConfigError, match=r"unsupported file type '\.txt'"):
        AssetRegistry(path)


def test_registry_source_overrides_label() -> None:
    with pytest.raises(ConfigError, match=r"^backtest.yaml: execution.assets: asset 'A'"):
        AssetRegistry({"A": {"lot_size": -1}}, source="backtest.yaml: execution.assets")


# -- round_to_lot -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "lot", "expected"),
    [
        (2.9999999999, 1.0, 3.0),  # float noise 1e-10 lots below 3 -> 3, not 2
        (3.7, 1.0, 3.0),  # toward zero
        (-3.7, 1.0, -3.0),  # toward zero for sells
        (250.0, 100.0, 200.0),  # 2.5 lots of 100 -> 2 lots
        (0.1 + 0.2, 0.1, 0.3),  # 0.30000000000000004 / 0.1 = 3.0000000000000004 -> 3 lots
        (0.35, 0.1, 0.3),  # 3.5 lots -> 3 lots = 0.3 exactly, not 0.30000000000000004
        (0.123456789, 1e-8, 0.12345678),  # crypto: 12345678.9 lots -> 12345678
        (-0.5, 1.0, 0.0),  # less than a lot -> zero (not -0.0)
        (123_456_789.0, 0.001, 123_456_789.0),  # a big count survives float noise
        (7.5, None, 7.5),  # no lot size: unchanged
        (7.5, math.nan, 7.5),
    ],
)
def test_round_to_lot_cases(quantity: float, lot: float | None, expected: float) -> None:
    got = round_to_lot(quantity, lot)
    assert got == expected
    assert math.copysign(1.0, got) == math.copysign(1.0, expected)


@pytest.mark.parametrize("lot", [0.0, -1.0, math.inf])
def test_round_to_lot_bad_lot_raises(lot: float) -> None:
    with pytest.raises(ConfigError, match="lot must be > 0 and finite"):
        round_to_lot(5.0, lot)


def test_round_to_lot_nan_quantity_raises() -> None:
    with pytest.raises(ValueError, match="quantity must be finite"):
        round_to_lot(math.nan, 1.0)


# -- round_price ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "tick", "direction", "expected"),
    [
        (101.23, 0.01, 1, 101.23),  # 101.23/0.01 = 10123.000000000002: on the tick, stays
        (101.23, 0.01, -1, 101.23),
        (101.23, 0.01, 0, 101.23),
        (101.231, 0.01, 1, 101.24),
        (101.239, 0.01, -1, 101.23),
        (101.234, 0.01, 0, 101.23),
        (101.236, 0.01, 0, 101.24),
        (4500.13, 0.25, 1, 4500.25),  # ES: 18000.52 ticks -> up to 18001 * 0.25
        (4500.13, 0.25, -1, 4500.0),
        (4500.125, 0.25, 0, 4500.25),  # exactly half a tick (18000.5 ticks) rounds up
        (1.10004, 0.0001, 0, 1.1),  # FX pip
        (0.3, 0.1, -1, 0.3),  # 0.3/0.1 = 2.9999999999999996 must not floor to 0.2
        (99.99, None, 1, 99.99),  # no tick: unchanged
        (99.99, math.nan, -1, 99.99),
    ],
)
def test_round_price_cases(
    price: float, tick: float | None, direction: int, expected: float
) -> None:
    assert round_price(price, tick, direction) == expected


def test_round_price_bad_direction_raises() -> None:
    with pytest.raises(ConfigError, match="direction must be -1, 0 or 1, got 2"):
        round_price(1.0, 0.01, 2)


def test_round_price_bad_tick_raises() -> None:
    with pytest.raises(ConfigError, match=r"tick must be > 0 and finite, got 0\.0"):
        round_price(1.0, 0.0, 0)


def test_round_price_infinite_price_raises() -> None:
    with pytest.raises(ValueError, match="price must be finite"):
        round_price(math.inf, 0.01, 0)
