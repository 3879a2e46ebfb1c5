"""Account rules of the simulation broker: buying power, margin, margin calls.

Three account types:

``"cash"``
    Buys are paid in full from cash (commission included); no shorting, no borrowing.
``"simple"``
    Buys are paid in full from cash; short sales are not limited and credit their
    proceeds to cash; no margin requirement and no margin calls. This is how Backtrader's
    default broker (``shortcash=True``) and VectorBT account for shorts, and what their
    presets use.
``"margin"``
    Positions need equity of ``initial_margin`` times their market value when they are
    opened or grown (0.5 = Reg T, so at most 2x gross leverage); cash may go negative
    (a loan) and shorts credit their proceeds to cash. When equity at a bar's close falls
    below ``maintenance_margin`` times the gross market value, a margin call liquidates
    positions (see :class:`MarginBook`).

Futures (asset class ``future`` in the asset registry) always trade on margin, in either
account type: their ``initial_margin`` and ``maintenance_margin`` are currency per contract.
Per-asset margins from the registry override the account's fractions.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np

if TYPE_CHECKING:
    from ..core.assets import AssetArrays
    from ..core.portfolio import Portfolio

__all__ = [
    "ACCOUNT_TYPES",
    "MARGIN_CALL_POLICIES",
    "AccountType",
    "MarginBook",
    "MarginCallPolicy",
    "qty_for_abs_cap",
]

AccountType = Literal["cash", "simple", "margin"]
MarginCallPolicy = Literal["liquidate", "liquidate_all"]
ACCOUNT_TYPES: tuple[AccountType, ...] = get_args(AccountType)
MARGIN_CALL_POLICIES: tuple[MarginCallPolicy, ...] = get_args(MarginCallPolicy)


def qty_for_abs_cap(old: float, side: int, cap: float) -> float:
    """Return the largest order quantity (side ``side``) keeping ``|position| <= cap``.

    An order against the position may first close it and then open up to ``cap`` the
    other way; an order with it may add up to ``cap - |old|`` (never negative).
    """
    cap = max(cap, 0.0)
    if old * side >= 0:
        return max(cap - abs(old), 0.0)
    return abs(old) + cap


class MarginBook:
    """Initial and maintenance margin requirements of a portfolio.

    Parameters
    ----------
    pf : Portfolio
    assets : AssetArrays
        Per-asset margins (NaN = the account default) and the futures flags.
    account : {"cash", "simple", "margin"}
    initial_margin, maintenance_margin : float
        Account fractions of market value for non-futures positions.
    """

    def __init__(
        self,
        pf: Portfolio,
        assets: AssetArrays,
        account: str,
        initial_margin: float,
        maintenance_margin: float,
    ) -> None:
        self.pf = pf
        self.is_future = np.asarray(assets.is_future, dtype=bool)
        default_im = initial_margin if account == "margin" else 1.0
        default_mm = maintenance_margin if account == "margin" else 1.0
        self.im = np.where(np.isnan(assets.initial_margin), default_im, assets.initial_margin)
        self.mm = np.where(
            np.isnan(assets.maintenance_margin),
            np.where(self.is_future, self.im, default_mm),
            assets.maintenance_margin,
        )
        self.im_list = self.im.tolist()
        self.mm_list = self.mm.tolist()
        self.fut_list = self.is_future.tolist()

    def unit_requirement(self, code: int, price: float, maintenance: bool = False) -> float:
        """Return the margin one unit of ``code`` needs at ``price``."""
        rate = (self.mm_list if maintenance else self.im_list)[code]
        if self.fut_list[code]:
            return rate  # type: ignore[no-any-return]
        return rate * self.pf.mult[code] * price  # type: ignore[no-any-return]

    def requirement(self, maintenance: bool = False, skip: int = -1) -> float:
        """Return the total requirement of the held positions at their last prices."""
        pf = self.pf
        total = 0.0
        for c in pf.held:
            if c != skip:
                total += abs(pf.qty[c]) * self.unit_requirement(c, pf.price_of(c), maintenance)
        return total

    def max_abs_position(self, code: int, price: float, equity: float) -> float:
        """Return the largest ``|position|`` in ``code`` the initial margin allows."""
        unit = self.unit_requirement(code, price)
        if unit <= 0:
            return math.inf
        return (equity - self.requirement(skip=code)) / unit

    def deficit(self) -> tuple[float, float]:
        """Return ``(equity, maintenance requirement)`` at the last prices."""
        return self.pf.equity(), self.requirement(maintenance=True)

    def liquidation_plan(self, policy: str) -> list[tuple[int, float]]:
        """Return ``(code, signed quantity)`` closing orders that answer a margin call.

        ``"liquidate_all"`` closes every position. ``"liquidate"`` closes whole positions,
        largest maintenance requirement first, until the remaining requirement is covered
        by equity (valued at the last prices, before costs).
        """
        pf = self.pf
        held = [
            (abs(pf.qty[c]) * self.unit_requirement(c, pf.price_of(c), True), c) for c in pf.held
        ]
        held.sort(key=lambda t: (-t[0], t[1]))
        equity, need = self.deficit()
        plan = []
        for req, c in held:
            if policy == "liquidate" and need <= equity:
                break
            plan.append((c, -pf.qty[c]))
            need -= req
        return plan
