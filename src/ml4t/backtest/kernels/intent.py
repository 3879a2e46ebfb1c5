"""What a closing, reducing or target order may fill, decided at fill time.

One rule for every path (the broker's Python fill path, the batch market kernel and the
signal kernel), written once: :func:`resolve_intent` is a plain function that the Python
path calls as it is and the kernels call jitted (:func:`resolve_intent_nb`).

- ``INTENT_REDUCE`` (``close_position``, ``reduce_position``, position exits, bracket exit
  legs, margin-call liquidations): the order may only reduce the position held in the
  opposite direction of its side. Its quantity is capped at that position; with no such
  position (flat, or already on the order's side) it fills nothing and is cancelled.
- ``INTENT_TARGET`` (``order_target_*``, ``rebalance_to_weights``, ``size_by_confidence``):
  the order trades the position to ``target``. Its quantity is ``|target - position|``
  rounded toward zero to the lot; when the position is at the target (within a lot), or
  past it on the order's side (reaching the target would need the other side), it fills
  nothing and is cancelled.
- ``INTENT_NONE``: the order's remaining quantity, unchanged.

Statuses: ``RESOLVED`` (fill the remaining quantity), ``CHANGED`` (fill the returned
quantity instead), and the three reasons to cancel: ``NOTHING_TO_REDUCE``, ``AT_TARGET``,
``PAST_TARGET``.
"""

from __future__ import annotations

from ._jit import jit
from .lots import round_lot_nb

__all__ = [
    "AT_TARGET",
    "CHANGED",
    "INTENT_NONE",
    "INTENT_REDUCE",
    "INTENT_TARGET",
    "NOTHING_TO_REDUCE",
    "PAST_TARGET",
    "RESOLVED",
    "resolve_intent",
    "resolve_intent_nb",
]

INTENT_NONE, INTENT_REDUCE, INTENT_TARGET = 0, 1, 2
RESOLVED, CHANGED, NOTHING_TO_REDUCE, AT_TARGET, PAST_TARGET = 0, 1, 2, 3, 4

_EPS = 1e-9


def resolve_intent(
    intent: int, side: int, remaining: float, target: float, held: float, lot: float
) -> tuple[int, float]:
    """Return ``(status, quantity)``: what an order of ``side`` may fill with ``held`` now.

    ``remaining`` is the order's unfilled quantity, ``target`` its target position
    (``INTENT_TARGET`` only), ``lot`` the asset's lot (0: any quantity). A cancel status
    comes with quantity 0.
    """
    if intent == INTENT_REDUCE:
        if held * side >= 0.0:
            return NOTHING_TO_REDUCE, 0.0
        cap = abs(held)
        if remaining > cap + _EPS * max(1.0, cap):
            return CHANGED, cap
        return RESOLVED, remaining
    if intent == INTENT_TARGET:
        need = target - held
        if abs(need) <= _EPS * max(1.0, abs(target), abs(held)):
            return AT_TARGET, 0.0
        if need * side < 0.0:
            return PAST_TARGET, 0.0
        q = round_lot_nb(abs(need), lot)
        if q <= 0.0:
            return AT_TARGET, 0.0
        if abs(q - remaining) <= _EPS * max(1.0, remaining):
            return RESOLVED, remaining
        return CHANGED, q
    return RESOLVED, remaining


resolve_intent_nb = jit(resolve_intent)
