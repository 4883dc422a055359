"""The public site: home, listing (filters, search, sorting, pagination), campaign page,
cover images. Only public campaigns are ever shown to the public."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from crowdfund.accounts.models import Role
from crowdfund.campaigns.models import PUBLIC_STATES, CampaignKind, CampaignState, HealthCategory
from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from tests.factories import login, make_campaign, make_org, make_user

S = CampaignState
NOT_PUBLIC = [s for s in CampaignState if s not in PUBLIC_STATES]


def page_text(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def listed_slugs(response) -> list[str]:
    """Slugs of the campaign cards on a page, in page order."""
    return re.findall(r'class="stretched-link[^"]*" href="/campaigns/([^"]+)"', page_text(response))


# ---------------------------------------------------------------------------
# Home
# ---------------------------------------------------------------------------


def test_home_shows_live_campaigns_of_every_kind_and_counts(client):
    for kind in CampaignKind:
        make_campaign(kind, title=f"Live {kind.value} campaign", slug=f"live-{kind.value}")
    make_campaign(CampaignKind.REWARD, title="Secret draft", slug="secret-draft", state=S.DRAFT)
    make_campaign(
        CampaignKind.DEBT, title="Ended debt", slug="ended-debt", end_at=utcnow() - timedelta(hours=1)
    )

    html = page_text(client.get("/"))
    for kind in CampaignKind:
        assert f"Live {kind.value} campaign" in html
        assert f"1 live {kind.value} campaign " in html
        assert f'href="/campaigns?kind={kind.value}"' in html
    assert "Secret draft" not in html
    assert "Ended debt" not in html


def test_home_puts_featured_campaigns_first(client):
    make_campaign(slug="rich", raised_amount=900_000)
    make_campaign(slug="featured-one", featured=True)
    assert listed_slugs(client.get("/"))[:2] == ["featured-one", "rich"]


# ---------------------------------------------------------------------------
# Listing: filters, search, sorting
# ---------------------------------------------------------------------------


def test_listing_filters_by_kind_and_category(client):
    make_campaign(CampaignKind.REWARD, slug="reward-device", category=HealthCategory.MEDICAL_DEVICES)
    make_campaign(CampaignKind.REWARD, slug="reward-research", category=HealthCategory.RESEARCH)
    make_campaign(CampaignKind.DEBT, slug="debt-clinic", category=HealthCategory.CLINICS_CARE)

    assert sorted(listed_slugs(client.get("/campaigns?kind=reward"))) == ["reward-device", "reward-research"]
    assert listed_slugs(client.get("/campaigns?category=clinics_care")) == ["debt-clinic"]
    assert listed_slugs(client.get("/campaigns?kind=reward&category=research")) == ["reward-research"]
    assert listed_slugs(client.get("/campaigns?kind=equity")) == []


def test_listing_status_live_funded_closed(client):
    now = utcnow()
    make_campaign(slug="open")
    make_campaign(slug="past-end", end_at=now - timedelta(minutes=1))
    make_campaign(slug="funded", state=S.SUCCEEDED, raised_amount=1_000_000, goal=1_000_000)
    make_campaign(slug="settled-funded", state=S.SETTLED, raised_amount=2_000_000, goal=1_000_000)
    make_campaign(slug="failed", state=S.FAILED, raised_amount=10, goal=1_000_000)

    assert listed_slugs(client.get("/campaigns")) == ["open"]
    assert listed_slugs(client.get("/campaigns?status=live")) == ["open"]
    assert sorted(listed_slugs(client.get("/campaigns?status=funded"))) == ["funded", "settled-funded"]
    assert sorted(listed_slugs(client.get("/campaigns?status=closed"))) == [
        "failed",
        "funded",
        "past-end",
        "settled-funded",
    ]
    assert len(listed_slugs(client.get("/campaigns?status=all"))) == 5


@pytest.mark.parametrize("status", ["live", "funded", "closed", "all", "bogus"])
def test_listing_never_shows_non_public_campaigns(client, status):
    for state in NOT_PUBLIC:
        make_campaign(
            slug=f"hidden-{state.value}", title=f"Hidden {state.value}", state=state, raised_amount=10**7
        )
    make_campaign(
        slug="visible", state=S.SUCCEEDED if status in ("funded", "closed") else S.LIVE, raised_amount=10**7
    )

    html = page_text(client.get(f"/campaigns?status={status}&sort=funded"))
    assert "/campaigns/hidden-" not in html and "Hidden " not in html
    assert listed_slugs(client.get(f"/campaigns?status={status}")) == ["visible"]


def test_search_matches_title_and_summary_case_insensitively(client):
    make_campaign(slug="dialysis", title="Dialysis unit for Qingshan", summary="Six new stations.")
    make_campaign(slug="ecg", title="ECG patch", summary="Detects atrial fibrillation at home.")
    make_campaign(slug="other", title="Pill dispenser", summary="Reminds older people.")

    assert listed_slugs(client.get("/campaigns?q=DIALYSIS")) == ["dialysis"]
    assert listed_slugs(client.get("/campaigns?q=atrial")) == ["ecg"]
    assert listed_slugs(client.get("/campaigns?q=  fibrillation  ")) == ["ecg"]
    assert listed_slugs(client.get("/campaigns?q=nothing-like-this")) == []


def test_search_takes_percent_underscore_and_backslash_literally(client):
    make_campaign(slug="percent", title="100% of proceeds to the ward")
    make_campaign(slug="underscore", title="Project snake_case")
    make_campaign(slug="backslash", title="Path C:\\clinic")
    make_campaign(slug="plain", title="Plain title for everyone")

    assert listed_slugs(client.get("/campaigns", query_string={"q": "%"})) == ["percent"]
    assert listed_slugs(client.get("/campaigns", query_string={"q": "_"})) == ["underscore"]
    assert listed_slugs(client.get("/campaigns", query_string={"q": "\\"})) == ["backslash"]
    assert listed_slugs(client.get("/campaigns", query_string={"q": "e_c"})) == ["underscore"]


def test_sorting(client):
    now = utcnow()
    make_campaign(
        slug="a",
        start_at=now - timedelta(days=3),
        end_at=now + timedelta(days=5),
        raised_amount=300,
        backer_count=1,
    )
    make_campaign(
        slug="b",
        start_at=now - timedelta(days=1),
        end_at=now + timedelta(days=20),
        raised_amount=100,
        backer_count=9,
    )
    make_campaign(
        slug="c",
        start_at=now - timedelta(days=2),
        end_at=now + timedelta(days=2),
        raised_amount=200,
        backer_count=5,
    )

    assert listed_slugs(client.get("/campaigns")) == ["b", "c", "a"]  # newest first
    assert listed_slugs(client.get("/campaigns?sort=newest")) == ["b", "c", "a"]
    assert listed_slugs(client.get("/campaigns?sort=ending")) == ["c", "a", "b"]
    assert listed_slugs(client.get("/campaigns?sort=funded")) == ["a", "c", "b"]
    assert listed_slugs(client.get("/campaigns?sort=backers")) == ["b", "c", "a"]


def test_ending_soon_lists_open_campaigns_before_ended_ones(client):
    now = utcnow()
    make_campaign(slug="ended", state=S.SUCCEEDED, end_at=now - timedelta(days=3))
    make_campaign(slug="soon", end_at=now + timedelta(days=1))
    assert listed_slugs(client.get("/campaigns?status=all&sort=ending")) == ["soon", "ended"]


# ---------------------------------------------------------------------------
# Listing: pagination
# ---------------------------------------------------------------------------


def _seven_campaigns(app) -> list[str]:
    """Seven live campaigns, three to a page; their slugs newest first."""
    app.config["CAMPAIGNS_PER_PAGE"] = 3
    now = utcnow()
    slugs = [f"c{i}" for i in range(7)]
    for i, slug in enumerate(slugs):
        make_campaign(slug=slug, start_at=now - timedelta(hours=i + 1))
    return slugs  # newest first


def test_pagination_pages_and_links(app, client):
    slugs = _seven_campaigns(app)
    assert listed_slugs(client.get("/campaigns")) == slugs[0:3]
    second = client.get("/campaigns?page=2")
    assert listed_slugs(second) == slugs[3:6]
    html = page_text(second)
    assert "Showing 4–6 of 7 campaigns" in html
    assert 'href="/campaigns?page=3"' in html and 'rel="prev"' in html and 'rel="next"' in html
    assert listed_slugs(client.get("/campaigns?page=3")) == slugs[6:]


def test_pagination_keeps_the_filters_in_its_links(app, client):
    app.config["CAMPAIGNS_PER_PAGE"] = 3
    for i in range(4):
        make_campaign(CampaignKind.DEBT, slug=f"debt-{i}", title=f"Clinic loan {i}")
    html = page_text(client.get("/campaigns?kind=debt&q=loan&sort=ending"))
    assert 'href="/campaigns?kind=debt&amp;q=loan&amp;sort=ending&amp;page=2"' in html


@pytest.mark.parametrize("page", ["4", "999", "10000000000000000000000"])
def test_page_past_the_last_shows_the_last_page_with_a_message(app, client, page):
    slugs = _seven_campaigns(app)
    response = client.get(f"/campaigns?page={page}")
    assert listed_slugs(response) == slugs[6:]
    assert "showing page 3, the last one" in page_text(response)


@pytest.mark.parametrize("page", ["abc", "", "-3", "0", "1.5", "%00", "2e3x"])
def test_bad_page_numbers_mean_page_one(app, client, page):
    slugs = _seven_campaigns(app)
    assert listed_slugs(client.get(f"/campaigns?page={page}")) == slugs[0:3]


def test_empty_listing_says_so(client):
    html = page_text(client.get("/campaigns?q=nothing"))
    assert "No campaigns match these filters." in html
    assert "the last one" not in html


GARBAGE = [
    "kind=lottery",
    "category=../../etc",
    "status=drafts",
    "sort=price;DROP TABLE campaigns",
    "q=%00%00",
    "q=" + "x" * 5000,
    "q=%E2%80%AE%F0%9F%92%89",
    "page=%FF%FE",
    "kind=&category=&status=&sort=&page=&q=",
    "kind[]=reward&page[]=2",
    "q=%25%5F%5C",
    "q='%20OR%201=1--",
]


@pytest.mark.parametrize("query", GARBAGE)
def test_garbage_query_strings_never_fail(client, query):
    make_campaign(slug="one")
    response = client.get(f"/campaigns?{query}")
    assert response.status_code == 200


# ---------------------------------------------------------------------------
# Campaign page
# ---------------------------------------------------------------------------


def test_campaign_page_shows_story_terms_and_totals(client):
    org = make_org(legal_name="Heartline Medical")
    c = make_campaign(
        CampaignKind.REWARD,
        org=org,
        slug="ecg",
        title="ECG patch",
        story_html="<h2>Why</h2><p>Because hearts.</p>",
        raised_amount=250_000,
        backer_count=3,
        goal=1_000_000,
        tiers=[
            {
                "title": "Early bird",
                "price_amount": 39_900,
                "quantity_limit": 10,
                "claimed": 7,
                "ships": True,
                "ships_to": "China",
            },
            {"title": "Gone", "price_amount": 10_000, "quantity_limit": 2, "claimed": 2},
            {"title": "Supporter", "price_amount": 5_000, "quantity_limit": None},
        ],
    )
    html = page_text(client.get(f"/campaigns/{c.slug}"))
    assert "<h2>Why</h2><p>Because hearts.</p>" in html
    assert "¥2,500.00" in html and "CNY 10,000.00" in html and "25%" in html
    assert "3 of 10 left" in html and "Sold out" in html and "Unlimited" in html
    assert "Ships to: China" in html and "¥399.00" in html
    assert "Heartline Medical" in html and "Health startup" in html
    assert 'aria-valuenow="25"' in html
    assert "Back this campaign" in html
    assert "Not public" not in html


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (CampaignKind.EQUITY, ["Common shares", "¥10.00", "¥5,000,000.00", "¥100.00", "Minimum investment"]),
        (CampaignKind.DEBT, ["8.00 %", "12 months", "Monthly", "¥20,000.00", "Smallest loan share"]),
        (CampaignKind.DONATION, ["Li Wei", "Every donation is kept"]),
    ],
)
def test_campaign_page_shows_each_kinds_terms(client, kind, expected):
    c = make_campaign(kind, slug=f"k-{kind.value}")
    html = page_text(client.get(f"/campaigns/{c.slug}"))
    for text in expected:
        assert text in html


def test_patient_aid_page_shows_patient_hospital_and_diagnosis(client):
    c = make_campaign(CampaignKind.DONATION, slug="aid", category=HealthCategory.PATIENT_AID)
    terms = c.donation_terms
    terms.is_patient_aid = True
    terms.patient_name = "Chen Xiaoyu"
    terms.hospital_name = "Children's Hospital"
    terms.diagnosis_summary = "Acute lymphoblastic leukaemia"
    db.session.commit()
    html = page_text(client.get("/campaigns/aid"))
    assert "Chen Xiaoyu" not in html  # the public sees a shortened name only
    for text in (
        "Chen X.",
        "Children&#39;s Hospital",
        "Acute lymphoblastic leukaemia",
        "straight to the hospital",
    ):
        assert text in html


def test_unknown_slug_is_404(client):
    assert client.get("/campaigns/no-such-campaign").status_code == 404
    assert client.get("/campaigns/" + "x" * 500).status_code == 404
    assert client.get("/campaigns/bad%00slug").status_code == 404


@pytest.mark.parametrize("state", NOT_PUBLIC)
def test_non_public_campaign_is_404_for_the_public(client, state):
    c = make_campaign(slug=f"hidden-{state.value}", state=state)
    assert client.get(f"/campaigns/{c.slug}").status_code == 404
    login(client, make_user())
    assert client.get(f"/campaigns/{c.slug}").status_code == 404


def test_draft_is_visible_to_members_and_operators_with_a_banner(client):
    owner = make_user()
    org = make_org(owner=owner)
    c = make_campaign(org=org, slug="my-draft", title="My draft", state=S.DRAFT)

    login(client, owner)
    html = page_text(client.get("/campaigns/my-draft"))
    assert "Not public: Draft" in html and "My draft" in html

    login(client, make_user(role=Role.OPERATOR))
    assert "Not public: Draft" in page_text(client.get(f"/campaigns/{c.slug}"))


def test_campaign_past_its_end_is_not_shown_as_open(client):
    c = make_campaign(slug="late", end_at=utcnow() - timedelta(seconds=5))
    assert c.state is S.LIVE
    html = page_text(client.get("/campaigns/late"))
    assert "Back this campaign" not in html
    assert "Closed" in html and "not taking pledges" in html
    assert "days left" not in html


def test_campaign_ending_within_a_day_says_ends_today(client):
    make_campaign(slug="today", end_at=utcnow() + timedelta(hours=5))
    make_campaign(slug="later", end_at=utcnow() + timedelta(days=10, hours=1))
    assert "Ends today" in page_text(client.get("/campaigns/today"))
    assert "10 days left" in page_text(client.get("/campaigns?sort=ending"))


def test_public_campaign_page_and_listing_escape_campaigner_text(client):
    make_campaign(slug="xss", title="<script>alert(1)</script>", summary="<img src=x onerror=alert(1)>")
    for url in ("/", "/campaigns", "/campaigns/xss"):
        html = page_text(client.get(url))
        assert "<script>alert(1)" not in html and "<img src=x" not in html


# ---------------------------------------------------------------------------
# Cover images
# ---------------------------------------------------------------------------

NAME = "0123456789abcdef0123456789abcdef.jpg"


def _store(app, name: str, data: bytes) -> Path:
    folder = Path(app.config["UPLOAD_DIR"]) / "covers"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return folder


def test_cover_is_served_as_an_inline_jpeg(app, client):
    _store(app, NAME, b"\xff\xd8\xff\xe0fake-jpeg")
    response = client.get(f"/media/covers/{NAME}")
    assert response.status_code == 200
    assert response.data == b"\xff\xd8\xff\xe0fake-jpeg"
    assert response.mimetype == "image/jpeg"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Disposition"].startswith("inline")
    assert "max-age=" in response.headers["Cache-Control"]


def test_cover_with_html_content_is_still_an_image(app, client):
    _store(app, NAME, b"<html><script>alert(1)</script></html>")
    response = client.get(f"/media/covers/{NAME}")
    assert response.mimetype == "image/jpeg"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "/media/covers/../../etc/passwd",
        "/media/covers/..%2F..%2Fetc%2Fpasswd",
        "/media/covers/%2e%2e%2fsecret.jpg",
        "/media/covers/0123456789ABCDEF0123456789ABCDEF.jpg",
        "/media/covers/0123456789abcdef0123456789abcde.jpg",
        "/media/covers/0123456789abcdef0123456789abcdef.png",
        "/media/covers/0123456789abcdef0123456789abcdef.jpg.html",
        "/media/covers/0123456789abcdef0123456789abcdef.jpg%0a",
        "/media/covers/secret.html",
        "/media/covers/ffffffffffffffffffffffffffffffff.jpg",
    ],
)
def test_cover_route_refuses_anything_else(app, client, path):
    folder = _store(app, NAME, b"\xff\xd8\xff")
    (folder / "secret.html").write_text("<h1>secret</h1>")
    (folder / "0123456789ABCDEF0123456789ABCDEF.jpg").write_bytes(b"\xff\xd8\xff")
    (folder / f"{NAME}.html").write_text("<h1>secret</h1>")
    response = client.get(path)
    assert response.status_code == 404
    assert b"secret" not in response.data


def test_campaign_card_uses_the_cover_or_a_placeholder(app, client):
    _store(app, NAME, b"\xff\xd8\xff")
    make_campaign(slug="with-cover", title="With cover", cover_image=NAME)
    make_campaign(slug="without", title="Without cover", category=HealthCategory.PATIENT_AID)
    html = page_text(client.get("/campaigns"))
    assert f'src="/media/covers/{NAME}"' in html and 'alt="Cover image for With cover"' in html
    assert "hf-cat-patient_aid" in html and 'aria-label="Patient aid illustration for Without cover"' in html


@pytest.mark.parametrize(
    ("name", "shown"),
    [("Chen Xiaoyu", "Chen X."), ("王小明", "王**"), ("Ana Maria Souza", "Ana M. S."), ("Li", "L*")],
)
def test_patient_names_are_shortened_for_the_public(name, shown):
    from crowdfund.campaigns.models import mask_name

    assert mask_name(name) == shown


def test_campaign_page_links_its_money_trail_and_the_trail_exists(client):
    c = make_campaign(slug="traceable")
    html = client.get("/campaigns/traceable").get_data(as_text=True)
    assert 'href="/campaigns/traceable/money-trail"' in html
    assert client.get("/campaigns/traceable/money-trail").status_code == 200
    assert client.get("/campaigns/traceable/money-trail.json").get_json() is not None
    assert c.is_public


def test_members_find_the_dashboard_and_payout_pages_from_their_own_pages(client):
    from tests.factories import login, make_org, make_user

    owner = make_user()
    org = make_org(owner)
    c = make_campaign(org=org, slug="mine")
    login(client, owner)
    assert f'href="/studio/{c.id}/dashboard"' in client.get("/studio").get_data(as_text=True)
    assert client.get(f"/studio/{c.id}/dashboard").status_code == 200
    assert f'href="/organisations/{org.id}/payouts"' in client.get(f"/organisations/{org.id}").get_data(
        as_text=True
    )
    assert client.get(f"/organisations/{org.id}/payouts").status_code == 200
