"""One cleaning rule for all text, in forms and the API alike (`crowdfund.web.text`).

Lone surrogates and NUL are refused with a clear message and nothing is stored; control
characters, bidi overrides/isolates and invisible characters are removed before anything
is stored; multi-line fields keep their line breaks and tabs. Runs on SQLite and on
PostgreSQL (where a lone surrogate used to reach psycopg and give a 500).
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from crowdfund.accounts.forms import OrganisationForm, RegisterForm
from crowdfund.accounts.models import Organisation, User
from crowdfund.campaigns.forms import TierForm
from crowdfund.campaigns.models import Campaign, CampaignKind, RewardTier
from crowdfund.engine.models import Pledge
from crowdfund.extensions import db
from crowdfund.web.text import UnsafeText, clean_text
from tests.factories import login, make_campaign, make_user
from tests.factories.accounts import campaigner
from tests.factories.api import bearer, make_token
from tests.factories.campaigns import TIER_FORM
from tests.factories.payments import add_card

API = "/api/v1"

#: Each class of character the rule removes: (name, what is sent, what is kept).
REMOVED = [
    ("C0 control", "Ad\x01a", "Ada"),
    ("escape sequence", "\x1b[31mAda\x1b[0m", "[31mAda[0m"),
    ("DEL", "Ad\x7fa", "Ada"),
    ("C1 control", "Ad\x85a\x9b", "Ada"),
    ("right-to-left override", "Ada \u202egpj.exe", "Ada gpj.exe"),
    ("bidi embedding and isolates", "\u202aAda\u202c \u2066x\u2069\u2067y\u2068z\u2069", "Ada xyz"),
    ("zero-width space", "Ad\u200ba", "Ada"),
    ("word joiner and BOM", "\ufeffAd\u2060a", "Ada"),
    ("zero-width joiner between ASCII", "Ad\u200da\u200c", "Ada"),
]
KEPT = [
    ("accents and CJK", "Zoë 漢字", "Zoë 漢字"),
    ("emoji family (joiners between emoji)", "👨\u200d👩\u200d👧", "👨\u200d👩\u200d👧"),
    ("Persian with a non-joiner", "می\u200cخواهم", "می\u200cخواهم"),
]
LINE_BREAKS = "Line 1\r\nLine\t2\rLine 3\x0b"


@pytest.mark.parametrize("name,sent,kept", REMOVED + KEPT, ids=[r[0] for r in REMOVED + KEPT])
def test_the_rule(name, sent, kept):
    assert clean_text(sent) == kept
    assert clean_text(sent, multiline=True) == kept


def test_line_breaks_and_tabs_stay_only_in_multi_line_text():
    assert clean_text(LINE_BREAKS, multiline=True) == "Line 1\nLine\t2\nLine 3"
    assert clean_text(LINE_BREAKS) == "Line 1 Line 2 Line 3"


@pytest.mark.parametrize("bad", ["\ud800", "a\udfffb", "\x00", "x\x00"])
def test_lone_surrogates_and_nul_are_refused(bad):
    with pytest.raises(UnsafeText):
        clean_text(bad)


# --- forms: every text field of every form -------------------------------------------------


def test_registration_stores_a_clean_name(db, client):
    r = client.post(
        "/register",
        data={
            "name": "\u202eAda\x1b Love\u200blace\x01",
            "email": "ada@example.org",
            "password": "x" * 12,
            "confirm": "x" * 12,
        },
    )
    assert r.status_code == 302
    assert db.session.scalar(select(User.name)) == "Ada Lovelace"


def test_organisation_name_and_description(db, client):
    login(client, make_user())
    r = client.post(
        "/organisations/new",
        data={
            "type": "clinic",
            "legal_name": "Good\u202e Clinic\x07 Ltd\u200b",
            "registration_number": "91310000MA1234567X",
            "country": "CN",
            "description": "First line\r\nSecond\tline\x1b",
        },
    )
    assert r.status_code == 302
    org = db.session.scalars(select(Organisation)).one()
    assert (org.legal_name, org.description) == ("Good Clinic Ltd", "First line\nSecond\tline")


def test_campaign_and_tier_titles(db, client):
    user, org = campaigner()
    login(client, user)
    r = client.post(
        "/campaigns/new",
        data={
            "organisation": str(org.id),
            "kind": "reward",
            "title": "Pocket \u202eECG\x01\u200b monitor",
            "category": "medical_devices",
            "currency": "CNY",
            "goal": "50,000",
        },
    )
    assert r.status_code == 302, r.get_data(as_text=True)[:500]
    campaign = db.session.scalars(select(Campaign)).one()
    assert campaign.title == "Pocket ECG monitor"

    r = client.post(f"/studio/{campaign.id}/tiers", data={**TIER_FORM, "title": "Early\x1b bird\u2066\ufeff"})
    assert r.status_code == 302, r.get_data(as_text=True)[:500]
    assert db.session.scalar(select(RewardTier.title)) == "Early bird"


@pytest.mark.parametrize("bad", ["\ud800", "a\x00b"])
def test_a_form_field_with_a_lone_surrogate_or_nul_is_an_error(app, bad):
    """Browsers cannot send a lone surrogate in a form, but no form may pass one on."""
    with app.test_request_context():
        form = RegisterForm(
            formdata=MultiDict(
                {"name": bad, "email": "a@example.org", "password": "x" * 12, "confirm": "x" * 12}
            )
        )
        assert not form.validate()
        assert form.name.errors
        tier = TierForm(formdata=MultiDict({**TIER_FORM, "title": bad}))
        assert not tier.validate()
        assert tier.title.errors


def test_every_text_field_of_a_form_is_cleaned_but_passwords_are_not(app):
    with app.test_request_context():
        form = OrganisationForm(
            formdata=MultiDict(
                {"legal_name": "A\u202eB", "registration_number": "9\u200b1", "description": "x\x01"}
            )
        )
        assert (form.legal_name.data, form.registration_number.data, form.description.data) == (
            "AB",
            "91",
            "x",
        )
        register = RegisterForm(formdata=MultiDict({"password": "pa\u200bss\x01word"}))
        assert register.password.data == "pa\u200bss\x01word"


def test_a_nul_in_a_form_is_refused_before_any_view(db, client):
    r = client.post("/register", data={"name": "A\x00", "email": "a@example.org"})
    assert r.status_code == 400
    assert db.session.scalar(select(func.count(User.id))) == 0


# --- API: every string of a body -----------------------------------------------------------


@pytest.fixture
def headers(db):
    user = make_user()
    add_card(user)
    return bearer(make_token(user))


@pytest.fixture
def reward(db):
    return make_campaign(
        CampaignKind.REWARD,
        tiers=[{"title": "Kit", "price_amount": 5_000, "quantity_limit": None, "ships": True}],
    )


def _pledges() -> int:
    return db.session.scalar(select(func.count(Pledge.id)))


@pytest.mark.parametrize(
    "field,kind",
    [("shipping_address", CampaignKind.REWARD), ("message", CampaignKind.DONATION)],
)
@pytest.mark.parametrize("bad", ["\ud800", "ok \udc00 then", "\udbff\udbff"])
def test_a_lone_surrogate_in_an_api_body_is_422_and_nothing_is_stored(db, client, headers, field, kind, bad):
    campaign = make_campaign(kind, tiers=[{"title": "Kit", "price_amount": 5_000, "quantity_limit": None}])
    body = {"campaign": campaign.id, field: bad}
    if kind is CampaignKind.REWARD:
        body["tier_id"] = campaign.tiers[0].id
    else:
        body["amount"] = {"amount": 1_000, "currency": "CNY"}
    r = client.post(f"{API}/pledges", json=body, headers=headers)
    assert r.status_code == 422, r.json
    assert r.json["error"]["field"] == field
    assert "surrogate" in r.json["error"]["message"]
    assert _pledges() == 0


def test_a_lone_surrogate_in_raw_json_anywhere_is_422(db, client, headers, reward):
    raw = f'{{"campaign": {reward.id}, "tier_id": {reward.tiers[0].id}, "\\ud800": 1}}'
    r = client.post(f"{API}/pledges", data=raw, headers={**headers, "Content-Type": "application/json"})
    assert r.status_code == 422
    assert "surrogate" in r.json["error"]["message"]
    assert _pledges() == 0


def test_a_lone_surrogate_in_a_change_is_422_and_the_pledge_is_unchanged(db, client, headers, reward):
    tier = reward.tiers[0].id
    created = client.post(
        f"{API}/pledges",
        json={"campaign": reward.id, "tier_id": tier, "shipping_address": "1 Road"},
        headers=headers,
    )
    assert created.status_code == 201, created.json
    r = client.patch(
        f"{API}/pledges/{created.json['id']}", json={"shipping_address": "\ud800"}, headers=headers
    )
    assert r.status_code == 422
    db.session.expire_all()
    assert db.session.get(Pledge, created.json["id"]).shipping_address == "1 Road"


def test_api_text_is_cleaned_and_keeps_its_line_breaks(db, client, headers, reward):
    r = client.post(
        f"{API}/pledges",
        json={
            "campaign": reward.id,
            "tier_id": reward.tiers[0].id,
            "shipping_address": "1 Road\u202e\r\nFlat\t2\x1b\u200b",
        },
        headers=headers,
    )
    assert r.status_code == 201, r.json
    assert r.json["shipping_address"] == "1 Road\nFlat\t2"
    db.session.expire_all()
    assert db.session.get(Pledge, r.json["id"]).shipping_address == "1 Road\nFlat\t2"

    donation = make_campaign(CampaignKind.DONATION)
    r = client.post(
        f"{API}/pledges",
        json={
            "campaign": donation.id,
            "amount": {"amount": 1_000, "currency": "CNY"},
            "message": "Get well\x07 \u2067soon",
        },
        headers=headers,
    )
    assert r.status_code == 201, r.json
    assert r.json["message"] == "Get well soon"
