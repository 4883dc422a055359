"""Drafting a campaign through the web: create, edit, tiers, cover, preview, submit.

Also: who may see a draft, slugs, the story sanitiser, the cover image checks, and that
garbage posted to any drafting form re-renders it with a message and changes nothing.
"""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from PIL import Image
from sqlalchemy import func, select

from crowdfund.campaigns import images, service
from crowdfund.campaigns.models import Campaign, CampaignKind, CampaignState, HealthCategory
from crowdfund.errors import Conflict, NotFound, ValidationError
from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from crowdfund.money import Money
from tests.factories import login, make_user
from tests.factories.accounts import campaigner, operator
from tests.factories.campaigns import (
    TIER_FORM,
    edit_form,
    image_bytes,
    ready_draft,
    service_data,
    snapshot,
    submitted_campaign,
)

KINDS = list(CampaignKind)


def _new_draft(client, org, kind: CampaignKind, **fields):
    data = {"organisation": str(org.id), "kind": kind.value, "title": "Portable ECG monitor",
            "category": "medical_devices", "currency": "CNY", "goal": "50,000", **fields}  # fmt: skip
    return client.post("/campaigns/new", data=data)


def _only_campaign() -> Campaign:
    db.session.expire_all()
    return db.session.scalars(select(Campaign)).one()


# ---------------------------------------------------------------------------
# The whole journey, for each kind
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=[k.value for k in KINDS])
def test_journey_from_draft_to_live(client, db, kind):
    user, org = campaigner()
    login(client, user)

    page = client.get("/campaigns/new")
    assert page.status_code == 200 and org.legal_name.encode() in page.data

    r = _new_draft(client, org, kind)
    assert r.status_code == 302, r.data
    campaign = _only_campaign()
    assert (campaign.kind, campaign.state, campaign.organisation_id) == (kind, CampaignState.DRAFT, org.id)
    assert campaign.goal == Money(5_000_000, "CNY")
    assert campaign.slug == "portable-ecg-monitor"
    edit_url = f"/studio/{campaign.id}"
    assert r.headers["Location"].endswith(edit_url)

    # Not ready yet: the submit is refused and names what is missing.
    r = client.post(f"{edit_url}/submit", data={})
    assert r.status_code == 422 and b"Tell your story" in r.data
    assert _only_campaign().state is CampaignState.DRAFT

    start = utcnow()
    r = client.post(edit_url, data=edit_form(kind, start, title="Portable ECG monitor, v2"))
    assert r.status_code == 302, r.data
    campaign = _only_campaign()
    assert campaign.title == "Portable ECG monitor, v2" and campaign.slug == "portable-ecg-monitor-v2"
    assert "<strong>millions</strong>" in campaign.story_html
    assert campaign.end_at - campaign.start_at == timedelta(days=30)
    if kind is CampaignKind.EQUITY:
        assert campaign.equity_terms.min_target_amount == campaign.goal_amount == 100_000_000
        assert campaign.equity_terms.price_per_share_amount == 1_000
    elif kind is CampaignKind.DEBT:
        t = campaign.debt_terms
        assert (t.annual_rate_bp, t.term_months, t.min_amount, t.max_amount) == (
            850,
            24,
            40_000_000,
            60_000_000,
        )
    elif kind is CampaignKind.DONATION:
        t = campaign.donation_terms
        assert t.is_patient_aid and t.hospital_name.startswith("Peking Union")
    else:
        assert b"at least one reward" in client.get(edit_url).data
        r = client.post(f"{edit_url}/tiers", data=TIER_FORM)
        assert r.status_code == 302, r.data
        r = client.post(f"{edit_url}/tiers", data={**TIER_FORM, "title": "Clinic pack", "price": "5,000"})
        assert r.status_code == 302
        campaign = _only_campaign()
        first, second = campaign.tiers
        assert (first.price_amount, first.quantity_limit, first.ships_to) == (69_900, 200, "Worldwide")
        r = client.post(
            f"{edit_url}/tiers/{second.id}", data={**TIER_FORM, "title": "Clinic pack of 10", "price": "6000"}
        )
        assert r.status_code == 302
        assert client.get(f"{edit_url}/tiers/{second.id}").status_code == 200
        r = client.post(f"{edit_url}/tiers/{first.id}/delete")
        assert r.status_code == 302
        campaign = _only_campaign()
        assert [(t.title, t.price_amount) for t in campaign.tiers] == [("Clinic pack of 10", 600_000)]

    r = client.post(f"{edit_url}/cover", data={"image": (io.BytesIO(image_bytes((1000, 700))), "cover.png")})
    assert r.status_code == 302, r.data
    campaign = _only_campaign()
    assert images.cover_path(campaign.cover_image) is not None
    cover = client.get(f"{edit_url}/cover.jpg")
    assert cover.status_code == 200 and cover.mimetype == "image/jpeg"
    assert Image.open(io.BytesIO(cover.data)).size == (1000, 562)

    preview = client.get(f"{edit_url}/preview")
    assert preview.status_code == 200
    assert b"Preview" in preview.data and b"Portable ECG monitor, v2" in preview.data
    assert b"<strong>millions</strong>" in preview.data

    r = client.post(f"{edit_url}/submit", data={"note": "Ready when you are."})
    assert r.status_code == 302, r.data
    campaign = _only_campaign()
    assert campaign.state is CampaignState.SUBMITTED and campaign.submitted_at is not None
    assert client.post(edit_url, data=edit_form(kind, start, title="Sneaky edit")).status_code == 302
    assert _only_campaign().title == "Portable ECG monitor, v2"

    reviewer = operator()
    login(client, reviewer)
    assert b"Portable ECG monitor, v2" in client.get("/operator/review").data
    page = client.get(f"/operator/review/{campaign.id}")
    assert page.status_code == 200 and b"Ready when you are." in page.data
    r = client.post(f"/operator/review/{campaign.id}/approve", data={"approve-comment": "Looks good."})
    assert r.status_code == 302, r.data
    campaign = _only_campaign()
    assert campaign.state is CampaignState.LIVE and campaign.launched_at is not None
    history = [(e.from_state, e.to_state, e.actor_id) for e in service.campaign_events(campaign)]
    assert history == [
        ("draft", "submitted", user.id),
        ("submitted", "approved", reviewer.id),
        ("approved", "live", reviewer.id),
    ]


