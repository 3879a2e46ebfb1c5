"""The fill ledger: one row per fill or account event, stored column by column.

:class:`LedgerRow` is the ledger's layout, named once: readers ask :meth:`Ledger.column`
for a column by field name and get rows as :class:`LedgerRow`; writers append rows in its
field order (:meth:`Ledger.append`) or whole columns by field name
(:meth:`Ledger.extend_columns`), so no position is written anywhere else.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Mapping
from itertools import chain
from operator import itemgetter
from typing import Any, NamedTuple, get_type_hints

import numpy as np

__all__ = ["Ledger", "LedgerRow"]


class LedgerRow(NamedTuple):
    """One ledger row: a fill (``kind == "fill"``) or an account event.

    Account events (``"split"``, ``"dividend_ex"``, ``"dividend_paid"``,
    ``"borrow_fee"``) have ``order_id == -1``; ``quantity`` is then the position change
    (a split), ``price`` the adjusted price (a split) and ``amount`` the cash or accrual
    they booked.
    """

    #: timestamp (ns since the epoch, UTC)
    timestamp: int
    #: index of the timestamp in the run (0 for the first)
    ts_index: int
    #: the order's id (-1 for an account event)
    order_id: int
    asset_id: str
    #: signed quantity (positive buys)
    quantity: float
    price: float
    commission: float
    #: slippage cost (currency) contained in ``price``
    slippage: float
    tag: str | None
    #: P&L realized against the average cost, before commission
    realized_pnl: float
    #: the asset's code
    code: int
    cash_after: float
    position_after: float
    #: market-impact cost (currency) contained in ``price``
    impact: float
    kind: str
    avg_cost_after: float
    #: accrued dividends after the row
    accrued_after: float
    reason: str | None
    amount: float


_FIELDS = LedgerRow._fields
_TYPES = get_type_hints(LedgerRow)
_INT_FIELDS = tuple(f for f in _FIELDS if _TYPES[f] is int)
_FLOAT_FIELDS = tuple(f for f in _FIELDS if _TYPES[f] is float)
_OBJECT_FIELDS = tuple(f for f in _FIELDS if f not in _INT_FIELDS and f not in _FLOAT_FIELDS)
#: field -> (group, position within its group's row)
_WHERE = {
    f: (group, j)
    for group, fields in enumerate((_INT_FIELDS, _FLOAT_FIELDS, _OBJECT_FIELDS))
    for j, f in enumerate(fields)
}
_INTS, _FLOATS, _OBJECTS = 0, 1, 2


class Ledger:
    """Fills and account events; numbers in ``array`` buffers.

    Rows are appended as :class:`LedgerRow` (:meth:`append`) or as whole columns
    (:meth:`extend_columns`); :meth:`column` returns one column by field name (a numpy
    copy for numbers). Indexing and iteration give :class:`LedgerRow`.

    Notes
    -----
    The integer fields of a row are kept side by side in one ``int64`` buffer, the float
    fields in one ``float64`` buffer and the others in one list (three appends a row
    instead of one per field: the ledger is written on every fill).
    """

    def __init__(self) -> None:
        self._ints = array("q")
        self._floats = array("d")
        self._objects: list[Any] = []
        self._ints_of = itemgetter(*(_FIELDS.index(f) for f in _INT_FIELDS))
        self._floats_of = itemgetter(*(_FIELDS.index(f) for f in _FLOAT_FIELDS))
        self._objects_of = itemgetter(*(_FIELDS.index(f) for f in _OBJECT_FIELDS))

    def append(self, row: tuple[Any, ...]) -> None:
        """Append one row: a :class:`LedgerRow`, or a plain tuple in its field order."""
        self._ints.extend(self._ints_of(row))
        self._floats.extend(self._floats_of(row))
        self._objects.extend(self._objects_of(row))

    def extend_columns(self, columns: Mapping[str, Any]) -> None:
        """Append many rows given as one sequence per field (every field of the row)."""
        if set(columns) != set(_FIELDS):
            raise ValueError(f"ledger columns must be exactly {_FIELDS}, got {tuple(columns)}")
        for buffer, fields, dtype in (
            (self._ints, _INT_FIELDS, np.int64),
            (self._floats, _FLOAT_FIELDS, np.float64),
        ):
            block = np.column_stack([np.asarray(columns[f], dtype=dtype) for f in fields])
            buffer.frombytes(np.ascontiguousarray(block, dtype=dtype).tobytes())
        objects = zip(*(columns[f] for f in _OBJECT_FIELDS), strict=True)
        self._objects.extend(chain.from_iterable(objects))

    def column(self, field: str, start: int = 0, stop: int | None = None) -> Any:
        """Return rows ``start:stop`` of one field: a numpy copy for numbers, else a list."""
        group, j = _WHERE[field]
        if group == _OBJECTS:
            width = len(_OBJECT_FIELDS)
            end = len(self) if stop is None else min(stop, len(self))
            return self._objects[start * width + j : end * width : width]
        rows = (
            np.frombuffer(self._ints, dtype=np.int64).reshape(-1, len(_INT_FIELDS))
            if group == _INTS
            else np.frombuffer(self._floats, dtype=np.float64).reshape(-1, len(_FLOAT_FIELDS))
        )
        return rows[start:stop, j].copy()

    def __len__(self) -> int:
        return len(self._ints) // len(_INT_FIELDS)

    def __getitem__(self, j: int) -> LedgerRow:
        n = len(self)
        if j < 0:
            j += n
        if not 0 <= j < n:
            raise IndexError("ledger row out of range")
        values: dict[str, Any] = {}
        for buffer, fields in (
            (self._ints, _INT_FIELDS),
            (self._floats, _FLOAT_FIELDS),
            (self._objects, _OBJECT_FIELDS),
        ):
            width = len(fields)
            values.update(zip(fields, buffer[j * width : (j + 1) * width], strict=True))
        return LedgerRow(**values)

    def __iter__(self) -> Iterator[LedgerRow]:
        return (self[j] for j in range(len(self)))
