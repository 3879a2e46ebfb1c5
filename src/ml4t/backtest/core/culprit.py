"""Whose code raised an error during a run: the strategy's, a plugin's model, or neither.

The engine wraps an exception raised in its loop as a ``StrategyError`` when the
strategy's own code raised it and as a ``PluginError`` when a (non-builtin) plugin's model
did; :func:`find_culprit` decides from the traceback. Strategy code is recognised by the
code objects of the strategy class's functions, not by file, so strategies defined in a
notebook, ``__main__`` or ``exec``'d code count too.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import CodeType
from typing import TYPE_CHECKING

from ..errors import PluginError

if TYPE_CHECKING:
    from .strategy import Strategy

__all__ = ["ModelFiles", "PluginBlame", "find_culprit"]

_PKG_DIR = os.path.realpath(Path(__file__).resolve().parent.parent) + os.sep

#: source file of a (non-builtin) plugin's models -> (plugin name, [(kind, name, qualname)])
ModelFiles = Mapping[str, tuple[str, list[tuple[str, str, str]]]]


@dataclass(frozen=True)
class PluginBlame:
    """How a run names the plugin behind a failing model (given by the assembler).

    Attributes
    ----------
    model_files : callable
        Returns :data:`ModelFiles` (called only when an error is being wrapped).
    error : callable
        ``error(plugin_name, problem)`` returns the :class:`PluginError` to raise.
    describe : callable
        ``describe(plugin_name)`` returns ``"'name' (distribution version)"``.
    """

    model_files: Callable[[], ModelFiles]
    error: Callable[[str, str], PluginError]
    describe: Callable[[str], str]


def find_culprit(
    strategy: Strategy, files: ModelFiles, exc: BaseException
) -> str | tuple[str, str] | None:
    """Return whose code raised ``exc``: ``"strategy"``, ``(plugin, model)`` or ``None``.

    The innermost frame of the traceback that runs the strategy's own code or the module
    of a non-builtin plugin's model (``files``) decides: a strategy calling a library (or
    one of our helpers with a bad argument) is the strategy's error; a plugin's cost model
    raising inside the broker is the plugin's.
    """
    codes = _strategy_codes(type(strategy))
    found: str | tuple[str, str] | None = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        code = frame.f_code
        if code in codes:
            found = "strategy"
            continue
        hit = files.get(os.path.realpath(code.co_filename))
        if hit is not None:
            plugin, providers = hit
            qualname = code.co_qualname
            owner = qualname.split(".", 1)[0]
            named = [f"{kind} model {name!r}" for kind, name, q in providers if q == owner]
            found = (plugin, f"{named[0]} ({qualname})" if named else qualname)
    return found


def _strategy_codes(cls: type) -> set[CodeType]:
    """Return the code objects of a strategy class's own functions (not this package's).

    Code objects, not files: a strategy defined in a notebook cell, ``__main__`` or
    ``exec``'d code has no module file, but its functions still have their code (with a
    ``co_filename`` such as ``<ipython-input-3-...>``). Nested functions, lambdas and
    comprehensions count, and so do the functions decorators wrap.
    """
    codes: set[CodeType] = set()
    todo: list[CodeType] = []
    for klass in cls.__mro__:
        for value in vars(klass).values():
            for func in _functions(value):
                code = getattr(func, "__code__", None)
                if isinstance(code, CodeType) and not _in_package(code.co_filename):
                    todo.append(code)
    while todo:
        code = todo.pop()
        if code not in codes:
            codes.add(code)
            todo.extend(c for c in code.co_consts if isinstance(c, CodeType))
    return codes


def _functions(value: object) -> list[object]:
    """Return the functions behind a class attribute (methods, properties, wrappers)."""
    if isinstance(value, staticmethod | classmethod):
        value = value.__func__
    if isinstance(value, property):
        return [f for f in (value.fget, value.fset, value.fdel) if f is not None]
    out = []
    seen = 0
    while value is not None and seen < 10:  # follow functools.wraps chains
        out.append(value)
        value = getattr(value, "__wrapped__", None)
        seen += 1
    return out


def _in_package(filename: str) -> bool:
    return not filename.startswith("<") and os.path.realpath(filename).startswith(_PKG_DIR)