def test_new_campaign_without_an_organisation_points_to_registering_one(client, db):
    login(client, make_user())
    page = client.get("/campaigns/new")
    assert page.status_code == 200 and b"Register an organisation" in page.data
    assert b'href="/organisations/new"' in page.data


def test_pages_need_a_login(client, db):
    for url in ("/campaigns/new", "/studio", "/studio/1", "/studio/1/preview"):
        r = client.get(url)
        assert r.status_code == 302 and "/login" in r.headers["Location"], url


def test_studio_lists_the_users_campaigns_with_states(client, db):
    user, org = campaigner()
    mine = ready_draft(CampaignKind.DEBT, user, org)
    _, _, theirs = submitted_campaign()
    login(client, user)
    page = client.get("/studio")
    assert page.status_code == 200
    assert mine.title.encode() in page.data and b"Draft" in page.data
    assert f"/studio/{theirs.id}".encode() not in page.data


# ---------------------------------------------------------------------------
# Who may see and edit
# ---------------------------------------------------------------------------


def test_non_members_get_404_everywhere(client, db):
    owner, org = campaigner()
    campaign = ready_draft(CampaignKind.REWARD, owner, org)
    tier = campaign.tiers[0]
    service.set_cover(campaign, owner, image_bytes())
    before = snapshot()
    stranger, _ = campaigner()
    login(client, stranger)
    base = f"/studio/{campaign.id}"
    for url in (base, f"{base}/preview", f"{base}/cover.jpg", f"{base}/tiers/{tier.id}"):
        assert client.get(url).status_code == 404, url
    posts = {
        base: edit_form(CampaignKind.REWARD, title="Hijacked"),
        f"{base}/tiers": TIER_FORM,
        f"{base}/tiers/{tier.id}": TIER_FORM,
        f"{base}/tiers/{tier.id}/delete": {},
        f"{base}/cover": {"image": (io.BytesIO(image_bytes()), "x.png")},
        f"{base}/cover/remove": {},
        f"{base}/submit": {},
    }
    for url, data in posts.items():
        assert client.post(url, data=data).status_code == 404, url
    assert snapshot() == before
    # Someone else's organisation cannot be chosen either.
    r = _new_draft(client, org, CampaignKind.REWARD)
    assert r.status_code == 422
    assert db.session.scalar(select(func.count(Campaign.id))) == 1


