"""Numba kernels: numpy arrays and scalars in, numpy arrays out.

Nothing here knows about polars, plugins or orders as objects. ``costs`` holds the
builtin cost models' formulas, ``matching`` where a bar's assumed path reaches a price,
``fills`` one fill's terms and the market-order batch filler, ``trades`` the round trips
and ``signal_kernel`` the whole-backtest kernel of :class:`~ml4t.backtest.SignalStrategy`
(with its phases in ``strategy_phase``, ``fill_phase`` and ``exits``; every array index
and its argument tuples in ``_layout``).

A rule both the kernels and the broker's Python path apply (the cost formulas, the bar
path and where it reaches a level, the fill-time intents) is written once here as a plain
function: the kernels call it jitted (``name_nb = jit(name)``), the Python path calls it
as it is. The rest is tested against its pure-Python reference (``tests/kernels``).
"""
