"""Batch strategies: one callback per timestamp with every asset's row.

For large universes a per-bar callback per asset costs more than the decision itself. A
:class:`BatchStrategy` is called once per timestamp with ``asset_batch``, a polars
DataFrame of every asset's bar at that timestamp. The frame is a zero-copy slice of the
chunk's frame (built once per chunk from the feed's arrays), so nothing is filtered or
copied per timestamp; :attr:`BatchStrategy.batch` gives the same rows as numpy views.
All :class:`~ml4t.backtest.Strategy` helpers work; ``order_target_percent`` also takes a
list of assets and an array of percents.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from .data import PRICE_COLUMNS, Chunk
from .strategy import Strategy

if TYPE_CHECKING:
    from .context import Context
    from .events import MarketEvent

__all__ = ["BatchStrategy", "BatchView", "chunk_frame"]


class BatchView:
    """numpy access to the rows of the current timestamp.

    ``view["close"]`` is a read-only float64 view of the column for the rows in
    ``asset_batch`` (same order); ``asset_ids`` and ``codes`` name the rows' assets and
    ``positions`` gives the quantity held of each (for masks such as ``positions > 0``).
    """

    __slots__ = ("_arrays", "_ids", "_qty", "_r0", "_r1", "_row_ids", "codes")

    def __init__(self, quantities: np.ndarray | None = None) -> None:
        #: positions by asset code: a view of the portfolio's quantity buffer
        self._qty: np.ndarray = np.zeros(0) if quantities is None else quantities
        self._arrays: dict[str, np.ndarray] = {}
        self._ids: np.ndarray = np.empty(0, dtype=object)
        self._r0 = self._r1 = 0
        self._row_ids: list[str] | None = None
        self.codes: np.ndarray = np.empty(0, dtype=np.int32)

    def _set(self, arrays: dict[str, np.ndarray], ids: np.ndarray, r0: int, r1: int) -> None:
        if arrays is not self._arrays:  # a new chunk
            self._row_ids = None
        self._arrays, self._ids, self._r0, self._r1 = arrays, ids, r0, r1
        self.codes = arrays["__code__"][r0:r1]

    def __getitem__(self, name: str) -> np.ndarray:
        arr = self._arrays.get(name)
        if arr is None or name == "__code__":
            names = [k for k in self._arrays if k != "__code__"]
            raise KeyError(f"no column {name!r} in the batch; columns: {names}")
        return arr[self._r0 : self._r1]

    def __len__(self) -> int:
        return self._r1 - self._r0

    @property
    def asset_ids(self) -> list[str]:
        """Asset id of each row, in row order."""
        if self._row_ids is None:  # once per chunk: the ids of all its rows
            self._row_ids = self._ids[self._arrays["__code__"]].tolist()
        return self._row_ids[self._r0 : self._r1]

    @property
    def positions(self) -> np.ndarray:
        """Signed quantity held of each row's asset (a new array, 0.0 when flat)."""
        held: np.ndarray = self._qty[self.codes]
        return held

    @property
    def columns(self) -> list[str]:
        """Column names available through ``view[name]``."""
        return [k for k in self._arrays if k != "__code__"]


class BatchStrategy(Strategy):
    """Base class of strategies called once per timestamp for all assets.

    Implement :meth:`on_timestamp`. Orders submitted in one callback are matched together
    at the next fill phase, exits (sells of held positions) before entries.
    """

    _batch_view: BatchView

    def on_timestamp(
        self, timestamp: datetime, asset_batch: pl.DataFrame, context: Context
    ) -> None:
        """Handle every asset's bar at ``timestamp`` (after the bars have closed).

        ``asset_batch`` has one row per asset with a bar now, in asset order: ``asset_id``
        (an ``Enum`` of every asset), ``open``, ``high``, ``low``, ``close``, ``volume``
        and the feed's signal and indicator columns. It is a zero-copy slice; do not keep
        it beyond the call (copy with ``clone()`` if needed).
        """
        raise NotImplementedError("a BatchStrategy must implement on_timestamp")

    def on_market_data(self, event: MarketEvent, context: Context) -> None:
        """Not used by batch strategies: the engine calls :meth:`on_timestamp`."""
        raise TypeError("a BatchStrategy is called through on_timestamp, not on_market_data")

    @property
    def batch(self) -> BatchView:
        """numpy views of the current timestamp's rows (``self.batch["score"]``)."""
        return self._batch_view


def chunk_frame(
    chunk: Chunk, names: Sequence[str], asset_ids: Sequence[str]
) -> tuple[pl.DataFrame, dict[str, np.ndarray], np.ndarray]:
    """Return the chunk's rows as a polars frame, their numpy columns and an id lookup.

    Numeric columns are zero-copy views of the block's arrays (as-of columns are
    materialised once per chunk); the asset column is an ``Enum`` built by one gather.
    """
    block = chunk.block
    r0 = int(block.offsets[chunk.ts_index0])
    r1 = r0 + chunk.offsets[-1]
    arrays: dict[str, np.ndarray] = {}
    for name in (*PRICE_COLUMNS, *names):
        col: Any = block.cols[name]
        arr = col[r0:r1] if isinstance(col, np.ndarray) else np.asarray(col[r0:r1], dtype=float)
        arr = arr.view()
        arr.flags.writeable = False
        arrays[name] = arr
    codes = block.code[r0:r1]
    enum = pl.Enum(list(asset_ids))
    ids = pl.Series("asset_id", list(asset_ids), dtype=enum)
    asset_col = ids.gather(pl.Series(codes.astype(np.uint32, copy=False)))
    frame = pl.DataFrame([asset_col, *(pl.Series(k, v) for k, v in arrays.items())])
    arrays["__code__"] = codes
    return frame, arrays, np.asarray(list(asset_ids), dtype=object)