def test_a_tier_of_another_campaign_is_404(client, db):
    user, org = campaigner()
    mine = ready_draft(CampaignKind.REWARD, user, org)
    other = ready_draft(CampaignKind.REWARD, user, org)
    login(client, user)
    assert client.get(f"/studio/{mine.id}/tiers/{other.tiers[0].id}").status_code == 404
    assert client.post(f"/studio/{mine.id}/tiers/{other.tiers[0].id}/delete").status_code == 404
    db.session.expire_all()
    assert len(db.session.get(Campaign, other.id).tiers) == 1


def test_service_refuses_non_members_and_closed_states(db):
    owner, org = campaigner()
    stranger = make_user()
    with pytest.raises(NotFound):
        service.create_draft(stranger, org, CampaignKind.REWARD, service_data(CampaignKind.REWARD))
    campaign = ready_draft(CampaignKind.REWARD, owner, org)
    with pytest.raises(NotFound):
        service.update_draft(campaign, stranger, {"title": "Mine now"})
    service.submit_for_review(campaign, owner)
    with pytest.raises(Conflict):
        service.update_draft(campaign, owner, {"title": "Changed while in review"})
    with pytest.raises(Conflict):
        service.add_tier(campaign, owner, {"title": "More", "price": "1"})
    with pytest.raises(Conflict):
        service.submit_for_review(campaign, owner)
    db.session.refresh(campaign)
    assert campaign.title != "Changed while in review" and len(campaign.tiers) == 1


def test_a_submitted_campaign_redirects_from_edit_to_preview(client, db):
    user, _, campaign = submitted_campaign()
    login(client, user)
    r = client.get(f"/studio/{campaign.id}")
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/studio/{campaign.id}/preview")


# ---------------------------------------------------------------------------
# Submission rules
# ---------------------------------------------------------------------------


def _problems(campaign) -> set[str | None]:
    return {p.field for p in service.submission_problems(campaign, utcnow())}


def test_complete_drafts_of_every_kind_have_no_problems(db):
    user, org = campaigner()
    for kind in KINDS:
        assert _problems(ready_draft(kind, user, org)) == set(), kind


@pytest.mark.parametrize(
    ("kind", "change", "field"),
    [
        (CampaignKind.EQUITY, {"goal": "900,000"}, "goal"),
        (CampaignKind.EQUITY, {"min_investment": "3,000,001"}, "min_investment"),
        (CampaignKind.DEBT, {"goal": "700,000"}, "goal"),
        (CampaignKind.DEBT, {"goal": "300,000"}, "goal"),
        (CampaignKind.DONATION, {"hospital_name": ""}, "hospital_name"),
        (CampaignKind.DONATION, {"patient_name": ""}, "patient_name"),
        (CampaignKind.DONATION, {"diagnosis_summary": ""}, "diagnosis_summary"),
        (CampaignKind.DONATION, {"goal": "500,000.01"}, "goal"),
        (CampaignKind.DONATION, {"currency": "USD"}, "currency"),
        (CampaignKind.DONATION, {"category": "research"}, "category"),
        (CampaignKind.REWARD, {"category": "patient_aid"}, "category"),
        (CampaignKind.REWARD, {"story": ""}, "story"),
        (CampaignKind.REWARD, {"summary": ""}, "summary"),
    ],
)
def test_submission_rules(db, kind, change, field):
    user, org = campaigner()
    campaign = ready_draft(kind, user, org)
    service.update_draft(campaign, user, change)
    assert field in _problems(campaign)
    with pytest.raises(ValidationError):
        service.submit_for_review(campaign, user)
    db.session.refresh(campaign)
    assert campaign.state is CampaignState.DRAFT


