"""The one numba decorator every kernel uses (options change here, in one place)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numba

__all__ = ["jit"]

F = TypeVar("F", bound=Callable[..., Any])


def jit(func: F) -> F:
    """Compile ``func`` in nopython mode, cached on disk (``cache=True``), GIL released."""
    compiled: F = numba.njit(cache=True, nogil=True)(func)
    return compiled
