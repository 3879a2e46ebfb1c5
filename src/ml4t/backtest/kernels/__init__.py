"""Numba kernels: numpy arrays and scalars in, numpy arrays out.

Nothing here knows about polars, plugins or orders as objects. ``costs`` holds the
builtin cost models' formulas, ``matching`` where a bar's assumed path reaches a price,
``signal`` the whole-backtest kernel of :class:`~ml4t.backtest.SignalStrategy` and
``batch`` the market-order batch filler. Each has a pure-Python reference it is tested
against (``tests/kernels``).
"""