def test_patient_aid_at_the_cap_is_fine_and_the_cap_is_configurable(app, db):
    user, org = campaigner()
    campaign = ready_draft(CampaignKind.DONATION, user, org)
    service.update_draft(campaign, user, {"goal": "500,000"})
    assert _problems(campaign) == set()
    app.config["PATIENT_AID_CAP"] = "CNY 100000"
    assert "goal" in _problems(campaign)


def test_reward_needs_a_tier_and_start_must_not_be_past(db):
    user, org = campaigner()
    data = service_data(CampaignKind.REWARD)
    campaign = service.create_draft(user, org, CampaignKind.REWARD, data)
    assert None in _problems(campaign)  # no tier
    past = utcnow() - timedelta(days=2)
    service.update_draft(campaign, user, {"start_at": past, "end_at": past + timedelta(days=10)})
    assert "start_at" in _problems(campaign)


def test_request_changes_comment_is_shown_and_resubmission_works(client, db):
    user, _, campaign = submitted_campaign(CampaignKind.DEBT)
    from crowdfund.review import service as review

    review.request_changes(campaign, operator(), "Lower the interest rate to 7%.")
    login(client, user)
    page = client.get(f"/studio/{campaign.id}")
    assert page.status_code == 200 and b"Lower the interest rate to 7%." in page.data
    assert b"Lower the interest rate" in client.get("/studio").data
    r = client.post(f"/studio/{campaign.id}", data=edit_form(CampaignKind.DEBT, annual_rate="7"))
    assert r.status_code == 302
    assert client.post(f"/studio/{campaign.id}/submit", data={"note": "Done."}).status_code == 302
    db.session.expire_all()
    campaign = db.session.get(Campaign, campaign.id)
    assert campaign.state is CampaignState.SUBMITTED and campaign.debt_terms.annual_rate_bp == 700


# ---------------------------------------------------------------------------
# Slugs and the story
# ---------------------------------------------------------------------------


def test_slugs_are_ascii_unique_and_fall_back_to_the_id(db):
    user, org = campaigner()
    data = service_data(CampaignKind.DONATION)

    def draft(title):
        return service.create_draft(user, org, CampaignKind.DONATION, {**data, "title": title})

    assert draft("Café für Kinder — Herz!").slug == "cafe-fur-kinder-herz"
    assert draft("Café für Kinder: Herz").slug == "cafe-fur-kinder-herz-2"
    assert draft("Café für Kinder (Herz)").slug == "cafe-fur-kinder-herz-3"
    chinese = draft("为白血病儿童筹款")
    assert chinese.slug == f"campaign-{chinese.id}"
    assert draft("New").slug == "new-campaign"
    assert len(draft("word " * 24).slug) <= 80


def test_story_is_rendered_and_sanitised(db):
    user, org = campaigner()
    campaign = ready_draft(CampaignKind.DONATION, user, org)
    story = (
        "# Title\n\nHello <script>alert('x')</script> world\n\n"
        '<img src="https://evil.example/x.png" onerror="alert(1)">\n\n'
        "![pic](https://evil.example/pic.png)\n\n"
        '<iframe src="https://evil.example"></iframe><style>body{display:none}</style>\n\n'
        '[ok](https://example.org) [bad](javascript:alert(1)) <a href="javascript:alert(2)">x</a>\n\n'
        '<b onclick="steal()">bold</b>\n\n| a | b |\n|---|--:|\n| 1 | 2 |\n'
    )
    service.update_draft(campaign, user, {"story": story})
    html = campaign.story_html
    bad_bits = ("<script", "alert('x')", "<img", "onerror", "<iframe", "<style", "display:none", 'href="javascript',
                "onclick", "evil.example")  # fmt: skip
    for bad in bad_bits:
        assert bad not in html, bad
    assert '<a href="https://example.org" rel="nofollow noopener">ok</a>' in html
    assert "<h2>Title</h2>" in html and "<b>bold</b>" in html and "<table>" in html
    assert campaign.story == story.strip()


