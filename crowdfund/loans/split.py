"""Splitting repayments among lenders cumulatively (largest remainder on the running total).

A loan's lenders are weighted by what each lent. After every repayment the *total*
repaid so far is shared out again by the largest-remainder method, and each lender
receives the difference between their new share and what they already have. That keeps
every lender's running total within one minor unit of their exact share of what has been
repaid, and the parts of each repayment sum to it.

Re-sharing the running total alone can ask a lender to give a unit back (the largest
remainder method is not monotone: the "Alabama paradox"), so `split_repayment` never
goes below what a lender already has: each lender's new total is kept between the floor
and the ceiling of their exact share and at or above what they hold, and the units left
go by largest remainder. When the loan's final total (`final_total`: everything due) is
known, nobody is taken above their share of it, so the last repayment lands every
lender exactly on their largest-remainder share of the whole.
"""

from __future__ import annotations

from collections.abc import Sequence


def largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """`total` minor units shared by `weights` (largest remainder, earlier weights win ties)."""
    whole = sum(weights)
    shares = [total * w // whole for w in weights]
    remainders = [total * w % whole for w in weights]
    left = total - sum(shares)
    for i in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:left]:
        shares[i] += 1
    return shares


def split_repayment(
    received: Sequence[int], weights: Sequence[int], amount: int, final_total: int | None = None
) -> list[int]:
    """Each lender's part of a repayment of `amount` minor units (never negative; they sum to `amount`).

    `received`: what each lender has had so far (a previous split's running totals);
    `weights`: what each lent; `final_total`: the loan's whole amount due, when known.
    """
    n = len(weights)
    if n == 0 or len(received) != n or amount < 0 or any(w < 0 for w in weights) or not sum(weights):
        raise ValueError("a split needs lenders with weights, their receipts and an amount of at least zero")
    whole = sum(weights)
    total = sum(received) + amount
    floor = [total * w // whole for w in weights]
    remainder = [total * w % whole for w in weights]
    ceiling = [f + (r > 0) for f, r in zip(floor, remainder, strict=True)]
    if final_total is not None and final_total >= total:
        cap = largest_remainder(final_total, weights)
        ceiling = [min(c, k) for c, k in zip(ceiling, cap, strict=True)]
        floor = [min(f, k) for f, k in zip(floor, cap, strict=True)]
    new = [max(r, f) for r, f in zip(received, floor, strict=True)]
    left = total - sum(new)
    order = sorted(range(n), key=lambda i: (-remainder[i], i))
    for i in order:
        if left <= 0:
            break
        if new[i] < ceiling[i]:
            new[i] += 1
            left -= 1
    if left:
        _settle_difference(new, received, weights, total, left)
    return [a - b for a, b in zip(new, received, strict=True)]


def _settle_difference(
    new: list[int], received: Sequence[int], weights: Sequence[int], total: int, left: int
) -> None:
    """The bounds could not all be met: give (or take back) the `left` units one at a time to
    the lenders furthest below (above) their exact share, never below what they had.

    Not reached in the property tests; it keeps the hard guarantees (parts sum to the
    repayment, none negative) should the bounds ever conflict.
    """
    whole = sum(weights)

    def shortfall(i: int) -> int:  # exact share minus holding, scaled by the weights' sum
        return total * weights[i] - new[i] * whole

    step = 1 if left > 0 else -1
    while left:
        if step > 0:
            i = max(range(len(new)), key=lambda i: (shortfall(i), -i))
        else:
            i = min((i for i in range(len(new)) if new[i] > received[i]), key=lambda i: (shortfall(i), i))
        new[i] += step
        left -= step
