"""The settlement's and the item's allowed moves, checked against a table written out again here."""

from __future__ import annotations

import itertools

import pytest

from crowdfund.models_base import InvalidTransition
from crowdfund.settlement.models import ItemState, Settlement, SettlementItem, SettlementState

S = SettlementState
SETTLEMENT_MOVES = {
    (S.COLLECTING, S.PAYING_OUT),
    (S.COLLECTING, S.REFUNDING),
    (S.PAYING_OUT, S.SETTLED),
    (S.RELEASING, S.RELEASED),
    (S.REFUNDING, S.REFUNDED),
}

I = ItemState  # noqa: E741
UNPAID = (I.PENDING, I.FAILED, I.ACTION_REQUIRED, I.HARD_DECLINED)
ANSWERS = (I.CHARGED, I.FAILED, I.ACTION_REQUIRED, I.HARD_DECLINED)
ITEM_MOVES = (
    {(s, I.CHARGING) for s in UNPAID}
    | {(s, I.DROPPED) for s in UNPAID}
    | {(s, I.RELEASED) for s in UNPAID}
    | {(I.CHARGING, t) for t in (*ANSWERS, I.UNKNOWN)}
    | {(I.UNKNOWN, t) for t in ANSWERS}
    | {(I.CHARGED, I.REFUNDING), (I.REFUNDING, I.REFUNDED)}
)


@pytest.mark.parametrize("source,target", list(itertools.product(SettlementState, repeat=2)))
def test_settlement_moves(source, target):
    settlement = Settlement(state=source)
    if (source, target) in SETTLEMENT_MOVES:
        settlement.transition_to(target)
        assert settlement.state is target
    else:
        with pytest.raises(InvalidTransition):
            settlement.transition_to(target)
        assert settlement.state is source


@pytest.mark.parametrize("source,target", list(itertools.product(ItemState, repeat=2)))
def test_item_moves(source, target):
    item = SettlementItem(state=source)
    if (source, target) in ITEM_MOVES:
        item.transition_to(target)
        assert item.state is target
    else:
        with pytest.raises(InvalidTransition):
            item.transition_to(target)
        assert item.state is source


def test_final_states():
    assert {s for s in SettlementState if Settlement(state=s).is_final} == {S.SETTLED, S.RELEASED, S.REFUNDED}
    assert {s for s in ItemState if SettlementItem(state=s).is_final} == {I.DROPPED, I.RELEASED, I.REFUNDED}