# ---------------------------------------------------------------------------
# Cover images
# ---------------------------------------------------------------------------


def test_cover_is_reencoded_cropped_and_stripped(app, db):
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # camera maker
    exif[0x8825] = {2: (39.0, 54.0, 0.0)}  # GPS latitude
    jpeg = image_bytes((3200, 2400), "JPEG", exif=exif.tobytes())
    assert b"SecretCam" in jpeg
    out = images.prepare_cover(jpeg)
    img = Image.open(io.BytesIO(out))
    assert (img.format, img.size) == ("JPEG", (1600, 900))
    assert not img.getexif() and b"SecretCam" not in out
    assert Image.open(io.BytesIO(images.prepare_cover(image_bytes((900, 1600))))).size == (900, 506)
    webp = image_bytes((640, 360), "WEBP")
    assert Image.open(io.BytesIO(images.prepare_cover(webp))).size == (640, 360)
    rgba = io.BytesIO()
    Image.new("RGBA", (400, 300), (0, 0, 0, 0)).save(rgba, "PNG")
    assert Image.open(io.BytesIO(images.prepare_cover(rgba.getvalue()))).getpixel((10, 10)) == (255, 255, 255)


@pytest.mark.parametrize(
    "data",
    [
        b"<html><script>alert(1)</script></html>",
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        b"GIF89a" + b"\x00" * 100,
        image_bytes((400, 300), "GIF"),
        image_bytes((400, 300), "BMP"),
        image_bytes((400, 300))[:200],  # truncated PNG
        b"",
    ],
    ids=["html", "svg", "fake-gif", "gif", "bmp", "truncated-png", "empty"],
)
def test_cover_refuses_what_is_not_a_jpeg_png_or_webp(app, data):
    with pytest.raises(ValidationError) as err:
        images.prepare_cover(data)
    assert err.value.field == "image"


def test_cover_refuses_pixel_bombs_and_tiny_images(app):
    bomb = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(bomb, "PNG")
    assert len(bomb.getvalue()) < 100_000
    with pytest.raises(ValidationError) as err:
        images.prepare_cover(bomb.getvalue())
    assert err.value.code == "image_too_many_pixels"
    with pytest.raises(ValidationError) as err:
        images.prepare_cover(image_bytes((100, 100)))
    assert err.value.code == "image_too_small"


def test_cover_path_accepts_only_stored_names(app, db):
    name = images.store_cover(images.prepare_cover(image_bytes()))
    assert images.cover_path(name) == images.covers_dir() / name
    for bad in (
        None,
        "",
        "../" + name,
        name.upper(),
        name[:-4] + ".png",
        "x" * 32 + ".jpg",
        "0" * 32 + ".jpg",
        f"{name}/",
    ):
        assert images.cover_path(bad) is None, bad


def test_replacing_and_removing_a_cover_deletes_the_old_file(client, db):
    user, org = campaigner()
    campaign = ready_draft(CampaignKind.DEBT, user, org)
    service.set_cover(campaign, user, image_bytes())
    first = images.cover_path(campaign.cover_image)
    service.set_cover(campaign, user, image_bytes(colour=(0, 0, 255)))
    assert not first.exists() and images.cover_path(campaign.cover_image) is not None
    second = images.cover_path(campaign.cover_image)
    login(client, user)
    assert client.post(f"/studio/{campaign.id}/cover/remove").status_code == 302
    db.session.expire_all()
    assert db.session.get(Campaign, campaign.id).cover_image is None and not second.exists()


