"""The reasons the simulation broker records on fills, rejections and cancellations.

Shared by the Python fill path (:mod:`.fills`, :mod:`.fill_terms`) and the compiled signal
runner, so a reason reads the same whichever path filled the order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..kernels.intent import AT_TARGET, INTENT_NONE, INTENT_REDUCE, INTENT_TARGET

if TYPE_CHECKING:
    from ..core.orders import Order

__all__ = [
    "cash_text",
    "intent_cancel_text",
    "intent_change_reason",
    "intent_of",
    "resized_text",
    "short_text",
    "target_of",
]


def short_text(order: Order, held: float, quantity: float, problem: str) -> str:
    """The reason a sale beyond the position is rejected (``problem`` says why)."""
    if held <= 0:
        return f"nothing to sell: no position in {order.asset_id}; {problem}"
    return (
        f"insufficient position: hold {held:g} {order.asset_id}, order sells {quantity:g} "
        f"({problem})"
    )


def cash_text(cost: float, quantity: float, asset_id: str, price: float, cash: float) -> str:
    """The reason an order does not fit in the cash (also used by the compiled path)."""
    return (
        f"insufficient cash: need {cost:,.2f} to buy {quantity:g} {asset_id} at {price:,.4f}, "
        f"have {cash:,.2f}"
    )


def resized_text(asked: float, filled: float, why: str) -> str:
    """The reason recorded on a fill the cash policy resized."""
    return f"resized from {asked:g} to {filled:g}: {why}"


def intent_of(order: Order) -> int:
    """Return the order's fill-time intent (``kernels.intent``: none, reduce, target)."""
    if order.reduce_only:
        return INTENT_REDUCE
    return INTENT_NONE if order.target_quantity is None else INTENT_TARGET


def target_of(order: Order) -> float:
    """Return a target order's target (0 for other orders: the kernels' placeholder)."""
    return 0.0 if order.target_quantity is None else order.target_quantity


def intent_cancel_text(status: int, order: Order, held: float) -> str:
    """The reason a reduce-only or target order is cancelled at fill time (``status`` is a
    cancel status of :func:`~ml4t.backtest.kernels.intent.resolve_intent`)."""
    asset_id, side, target = order.asset_id, order.side.sign, order.target_quantity
    if target is None:
        want = "long" if side < 0 else "short"
        return (
            f"cancelled: reduce-only order, no {want} position in {asset_id} left to reduce "
            f"(position {held:g})"
        )
    if status == AT_TARGET:
        return f"cancelled: target order, {asset_id} is already at its target {target:g}"
    other = "sell" if side > 0 else "buy"
    return (
        f"cancelled: target order, the position {held:g} in {asset_id} is already past its "
        f"target {target:g} (reaching it needs a {other})"
    )


def intent_change_reason(asked: float, resolved: float, target: float | None) -> str:
    """The fill reason of a reduce-only (``target`` None) or target order whose quantity
    the position at fill time changed (also built by the compiled path)."""
    if target is None:
        return f"reduce-only: capped at the open position {resolved:g} (order for {asked:g})"
    return f"target order: {resolved:g} to reach the target {target:g} (order for {asked:g})"
