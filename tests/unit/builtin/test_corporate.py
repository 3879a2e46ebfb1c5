"""Corporate actions: validation, loading, day numbers and the per-session schedule."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from ml4t.backtest.builtin.corporate import (
    ActionSchedule,
    CorporateActions,
    DividendEx,
    DividendPay,
    Split,
    day_number,
    session_days,
)
from ml4t.backtest.errors import DataValidationError


def day(iso: str) -> int:
    """Days since 1970-01-01, computed independently of the module under test."""
    return date.fromisoformat(iso).toordinal() - date(1970, 1, 1).toordinal()


def split(asset: str, ex: str, ratio: Any) -> dict[str, Any]:
    return {"asset_id": asset, "action": "split", "ex_date": ex, "ratio": ratio}


def dividend(asset: str, ex: str, amount: Any, pay: str | None = None) -> dict[str, Any]:
    return {
        "asset_id": asset,
        "action": "dividend",
        "ex_date": ex,
        "amount": amount,
        "pay_date": pay,
    }


# -- day numbers ------------------------------------------------------------------------------


def test_day_number_date_datetime_and_string_agree() -> None:
    # 2024-03-01: 54 years after 1970 with 13 leap days (1972..2020) -> 54*365 + 13 = 19723
    # days to 2024-01-01, + 31 (Jan) + 29 (Feb 2024) = 19783
    expected = 19783
    assert day_number(date(2024, 3, 1)) == expected
    assert day_number("2024-03-01") == expected
    assert day_number("2024-03-01T23:30:00-05:00") == expected  # date as written, no conversion
    eastern = timezone(timedelta(hours=-5))
    assert day_number(datetime(2024, 3, 1, 23, 30, tzinfo=eastern)) == expected  # UTC: 03-02
    assert day_number(date(1970, 1, 1)) == 0


def test_day_number_bad_string_raises() -> None:
    with pytest.raises(ValueError, match="not an ISO date: '03/01/2024'"):
        day_number("03/01/2024")


def test_session_days_naive_and_timezone() -> None:
    ns = np.datetime64("2024-03-01T23:30", "ns").astype(np.int64)
    # naive data stores wall time as UTC: the day is 2024-03-01
    np.testing.assert_array_equal(session_days([ns]), [day("2024-03-01")])
    # UTC 2024-03-01 23:30 is 2024-03-02 08:30 in Tokyo (UTC+9)
    np.testing.assert_array_equal(session_days([ns], "Asia/Tokyo"), [day("2024-03-02")])
    # ... and 2024-03-01 18:30 in New York (UTC-5)
    np.testing.assert_array_equal(session_days([ns], "America/New_York"), [day("2024-03-01")])


def test_session_days_before_epoch_floors() -> None:
    ns = np.datetime64("1969-12-31T12:00", "ns").astype(np.int64)  # negative ns
    np.testing.assert_array_equal(session_days([ns]), [-1])


# -- validation errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [dividend("A", "2024-01-02", 1.0), split("A", "2024-01-03", 0.0)],
            "row 1: column 'ratio' must be > 0 for a split, got 0.0",
        ),
        ([split("A", "2024-01-02", -2)], "row 0: column 'ratio' must be > 0 for a split, got -2.0"),
        ([split("A", "2024-01-02", "abc")], "row 0: column 'ratio' is not a number: 'abc'"),
        ([split("A", "2024-01-02", None)], "row 0: column 'ratio' is null in a split row"),
        (
            [split("A", "2024-01-02", float("inf"))],
            "row 0: column 'ratio' must be finite for a split, got inf",
        ),
        (
            [dividend("A", "2024-01-02", -0.5)],
            "row 0: column 'amount' must be >= 0 for a dividend, got -0.5",
        ),
        (
            [dividend("A", "2024-01-02", float("nan"))],
            "row 0: column 'amount' must be finite for a dividend, got nan",
        ),
        ([dividend("A", "2024-01-02", None)], "row 0: column 'amount' is null in a dividend row"),
        (
            [dividend("A", "2024-01-05", 1.0, "2024-01-04")],
            "row 0: column 'pay_date' (2024-01-04) is before 'ex_date' (2024-01-05)",
        ),
        (
            [dividend("A", "2024-01-05", 1.0, "next week")],
            "row 0: column 'pay_date' is not a date: 'next week' (use YYYY-MM-DD)",
        ),
        (
            [{"asset_id": "A", "action": "merger", "ex_date": "2024-01-02"}],
            "row 0: column 'action' must be 'split' or 'dividend', got 'merger'",
        ),
        (
            [{"asset_id": "A", "action": None, "ex_date": "2024-01-02"}],
            "row 0: column 'action' must be 'split' or 'dividend', got None",
        ),
        ([split(None, "2024-01-02", 2.0)], "row 0: column 'asset_id' is empty"),  # type: ignore[arg-type]
        (
            [split("A", "2024-02-30", 2.0)],
            "row 0: column 'ex_date' is not a date: '2024-02-30' (use YYYY-MM-DD)",
        ),
        ([split("A", None, 2.0)], "row 0: column 'ex_date' is null"),  # type: ignore[arg-type]
        (
            [
                split("B", "2024-01-02", 2.0),
                split("A", "2024-01-03", 2.0),
                split("B", "2024-01-03", 2.0),
                split("A", "2024-01-03", 3.0),
            ],
            "rows 1 and 3: asset 'A' has two splits with ex_date 2024-01-03; "
            "give one split with the combined ratio",
        ),
    ],
)
def test_corporate_actions_bad_row_message_names_source_row_and_column(
    rows: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(DataValidationError) as info:
        CorporateActions(rows, source="events.csv")
    assert str(info.value) == f"corporate actions (events.csv): {message}"


def test_corporate_actions_missing_required_column() -> None:
    frame = pl.DataFrame({"asset_id": ["A"], "ex_date": ["2024-01-02"]})
    with pytest.raises(DataValidationError, match="missing required column 'action'; columns:"):
        CorporateActions(frame)
    frame = pl.DataFrame({"ticker": ["A"], "action": ["split"], "ex_date": ["2024-01-02"]})
    with pytest.raises(DataValidationError, match=r"missing required column 'asset_id' \(or"):
        CorporateActions(frame)


def test_corporate_actions_ratio_column_required_only_with_splits() -> None:
    frame = pl.DataFrame(
        {
            "asset_id": ["A", "A", "A"],
            "action": ["dividend", "dividend", "split"],
            "ex_date": ["2024-01-02", "2024-01-03", "2024-01-04"],
            "amount": [1.0, 1.0, None],
        }
    )
    assert CorporateActions(frame.head(2)).n_dividends == 2  # no ratio column needed
    with pytest.raises(DataValidationError) as info:
        CorporateActions(frame)
    assert str(info.value) == (
        "corporate actions: missing column 'ratio', required for split rows (first at row 2)"
    )


def test_corporate_actions_amount_column_required_with_dividends() -> None:
    frame = pl.DataFrame({"asset_id": ["A"], "action": ["dividend"], "ex_date": ["2024-01-02"]})
    with pytest.raises(DataValidationError, match="missing column 'amount', required for dividend"):
        CorporateActions(frame)


def test_corporate_actions_bad_date_dtype() -> None:
    frame = pl.DataFrame(
        {"asset_id": ["A"], "action": ["split"], "ex_date": [20240102], "ratio": [2]}
    )
    with pytest.raises(DataValidationError, match="column 'ex_date' must hold dates"):
        CorporateActions(frame)


def test_corporate_actions_bad_input_type() -> None:
    with pytest.raises(
        DataValidationError, match=r"a list of dicts or a \.csv/\.parquet path, got int"
    ):
        CorporateActions(42)
    with pytest.raises(DataValidationError, match="row 1: expected a mapping of columns, got str"):
        CorporateActions([split("A", "2024-01-02", 2.0), "oops"])


def test_corporate_actions_two_dividends_same_day_allowed() -> None:
    # a regular and a special dividend may share an ex-date; only splits must be unique
    actions = CorporateActions([dividend("A", "2024-01-02", 0.2), dividend("A", "2024-01-02", 1.0)])
    assert actions.n_dividends == 2


# -- input forms ------------------------------------------------------------------------------


def test_corporate_actions_from_csv_names_file_and_row(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "symbol,action,ex_date,ratio,amount,pay_date\n"
        "AAPL,dividend,2024-02-09,,0.24,2024-02-15\n"
        "AAPL,split,2020-08-31,4,,\n"
        "MSFT,Dividend,2024-02-14,,0.75,\n"
        "NVDA,split,2024-06-10,0,,\n"
    )
    with pytest.raises(DataValidationError) as info:
        CorporateActions(path)
    assert str(info.value) == (
        f"corporate actions ({path}): row 3: column 'ratio' must be > 0 for a split, got 0.0"
    )
    path.write_text(path.read_text().replace("NVDA,split,2024-06-10,0", "NVDA,split,2024-06-10,10"))
    actions = CorporateActions(str(path))
    assert actions.frame.to_dicts() == [
        {"__row": 0, "asset_id": "AAPL", "action": "dividend", "ex_day": day("2024-02-09"),
         "ratio": None, "amount": 0.24, "pay_day": day("2024-02-15")},
        {"__row": 1, "asset_id": "AAPL", "action": "split", "ex_day": day("2020-08-31"),
         "ratio": 4.0, "amount": None, "pay_day": None},
        # empty pay_date -> paid on the ex-date; "Dividend" is case-insensitive
        {"__row": 2, "asset_id": "MSFT", "action": "dividend", "ex_day": day("2024-02-14"),
         "ratio": None, "amount": 0.75, "pay_day": day("2024-02-14")},
        {"__row": 3, "asset_id": "NVDA", "action": "split", "ex_day": day("2024-06-10"),
         "ratio": 10.0, "amount": None, "pay_day": None},
    ]  # fmt: skip
    assert repr(actions) == (
        f"CorporateActions(splits=2, dividends=2, assets=3, source={str(path)!r})"
    )
    assert len(actions) == 4


def test_corporate_actions_from_parquet_with_dates(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pl.DataFrame(
        {
            "asset_id": ["A", "B"],
            "action": ["split", "dividend"],
            "ex_date": [date(2024, 1, 2), date(2024, 1, 3)],
            "ratio": [1.5, None],
            "amount": [None, 0.5],
            "pay_date": [None, date(2024, 1, 10)],
            "vendor_note": ["3-for-2", "q4"],  # extra columns are ignored
        }
    ).write_parquet(path)
    frame = CorporateActions(path).frame
    assert frame["ex_day"].to_list() == [day("2024-01-02"), day("2024-01-03")]
    assert frame["pay_day"].to_list() == [None, day("2024-01-10")]
    assert frame["ratio"].to_list() == [1.5, None]


def test_corporate_actions_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.parquet"
    with pytest.raises(
        DataValidationError, match=rf"^corporate actions \({re.escape(str(path))}\)"
    ):
        CorporateActions(path)


def test_corporate_actions_unsupported_file(tmp_path: Path) -> None:
    path = tmp_path / "events.xlsx"
    path.write_text("x")
    with pytest.raises(DataValidationError, match=r"unsupported file type '\.xlsx'"):
        CorporateActions(path)


def test_corporate_actions_pandas_tz_datetime_uses_local_date() -> None:
    stamps = pd.to_datetime(["2024-03-01 23:30"]).tz_localize("America/New_York")
    frame = pd.DataFrame(
        {"symbol": ["A"], "action": ["dividend"], "ex_date": stamps, "amount": [1.0]}
    )
    # local date 2024-03-01 (in UTC it is already 2024-03-02 04:30)
    assert CorporateActions(frame).frame["ex_day"].to_list() == [day("2024-03-01")]


def test_corporate_actions_mixed_date_objects_and_strings() -> None:
    rows = [split("A", "2024-01-02", 2), split("A", datetime(2024, 1, 3, 16, 0), "3")]  # type: ignore[arg-type]
    frame = CorporateActions(rows).frame
    assert frame["ex_day"].to_list() == [day("2024-01-02"), day("2024-01-03")]
    assert frame["ratio"].to_list() == [2.0, 3.0]


def test_corporate_actions_empty_inputs() -> None:
    for events in (None, [], pl.DataFrame()):
        actions = CorporateActions(events)
        assert len(actions) == 0
        assert actions.schedule(["A"]).between(None, 10**6) == ([], [], [])


def test_corporate_actions_integer_asset_ids_become_text() -> None:
    frame = pl.DataFrame({"asset_id": [7203], "action": ["split"], "ex_date": ["2024-01-02"],
                          "ratio": [2.0]})  # fmt: skip
    assert CorporateActions(frame).asset_ids == ["7203"]


# -- check() ----------------------------------------------------------------------------------


def test_corporate_actions_check_reports_unknown_assets() -> None:
    actions = CorporateActions(
        [
            split("ZZZ", "2024-01-02", 2.0),
            dividend("ZZZ", "2024-02-02", 0.1),
            dividend("ZZZ", "2024-03-02", 0.1),
            dividend("AAA", "2024-02-02", 0.1),
            dividend("MSFT", "2024-02-02", 0.1),
        ],
        source="events.csv",
    )
    assert actions.check(["MSFT"]) == [
        "corporate actions (events.csv): asset 'AAA' has 1 dividend but is not in the data; "
        "ignored",
        "corporate actions (events.csv): asset 'ZZZ' has 1 split and 2 dividends but is not in "
        "the data; ignored",
    ]
    assert actions.check(["MSFT", "AAA", "ZZZ"]) == []


# -- schedule ---------------------------------------------------------------------------------

# Sessions Thu 2024-06-06, Fri 06-07, Mon 06-10, Tue 06-11, Wed 06-12 (the 8th/9th are a weekend)
SESSIONS = ["2024-06-06", "2024-06-07", "2024-06-10", "2024-06-11", "2024-06-12"]
EVENTS = [
    split("AAPL", "2024-06-08", 4.0),  # row 0: Saturday -> applied Monday 06-10
    dividend("AAPL", "2024-06-07", 0.25, "2024-06-11"),  # row 1: ex Fri, paid Tue
    dividend("AAPL", "2024-06-09", 0.30, "2024-06-15"),  # row 2: ex Sunday -> Mon; paid Sat 15th
    dividend("MSFT", "2024-06-11", 0.75),  # row 3: no pay date -> paid on the ex-date
    split("XYZ", "2024-06-10", 2.0),  # row 4: not traded
    dividend("MSFT", "2024-06-03", 0.70, "2024-06-06"),  # row 5: before the first session
]
IDS = ["MSFT", "AAPL"]  # codes: MSFT 0, AAPL 1


def test_schedule_between_walks_sessions_with_weekend_ex_dates() -> None:
    schedule = CorporateActions(EVENTS).schedule(IDS)
    d = {s: day(s) for s in [*SESSIONS, "2024-06-03", "2024-06-08", "2024-06-09", "2024-06-15"]}
    got = []
    prev = None
    for session in SESSIONS:
        got.append(schedule.between(prev, d[session]))
        prev = d[session]
    msft_early = (0, "MSFT", d["2024-06-03"], d["2024-06-06"], 0.70, 5)
    aapl_fri = (1, "AAPL", d["2024-06-07"], d["2024-06-11"], 0.25, 1)
    aapl_sun = (1, "AAPL", d["2024-06-09"], d["2024-06-15"], 0.30, 2)
    msft_tue = (0, "MSFT", d["2024-06-11"], d["2024-06-11"], 0.75, 3)
    assert got == [
        # Thu, prev None: everything up to the day, so the 06-03 dividend goes ex and is paid
        ([], [DividendEx(*msft_early)], [DividendPay(*msft_early)]),
        # Fri: AAPL goes ex, paid later
        ([], [DividendEx(*aapl_fri)], []),
        # Mon: Saturday's split and Sunday's ex-date land here; XYZ is ignored
        ([Split(1, "AAPL", d["2024-06-08"], 4.0, 0)], [DividendEx(*aapl_sun)], []),
        # Tue: MSFT goes ex and is paid the same day; AAPL's Friday dividend is paid
        # (payments of one day are sorted by code: MSFT 0 before AAPL 1)
        ([], [DividendEx(*msft_tue)], [DividendPay(*msft_tue), DividendPay(*aapl_fri)]),
        # Wed: nothing
        ([], [], []),
    ]
    # the Saturday payment of AAPL's second dividend arrives at the next session after it
    assert schedule.between(d["2024-06-12"], day("2024-06-17")) == (
        [],
        [],
        [DividendPay(*aapl_sun)],
    )


def test_schedule_two_dividends_of_one_asset_in_day_order() -> None:
    rows = [dividend("A", "2024-05-10", 0.3, "2024-05-20"), dividend("A", "2024-02-10", 0.2)]
    schedule = CorporateActions(rows).schedule(["A"])
    _, divs, pays = schedule.between(None, day("2024-12-31"))
    assert [(x.ex_day, x.amount, x.row) for x in divs] == [
        (day("2024-02-10"), 0.2, 1),
        (day("2024-05-10"), 0.3, 0),
    ]
    assert [(x.pay_day, x.amount) for x in pays] == [
        (day("2024-02-10"), 0.2),
        (day("2024-05-20"), 0.3),
    ]


def test_schedule_same_day_sorted_by_code() -> None:
    rows = [split("B", "2024-01-02", 2.0), split("A", "2024-01-02", 3.0)]
    splits, _, _ = CorporateActions(rows).schedule(["A", "B"]).between(None, day("2024-01-02"))
    assert [(s.code, s.asset_id) for s in splits] == [(0, "A"), (1, "B")]


def test_schedule_ignores_unknown_assets_and_duplicate_ids() -> None:
    schedule = CorporateActions(EVENTS).schedule(["AAPL", "AAPL"])  # AAPL's code is its first index
    splits, divs, pays = schedule.between(None, day("2024-12-31"))
    assert {s.asset_id for s in splits} | {x.asset_id for x in divs} == {"AAPL"}
    assert {x.code for x in [*splits, *divs, *pays]} == {0}
    assert len(schedule) == 3  # 1 split + 2 dividends of AAPL
    assert repr(schedule) == "ActionSchedule(splits=1, dividends=2)"


def test_schedule_reseek_and_reset_give_same_answers() -> None:
    schedule = CorporateActions(EVENTS).schedule(IDS)
    days = [day(s) for s in SESSIONS]
    walked = [schedule.between(p, d) for p, d in zip([None, *days[:-1]], days, strict=True)]
    # out-of-order queries re-seek by bisection instead of trusting the pointer
    assert schedule.between(days[1], days[2]) == walked[2]
    assert schedule.between(days[0], days[1]) == walked[1]
    schedule.reset()
    again = [schedule.between(p, d) for p, d in zip([None, *days[:-1]], days, strict=True)]
    assert again == walked


def test_schedule_window_spanning_several_sessions() -> None:
    schedule = CorporateActions(EVENTS).schedule(IDS)
    # (06-06, 06-11]: AAPL Fri + Sun dividends, the split, MSFT Tue dividend
    splits, divs, pays = schedule.between(day("2024-06-06"), day("2024-06-11"))
    assert [s.row for s in splits] == [0]
    assert [x.row for x in divs] == [1, 2, 3]
    # both pay on 06-11, so they are sorted by code: MSFT (code 0, row 3), AAPL (code 1, row 1)
    assert [x.row for x in pays] == [3, 1]


def test_schedule_is_an_action_schedule() -> None:
    assert isinstance(CorporateActions(EVENTS).schedule(IDS), ActionSchedule)