def test_a_refused_cover_change_keeps_the_old_file_and_leaves_no_new_one(app, db):
    user, org = campaigner()
    campaign = ready_draft(CampaignKind.REWARD, user, org)
    service.set_cover(campaign, user, image_bytes())
    old = images.cover_path(campaign.cover_image)
    covers = old.parent
    before = sorted(p.name for p in covers.iterdir())
    service.submit_for_review(campaign, user)  # no longer editable

    with pytest.raises(Conflict):
        service.set_cover(campaign, user, image_bytes(colour=(0, 255, 0)))
    with pytest.raises(Conflict):
        service.remove_cover(campaign, user)

    db.session.expire_all()
    assert db.session.get(Campaign, campaign.id).cover_image == old.name
    assert old.exists() and sorted(p.name for p in covers.iterdir()) == before


# ---------------------------------------------------------------------------
# Garbage in: a message, no change, never a 500
# ---------------------------------------------------------------------------

HUGE = "x" * 100_000
GARBAGE_NEW = [
    {},
    {
        "organisation": "abc",
        "kind": "lottery",
        "title": "",
        "category": "astrology",
        "currency": "BTC",
        "goal": "-5",
    },
    {"kind": "reward", "title": HUGE, "category": "research", "currency": "CNY", "goal": HUGE},
    {"kind": "reward", "title": "T", "category": "research", "currency": "CNY", "goal": "lots"},
    {"kind": "reward", "title": "T", "category": "research", "currency": "CNY", "goal": "0"},
    {"kind": "reward", "title": "T", "category": "research", "currency": "CNY", "goal": "1e9"},
    {
        "kind": "reward",
        "title": "T",
        "category": "research",
        "currency": "CNY",
        "goal": "99999999999999999999",
    },
    {"kind": "reward", "title": "T", "category": "research", "currency": "JPY", "goal": "100"},
    {"kind": "reward", "title": "T", "category": "research", "currency": "CNY", "goal": "1.005"},
]


@pytest.mark.parametrize("data", GARBAGE_NEW)
def test_garbage_on_the_new_form(client, db, data):
    user, org = campaigner()
    login(client, user)
    data = {"organisation": str(org.id), **data} if "organisation" not in data and data else data
    r = client.post("/campaigns/new", data=data)
    assert r.status_code == 422
    assert b"invalid-feedback" in r.data or b"alert-danger" in r.data
    assert db.session.scalar(select(func.count(Campaign.id))) == 0


