"""The one numba decorator every kernel uses (options change here, in one place).

Stale on-disk caches across kernel modules are handled by
:mod:`ml4t.backtest.kernel_cache` (numba checks only the compiled function's own file).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numba

__all__ = ["jit", "jit_inline"]


F = TypeVar("F", bound=Callable[..., Any])


def jit(func: F) -> F:
    """Compile ``func`` in nopython mode, cached on disk (``cache=True``), GIL released."""
    compiled: F = numba.njit(cache=True, nogil=True)(func)  # type: ignore[assignment]
    return compiled


def jit_inline(func: F) -> F:
    """Like :func:`jit`, and inlined into its callers at the Numba IR level.

    For helpers called per row or per timestamp with many array arguments: a real call
    would pay reference counting on every array argument.
    """
    compiled: F = numba.njit(cache=True, nogil=True, inline="always")(func)  # type: ignore[assignment]
    return compiled
