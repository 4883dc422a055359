"""Public pages and public JSON leak nothing private about backers, patients or payments.

The world (tests/robustness_world.py) has a patient-aid donation campaign whose patient
is also typed in as the beneficiary, a donation from a named donor with a message, an
anonymous donation, reward pledges, saved cards and ledger transactions. Every public
page and JSON document is searched for: backers' names and e-mails, the patient's full
name, card numbers and card labels, idempotency keys and pledge tokens, gateway ids and
ledger descriptions. The same pages must still show what is public (masked name,
amounts), so a page that shows nothing cannot pass.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from crowdfund.campaigns.models import CampaignKind, mask_name
from crowdfund.engine.models import Pledge
from crowdfund.extensions import db
from crowdfund.ledger.models import LedgerTransaction
from crowdfund.payments.models import GatewayCustomer, PaymentMethod, PaymentOperation
from tests.factories import login
from tests.robustness_world import ANONYMOUS_DONOR, NAMED_DONOR, PATIENT_NAME, World, build_world


def private_strings(world: World) -> dict[str, str]:
    """What no public page may contain, named for the failure message."""
    secrets: dict[str, str] = {
        "named donor's name": NAMED_DONOR,
        "named donor's e-mail": world.backer.user.email,
        "anonymous donor's name": ANONYMOUS_DONOR,
        "anonymous donor's e-mail": world.donor.user.email,
        "patient's full name": PATIENT_NAME,
        "card number": "4242424242424242",
        "card number with spaces": "4242 4242 4242 4242",
    }
    for pledge in db.session.scalars(select(Pledge)):
        if pledge.idempotency_token:
            secrets[f"pledge {pledge.id} token"] = pledge.idempotency_token
    for op in db.session.scalars(select(PaymentOperation)):
        secrets[f"payment {op.id} idempotency key"] = op.idempotency_key
        if op.gateway_id:
            secrets[f"payment {op.id} gateway id"] = op.gateway_id
    for method in db.session.scalars(select(PaymentMethod)):
        secrets[f"card {method.id} gateway id"] = method.gateway_id
        secrets[f"card {method.id} label"] = method.label
    for customer in db.session.scalars(select(GatewayCustomer)):
        secrets[f"gateway customer {customer.id}"] = customer.customer_id
    for txn in db.session.scalars(select(LedgerTransaction)):
        secrets[f"ledger key {txn.sequence}"] = txn.key
        secrets[f"ledger description {txn.sequence}"] = txn.description
    return secrets


def public_documents(client, world: World) -> dict[str, str]:
    """Every public page and JSON document about the campaigns, as text."""
    aid = world.campaigner.live[CampaignKind.DONATION]
    reward = world.campaigner.live[CampaignKind.REWARD]
    urls = [
        "/",
        "/campaigns",
        "/campaigns?kind=donation&status=all",
        f"/campaigns/{aid.slug}",
        f"/campaigns/{reward.slug}",
        f"/campaigns/{aid.slug}/money-trail",
        f"/campaigns/{reward.slug}/money-trail",
        f"/campaigns/{aid.slug}/money-trail.json",
        "/ledger/chain.json",
        "/api/v1/campaigns",
        "/api/v1/campaigns?kind=donation",
        f"/api/v1/campaigns/{aid.id}",
        f"/api/v1/campaigns/{aid.slug}",
        f"/api/v1/campaigns/{reward.id}",
    ]
    docs = {}
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        text = response.get_data(as_text=True)
        if response.is_json:  # also as JSON decodes it: no \u escapes hiding a name
            text += "\n" + json.dumps(response.get_json(), ensure_ascii=False)
        docs[url] = text
    return docs


@pytest.mark.parametrize("viewer", ["anonymous", "rival", "backer"])
def test_public_pages_and_json_leak_nothing_private(app, viewer):
    world = build_world()
    client = app.test_client()
    party = world.party(viewer)
    if party is not None:
        login(client, party.user)
    docs = public_documents(client, world)
    if party is not None:  # the pledge form of a logged-in visitor is public about the campaign too
        aid = world.campaigner.live[CampaignKind.DONATION]
        docs["donation form"] = client.get(f"/campaigns/{aid.slug}/back").get_data(as_text=True)
    secrets = private_strings(world)

    leaks = [
        f"{url}: {what} ({value!r})"
        for url, text in docs.items()
        for what, value in secrets.items()
        if value
        and value in text
        # The donation form lists the visitor's own cards (every test card looks alike).
        and not (url == "donation form" and what.endswith(" label"))
        # The backer sees their own name in the navigation bar, nothing more.
        and not (
            viewer == "backer"
            and what == "named donor's name"
            and text.count(value) == _nav_count(text, value)
        )
    ]
    assert not leaks, "\n".join(leaks)

    # What is public is there: the shortened patient name, the amounts given.
    masked = mask_name(PATIENT_NAME)
    aid = world.campaigner.live[CampaignKind.DONATION]
    assert masked == "Zhang X."
    assert masked in docs[f"/campaigns/{aid.slug}"]
    assert (
        json.loads(docs[f"/api/v1/campaigns/{aid.id}"].split("\n")[0])["terms"]["beneficiary_name"] == masked
    )
    trail = json.loads(docs[f"/campaigns/{aid.slug}/money-trail.json"].split("\n")[0])
    assert trail["figures"]["money_in"]["amount"] == 5_000 + 7_000
    assert sorted(e["amount"] for t in trail["transactions"] for e in t["entries"]) == [
        5_000,
        5_000,
        7_000,
        7_000,
    ]
    assert "\u00a5120.00" in docs[f"/campaigns/{aid.slug}/money-trail"]


def _nav_count(text: str, value: str) -> int:
    """How often `value` appears inside the page's navigation (the logged-in user's menu)."""
    start, end = text.find("<nav"), text.find("</nav>")
    return text[start:end].count(value) if start != -1 and end != -1 else 0


def test_the_campaigner_sees_named_donors_but_never_anonymous_ones(app, client):
    world = build_world()
    aid = world.campaigner.live[CampaignKind.DONATION]
    login(client, world.campaigner.user)
    for url in (f"/studio/{aid.id}/dashboard", f"/studio/{aid.id}/backers.csv"):
        text = client.get(url).get_data(as_text=True)
        assert NAMED_DONOR in text and world.backer.user.email in text, url
        assert ANONYMOUS_DONOR not in text and world.donor.user.email not in text, url
        assert "Anonymous" in text, url
        assert "4242424242424242" not in text and world.backer.card.gateway_id not in text, url


def test_the_patient_name_is_masked_even_when_typed_as_the_beneficiary(app, client):
    """A campaigner who types the patient's full name as the beneficiary does not publish it."""
    world = build_world()
    aid = world.campaigner.live[CampaignKind.DONATION]
    terms = aid.donation_terms
    assert terms.beneficiary_name == PATIENT_NAME  # as the campaigner typed it
    assert terms.public_beneficiary_name == "Zhang X."
    terms.patient_name = None
    db.session.commit()
    assert terms.public_beneficiary_name == "Zhang X."
    page = client.get(f"/campaigns/{aid.slug}").get_data(as_text=True)
    assert PATIENT_NAME not in page and "Zhang X." in page
    terms.is_patient_aid = False  # a cause, not a patient: its name is public as typed
    terms.beneficiary_name = "Beijing Children's Heart Fund"
    db.session.commit()
    assert "Beijing Children&#39;s Heart Fund" in client.get(f"/campaigns/{aid.slug}").get_data(as_text=True)
    assert mask_name("王小明") == "王**" and mask_name("  ") == ""


def test_donor_messages_show_a_shortened_name_or_anonymous(app, client):
    """The form promises the message on the campaign page: a named donor's name shortened,
    an anonymous donor's not at all."""
    world = build_world()
    aid = world.campaigner.live[CampaignKind.DONATION]
    text = client.get(f"/campaigns/{aid.slug}").get_data(as_text=True)
    assert "Get well soon" in text
    assert "Wilhelmina N." in text
    assert NAMED_DONOR not in text and ANONYMOUS_DONOR not in text
