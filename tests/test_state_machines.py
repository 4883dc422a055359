"""Campaign, pledge and payment-operation lifecycles, each against a table written here.

The tables below are written out by hand from the lifecycles in the product description,
independently of the models' own tables: every (from, to) pair of states is tried;
a move listed here must succeed, every other one must raise `InvalidTransition` (a
Conflict with the code `invalid_transition`) and leave the state as it was.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from crowdfund.campaigns.models import Campaign, CampaignState
from crowdfund.engine.models import Pledge, PledgeState
from crowdfund.errors import Conflict
from crowdfund.models_base import InvalidTransition
from crowdfund.payments.models import OperationState, PaymentOperation

NOW = datetime(2027, 1, 31, 12, 0, tzinfo=UTC)

# draft → submitted → (changes requested ↔ submitted) → approved → live → closed
# (succeeded | failed) → settling → settled; a live campaign can be suspended and a
# suspended one resumed or cancelled (with full refunds); an approved campaign can be
# cancelled before it starts; rejected, settled and cancelled are final.
CAMPAIGN_MOVES = {
    ("draft", "submitted"),
    ("submitted", "changes_requested"),
    ("submitted", "approved"),
    ("submitted", "rejected"),
    ("changes_requested", "submitted"),
    ("approved", "live"),
    ("approved", "cancelled"),
    ("live", "succeeded"),
    ("live", "failed"),
    ("live", "suspended"),
    ("suspended", "live"),
    ("suspended", "cancelled"),
    ("succeeded", "settling"),
    ("failed", "settling"),
    ("settling", "settled"),
}
CAMPAIGN_STATES = {
    "draft",
    "submitted",
    "changes_requested",
    "approved",
    "rejected",
    "live",
    "suspended",
    "succeeded",
    "failed",
    "settling",
    "settled",
    "cancelled",
}

# A donation is pending while its charge is at the gateway, then charged or failed.
# A charge-at-close commitment is active until the backer cancels it, the close charges
# it (or the charge fails: a grace period, after which it is charged or released) or a
# failed close releases it. Only a charged pledge can be refunded.
PLEDGE_MOVES = {
    ("pending", "charged"),
    ("pending", "failed"),
    ("active", "cancelled"),
    ("active", "charged"),
    ("active", "failed"),
    ("active", "released"),
    ("failed", "charged"),
    ("failed", "released"),
    ("charged", "refunded"),
}
PLEDGE_STATES = {"pending", "active", "cancelled", "charged", "failed", "released", "refunded"}

# An operation is recorded as pending before the gateway is called; the answer makes it
# succeeded, failed or (a charge the bank wants confirmed) requires_action, which later
# succeeds or fails. Succeeded and failed are final. Hearing the same answer twice (a
# webhook after the call returned) is not an error: staying in a state is allowed.
OPERATION_MOVES = {
    ("pending", "succeeded"),
    ("pending", "failed"),
    ("pending", "requires_action"),
    ("requires_action", "succeeded"),
    ("requires_action", "failed"),
    ("pending", "pending"),
    ("requires_action", "requires_action"),
    ("succeeded", "succeeded"),
    ("failed", "failed"),
}
OPERATION_STATES = {"pending", "succeeded", "failed", "requires_action"}

MACHINES = {
    "campaign": (Campaign, CampaignState, CAMPAIGN_STATES, CAMPAIGN_MOVES),
    "pledge": (Pledge, PledgeState, PLEDGE_STATES, PLEDGE_MOVES),
    "payment": (PaymentOperation, OperationState, OPERATION_STATES, OPERATION_MOVES),
}


def every_pair():
    for name, (_model, _enum, states, moves) in MACHINES.items():
        for current, target in itertools.product(sorted(states), repeat=2):
            yield pytest.param(
                name, current, target, (current, target) in moves, id=f"{name}:{current}->{target}"
            )


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_the_table_here_names_every_state_of_the_model(name):
    _model, enum_cls, states, _moves = MACHINES[name]
    assert {s.value for s in enum_cls} == states


@pytest.mark.parametrize(("name", "current", "target", "allowed"), list(every_pair()))
def test_every_move_is_allowed_or_refused_as_the_table_says(name, current, target, allowed):
    model, enum_cls, _states, _moves = MACHINES[name]
    record = model(state=enum_cls(current))

    assert record.can_transition_to(enum_cls(target)) is allowed
    if allowed:
        record.transition_to(enum_cls(target), now=NOW)
        assert record.state is enum_cls(target)
    else:
        with pytest.raises(InvalidTransition) as refused:
            record.transition_to(enum_cls(target), now=NOW)
        assert record.state is enum_cls(current)
        assert isinstance(refused.value, Conflict)
        assert refused.value.code == "invalid_transition"
        assert refused.value.status == 409
        assert (refused.value.current, refused.value.target) == (enum_cls(current), enum_cls(target))


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_final_states_are_the_ones_with_no_move_out(name):
    model, enum_cls, states, moves = MACHINES[name]
    for state in states:
        leaves = {to for frm, to in moves if frm == state and to != state}
        assert model(state=enum_cls(state)).is_final is (not leaves), state


def test_cancelling_a_pledge_stamps_the_time():
    pledge = Pledge(state=PledgeState.ACTIVE)
    pledge.transition_to(PledgeState.CANCELLED, now=NOW)
    assert pledge.cancelled_at == NOW
