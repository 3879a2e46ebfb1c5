"""Allow ``python -m ml4t.backtest``; same as the ``ml4t-backtest`` command."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
