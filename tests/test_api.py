"""The JSON API: campaigns, pledges through the engine, and errors as stable JSON codes."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select

from crowdfund.campaigns.models import Campaign, CampaignKind, CampaignState, HealthCategory
from crowdfund.engine.models import InvestorProfile, Pledge, PledgeState
from crowdfund.extensions import db as _db
from crowdfund.models_base import utcnow
from tests.factories import make_campaign, make_user
from tests.factories.api import bearer, make_token
from tests.factories.payments import add_card

API = "/api/v1"


def cny(amount: int) -> dict:
    return {"amount": amount, "currency": "CNY"}


@pytest.fixture
def backer(db):
    user = make_user()
    add_card(user)
    return user


@pytest.fixture
def headers(backer):
    return bearer(make_token(backer))


@pytest.fixture
def reward(db):
    return make_campaign(
        CampaignKind.REWARD,
        tiers=[
            {"title": "Early bird", "price_amount": 30_000, "quantity_limit": 2},
            {"title": "Supporter", "price_amount": 5_000, "quantity_limit": None},
        ],
    )


def pledge_count() -> int:
    return _db.session.scalar(select(func.count(Pledge.id)))


def snapshot(campaign: Campaign) -> tuple:
    """Everything a refused request must leave unchanged."""
    _db.session.expire_all()
    c = _db.session.get(Campaign, campaign.id)
    return (pledge_count(), c.raised_amount, c.backer_count, tuple((t.id, t.claimed) for t in c.tiers))


def post_pledge(client, headers, body, **extra_headers):
    return client.post(f"{API}/pledges", json=body, headers={**headers, **extra_headers})


# --- campaigns ---------------------------------------------------------------------------


def test_ping_answers_without_a_token(client):
    r = client.get(f"{API}/ping")
    assert r.status_code == 200
    assert r.json == {"ok": True}


def test_list_shows_only_public_campaigns_with_tiers_and_totals(db, client, reward):
    make_campaign(CampaignKind.EQUITY, state=CampaignState.DRAFT, title="Secret draft")
    make_campaign(CampaignKind.DONATION, state=CampaignState.SUBMITTED)
    r = client.get(f"{API}/campaigns")
    assert r.status_code == 200
    assert r.json["total"] == 1
    [c] = r.json["campaigns"]
    assert c["id"] == reward.id and c["kind"] == "reward" and c["is_open"] is True
    assert c["goal"] == {"amount": 1_000_000, "currency": "CNY", "display": "¥10,000.00"}
    assert c["raised"]["amount"] == 0 and c["backers"] == 0
    early, supporter = c["tiers"]
    assert early["price"] == {"amount": 30_000, "currency": "CNY", "display": "¥300.00"}
    assert (early["remaining"], early["sold_out"]) == (2, False)
    assert (supporter["quantity_limit"], supporter["remaining"]) == (None, None)


def test_list_filters_and_pages(db, client):
    for _ in range(3):
        make_campaign(CampaignKind.DONATION, category=HealthCategory.PATIENT_AID)
    make_campaign(CampaignKind.DEBT)
    r = client.get(f"{API}/campaigns?kind=donation&per_page=2")
    assert (r.json["total"], r.json["pages"], len(r.json["campaigns"])) == (3, 2, 2)
    r2 = client.get(f"{API}/campaigns?kind=donation&per_page=2&page=2")
    assert len(r2.json["campaigns"]) == 1
    assert r2.json["campaigns"][0]["terms"]["beneficiary_name"] == "Li Wei"
    assert "patient_name" not in r2.json["campaigns"][0]["terms"]
    assert client.get(f"{API}/campaigns?category=patient_aid").json["total"] == 3
    assert client.get(f"{API}/campaigns?kind=debt").json["campaigns"][0]["terms"]["annual_rate_bp"] == 800
    assert client.get(f"{API}/campaigns?page=9").json["campaigns"] == []


@pytest.mark.parametrize(
    "query,field",
    [
        ("kind=lottery", "kind"),
        ("category=x", "category"),
        ("status=draft", "status"),
        ("per_page=0", "per_page"),
        ("per_page=101", "per_page"),
        ("per_page=abc", "per_page"),
        ("page=-1", "page"),
        ("page=99999999999999999999", "page"),
        ("sort=%00", "sort"),
    ],
)
def test_list_refuses_bad_query_parameters(db, client, query, field):
    r = client.get(f"{API}/campaigns?{query}")
    assert r.status_code == 422
    assert r.json["error"]["code"] == "validation_error"
    assert r.json["error"]["field"] == field


def _count_queries(fn) -> int:
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(_db.engine, "before_cursor_execute", record)
    try:
        fn()
    finally:
        event.remove(_db.engine, "before_cursor_execute", record)
    return len(statements)


def test_list_runs_a_fixed_number_of_queries(db, client):
    for kind in CampaignKind:
        make_campaign(kind)
    _db.session.remove()
    few = _count_queries(lambda: client.get(f"{API}/campaigns?status=all"))
    for _ in range(3):
        for kind in CampaignKind:
            make_campaign(kind, tiers=[{"title": f"T{i}", "price_amount": 100} for i in range(4)])
    _db.session.remove()
    many_response = None

    def many_call():
        nonlocal many_response
        many_response = client.get(f"{API}/campaigns?status=all")

    many = _count_queries(many_call)
    assert len(many_response.json["campaigns"]) == 16
    assert many == few


def test_read_campaign_by_slug_or_id(db, client, reward):
    by_slug = client.get(f"{API}/campaigns/{reward.slug}")
    by_id = client.get(f"{API}/campaigns/{reward.id}")
    assert by_slug.status_code == by_id.status_code == 200
    assert by_slug.json == by_id.json
    assert by_slug.json["organisation"]["name"].endswith("Ltd")


@pytest.mark.parametrize("ref", ["nope", "999999", "99999999999999999999999", "a%00b", "x" * 300])
def test_read_unknown_campaign_is_404_json(db, client, ref):
    r = client.get(f"{API}/campaigns/{ref}")
    assert r.status_code == 404
    assert r.json["error"]["code"] == "not_found"


def test_read_draft_campaign_is_404(db, client):
    draft = make_campaign(state=CampaignState.DRAFT)
    assert client.get(f"{API}/campaigns/{draft.slug}").status_code == 404
    assert client.get(f"{API}/campaigns/{draft.id}").status_code == 404


def test_equity_terms_are_shown(db, client):
    equity = make_campaign(CampaignKind.EQUITY)
    terms = client.get(f"{API}/campaigns/{equity.slug}").json["terms"]
    assert terms["price_per_share"]["amount"] == 1_000
    assert terms["min_investment"]["display"] == "¥100.00"


# --- authentication ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "method,path",
    [
        ("get", "/pledges"),
        ("post", "/pledges"),
        ("get", "/pledges/1"),
        ("patch", "/pledges/1"),
        ("post", "/pledges/1/cancel"),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Bearer hf_wrong", "Token abc", "Bearer "])
def test_pledge_routes_need_a_valid_token(db, client, method, path, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    r = getattr(client, method)(f"{API}{path}", json={}, headers=headers)
    assert r.status_code == 401
    assert r.json["error"]["code"] == "unauthorized"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_session_cookie_is_not_enough(db, client, reward):
    from tests.factories import login

    user = make_user()
    add_card(user)
    login(client, user)
    r = client.post(f"{API}/pledges", json={"campaign": reward.id, "tier_id": reward.tiers[0].id})
    assert r.status_code == 401
    assert pledge_count() == 0


# --- pledges: the happy path -------------------------------------------------------------


def test_create_read_change_cancel_a_reward_pledge(db, client, backer, headers, reward):
    early, supporter = reward.tiers
    r = post_pledge(client, headers, {"campaign": reward.slug, "tier_id": early.id, "quantity": 1})
    assert r.status_code == 201, r.json
    pledge = r.json
    assert pledge["state"] == "active"
    assert pledge["amount"] == {"amount": 30_000, "currency": "CNY", "display": "¥300.00"}
    assert pledge["can_change"] is True and pledge["can_cancel"] is True
    assert r.headers["Location"] == f"{API}/pledges/{pledge['id']}"
    assert snapshot(reward) == (1, 30_000, 1, ((early.id, 1), (supporter.id, 0)))

    assert client.get(f"{API}/pledges/{pledge['id']}", headers=headers).json["id"] == pledge["id"]
    assert [p["id"] for p in client.get(f"{API}/pledges", headers=headers).json["pledges"]] == [pledge["id"]]

    r = client.patch(
        f"{API}/pledges/{pledge['id']}",
        json={"tier_id": supporter.id, "quantity": 3, "extra": cny(1_000)},
        headers=headers,
    )
    assert r.status_code == 200, r.json
    assert r.json["amount"]["amount"] == 3 * 5_000 + 1_000
    assert snapshot(reward) == (1, 16_000, 1, ((early.id, 0), (supporter.id, 3)))

    r = client.patch(f"{API}/pledges/{pledge['id']}", json={"quantity": 2}, headers=headers)
    assert r.status_code == 200, r.json
    assert (r.json["tier_id"], r.json["amount"]["amount"]) == (supporter.id, 2 * 5_000 + 1_000)

    r = client.post(f"{API}/pledges/{pledge['id']}/cancel", headers=headers)
    assert r.status_code == 200, r.json
    assert r.json["state"] == "cancelled"
    assert snapshot(reward) == (1, 0, 0, ((early.id, 0), (supporter.id, 0)))


def test_no_reward_pledge_with_an_amount(db, client, headers, reward):
    r = post_pledge(client, headers, {"campaign_id": reward.id, "amount": cny(12_345)})
    assert r.status_code == 201, r.json
    assert (r.json["tier_id"], r.json["amount"]["amount"]) == (None, 12_345)
    r = client.patch(f"{API}/pledges/{r.json['id']}", json={"amount": cny(20_000)}, headers=headers)
    assert r.status_code == 200, r.json
    assert r.json["amount"]["amount"] == 20_000
    assert snapshot(reward)[1] == 20_000


def test_equity_investment(db, client, backer, headers):
    equity = make_campaign(CampaignKind.EQUITY)
    db.session.add(
        InvestorProfile(
            user_id=backer.id, currency="CNY", annual_income_amount=50_000_000, net_worth_amount=50_000_000
        )
    )
    db.session.commit()
    r = post_pledge(
        client, headers, {"campaign": equity.id, "amount": cny(50_000), "risk_acknowledged": True}
    )
    assert r.status_code == 201, r.json
    assert (r.json["shares"], r.json["risk_acknowledged"]) == (50, True)


def test_someone_elses_pledge_is_404_and_untouched(db, client, headers, reward):
    other = make_user()
    add_card(other)
    theirs = post_pledge(
        client, bearer(make_token(other)), {"campaign": reward.id, "tier_id": reward.tiers[0].id}
    )
    assert theirs.status_code == 201
    pid = theirs.json["id"]
    before = snapshot(reward)
    for method, path, body in [
        ("get", f"/pledges/{pid}", None),
        ("patch", f"/pledges/{pid}", {"quantity": 2}),
        ("post", f"/pledges/{pid}/cancel", None),
    ]:
        r = getattr(client, method)(f"{API}{path}", json=body, headers=headers)
        assert r.status_code == 404, (method, r.json)
        assert r.json["error"]["code"] == "not_found"
    assert snapshot(reward) == before
    assert client.get(f"{API}/pledges", headers=headers).json["pledges"] == []
    assert client.get(f"{API}/pledges/99999999999999999999", headers=headers).status_code == 404


def test_idempotency_key_replay_returns_the_same_pledge(db, client, headers, reward):
    body = {"campaign": reward.id, "tier_id": reward.tiers[0].id}
    first = post_pledge(client, headers, body, **{"Idempotency-Key": "order-42"})
    again = post_pledge(client, headers, body, **{"Idempotency-Key": "order-42"})
    assert first.status_code == again.status_code == 201
    assert first.json["id"] == again.json["id"]
    assert snapshot(reward)[0:3] == (1, 30_000, 1)
    other = post_pledge(client, headers, body, **{"Idempotency-Key": "order-43"})
    assert other.json["id"] != first.json["id"]
    assert pledge_count() == 2


def test_idempotency_key_is_per_user(db, client, headers, reward):
    body = {"campaign": reward.id, "tier_id": reward.tiers[1].id}
    other = make_user()
    add_card(other)
    mine = post_pledge(client, headers, body, **{"Idempotency-Key": "k"})
    theirs = post_pledge(client, bearer(make_token(other)), body, **{"Idempotency-Key": "k"})
    assert mine.json["id"] != theirs.json["id"]
    assert pledge_count() == 2


# --- refused requests change nothing -----------------------------------------------------


def _tier(reward, i=0):
    return reward.tiers[i].id


BAD_BODIES = [
    # (body builder, status, code)
    (lambda c: {"campaign": c.id, "tier_id": _tier(c), "quantity": 0}, 422, "validation_error"),
    (lambda c: {"campaign": c.id, "tier_id": _tier(c), "quantity": -1}, 422, "validation_error"),
    (lambda c: {"campaign": c.id, "tier_id": _tier(c), "quantity": "1"}, 422, "validation_error"),
    (lambda c: {"campaign": c.id, "tier_id": _tier(c), "quantity": 1.5}, 422, "validation_error"),
    (lambda c: {"campaign": c.id, "tier_id": _tier(c), "quantity": True}, 422, "validation_error"),
    (lambda c: {"campaign": c.id, "tier_id": _tier(c), "quantity": 10**40}, 422, "validation_error"),
    (lambda c: {"campaign": c.id, "tier_id": _tier(c, 1), "quantity": 1000}, 422, "validation_error"),
    (lambda c: {"campaign": c.id, "tier_id": "abc"}, 422, "validation_error"),
    (lambda c: {"campaign": c.id, "tier_id": 2**40}, 422, "validation_error"),
    (lambda c: {"campaign": c.id, "amount": cny(-100)}, 422, "validation_error"),
    (lambda c: {"campaign": c.id, "amount": cny(0)}, 422, "validation_error"),
    (lambda c: {"campaign": c.id, "amount": {"amount": "abc", "currency": "CNY"}}, 422, "validation_error"),
    (lambda c: {"campaign": c.id, "amount": {"amount": 12.5, "currency": "CNY"}}, 422, "validation_error"),
    (lambda c: {"campaign": c.id, "amount": "300.00"}, 422, "validation_error"),
    (lambda c: {"campaign": c.id, "amount": 30000}, 422, "validation_error"),
    (lambda c: {"campaign": c.id, "amount": cny(10**16)}, 422, "validation_error"),
    (lambda c: {"campaign": c.id, "amount": cny(10**14)}, 422, "validation_error"),
    (lambda c: {"campaign": c.id, "amount": cny(10**400)}, 422, "validation_error"),
    (lambda c: {"campaign": c.id, "amount": {"amount": 100, "currency": "USD"}}, 422, "validation_error"),
    (lambda c: {"campaign": c.id, "amount": {"amount": 100, "currency": "XXX"}}, 422, "validation_error"),
    (lambda c: {"campaign": c.id, "amount": {"amount": 100}}, 422, "validation_error"),
    (lambda c: {"campaign": c.id, "tier_id": _tier(c), "extra": cny(-5)}, 422, "validation_error"),
    (
        lambda c: {"campaign": c.id, "tier_id": _tier(c), "shipping_address": "a\x00b"},
        422,
        "validation_error",
    ),
    (lambda c: {"campaign": c.id, "tier_id": _tier(c), "shipping_address": 5}, 422, "validation_error"),
    (lambda c: {"campaign": c.id, "tier_id": _tier(c), "surprise": 1}, 422, "validation_error"),
    (
        lambda c: {"campaign": c.id, "tier_id": _tier(c), "payment_method_id": 999_999},
        422,
        "payment_method_required",
    ),
    (lambda c: {"tier_id": _tier(c)}, 422, "validation_error"),
    (lambda c: {"campaign": None, "tier_id": _tier(c)}, 422, "validation_error"),
    (lambda c: {"campaign": [c.id]}, 422, "validation_error"),
    (lambda c: {"campaign": c.id, "campaign_id": c.id}, 422, "validation_error"),
    (lambda c: {"campaign": "no-such-campaign", "tier_id": 1}, 404, "not_found"),
    (lambda c: {"campaign": 10**12}, 422, "validation_error"),
    (lambda c: {"campaign": 999_999, "tier_id": 1}, 404, "not_found"),
]


@pytest.mark.parametrize("build,status,code", BAD_BODIES)
def test_bad_pledge_bodies_are_refused_and_change_nothing(db, client, headers, reward, build, status, code):
    before = snapshot(reward)
    r = post_pledge(client, headers, build(reward))
    assert (r.status_code, r.json["error"]["code"]) == (status, code), r.json
    assert r.json["error"]["message"]
    assert snapshot(reward) == before


def test_tier_of_another_campaign_is_refused(db, client, headers, reward):
    other = make_campaign(CampaignKind.REWARD)
    before = snapshot(reward)
    r = post_pledge(client, headers, {"campaign": reward.id, "tier_id": other.tiers[0].id})
    assert r.status_code == 422
    assert r.json["error"]["code"] == "invalid_tier"
    assert r.json["error"]["field"] == "tier_id"
    assert snapshot(reward) == before


@pytest.mark.parametrize(
    "raw,status,code",
    [
        (b"{not json", 400, "bad_json"),
        (b'{"campaign": 1,}', 400, "bad_json"),
        (b"\xff\xfe", 400, "bad_json"),
        (b'{"amount": NaN}', 400, "bad_json"),
        (b"[" * 100_000, 400, "bad_json"),
        (b"", 422, "validation_error"),
        (b"[1, 2]", 422, "validation_error"),
        (b'"a string"', 422, "validation_error"),
        (b"null", 422, "validation_error"),
        (b"1" * 5000, 400, "bad_json"),
    ],
)
def test_malformed_json_is_refused(db, client, headers, reward, raw, status, code):
    r = client.post(f"{API}/pledges", data=raw, headers={**headers, "Content-Type": "application/json"})
    assert (r.status_code, r.json["error"]["code"]) == (status, code)
    assert pledge_count() == 0


@pytest.mark.parametrize("key", ["x" * 97, "caf\u00e9", "a\tb"])
def test_bad_idempotency_key_is_refused(db, client, headers, reward, key):
    r = client.post(
        f"{API}/pledges",
        data=json.dumps({"campaign": reward.id, "tier_id": _tier(reward)}),
        headers={
            **headers,
            "Content-Type": "application/json",
            "Idempotency-Key": key.encode().decode("latin-1"),
        },
    )
    assert r.status_code == 422
    assert r.json["error"]["field"] == "Idempotency-Key"
    assert pledge_count() == 0


@pytest.mark.parametrize(
    "state,status,code",
    [
        # Not public: as if it did not exist (a draft's existence never leaks).
        (CampaignState.DRAFT, 404, "not_found"),
        (CampaignState.SUBMITTED, 404, "not_found"),
        (CampaignState.SUSPENDED, 404, "not_found"),
        (CampaignState.CANCELLED, 404, "not_found"),
        (CampaignState.SUCCEEDED, 409, "campaign_closed"),
        (CampaignState.FAILED, 409, "campaign_closed"),
    ],
)
def test_pledge_to_a_campaign_that_is_not_open(db, client, headers, state, status, code):
    campaign = make_campaign(state=state)
    before = snapshot(campaign)
    for ref in (campaign.id, campaign.slug):
        r = post_pledge(client, headers, {"campaign": ref, "tier_id": campaign.tiers[0].id})
        assert (r.status_code, r.json["error"]["code"]) == (status, code)
    assert snapshot(campaign) == before


def test_pledge_after_the_end_is_campaign_closed(db, client, headers):
    ended = make_campaign(start_at=utcnow() - timedelta(days=40), days=30)
    r = post_pledge(client, headers, {"campaign": ended.id, "tier_id": ended.tiers[0].id})
    assert (r.status_code, r.json["error"]["code"]) == (409, "campaign_closed")
    assert pledge_count() == 0


def test_sold_out_tier(db, client, headers, reward):
    early = reward.tiers[0]
    assert (
        post_pledge(client, headers, {"campaign": reward.id, "tier_id": early.id, "quantity": 2}).status_code
        == 201
    )
    before = snapshot(reward)
    r = post_pledge(client, headers, {"campaign": reward.id, "tier_id": early.id})
    assert (r.status_code, r.json["error"]["code"]) == (409, "sold_out")
    assert snapshot(reward) == before
    assert client.get(f"{API}/campaigns/{reward.id}").json["tiers"][0]["sold_out"] is True


def test_quantity_beyond_what_is_left_is_sold_out(db, client, headers, reward):
    r = post_pledge(client, headers, {"campaign": reward.id, "tier_id": reward.tiers[0].id, "quantity": 3})
    assert (r.status_code, r.json["error"]["code"], r.json["error"]["field"]) == (409, "sold_out", "quantity")
    assert pledge_count() == 0


def test_over_the_investment_limit(db, client, backer, headers):
    equity = make_campaign(CampaignKind.EQUITY, goal=100_000_000)
    # No income, no net worth: the floor of 2,500 USD, about 17,857 CNY.
    db.session.add(InvestorProfile(user_id=backer.id, currency="CNY"))
    db.session.commit()
    before = snapshot(equity)
    r = post_pledge(
        client, headers, {"campaign": equity.id, "amount": cny(2_000_000), "risk_acknowledged": True}
    )
    assert (r.status_code, r.json["error"]["code"]) == (409, "limit_exceeded")
    assert snapshot(equity) == before


def test_without_a_saved_card(db, client, reward):
    r = post_pledge(
        client, bearer(make_token(make_user())), {"campaign": reward.id, "tier_id": reward.tiers[0].id}
    )
    assert (r.status_code, r.json["error"]["code"]) == (422, "payment_method_required")
    assert pledge_count() == 0


def test_cancel_after_the_deadline_is_refused(db, client, backer, headers, reward):
    r = post_pledge(client, headers, {"campaign": reward.id, "tier_id": reward.tiers[0].id})
    pid = r.json["id"]
    campaign = db.session.get(Campaign, reward.id)
    campaign.end_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    before = snapshot(reward)
    r = client.post(f"{API}/pledges/{pid}/cancel", headers=headers)
    assert (r.status_code, r.json["error"]["code"]) == (409, "cancellation_closed")
    assert snapshot(reward) == before
    assert db.session.get(Pledge, pid).state is PledgeState.ACTIVE


def test_change_refusals_change_nothing(db, client, headers, reward):
    pid = post_pledge(client, headers, {"campaign": reward.id, "tier_id": reward.tiers[1].id}).json["id"]
    other = make_campaign(CampaignKind.REWARD)
    before = snapshot(reward)
    for body, status, code in [
        ({"quantity": 0}, 422, "validation_error"),
        ({"tier_id": reward.tiers[0].id, "quantity": 3}, 409, "sold_out"),
        ({"tier_id": other.tiers[0].id}, 422, "invalid_tier"),
        ({"extra": {"amount": 1, "currency": "EUR"}}, 422, "validation_error"),
        ({"campaign": other.id}, 422, "validation_error"),
        ({"tier_id": None}, 422, "validation_error"),
    ]:
        r = client.patch(f"{API}/pledges/{pid}", json=body, headers=headers)
        assert (r.status_code, r.json["error"]["code"]) == (status, code), (body, r.json)
        assert snapshot(reward) == before
    r = client.patch(
        f"{API}/pledges/{pid}", data=b"{oops", headers={**headers, "Content-Type": "application/json"}
    )
    assert (r.status_code, r.json["error"]["code"]) == (400, "bad_json")


def test_wrong_method_and_unknown_path_are_json(db, client, headers):
    r = client.delete(f"{API}/campaigns", headers=headers)
    assert r.status_code == 405
    assert r.json["error"]["code"] == "method_not_allowed"
    r = client.get(f"{API}/nothing-here")
    assert r.status_code == 404
    assert r.json["error"]["code"] == "not_found"


def test_donation_is_charged_at_once(db, client, headers):
    donation = make_campaign(CampaignKind.DONATION)
    r = post_pledge(
        client,
        headers,
        {"campaign": donation.slug, "amount": cny(8_800), "message": "Get well", "anonymous": True},
    )
    assert r.status_code == 201, r.json
    assert (r.json["state"], r.json["anonymous"], r.json["can_cancel"]) == ("charged", True, False)
    assert snapshot(donation)[0:3] == (1, 8_800, 1)
    r = client.post(f"{API}/pledges/{r.json['id']}/cancel", headers=headers)
    assert (r.status_code, r.json["error"]["code"]) == (409, "cancellation_closed")


def test_declined_donation_is_402_and_not_counted(db, client):
    donor = make_user()
    add_card(donor, number="4000000000000341")
    donation = make_campaign(CampaignKind.DONATION)
    r = post_pledge(client, bearer(make_token(donor)), {"campaign": donation.id, "amount": cny(8_800)})
    assert (r.status_code, r.json["error"]["code"]) == (402, "payment_declined")
    assert "declined" in r.json["error"]["message"]
    assert snapshot(donation)[1:3] == (0, 0)


def test_a_bug_still_answers_json_500(db, client, headers, monkeypatch):
    from crowdfund.engine import service as engine

    def broken(user):
        raise RuntimeError("boom")

    monkeypatch.setattr(engine, "list_own_pledges", broken)
    r = client.get(f"{API}/pledges", headers=headers)
    assert r.status_code == 500
    assert r.json["error"]["code"] == "internal_error"
    assert "boom" not in r.get_data(as_text=True)


@pytest.fixture
def csrf_on(app_config):
    """The real configuration's CSRF protection, on for this test's app."""
    app_config.WTF_CSRF_ENABLED = True
    return app_config


def test_api_needs_no_csrf_token_but_the_tokens_page_does(csrf_on, app, db, client):
    from tests.factories import login

    assert app.config["WTF_CSRF_ENABLED"] is True
    user = make_user()
    add_card(user)
    campaign = make_campaign()
    r = post_pledge(
        client, bearer(make_token(user)), {"campaign": campaign.id, "tier_id": campaign.tiers[0].id}
    )
    assert r.status_code == 201, r.json
    login(client, user)
    r = client.post("/account/tokens", data={"name": "no csrf"})
    assert r.status_code == 400


@pytest.mark.postgres
def test_concurrent_api_pledges_never_oversell(db, app, reward):
    from concurrent.futures import ThreadPoolExecutor

    campaign_id, early_id = reward.id, reward.tiers[0].id  # two units
    backers = []
    for _ in range(12):
        user = make_user()
        add_card(user)
        backers.append(bearer(make_token(user)))
    _db.session.remove()

    def attempt(headers):
        with app.test_client() as c:
            r = c.post(f"{API}/pledges", json={"campaign": campaign_id, "tier_id": early_id}, headers=headers)
            return r.status_code, r.json.get("error", {}).get("code")

    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = list(pool.map(attempt, backers))
    assert sorted(outcomes, key=str) == sorted([(201, None)] * 2 + [(409, "sold_out")] * 10, key=str)
    assert snapshot(_db.session.get(Campaign, campaign_id))[:3] == (2, 60_000, 2)
