"""A small site with one of everything, for the robustness and authorisation tests.

`build_world()` makes: a backer with a card, an API token, a reward pledge and a named
donation; a second backer with an anonymous donation; a campaigner with an organisation,
a draft of each kind (the reward draft with a tier), a live campaign of each kind (the
donation one patient aid, the reward one with a public cover); another campaigner with
an organisation, a draft with a tier, a card and a token; a campaign waiting for review;
an operator. Everything goes through the services, as the site does it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from flask import g
from sqlalchemy import select

from crowdfund.accounts.models import Organisation, Role, User
from crowdfund.api.service import create_token
from crowdfund.campaigns import images
from crowdfund.campaigns import service as campaigns
from crowdfund.campaigns.models import Campaign, CampaignKind, DonationTerms
from crowdfund.engine import service as engine
from crowdfund.engine.models import Pledge
from crowdfund.extensions import db
from crowdfund.ledger.models import LedgerAccount, LedgerTransaction
from crowdfund.money import Money
from crowdfund.payments.models import PaymentMethod
from tests.factories import login, make_campaign, make_org, make_user
from tests.factories.campaigns import image_bytes, ready_draft
from tests.factories.engine import make_investor
from tests.factories.payments import add_card

#: The patient's full name on the patient-aid campaign: public pages must never show it.
PATIENT_NAME = "Zhang Xiaoming"
#: The named donor (public pages may show no donor names at all) and the anonymous one.
NAMED_DONOR = "Wilhelmina Named-Donor"
ANONYMOUS_DONOR = "Bartholomew Hidden-Donor"


@dataclass
class Party:
    """A user and the things they own."""

    user: User
    org: Organisation | None = None
    card: PaymentMethod | None = None
    token_secret: str | None = None
    token_id: int | None = None
    pledges: list[Pledge] = field(default_factory=list)
    drafts: dict[CampaignKind, Campaign] = field(default_factory=dict)
    live: dict[CampaignKind, Campaign] = field(default_factory=dict)


@dataclass
class World:
    backer: Party
    donor: Party
    campaigner: Party
    rival: Party
    operator: Party
    submitted: Campaign
    ledger_account_id: int
    ledger_txn_id: int
    cover_name: str

    def party(self, role: str) -> Party | None:
        return None if role == "anonymous" else getattr(self, role)


def _token(party: Party, name: str = "script") -> None:
    created = create_token(party.user, name)
    party.token_secret = created.secret
    party.token_id = created.token.id


def build_world() -> World:
    # The campaigner: an organisation, a draft of each kind, a live campaign of each kind.
    campaigner = Party(make_user(name="Carla Campaigner"))
    campaigner.org = make_org(owner=campaigner.user, legal_name="Carla Health Ltd")
    campaigner.card = add_card(campaigner.user)
    _token(campaigner)
    for kind in CampaignKind:
        campaigner.drafts[kind] = ready_draft(kind, campaigner.user, campaigner.org)
        campaigner.live[kind] = make_campaign(kind, org=campaigner.org, slug=f"live-{kind.value}")
    patient_aid = campaigner.live[CampaignKind.DONATION]
    terms = db.session.get(DonationTerms, patient_aid.id)
    terms.is_patient_aid = True
    terms.patient_name = PATIENT_NAME
    terms.beneficiary_name = PATIENT_NAME
    terms.hospital_name = "Peking Union Medical College Hospital"
    terms.diagnosis_summary = "Acute leukaemia."
    cover = images.store_cover(images.prepare_cover(image_bytes((800, 450))))
    campaigner.live[CampaignKind.REWARD].cover_image = cover
    db.session.commit()

    # Another campaigner with an organisation, a draft (with a tier), a card and a token.
    rival = Party(make_user(name="Rita Rival"))
    rival.org = make_org(owner=rival.user, legal_name="Rival Clinics Ltd")
    rival.card = add_card(rival.user)
    _token(rival)
    rival.drafts[CampaignKind.REWARD] = ready_draft(CampaignKind.REWARD, rival.user, rival.org)
    rival.drafts[CampaignKind.DONATION] = ready_draft(CampaignKind.DONATION, rival.user, rival.org)

    # The backer: a card, a token, an investor profile, a reward pledge and a named donation.
    backer = Party(make_user(name=NAMED_DONOR, email="named.donor@example.org"))
    backer.card = add_card(backer.user)
    make_investor(backer.user)
    _token(backer)
    reward = campaigner.live[CampaignKind.REWARD]
    backer.pledges.append(
        engine.place_pledge(
            backer.user,
            reward.id,
            engine.PledgeRequest(tier_id=reward.tiers[0].id, quantity=1, idempotency_token="w-reward"),
        )
    )
    backer.pledges.append(
        engine.place_pledge(
            backer.user,
            patient_aid.id,
            engine.PledgeRequest(
                amount=Money(5_000, patient_aid.currency),
                message="Get well soon",
                idempotency_token="w-donation-named",
            ),
        )
    )

    # A second backer who gives anonymously, and pledges to the rival's nothing.
    donor = Party(make_user(name=ANONYMOUS_DONOR, email="hidden.donor@example.org"))
    donor.card = add_card(donor.user)
    _token(donor)
    donor.pledges.append(
        engine.place_pledge(
            donor.user,
            patient_aid.id,
            engine.PledgeRequest(
                amount=Money(7_000, patient_aid.currency),
                anonymous=True,
                idempotency_token="w-donation-anon",
            ),
        )
    )
    donor.pledges.append(
        engine.place_pledge(
            donor.user,
            reward.id,
            engine.PledgeRequest(tier_id=reward.tiers[0].id, quantity=2, idempotency_token="w-reward-2"),
        )
    )

    # A campaign waiting for review, from a third organisation.
    submitter = make_user()
    submitter_org = make_org(owner=submitter)
    submitted = ready_draft(CampaignKind.REWARD, submitter, submitter_org)
    campaigns.submit_for_review(submitted, submitter)

    operator = Party(make_user(role=Role.OPERATOR, name="Olga Operator"))
    _token(operator)

    txn = db.session.scalars(select(LedgerTransaction).order_by(LedgerTransaction.id)).first()
    account = db.session.scalars(select(LedgerAccount).order_by(LedgerAccount.id)).first()
    return World(
        backer=backer,
        donor=donor,
        campaigner=campaigner,
        rival=rival,
        operator=operator,
        submitted=submitted,
        ledger_account_id=account.id,
        ledger_txn_id=txn.id,
        cover_name=cover,
    )


CSRF_INPUT = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def forget_csrf_token() -> None:
    """Drop the CSRF token Flask-WTF caches in `g`.

    The tests serve many requests inside one app context, so `g` outlives a request;
    without this a page would render the token of an earlier client's session.
    """
    g.pop("csrf_token", None)


def csrf_client(app, user: User | None):
    """A test client logged in as `user` (or anonymous) and a CSRF token for its session."""
    client = app.test_client()
    forget_csrf_token()
    if user is not None:
        login(client, user)
        page = client.get("/account/tokens")
    else:
        page = client.get("/login")
    match = CSRF_INPUT.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on the page ({page.status_code})"
    return client, match.group(1)
