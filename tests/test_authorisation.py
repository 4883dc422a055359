"""Authorisation on every object: another user's thing is 403 or 404, and nothing changes.

Each table row is (who asks, method, URL, body, the statuses allowed). The world has a
backer with pledges, a card and a token; a second backer; a campaigner with an
organisation, drafts of each kind and live campaigns; a rival campaigner with an
organisation and drafts; an operator (see tests/robustness_world.py). For every row the
whole database (and the folder of stored covers) is compared before and after: a refused
request changes nothing, not even a counter.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flask import current_app
from sqlalchemy import func, select

from crowdfund.accounts.models import Membership, VerificationStatus
from crowdfund.campaigns.models import Campaign, CampaignKind, CampaignState
from crowdfund.engine.models import Pledge
from crowdfund.extensions import db
from tests.factories import login
from tests.factories.campaigns import TIER_FORM, edit_form, image_bytes
from tests.robustness_world import World, build_world

#: Columns that change on reads by design (an API token records when it was last used).
VOLATILE = {("api_tokens", "last_used_at")}

ORG_FORM = {
    "type": "clinic",
    "legal_name": "Hijacked Ltd",
    "registration_number": "1",
    "country": "CN",
    "description": "Taken over.",
}
NOT_FOUND = (404,)
FORBIDDEN = (403,)
REFUSED = (403, 404)
TO_LOGIN = (302,)


@dataclass
class Row:
    """One request another user must not get away with."""

    who: str  #: "anonymous", or an attribute of World: backer, donor, campaigner, rival, operator
    method: str
    url: Callable[[World], str]
    expected: tuple[int, ...]
    data: Callable[[World], dict] | None = None
    json: Callable[[World], dict] | None = None
    files: bool = False  #: send a real image as `image`
    label: str = field(default="")


def db_state(upload_dir: Path) -> dict:
    """Every row of every table, and the stored cover files."""
    db.session.expire_all()
    state: dict = {}
    for table in db.metadata.sorted_tables:
        columns = [c for c in table.columns if (table.name, c.name) not in VOLATILE]
        rows = db.session.execute(select(*columns)).all()
        state[table.name] = sorted((tuple(r) for r in rows), key=repr)
    db.session.rollback()
    covers = upload_dir / "covers"
    state["cover files"] = sorted(p.name for p in covers.iterdir()) if covers.exists() else []
    return state


def _send(app, world: World, row: Row):
    client = app.test_client()
    party = world.party(row.who)
    headers = {}
    url = row.url(world)
    if party is not None:
        if url.startswith("/api/"):
            headers["Authorization"] = f"Bearer {party.token_secret}"
        else:
            login(client, party.user)
    if row.json is not None:
        return client.open(url, method=row.method, json=row.json(world), headers=headers)
    data = dict(row.data(world)) if row.data else {}
    if row.files:
        data["image"] = (io.BytesIO(image_bytes((800, 450))), "cover.png")
    return client.open(url, method=row.method, data=data, headers=headers)


def check_rows(app, rows: list[Row]) -> None:
    """Send every row against a fresh world; report each wrong status or change."""
    world = build_world()
    upload_dir = Path(current_app.config["UPLOAD_DIR"])
    problems = []
    for row in rows:
        before = db_state(upload_dir)
        response = _send(app, world, row)
        after = db_state(upload_dir)
        where = f"{row.who} {row.method} {row.url(world)} {row.label}"
        if response.status_code not in row.expected:
            problems.append(f"{where}: {response.status_code}, expected {row.expected}")
        changed = [name for name in before if before[name] != after[name]]
        if changed:
            problems.append(f"{where}: changed {', '.join(changed)}")
        if response.status_code == 302 and row.expected == TO_LOGIN:
            assert "/login" in response.headers["Location"], where
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------
# The tables
# ---------------------------------------------------------------------------


def _pledge(w: World) -> int:
    return w.backer.pledges[0].id  # the backer's reward pledge


def _donation(w: World) -> int:
    return w.backer.pledges[1].id


PLEDGE_ROWS = [
    row
    for who in ("donor", "rival", "campaigner")
    for row in (
        Row(who, "GET", lambda w: f"/pledges/{_pledge(w)}/change", NOT_FOUND),
        Row(
            who,
            "POST",
            lambda w: f"/pledges/{_pledge(w)}/change",
            NOT_FOUND,
            data=lambda w: {"tier": "none", "amount": "1", "quantity": "1"},
        ),
        Row(who, "POST", lambda w: f"/pledges/{_pledge(w)}/cancel", NOT_FOUND),
        Row(who, "POST", lambda w: f"/pledges/{_donation(w)}/cancel", NOT_FOUND),
        Row(who, "GET", lambda w: f"/api/v1/pledges/{_pledge(w)}", NOT_FOUND),
        Row(
            who, "PATCH", lambda w: f"/api/v1/pledges/{_pledge(w)}", NOT_FOUND, json=lambda w: {"quantity": 2}
        ),
        Row(who, "POST", lambda w: f"/api/v1/pledges/{_pledge(w)}/cancel", NOT_FOUND, json=lambda w: {}),
    )
] + [
    Row("anonymous", "GET", lambda w: f"/pledges/{_pledge(w)}/change", TO_LOGIN),
    Row("anonymous", "POST", lambda w: f"/pledges/{_pledge(w)}/cancel", TO_LOGIN),
    Row("anonymous", "GET", lambda w: f"/api/v1/pledges/{_pledge(w)}", (401,)),
    Row("anonymous", "POST", lambda w: f"/api/v1/pledges/{_pledge(w)}/cancel", (401,), json=lambda w: {}),
]


def _org(w: World) -> int:
    return w.campaigner.org.id


ORGANISATION_ROWS = [
    row
    for who in ("backer", "rival")
    for row in (
        Row(who, "GET", lambda w: f"/organisations/{_org(w)}", NOT_FOUND),
        Row(who, "GET", lambda w: f"/organisations/{_org(w)}/edit", NOT_FOUND),
        Row(who, "POST", lambda w: f"/organisations/{_org(w)}/edit", NOT_FOUND, data=lambda w: ORG_FORM),
        Row(who, "GET", lambda w: f"/organisations/{_org(w)}/payouts", NOT_FOUND),
        Row(
            who,
            "POST",
            lambda w: f"/organisations/{_org(w)}/payouts",
            NOT_FOUND,
            data=lambda w: {"bank_name": "Thieves' Bank", "account_number": "12345678"},
        ),
        Row(who, "GET", lambda w: f"/organisations/{_org(w)}/payouts/return", NOT_FOUND),
        Row(
            who,
            "POST",
            lambda w: f"/organisations/{_org(w)}/verification",
            FORBIDDEN,
            data=lambda w: {"status": "verified"},
        ),
    )
] + [
    # Operators see organisations, but only members edit them or their payout details.
    Row("operator", "POST", lambda w: f"/organisations/{_org(w)}/edit", REFUSED, data=lambda w: ORG_FORM),
    Row("operator", "GET", lambda w: f"/organisations/{_org(w)}/payouts", NOT_FOUND),
    Row(
        "operator",
        "POST",
        lambda w: f"/organisations/{_org(w)}/payouts",
        NOT_FOUND,
        data=lambda w: {"bank_name": "Ops Bank", "account_number": "12345678"},
    ),
    Row("anonymous", "GET", lambda w: f"/organisations/{_org(w)}", TO_LOGIN),
    Row(
        "anonymous",
        "POST",
        lambda w: f"/organisations/{_org(w)}/verification",
        TO_LOGIN,
        data=lambda w: {"status": "verified"},
    ),
]


def _draft(kind: CampaignKind) -> Callable[[World], int]:
    return lambda w: w.campaigner.drafts[kind].id


def _draft_rows(who: str, kind: CampaignKind) -> list[Row]:
    d = _draft(kind)
    rows = [
        Row(who, "GET", lambda w: f"/studio/{d(w)}", NOT_FOUND),
        Row(
            who,
            "POST",
            lambda w: f"/studio/{d(w)}",
            NOT_FOUND,
            data=lambda w: edit_form(kind, title="Mine now"),
        ),
        Row(who, "POST", lambda w: f"/studio/{d(w)}/cover", NOT_FOUND, files=True),
        Row(who, "POST", lambda w: f"/studio/{d(w)}/cover/remove", NOT_FOUND),
        Row(who, "GET", lambda w: f"/studio/{d(w)}/cover.jpg", NOT_FOUND),
        Row(who, "POST", lambda w: f"/studio/{d(w)}/submit", NOT_FOUND, data=lambda w: {"note": "Please"}),
        Row(who, "GET", lambda w: f"/studio/{d(w)}/preview", NOT_FOUND),
        Row(who, "GET", lambda w: f"/studio/{d(w)}/dashboard", NOT_FOUND),
        Row(who, "GET", lambda w: f"/studio/{d(w)}/backers.csv", NOT_FOUND),
    ]
    if kind is CampaignKind.REWARD:

        def tier(w: World) -> int:
            return w.campaigner.drafts[kind].tiers[0].id

        rows += [
            Row(who, "POST", lambda w: f"/studio/{d(w)}/tiers", NOT_FOUND, data=lambda w: TIER_FORM),
            Row(who, "GET", lambda w: f"/studio/{d(w)}/tiers/{tier(w)}", NOT_FOUND),
            Row(
                who, "POST", lambda w: f"/studio/{d(w)}/tiers/{tier(w)}", NOT_FOUND, data=lambda w: TIER_FORM
            ),
            Row(who, "POST", lambda w: f"/studio/{d(w)}/tiers/{tier(w)}/delete", NOT_FOUND),
        ]
    return rows


def _rival_draft(w: World) -> int:
    return w.rival.drafts[CampaignKind.REWARD].id


def _campaigner_tier(w: World) -> int:
    return w.campaigner.drafts[CampaignKind.REWARD].tiers[0].id


DRAFT_ROWS = [
    row for who in ("backer", "rival") for kind in CampaignKind for row in _draft_rows(who, kind)
] + [
    # The rival's own draft in the URL, the campaigner's tier after it.
    Row("rival", "GET", lambda w: f"/studio/{_rival_draft(w)}/tiers/{_campaigner_tier(w)}", NOT_FOUND),
    Row(
        "rival",
        "POST",
        lambda w: f"/studio/{_rival_draft(w)}/tiers/{_campaigner_tier(w)}",
        NOT_FOUND,
        data=lambda w: TIER_FORM,
    ),
    Row(
        "rival", "POST", lambda w: f"/studio/{_rival_draft(w)}/tiers/{_campaigner_tier(w)}/delete", NOT_FOUND
    ),
    # The live campaigns' backer lists belong to their organisation.
    Row(
        "rival", "GET", lambda w: f"/studio/{w.campaigner.live[CampaignKind.REWARD].id}/dashboard", NOT_FOUND
    ),
    Row(
        "backer",
        "GET",
        lambda w: f"/studio/{w.campaigner.live[CampaignKind.DONATION].id}/backers.csv",
        NOT_FOUND,
    ),
    # A draft is invisible outside its organisation, on every public page and in the API.
    *(
        Row(who, method, url, NOT_FOUND, json=body)
        for who in ("anonymous", "backer", "rival")
        for method, url, body in (
            ("GET", lambda w: f"/campaigns/{w.campaigner.drafts[CampaignKind.REWARD].slug}", None),
            (
                "GET",
                lambda w: f"/campaigns/{w.campaigner.drafts[CampaignKind.REWARD].slug}/money-trail",
                None,
            ),
            (
                "GET",
                lambda w: f"/campaigns/{w.campaigner.drafts[CampaignKind.REWARD].slug}/money-trail.json",
                None,
            ),
            ("GET", lambda w: f"/api/v1/campaigns/{w.campaigner.drafts[CampaignKind.REWARD].id}", None),
            ("GET", lambda w: f"/api/v1/campaigns/{w.campaigner.drafts[CampaignKind.REWARD].slug}", None),
        )
    ),
    *(
        Row(
            who,
            "GET",
            lambda w: f"/campaigns/{w.campaigner.drafts[CampaignKind.DONATION].slug}/back",
            NOT_FOUND,
        )
        for who in ("backer", "rival")
    ),
    *(
        Row(
            "backer",
            "POST",
            lambda w: "/api/v1/pledges",
            NOT_FOUND,
            json=body,
            label="pledge to a draft",
        )
        for body in (
            lambda w: {"campaign_id": w.campaigner.drafts[CampaignKind.DONATION].id, "message": "hi"},
            lambda w: {
                "campaign": w.campaigner.drafts[CampaignKind.DONATION].slug,
                "amount": {"amount": 5000, "currency": "CNY"},
            },
            lambda w: {
                "campaign": w.campaigner.drafts[CampaignKind.DONATION].slug,
                "amount": {"amount": 5000, "currency": "USD"},
            },
        )
    ),
    # Even its own organisation cannot see a draft's money trail: there is none yet.
    Row(
        "campaigner",
        "GET",
        lambda w: f"/campaigns/{w.campaigner.drafts[CampaignKind.REWARD].slug}/money-trail",
        NOT_FOUND,
    ),
]


def _card(w: World) -> int:
    return w.backer.card.id


def _live(kind: CampaignKind) -> Callable[[World], str]:
    return lambda w: w.campaigner.live[kind].slug


PAYMENT_ROWS = [
    row
    for who in ("donor", "rival")
    for row in (
        Row(who, "POST", lambda w: f"/account/payment-methods/{_card(w)}/remove", NOT_FOUND),
        Row(who, "POST", lambda w: f"/account/payment-methods/{_card(w)}/default", NOT_FOUND),
        Row(who, "GET", lambda w: f"/account/payment-methods/{_card(w)}/authenticate", NOT_FOUND),
        Row(who, "POST", lambda w: f"/account/payment-methods/{_card(w)}/authenticate", NOT_FOUND),
        # Pledging or donating with somebody else's card.
        Row(
            who,
            "POST",
            lambda w: f"/campaigns/{_live(CampaignKind.DONATION)(w)}/back/confirm",
            (422,),
            data=lambda w: {"amount": "50", "payment_method_id": str(_card(w)), "token": "steal-1"},
            label="donate with another's card",
        ),
        Row(
            who,
            "POST",
            lambda w: f"/campaigns/{_live(CampaignKind.REWARD)(w)}/back/confirm",
            (422,),
            data=lambda w: {
                "tier": "none",
                "amount": "50",
                "payment_method_id": str(_card(w)),
                "token": "steal-2",
            },
            label="pledge with another's card",
        ),
        Row(
            who,
            "POST",
            lambda w: "/api/v1/pledges",
            (422,),
            json=lambda w: {
                "campaign": _live(CampaignKind.DONATION)(w),
                "amount": {"amount": 5000, "currency": "CNY"},
                "payment_method_id": _card(w),
            },
            label="API donation with another's card",
        ),
    )
] + [
    # Another campaign's reward, chosen in a pledge or a change of pledge.
    Row(
        "donor",
        "POST",
        lambda w: f"/campaigns/{_live(CampaignKind.REWARD)(w)}/back/confirm",
        (422,),
        data=lambda w: {
            "tier": str(w.rival.drafts[CampaignKind.REWARD].tiers[0].id),
            "quantity": "1",
            "token": "t3",
        },
        label="another campaign's tier",
    ),
    Row(
        "backer",
        "POST",
        lambda w: f"/pledges/{_pledge(w)}/change",
        (422,),
        data=lambda w: {"tier": str(w.rival.drafts[CampaignKind.REWARD].tiers[0].id), "quantity": "1"},
        label="change to another campaign's tier",
    ),
    Row(
        "backer",
        "POST",
        lambda w: f"/pledges/{_pledge(w)}/change",
        (422,),
        data=lambda w: {
            "tier": str(w.campaigner.live[CampaignKind.REWARD].tiers[0].id),
            "quantity": "1",
            "payment_method_id": str(w.donor.card.id),
        },
        label="change to another's card",
    ),
    Row("anonymous", "POST", lambda w: f"/account/payment-methods/{_card(w)}/remove", TO_LOGIN),
]

TOKEN_ROWS = [
    Row(who, "POST", lambda w: f"/account/tokens/{w.backer.token_id}/revoke", NOT_FOUND)
    for who in ("donor", "rival", "operator")
] + [Row("anonymous", "POST", lambda w: f"/account/tokens/{w.backer.token_id}/revoke", TO_LOGIN)]

OPERATOR_PAGES: list[tuple[str, Callable[[World], str], dict | None]] = [
    ("GET", lambda w: "/operator/review", None),
    ("GET", lambda w: f"/operator/review/{w.submitted.id}", None),
    ("POST", lambda w: f"/operator/review/{w.submitted.id}/approve", {"approve-comment": "ok"}),
    ("POST", lambda w: f"/operator/review/{w.submitted.id}/changes", {"changes-comment": "no"}),
    ("POST", lambda w: f"/operator/review/{w.submitted.id}/reject", {"reject-reason": "no"}),
    ("GET", lambda w: "/operator/ledger", None),
    ("GET", lambda w: "/operator/ledger?key=payment:1:charge", None),
    ("GET", lambda w: f"/operator/ledger/accounts/{w.ledger_account_id}", None),
    ("GET", lambda w: "/operator/ledger/transactions", None),
    ("GET", lambda w: f"/operator/ledger/transactions/{w.ledger_txn_id}", None),
]
OPERATOR_ROWS = [
    Row(
        who,
        method,
        url,
        FORBIDDEN if who != "anonymous" else TO_LOGIN,
        data=(lambda w, b=body: b) if body else None,
    )
    for who in ("backer", "campaigner", "rival", "anonymous")
    for method, url, body in OPERATOR_PAGES
]

TABLES = {
    "pledges": PLEDGE_ROWS,
    "organisations": ORGANISATION_ROWS,
    "campaign drafts": DRAFT_ROWS,
    "payment methods": PAYMENT_ROWS,
    "API tokens": TOKEN_ROWS,
    "operator pages": OPERATOR_ROWS,
}


@pytest.mark.parametrize("table", list(TABLES))
def test_another_users_things_are_refused_and_unchanged(app, table):
    check_rows(app, TABLES[table])


# ---------------------------------------------------------------------------
# What the refusals protect still works for its owner (the table can fail)
# ---------------------------------------------------------------------------


def test_the_owners_can_do_what_others_cannot(app, client):
    world = build_world()
    login(client, world.backer.user)
    assert client.get(f"/pledges/{_pledge(world)}/change").status_code == 200
    assert client.post(f"/account/tokens/{world.backer.token_id}/revoke").status_code == 303
    login(client, world.campaigner.user)
    for kind in CampaignKind:
        assert client.get(f"/studio/{world.campaigner.drafts[kind].id}").status_code == 200
    assert client.get(f"/organisations/{_org(world)}/payouts").status_code == 200
    assert (
        client.get(f"/studio/{world.campaigner.live[CampaignKind.DONATION].id}/backers.csv").status_code
        == 200
    )
    login(client, world.operator.user)
    assert client.get(f"/operator/review/{world.submitted.id}").status_code == 200
    assert client.get("/operator/ledger").status_code == 200


def test_lists_show_only_the_users_own(app, client):
    world = build_world()
    login(client, world.donor.user)
    page = client.get("/my/pledges").get_data(as_text=True)
    assert f"pledge-{world.donor.pledges[0].id}" in page
    assert all(f'pledge-{p.id}"' not in page for p in world.backer.pledges)
    listed = client.get("/api/v1/pledges", headers={"Authorization": f"Bearer {world.donor.token_secret}"})
    assert {p["id"] for p in listed.get_json()["pledges"]} == {p.id for p in world.donor.pledges}
    tokens = client.get("/account/tokens").get_data(as_text=True)
    assert f"/account/tokens/{world.backer.token_id}/revoke" not in tokens
    cards = client.get("/account/payment-methods").get_data(as_text=True)
    assert f"/account/payment-methods/{world.backer.card.id}/" not in cards
    login(client, world.rival.user)
    studio = client.get("/studio").get_data(as_text=True)
    assert all(f'/studio/{d.id}"' not in studio for d in world.campaigner.drafts.values())
    assert f'/studio/{world.rival.drafts[CampaignKind.REWARD].id}"' in studio
    orgs = client.get("/organisations").get_data(as_text=True)
    assert world.campaigner.org.legal_name not in orgs


# ---------------------------------------------------------------------------
# Operators do not decide about their own organisation
# ---------------------------------------------------------------------------


def test_an_operator_never_reviews_or_verifies_their_own_organisation(app, client):
    world = build_world()
    operator = world.operator.user
    submitted = db.session.get(Campaign, world.submitted.id)
    db.session.add(Membership(user_id=operator.id, organisation_id=submitted.organisation_id, role="member"))
    db.session.commit()
    login(client, operator)
    upload_dir = Path(current_app.config["UPLOAD_DIR"])
    before = db_state(upload_dir)

    approved = client.post(
        f"/operator/review/{submitted.id}/approve", data={"approve-comment": "Mine, fine."}
    )
    assert approved.status_code == 422  # the review page again, with the reason
    assert "another operator must review it" in approved.get_data(as_text=True)
    verified = client.post(
        f"/organisations/{submitted.organisation_id}/verification", data={"status": "verified"}
    )
    assert verified.status_code == 302
    assert "another operator must verify it" in client.get(verified.headers["Location"]).get_data(
        as_text=True
    )

    assert db_state(upload_dir) == before
    db.session.expire_all()
    assert db.session.get(Campaign, submitted.id).state is CampaignState.SUBMITTED
    assert submitted.organisation.verification_status is VerificationStatus.UNVERIFIED


def test_revoking_another_users_token_leaves_it_working(app, client):
    """Revoking another user's token is a 404, and their token keeps working."""
    world = build_world()
    login(client, world.donor.user)
    assert client.post(f"/account/tokens/{world.backer.token_id}/revoke").status_code == 404
    listed = client.get("/api/v1/pledges", headers={"Authorization": f"Bearer {world.backer.token_secret}"})
    assert listed.status_code == 200
    assert db.session.scalar(select(func.count(Pledge.id)).where(Pledge.user_id == world.backer.user.id)) == 2
