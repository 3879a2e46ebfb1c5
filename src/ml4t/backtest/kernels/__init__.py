"""Numba kernels: numpy arrays and scalars in, numpy arrays out.

Nothing here knows about polars, plugins or orders as objects. ``costs`` holds the
builtin cost models' formulas, ``matching`` where a bar's assumed path reaches a price,
``fills`` one fill's terms and the market-order batch filler, ``trades`` the round trips
and ``signal`` the whole-backtest kernel of :class:`~ml4t.backtest.SignalStrategy`. Each
has a pure-Python reference it is tested against (``tests/kernels``).
"""