def _garbage_edits(kind: CampaignKind) -> list[dict]:
    start = utcnow() + timedelta(days=1)
    good = edit_form(kind, start)
    garbage = [
        {},
        {k: "" for k in good},
        {k: HUGE for k in good},
        {**good, "goal": "-100"},
        {**good, "goal": "ten thousand"},
        {**good, "goal": "9" * 40},
        {**good, "goal": "0.00"},
        {**good, "end_at": edit_form(kind, start - timedelta(days=3))["start_at"]},
        {**good, "end_at": edit_form(kind, start + timedelta(days=60))["end_at"]},  # 90 days
        {
            **good,
            "end_at": edit_form(kind, start, end_at=(start + timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M"))[
                "end_at"
            ],
        },
        {**good, "start_at": "yesterday", "end_at": "2024-13-45T99:99"},
        {**good, "start_at": "9999-12-31T23:59", "end_at": "9999-12-31T23:59"},
        {
            **good,
            "start_at": (start + timedelta(days=800)).strftime("%Y-%m-%dT%H:%M"),
            "end_at": (start + timedelta(days=810)).strftime("%Y-%m-%dT%H:%M"),
        },  # fmt: skip
        {**good, "category": "astrology"},
        {**good, "currency": "BTC"},
        {**good, "currency": "JPY"},
    ]
    if kind is CampaignKind.REWARD:
        garbage += [{**good, "funding_model": "pyramid"}]
    elif kind is CampaignKind.EQUITY:
        garbage += [
            {**good, "max_target": "999,999"},
            {**good, "price_per_share": "0"},
            {**good, "security_type": "tulips"},
            {**good, "min_investment": "-1"},
            {**good, "min_target": ""},
        ]
    elif kind is CampaignKind.DEBT:
        garbage += [
            {**good, "annual_rate": "abc"},
            {**good, "annual_rate": "1e999999"},
            {**good, "annual_rate": "NaN"},
            {**good, "annual_rate": "250"},
            {**good, "annual_rate": "8.123"},
            {**good, "term_months": "0"},
            {**good, "term_months": "9" * 5000},
            {**good, "term_months": "twelve"},
            {**good, "max_amount": "1"},
        ]
    elif kind is CampaignKind.DONATION:
        garbage += [{**good, "beneficiary_name": "", "patient_name": "Someone"}]
    return garbage


@pytest.mark.parametrize("kind", KINDS, ids=[k.value for k in KINDS])
def test_garbage_on_the_edit_form(client, db, kind):
    user, org = campaigner()
    campaign = ready_draft(kind, user, org)
    login(client, user)
    before = snapshot()
    for i, data in enumerate(_garbage_edits(kind)):
        r = client.post(f"/studio/{campaign.id}", data=data)
        assert r.status_code == 422, (i, r.status_code)
        assert b"invalid-feedback" in r.data or b"alert-danger" in r.data, i
        assert snapshot() == before, i


def test_garbage_on_the_tier_forms(client, db):
    user, org = campaigner()
    campaign = ready_draft(CampaignKind.REWARD, user, org)
    tier = campaign.tiers[0]
    login(client, user)
    before = snapshot()
    garbage = [
        {},
        {k: HUGE for k in TIER_FORM},
        {**TIER_FORM, "price": "-1"},
        {**TIER_FORM, "price": "free"},
        {**TIER_FORM, "price": "0"},
        {**TIER_FORM, "price": "9" * 25},
        {**TIER_FORM, "quantity_limit": "0"},
        {**TIER_FORM, "quantity_limit": "-3"},
        {**TIER_FORM, "quantity_limit": "many"},
        {**TIER_FORM, "quantity_limit": "9" * 5000},
        {**TIER_FORM, "estimated_delivery": "soon"},
        {**TIER_FORM, "ships_to": ""},
        {**TIER_FORM, "title": ""},
    ]
    for i, data in enumerate(garbage):
        for url in (f"/studio/{campaign.id}/tiers", f"/studio/{campaign.id}/tiers/{tier.id}"):
            r = client.post(url, data=data)
            assert r.status_code == 422, (i, url, r.status_code)
            assert b"invalid-feedback" in r.data, (i, url)
            assert snapshot() == before, (i, url)


def test_tier_forms_refuse_a_non_reward_campaign(client, db):
    user, org = campaigner()
    campaign = ready_draft(CampaignKind.DONATION, user, org)
    login(client, user)
    before = snapshot()
    assert client.post(f"/studio/{campaign.id}/tiers", data=TIER_FORM).status_code == 404
    assert snapshot() == before
    with pytest.raises(Conflict):
        service.add_tier(campaign, user, TIER_FORM)


def test_garbage_on_the_cover_form(app, client, db):
    app.config["COVER_MAX_BYTES"] = 50_000
    user, org = campaigner()
    campaign = ready_draft(CampaignKind.REWARD, user, org)
    login(client, user)
    before = snapshot()
    noisy = io.BytesIO()
    Image.effect_noise((400, 400), 100).convert("RGB").save(noisy, "PNG")
    assert len(noisy.getvalue()) > 50_000
    uploads = [
        {},
        {"image": (io.BytesIO(b"<html><body onload=alert(1)>hi</body></html>"), "x.png")},
        {"image": (io.BytesIO(b'<svg xmlns="http://www.w3.org/2000/svg"/>'), "cover.jpg")},
        {"image": (io.BytesIO(b""), "empty.png")},
        {"image": (io.BytesIO(noisy.getvalue()), "big.png")},
        {"image": (io.BytesIO(HUGE.encode()), "huge.jpg")},
    ]
    for i, data in enumerate(uploads):
        r = client.post(f"/studio/{campaign.id}/cover", data=data, content_type="multipart/form-data")
        assert r.status_code == 422, (i, r.status_code)
        assert b"invalid-feedback" in r.data, i
        assert snapshot() == before, i
    assert not list(images.covers_dir().glob("*.jpg")) if images.covers_dir().exists() else True


def test_an_upload_over_the_request_limit_is_413_not_500(app, client, db):
    app.config["MAX_CONTENT_LENGTH"] = 100_000
    user, org = campaigner()
    campaign = ready_draft(CampaignKind.REWARD, user, org)
    login(client, user)
    r = client.post(
        f"/studio/{campaign.id}/cover",
        data={"image": (io.BytesIO(b"\0" * 200_000), "x.png")},
        content_type="multipart/form-data",
    )
    assert r.status_code == 413
    db.session.expire_all()
    assert db.session.get(Campaign, campaign.id).cover_image is None


def test_garbage_on_the_submit_form(client, db):
    user, org = campaigner()
    campaign = ready_draft(CampaignKind.REWARD, user, org)
    login(client, user)
    before = snapshot()
    r = client.post(f"/studio/{campaign.id}/submit", data={"note": HUGE})
    assert r.status_code == 422 and b"invalid-feedback" in r.data
    assert snapshot() == before


def test_category_and_currency_are_saved(client, db):
    user, org = campaigner()
    campaign = ready_draft(CampaignKind.REWARD, user, org)
    login(client, user)
    r = client.post(
        f"/studio/{campaign.id}", data=edit_form(CampaignKind.REWARD, category="research", currency="EUR")
    )
    assert r.status_code == 302
    db.session.expire_all()
    campaign = db.session.get(Campaign, campaign.id)
    assert campaign.category is HealthCategory.RESEARCH and campaign.goal == Money(5_000_000, "EUR")
    assert campaign.tiers[0].price == Money(69_900, "EUR")


def test_edit_terms_section_all_or_nothing(db):
    user, org = campaigner()
    campaign = service.create_draft(user, org, CampaignKind.EQUITY, service_data(CampaignKind.EQUITY))
    assert campaign.equity_terms is not None
    empty = {f: "" for f in service.TERM_FIELDS[CampaignKind.EQUITY]}
    service.update_draft(campaign, user, empty)
    assert campaign.equity_terms is None and "min_target" in _problems(campaign)
    with pytest.raises(service.DraftInvalid) as err:
        service.update_draft(campaign, user, {**empty, "price_per_share": "10"})
    assert {"min_target", "max_target", "security_type"} <= set(err.value.errors)


def test_forms_carry_csrf_tokens_when_csrf_is_on(app_config, db):
    from crowdfund import create_app

    app_config.WTF_CSRF_ENABLED = True
    app = create_app(app_config)
    with app.app_context():
        user, org = campaigner()
        campaign = ready_draft(CampaignKind.REWARD, user, org)
        client = app.test_client()
        login(client, user)
        page = client.get(f"/studio/{campaign.id}").get_data(as_text=True)
        assert page.count("<form") == page.count('name="csrf_token"') + page.count('-csrf_token"') >= 6
        before = snapshot()
        r = client.post(f"/studio/{campaign.id}", data=edit_form(CampaignKind.REWARD, title="Forged"))
        assert r.status_code == 400
        r = client.post("/campaigns/new", data={"organisation": str(org.id), "kind": "reward", "title": "Forged",
                                                "category": "research", "currency": "CNY", "goal": "100"})  # fmt: skip
        assert r.status_code == 400
        assert snapshot() == before


def test_nav_links(client, db):
    assert b"Start a campaign" in client.get("/").data
    user, _ = campaigner()
    login(client, user)
    page = client.get("/").data
    assert b"My campaigns" in page and b"Review queue" not in page
    login(client, operator())
    assert b"Review queue" in client.get("/").data


def test_draft_form_marks_fields_needed_to_submit_not_optional(client):
    from crowdfund.campaigns.models import CampaignKind, CampaignState
    from tests.factories import login, make_campaign, make_org, make_user

    owner = make_user()
    campaign = make_campaign(CampaignKind.EQUITY, org=make_org(owner), state=CampaignState.DRAFT)
    login(client, owner)
    html = client.get(f"/studio/{campaign.id}").get_data(as_text=True)
    summary_label = html[html.index('for="summary"') :][:300]
    assert "(needed to submit)" in summary_label and "(optional)" not in summary_label
