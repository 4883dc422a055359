"""Pledging through the service: each kind, counters, change, cancel, idempotency, bad input."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from crowdfund.campaigns.models import CampaignKind, CampaignState, FundingModel
from crowdfund.engine.models import Pledge, PledgeState
from crowdfund.engine.service import (
    PaymentDeclined,
    PledgeRequest,
    cancel_pledge,
    change_pledge,
    get_own_pledge,
    list_own_pledges,
    place_pledge,
    preview_pledge,
)
from crowdfund.errors import Conflict, DomainError, NotFound, ValidationError
from crowdfund.extensions import db
from crowdfund.ledger.service import account_balance, escrow_account
from crowdfund.models_base import InvalidTransition, utcnow
from crowdfund.money import Money
from tests.factories import make_campaign, make_user
from tests.factories.engine import cny, make_backer, make_investor
from tests.factories.payments import add_card

TIERS = [
    {"title": "Early bird", "price_amount": 10_000, "quantity_limit": 3},
    {"title": "Kit", "price_amount": 25_000, "quantity_limit": None, "ships": True, "ships_to": "Worldwide"},
]


def pledge_count(campaign_id: int | None = None) -> int:
    query = select(func.count(Pledge.id))
    if campaign_id is not None:
        query = query.where(Pledge.campaign_id == campaign_id)
    return db.session.scalar(query)


def refresh(*objs):
    for obj in objs:
        db.session.refresh(obj)


def active_sum(campaign_id: int) -> int:
    return db.session.scalar(
        select(func.coalesce(func.sum(Pledge.amount_amount), 0)).where(
            Pledge.campaign_id == campaign_id, Pledge.state.in_([PledgeState.ACTIVE, PledgeState.CHARGED])
        )
    )


# --- the state machine ----------------------------------------------------------------------

# Written from the product's pledge lifecycle, not from the model's table: a donation is
# pending at the gateway, then charged or failed; a charge-at-close commitment is active
# until cancelled, charged, failed (grace period: then charged or released) or released;
# only a charged pledge can be refunded.
ALLOWED = {
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
ALL_MOVES = [(a, b) for a in PledgeState for b in PledgeState]


@pytest.mark.parametrize(("source", "target"), ALL_MOVES, ids=[f"{a.value}->{b.value}" for a, b in ALL_MOVES])
def test_pledge_transitions_table(source, target):
    pledge = Pledge(state=source, kind=CampaignKind.REWARD, amount_amount=1, currency="CNY")
    if (source.value, target.value) in ALLOWED:
        pledge.transition_to(target)
        assert pledge.state is target
    else:
        with pytest.raises(InvalidTransition) as exc:
            pledge.transition_to(target)
        assert pledge.state is source
        assert (exc.value.code, exc.value.status) == ("invalid_transition", 409)


# --- reward -----------------------------------------------------------------------------------


def test_reward_pledge_counts_amount_backer_and_stock(app):
    campaign = make_campaign(tiers=TIERS)
    backer = make_backer()
    early, kit = campaign.tiers
    pledge = place_pledge(backer, campaign.id, PledgeRequest(tier_id=early.id, quantity=2, extra=cny(5)))
    assert pledge.state is PledgeState.ACTIVE
    assert pledge.amount == cny("205.00")
    assert pledge.extra == cny(5)
    refresh(campaign, early)
    assert (campaign.raised_amount, campaign.backer_count, early.claimed) == (20_500, 1, 2)

    shipped = place_pledge(
        backer, campaign.id, PledgeRequest(tier_id=kit.id, shipping_address=" 1 Main St\nShanghai ")
    )
    assert shipped.shipping_address == "1 Main St\nShanghai"
    refresh(campaign, kit)
    # The same backer twice is still one backer.
    assert (campaign.raised_amount, campaign.backer_count, kit.claimed) == (45_500, 1, 1)
    assert campaign.raised_amount == active_sum(campaign.id)


def test_no_reward_pledge_takes_a_free_amount(app):
    campaign = make_campaign(tiers=TIERS)
    pledge = place_pledge(make_backer(), campaign.id, PledgeRequest(amount=cny("33.30")))
    assert pledge.tier_id is None and pledge.amount == cny("33.30")
    refresh(campaign)
    assert campaign.raised_amount == 3_330


def test_sold_out_tier_says_so_and_changes_nothing(app):
    campaign = make_campaign(tiers=TIERS)
    early = campaign.tiers[0]
    place_pledge(make_backer(), campaign.id, PledgeRequest(tier_id=early.id, quantity=2))
    late = make_backer()
    with pytest.raises(Conflict) as too_many:
        place_pledge(late, campaign.id, PledgeRequest(tier_id=early.id, quantity=2))
    assert too_many.value.code == "sold_out" and "Only 1" in too_many.value.message
    place_pledge(late, campaign.id, PledgeRequest(tier_id=early.id, quantity=1))
    with pytest.raises(Conflict) as sold_out:
        place_pledge(make_backer(), campaign.id, PledgeRequest(tier_id=early.id))
    assert sold_out.value.code == "sold_out" and "sold out" in sold_out.value.message
    refresh(campaign, early)
    assert early.claimed == 3 and early.sold_out
    assert campaign.backer_count == 2 and campaign.raised_amount == 30_000 == active_sum(campaign.id)


def test_replaying_the_pledge_that_took_the_last_unit_returns_it(app):
    campaign = make_campaign(tiers=[{"title": "Last one", "price_amount": 10_000, "quantity_limit": 1}])
    tier = campaign.tiers[0]
    backer = make_backer()
    req = PledgeRequest(tier_id=tier.id, idempotency_token="form-last")
    first = place_pledge(backer, campaign.id, req)
    # The tier is sold out now; the same form again must still answer with its pledge.
    assert place_pledge(backer, campaign.id, req).id == first.id
    with pytest.raises(Conflict) as exc:
        place_pledge(backer, campaign.id, PledgeRequest(tier_id=tier.id, idempotency_token="form-other"))
    assert exc.value.code == "sold_out"
    refresh(campaign, tier)
    assert pledge_count() == 1 and tier.claimed == 1


def test_shipping_address_required_when_the_tier_ships(app):
    campaign = make_campaign(tiers=TIERS)
    with pytest.raises(ValidationError) as exc:
        place_pledge(
            make_backer(), campaign.id, PledgeRequest(tier_id=campaign.tiers[1].id, shipping_address="  ")
        )
    assert exc.value.field == "shipping_address"
    assert pledge_count() == 0


def test_a_saved_card_is_required_before_a_charge_at_close_pledge(app):
    campaign = make_campaign(tiers=TIERS)
    no_card = make_user()
    with pytest.raises(ValidationError) as exc:
        place_pledge(no_card, campaign.id, PledgeRequest(tier_id=campaign.tiers[0].id))
    assert exc.value.code == "payment_method_required"
    other = make_backer()
    add_card(no_card, "4000002760003184")  # saved, but needs authentication first: not usable
    with pytest.raises(ValidationError) as exc:
        place_pledge(
            no_card,
            campaign.id,
            PledgeRequest(tier_id=campaign.tiers[0].id, payment_method_id=other.id + 10_000),
        )
    assert exc.value.code == "payment_method_required"
    assert pledge_count() == 0


def test_pledge_records_the_chosen_card_and_refuses_someone_elses(app):
    campaign = make_campaign(tiers=TIERS)
    backer, other = make_backer(), make_backer()
    second = add_card(backer, "5555555555554444")
    first_default = second  # a new usable card becomes the default
    pledge = place_pledge(backer, campaign.id, PledgeRequest(amount=cny(10)))
    assert pledge.payment_method_id == first_default.id
    others_card = db.session.scalars(select(Pledge.payment_method_id)).first()
    assert others_card == first_default.id
    from crowdfund.payments.service import default_payment_method

    with pytest.raises(ValidationError) as exc:
        place_pledge(
            backer,
            campaign.id,
            PledgeRequest(amount=cny(10), payment_method_id=default_payment_method(other).id),
        )
    assert exc.value.code == "payment_method_required"
    assert pledge_count() == 1


def test_change_moves_stock_and_totals(app):
    campaign = make_campaign(tiers=TIERS)
    early, kit = campaign.tiers
    backer = make_backer()
    pledge = place_pledge(backer, campaign.id, PledgeRequest(tier_id=early.id, quantity=2))
    changed = change_pledge(
        backer,
        pledge.id,
        PledgeRequest(tier_id=kit.id, quantity=1, extra=cny(1), shipping_address="Somewhere 1"),
    )
    refresh(campaign, early, kit)
    assert changed.tier_id == kit.id and changed.amount == cny(251)
    assert (early.claimed, kit.claimed) == (0, 1)
    assert campaign.raised_amount == 25_100 == active_sum(campaign.id)
    assert campaign.backer_count == 1

    # Back to the limited tier; then asking for more than is left is refused and changes nothing.
    change_pledge(backer, pledge.id, PledgeRequest(tier_id=early.id, quantity=3))
    with pytest.raises(Conflict) as exc:
        change_pledge(backer, pledge.id, PledgeRequest(tier_id=early.id, quantity=4))
    assert exc.value.code == "sold_out"
    refresh(campaign, early, kit)
    assert (early.claimed, kit.claimed, campaign.raised_amount) == (3, 0, 30_000)
    # A full tier still lets its own holder change the quantity within what they hold.
    change_pledge(backer, pledge.id, PledgeRequest(amount=cny(7)))
    refresh(campaign, early)
    assert early.claimed == 0 and campaign.raised_amount == 700


def test_change_is_refused_for_other_kinds_and_others_pledges(app):
    campaign = make_campaign(tiers=TIERS)
    backer, stranger = make_backer(), make_backer()
    pledge = place_pledge(backer, campaign.id, PledgeRequest(tier_id=campaign.tiers[0].id))
    with pytest.raises(NotFound):
        change_pledge(stranger, pledge.id, PledgeRequest(tier_id=campaign.tiers[0].id, quantity=2))
    with pytest.raises(NotFound):
        get_own_pledge(stranger, pledge.id)
    equity = make_campaign(CampaignKind.EQUITY)
    investor = make_investor()
    commitment = place_pledge(investor, equity.id, PledgeRequest(shares=10, risk_acknowledged=True))
    with pytest.raises(Conflict) as exc:
        change_pledge(investor, commitment.id, PledgeRequest(amount=cny(200)))
    assert exc.value.code == "not_changeable"


def test_cancel_reward_keeps_counters_right(app):
    campaign = make_campaign(tiers=TIERS)
    early = campaign.tiers[0]
    backer = make_backer()
    first = place_pledge(backer, campaign.id, PledgeRequest(tier_id=early.id, quantity=2))
    second = place_pledge(backer, campaign.id, PledgeRequest(amount=cny(50)))
    cancel_pledge(backer, first.id)
    refresh(campaign, early)
    assert (campaign.raised_amount, campaign.backer_count, early.claimed) == (5_000, 1, 0)
    again = cancel_pledge(backer, first.id)  # a second click changes nothing
    assert again.state is PledgeState.CANCELLED
    cancel_pledge(backer, second.id)
    refresh(campaign, early)
    assert (campaign.raised_amount, campaign.backer_count, early.claimed) == (0, 0, 0)
    assert {p.state for p in list_own_pledges(backer)} == {PledgeState.CANCELLED}


def test_cancel_after_the_deadline_or_someone_elses_is_refused(app):
    campaign = make_campaign(tiers=TIERS)
    backer = make_backer()
    pledge = place_pledge(backer, campaign.id, PledgeRequest(tier_id=campaign.tiers[0].id))
    with pytest.raises(NotFound):
        cancel_pledge(make_backer(), pledge.id)
    with pytest.raises(Conflict) as exc:
        cancel_pledge(backer, pledge.id, now=campaign.end_at + timedelta(seconds=1))
    assert exc.value.code == "cancellation_closed"
    refresh(campaign, pledge)
    assert (
        pledge.state is PledgeState.ACTIVE and campaign.raised_amount == 10_000 and campaign.backer_count == 1
    )


def test_keep_it_all_reward_pledges_are_also_recorded_not_charged(app):
    campaign = make_campaign(tiers=TIERS)
    campaign.funding_model = FundingModel.KEEP_IT_ALL
    db.session.commit()
    pledge = place_pledge(make_backer(), campaign.id, PledgeRequest(tier_id=campaign.tiers[0].id))
    assert pledge.state is PledgeState.ACTIVE and pledge.payment_operation_id is None


# --- equity -----------------------------------------------------------------------------------


def equity_campaign(**fields):
    # price 10.00 per share, min investment 100.00, min target 10,000.00, max 50,000.00
    return make_campaign(CampaignKind.EQUITY, **fields)


def test_equity_in_whole_shares_with_risk_acknowledgement(app):
    campaign = equity_campaign()
    investor = make_investor()
    by_amount = place_pledge(investor, campaign.id, PledgeRequest(amount=cny(150), risk_acknowledged=True))
    assert by_amount.shares == 15 and by_amount.risk_acknowledged_at is not None
    by_shares = place_pledge(investor, campaign.id, PledgeRequest(shares=20, risk_acknowledged=True))
    assert by_shares.amount == cny(200)
    refresh(campaign)
    assert campaign.raised_amount == 35_000 and campaign.backer_count == 1


EQUITY_BAD_REQUESTS = {
    "fractional-shares": (
        PledgeRequest(amount=cny("155.50"), risk_acknowledged=True),
        "validation_error",
        "amount",
    ),
    "below-minimum": (PledgeRequest(amount=cny(90), risk_acknowledged=True), "below_minimum", "amount"),
    "zero-shares": (PledgeRequest(shares=0, risk_acknowledged=True), "validation_error", "shares"),
    "no-risk-tick": (PledgeRequest(shares=15), "validation_error", "risk_acknowledged"),
}


def test_equity_bad_requests(app):
    campaign = equity_campaign()
    investor = make_investor()
    for case, (req, code, field) in EQUITY_BAD_REQUESTS.items():
        with pytest.raises(ValidationError) as exc:
            place_pledge(investor, campaign.id, req)
        assert (exc.value.code, exc.value.field) == (code, field), case
    assert pledge_count() == 0


def test_equity_never_beyond_the_maximum(app):
    campaign = equity_campaign()
    whale = make_investor(accredited=True)
    place_pledge(whale, campaign.id, PledgeRequest(amount=cny(49_950), risk_acknowledged=True))
    with pytest.raises(Conflict) as exc:
        place_pledge(whale, campaign.id, PledgeRequest(amount=cny(100), risk_acknowledged=True))
    assert exc.value.code == "over_maximum" and "fully subscribed" in exc.value.message
    refresh(campaign)
    assert campaign.raised_amount == 4_995_000


def test_equity_needs_an_investor_profile(app):
    campaign = equity_campaign()
    with pytest.raises(ValidationError) as exc:
        place_pledge(make_backer(), campaign.id, PledgeRequest(shares=20, risk_acknowledged=True))
    assert exc.value.code == "investor_profile_required"


def test_investment_limit_across_equity_and_debt(app):
    # USD profile, income and net worth 10,000 USD: limit = max(2,500, 5%) = 2,500 USD.
    # At the policy rate 1 CNY = 0.14 USD that is 17,857.14 CNY.
    investor = make_investor(income=10_000_00, net_worth=10_000_00)
    equity = equity_campaign()
    debt = make_campaign(CampaignKind.DEBT)
    place_pledge(investor, equity.id, PledgeRequest(amount=cny(10_000), risk_acknowledged=True))
    with pytest.raises(Conflict) as exc:
        place_pledge(investor, debt.id, PledgeRequest(amount=cny(8_000), risk_acknowledged=True))
    assert exc.value.code == "limit_exceeded" and "$2,500.00" in exc.value.message
    place_pledge(investor, debt.id, PledgeRequest(amount=cny(7_857), risk_acknowledged=True))
    refresh(debt)
    assert debt.raised_amount == 785_700
    # Cancelling frees the limit again.
    first = list_own_pledges(investor)[-1]
    cancel_pledge(investor, first.id)
    place_pledge(investor, debt.id, PledgeRequest(amount=cny(9_000), risk_acknowledged=True))


def test_commitments_older_than_a_year_do_not_count(app):
    investor = make_investor(income=10_000_00, net_worth=10_000_00)
    equity = equity_campaign()
    old = place_pledge(investor, equity.id, PledgeRequest(amount=cny(17_000), risk_acknowledged=True))
    old.created_at = utcnow() - timedelta(days=366)
    db.session.commit()
    place_pledge(investor, equity.id, PledgeRequest(amount=cny(17_000), risk_acknowledged=True))


def test_accredited_investors_have_no_limit(app):
    investor = make_investor(income=0, net_worth=0, accredited=True)
    campaign = equity_campaign()
    pledge = place_pledge(investor, campaign.id, PledgeRequest(amount=cny(40_000), risk_acknowledged=True))
    assert pledge.state is PledgeState.ACTIVE


def test_equity_cancellation_closes_48_hours_before_the_deadline(app):
    campaign = equity_campaign()
    investor = make_investor()
    pledge = place_pledge(investor, campaign.id, PledgeRequest(shares=10, risk_acknowledged=True))
    cutoff = campaign.end_at - timedelta(hours=48)
    assert pledge.cancellation_deadline == cutoff
    with pytest.raises(Conflict) as exc:
        cancel_pledge(investor, pledge.id, now=cutoff)
    assert exc.value.code == "cancellation_closed" and cutoff.strftime("%d %b %Y %H:%M") in exc.value.message
    cancel_pledge(investor, pledge.id, now=cutoff - timedelta(seconds=1))
    refresh(campaign)
    assert campaign.raised_amount == 0 and campaign.backer_count == 0


# --- debt -------------------------------------------------------------------------------------


def test_debt_minimum_share_and_maximum(app):
    # min loan share 100.00; min amount 10,000.00; max 20,000.00
    campaign = make_campaign(CampaignKind.DEBT)
    lender = make_investor(accredited=True)
    with pytest.raises(ValidationError) as exc:
        place_pledge(lender, campaign.id, PledgeRequest(amount=cny("99.99"), risk_acknowledged=True))
    assert exc.value.code == "below_minimum"
    place_pledge(lender, campaign.id, PledgeRequest(amount=cny(19_950), risk_acknowledged=True))
    with pytest.raises(Conflict) as exc:
        place_pledge(lender, campaign.id, PledgeRequest(amount=cny(100), risk_acknowledged=True))
    assert exc.value.code == "over_maximum"
    refresh(campaign)
    assert campaign.raised_amount == 1_995_000


# --- donation ---------------------------------------------------------------------------------


def test_donation_is_charged_at_once_into_the_campaign_escrow(app):
    campaign = make_campaign(CampaignKind.DONATION)
    donor = make_backer()
    pledge = place_pledge(
        donor, campaign.id, PledgeRequest(amount=cny(88), message=" Get well soon ", anonymous=True)
    )
    assert pledge.state is PledgeState.CHARGED
    assert pledge.payment_operation_id is not None
    assert (pledge.message, pledge.anonymous) == ("Get well soon", True)
    refresh(campaign)
    assert (campaign.raised_amount, campaign.backer_count) == (8_800, 1)
    assert account_balance(escrow_account(campaign)) == cny(88)


def test_declined_donation_fails_with_a_message_and_counts_nothing(app):
    campaign = make_campaign(CampaignKind.DONATION)
    donor = make_user()
    add_card(donor, "4000000000000341")
    with pytest.raises(PaymentDeclined) as exc:
        place_pledge(donor, campaign.id, PledgeRequest(amount=cny(50)))
    assert exc.value.status == 402 and "card" in exc.value.message.lower()
    pledge = db.session.scalars(select(Pledge)).one()
    assert pledge.state is PledgeState.FAILED and pledge.failure_message
    refresh(campaign)
    assert (campaign.raised_amount, campaign.backer_count) == (0, 0)
    assert account_balance(escrow_account(campaign)) == cny(0)


def test_donations_cannot_be_cancelled_and_have_a_minimum(app):
    campaign = make_campaign(CampaignKind.DONATION)
    donor = make_backer()
    with pytest.raises(ValidationError) as exc:
        place_pledge(donor, campaign.id, PledgeRequest(amount=cny("0.50")))
    assert "at least ¥1.00" in exc.value.message
    pledge = place_pledge(donor, campaign.id, PledgeRequest(amount=cny(5)))
    with pytest.raises(Conflict) as exc:
        cancel_pledge(donor, pledge.id)
    assert exc.value.code == "cancellation_closed"
    refresh(campaign, pledge)
    assert pledge.state is PledgeState.CHARGED and campaign.raised_amount == 500


# --- idempotency ------------------------------------------------------------------------------


def test_the_same_form_token_creates_one_pledge(app):
    campaign = make_campaign(tiers=TIERS)
    backer = make_backer()
    req = PledgeRequest(tier_id=campaign.tiers[0].id, idempotency_token="form-abc")
    first = place_pledge(backer, campaign.id, req)
    again = place_pledge(backer, campaign.id, req)
    assert first.id == again.id
    refresh(campaign)
    assert pledge_count() == 1 and campaign.raised_amount == 10_000 and campaign.tiers[0].claimed == 1
    # Another backer may use the same token value: tokens are per backer.
    place_pledge(make_backer(), campaign.id, req)
    assert pledge_count() == 2
    with pytest.raises(Conflict) as exc:
        place_pledge(
            backer, make_campaign(tiers=TIERS).id, PledgeRequest(amount=cny(5), idempotency_token="form-abc")
        )
    assert exc.value.code == "idempotency_conflict"


def test_the_same_donation_token_charges_once(app):
    campaign = make_campaign(CampaignKind.DONATION)
    donor = make_backer()
    req = PledgeRequest(amount=cny(20), idempotency_token="donate-1")
    first = place_pledge(donor, campaign.id, req)
    second = place_pledge(donor, campaign.id, req)
    assert first.id == second.id
    refresh(campaign)
    assert campaign.raised_amount == 2_000
    assert account_balance(escrow_account(campaign)) == cny(20)


# --- bad input: each one is refused with a clear code and changes nothing -----------------------


BAD_AMOUNTS = [
    ("negative", lambda: Money(-500, "CNY"), "validation_error"),
    ("zero", lambda: Money(0, "CNY"), "validation_error"),
    ("not-money", lambda: "12.50", "validation_error"),
    ("float", lambda: 12.5, "validation_error"),
    ("absurdly-large", lambda: Money(10**14, "CNY"), "validation_error"),
    ("wrong-currency", lambda: Money(5_000, "USD"), "wrong_currency"),
]


def test_bad_amounts_are_refused_for_every_kind(app):
    backer = make_investor()
    campaigns = {
        kind: make_campaign(kind, tiers=TIERS if kind is CampaignKind.REWARD else None)
        for kind in CampaignKind
    }
    for name, amount, code in BAD_AMOUNTS:
        for kind, campaign in campaigns.items():
            with pytest.raises(ValidationError) as exc:
                place_pledge(backer, campaign.id, PledgeRequest(amount=amount(), risk_acknowledged=True))
            assert (exc.value.code, exc.value.field) == (code, "amount"), (name, kind)
            assert exc.value.message
    for campaign in campaigns.values():
        refresh(campaign)
        assert campaign.raised_amount == 0 and campaign.backer_count == 0
    assert pledge_count() == 0


BAD_REWARD_DETAILS = {
    "negative-extra": ({"extra": Money(-100, "CNY")}, "extra"),
    "wrong-currency-extra": ({"extra": Money(100, "USD")}, "extra"),
    "zero-quantity": ({"quantity": 0}, "quantity"),
    "huge-quantity": ({"quantity": 10**9}, "quantity"),
    "text-quantity": ({"quantity": "two"}, "quantity"),
}


def test_bad_reward_details_are_refused(app):
    campaign = make_campaign(tiers=TIERS)
    backer = make_backer()
    for case, (fields, field) in BAD_REWARD_DETAILS.items():
        with pytest.raises(ValidationError) as exc:
            place_pledge(backer, campaign.id, PledgeRequest(tier_id=campaign.tiers[0].id, **fields))
        assert exc.value.field == field, case
    refresh(campaign)
    assert pledge_count() == 0 and campaign.tiers[0].claimed == 0


def test_a_tier_of_another_campaign_is_refused(app):
    campaign = make_campaign(tiers=TIERS)
    other = make_campaign(tiers=TIERS)
    with pytest.raises(ValidationError) as exc:
        place_pledge(make_backer(), campaign.id, PledgeRequest(tier_id=other.tiers[0].id))
    assert exc.value.code == "invalid_tier"
    for bad in (999_999, "1", True):
        with pytest.raises(ValidationError) as exc:
            place_pledge(make_backer(), campaign.id, PledgeRequest(tier_id=bad))
        assert exc.value.code == "invalid_tier", bad
    refresh(other)
    assert pledge_count() == 0 and other.tiers[0].claimed == 0


NOT_OPEN = [
    (CampaignState.DRAFT, None, "campaign_not_open"),
    (CampaignState.SUBMITTED, None, "campaign_not_open"),
    (CampaignState.APPROVED, None, "campaign_not_open"),
    (CampaignState.SUSPENDED, None, "campaign_not_open"),
    (CampaignState.SUCCEEDED, None, "campaign_closed"),
    (CampaignState.FAILED, None, "campaign_closed"),
    (CampaignState.CANCELLED, None, "campaign_closed"),
    (CampaignState.LIVE, "past_end", "campaign_closed"),
    (CampaignState.LIVE, "before_start", "campaign_not_open"),
]


def test_pledging_to_a_campaign_that_is_not_open(app):
    backer = make_backer()
    for state, shift, code in NOT_OPEN:
        fields = {}
        if shift == "past_end":
            fields = {"start_at": utcnow() - timedelta(days=31), "days": 30}
        elif shift == "before_start":
            fields = {"start_at": utcnow() + timedelta(days=1)}
        campaign = make_campaign(state=state, tiers=TIERS, **fields)
        with pytest.raises(Conflict) as exc:
            place_pledge(backer, campaign.id, PledgeRequest(tier_id=campaign.tiers[0].id))
        assert (exc.value.code, exc.value.status) == (code, 409), (state, shift)
        refresh(campaign)
        assert campaign.tiers[0].claimed == 0
    assert pledge_count() == 0


def test_unknown_campaign_is_not_found(app):
    with pytest.raises(NotFound):
        place_pledge(make_backer(), 424242, PledgeRequest(amount=cny(5)))
    with pytest.raises(NotFound):
        place_pledge(make_backer(), "1; drop table", PledgeRequest(amount=cny(5)))


def test_every_error_carries_a_code_and_status(app):
    campaign = make_campaign(tiers=TIERS, state=CampaignState.SUSPENDED)
    try:
        place_pledge(make_backer(), campaign.id, PledgeRequest(amount=cny(5)))
    except DomainError as exc:
        assert (exc.code, exc.status) == ("campaign_not_open", 409)
        assert "suspended" in exc.message
    else:  # pragma: no cover
        pytest.fail("a suspended campaign took a pledge")


def test_preview_checks_everything_and_writes_nothing(app):
    campaign = make_campaign(tiers=TIERS)
    backer = make_backer()
    preview = preview_pledge(backer, campaign.id, PledgeRequest(tier_id=campaign.tiers[0].id, quantity=3))
    assert preview.amount == cny(300) and not preview.charged_now
    assert preview.cancellation_deadline == campaign.end_at
    assert "4242" in preview.payment_method.label
    with pytest.raises(Conflict):
        preview_pledge(backer, campaign.id, PledgeRequest(tier_id=campaign.tiers[0].id, quantity=4))
    refresh(campaign)
    assert pledge_count() == 0 and campaign.tiers[0].claimed == 0


def test_an_interrupted_donation_is_finished_by_the_clock(app):
    """The process stopped after recording the donation, before charging: the tick finishes it."""
    from crowdfund.engine import service

    campaign = make_campaign(CampaignKind.DONATION)
    donor = make_backer()
    req = PledgeRequest(amount=cny(12))
    pledge = service.record_pledge(
        donor, campaign.id, req, None, service.request_digest(campaign.id, req), utcnow()
    )
    assert pledge.state is PledgeState.PENDING
    refresh(campaign)
    assert campaign.raised_amount == 0  # not counted until charged
    assert service.reconcile_pending_donations() == 0  # too recent: its request may still be running
    later = utcnow() + timedelta(minutes=10)
    assert service.reconcile_pending_donations(now=later) == 1
    refresh(campaign, pledge)
    assert pledge.state is PledgeState.CHARGED and campaign.raised_amount == 1_200
    assert account_balance(escrow_account(campaign)) == cny(12)
    assert service.reconcile_pending_donations(now=later) == 0
