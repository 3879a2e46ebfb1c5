"""The pluggy markers and the project name, apart from the hook specifications.

Plugins (the builtin ones included) import :data:`hookimpl` from here, through
``from ml4t.backtest import hookimpl``; only the plugin manager reads the specs in
:mod:`ml4t.backtest.hookspecs`.
"""

from __future__ import annotations

import pluggy

__all__ = ["PROJECT", "hookimpl", "hookspec"]

#: pluggy project name and entry-point group.
PROJECT = "ml4t.backtest"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
