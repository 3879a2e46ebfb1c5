"""The fill-time intent rule has one source: ``kernels.intent.resolve_intent``.

The broker's Python fill path calls the plain function, the kernels call it jitted
(``resolve_intent_nb``): same function underneath, same bits out.
"""

from __future__ import annotations

import numba
from hypothesis import given, settings
from hypothesis import strategies as st

from ml4t.backtest.builtin import fills as builtin_fills
from ml4t.backtest.kernels.intent import (
    INTENT_NONE,
    INTENT_REDUCE,
    INTENT_TARGET,
    resolve_intent,
    resolve_intent_nb,
)

quantities = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.integers(-1000, 1000).map(float),
    st.sampled_from([0.0, -0.0, 1e-10, 100.0]),
)


def test_python_path_and_kernels_share_one_function() -> None:
    if numba.config.DISABLE_JIT:  # type: ignore[attr-defined]
        assert resolve_intent_nb is resolve_intent
    else:
        assert resolve_intent_nb.py_func is resolve_intent  # type: ignore[attr-defined]
    assert vars(builtin_fills)["resolve_intent"] is resolve_intent


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([INTENT_NONE, INTENT_REDUCE, INTENT_TARGET]),
    st.sampled_from([1, -1]),
    quantities.map(abs),
    quantities,
    quantities,
    st.sampled_from([0.0, 1.0, 0.5, 100.0]),
)
def test_resolve_intent_jitted_equals_plain(
    intent: int, side: int, remaining: float, target: float, held: float, lot: float
) -> None:
    want = resolve_intent(intent, side, remaining, target, held, lot)
    got = resolve_intent_nb(intent, side, remaining, target, held, lot)
    assert got[0] == want[0]
    assert float(got[1]).hex() == float(want[1]).hex(), (got, want)
