"""Real-browser journeys: Playwright drives Debian's Chromium against the app on a free port.

1. A campaigner registers, registers an organisation, drafts a campaign of each kind and
   submits it; an operator approves it; it appears on the public site.
2. A backer pledges to a reward tier (adding a sandbox card on the way), then tries a
   donation with cards that are declined.
3. Every form field on the sign-up and drafting pages has a label, and the keyboard works.

The forms run with CSRF protection on, as in production. Elements are found by label,
role and name, the way a person (or a screen reader) finds them. Any 5xx response, any
JavaScript error, anything the Content-Security-Policy blocks and any request to another
host fails the journey.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from crowdfund.accounts.models import Role
from crowdfund.campaigns.models import Campaign, CampaignKind, CampaignState, RewardTier
from crowdfund.engine.models import Pledge, PledgeState
from crowdfund.errors import ErrorCode
from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from crowdfund.payments.sandbox import DECLINED_ON_SAVE, SandboxCharge
from tests.browser import browser_page, live_server, require_chromium
from tests.factories import PASSWORD, make_campaign, make_org, make_user

pytestmark = pytest.mark.browser

TIMEOUT_MS = 10_000
VIEWPORT = {"width": 1280, "height": 900}
FORM_DATETIME = "%Y-%m-%dT%H:%M"
#: What a backer reads for a declined card: rendered from the stored code, not the gateway's words.
DECLINE_SHOWN_TO_BACKER = ErrorCode.CARD_DECLINED.text


@pytest.fixture
def app_config(app_config):
    """The browser submits real forms, so CSRF protection stays on as in production."""
    app_config.WTF_CSRF_ENABLED = True
    return app_config


@dataclass
class Site:
    """The live app and a browser on it; records what must never happen on a page."""

    base_url: str
    page: Page
    problems: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base_url + path

    def watch(self, page: Page) -> Page:
        page.set_default_timeout(TIMEOUT_MS)
        page.set_default_navigation_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda exc: self.problems.append(f"JavaScript error on {page.url}: {exc}"))
        # Chromium reports what the Content-Security-Policy blocked (an inline style or
        # script, a handler, another origin) as a console error.
        page.on(
            "console",
            lambda msg: (
                "Content Security Policy" in msg.text
                and self.problems.append(f"CSP violation on {page.url}: {msg.text}")
            ),
        )
        page.on(
            "response",
            lambda r: r.status >= 500 and self.problems.append(f"{r.status} from {r.request.method} {r.url}"),
        )
        page.on(
            "request",
            lambda r: (
                not r.url.startswith((self.base_url, "data:", "about:"))
                and self.problems.append(f"request to another host: {r.url}")
            ),
        )
        return page

    def new_page(self) -> Page:
        """A page in a second browser context: another person with their own cookies."""
        context = self.page.context.browser.new_context(viewport=VIEWPORT)
        return self.watch(context.new_page())

    def assert_clean(self) -> None:
        assert self.problems == [], "\n".join(self.problems)


@pytest.fixture
def site(app):
    require_chromium()
    expect.set_options(timeout=TIMEOUT_MS)
    with live_server(app) as base_url, browser_page() as page:
        site = Site(base_url, page)
        site.watch(page)
        yield site


# ---------------------------------------------------------------------------
# Steps a person takes
# ---------------------------------------------------------------------------


def flash(page: Page, text: str):
    """The flash message (or alert) containing `text`."""
    return page.get_by_role("alert").filter(has_text=text)


def register(site: Site, page: Page, name: str, email: str) -> None:
    page.goto(site.url("/register"))
    page.get_by_label("Your name").fill(name)
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    # Registering never logs in (a taken address must get the same answer): log in next.
    expect(flash(page, "Thank you for registering")).to_be_visible()
    expect(page.get_by_label("E-mail address")).to_have_value(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(flash(page, "Welcome back")).to_be_visible()


def log_in(site: Site, page: Page, email: str) -> None:
    page.goto(site.url("/login"))
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(flash(page, "Welcome back")).to_be_visible()


def register_organisation(site: Site, page: Page, legal_name: str) -> None:
    page.goto(site.url("/organisations/new"))
    page.get_by_label("Kind of organisation").select_option(label="Health startup")
    page.get_by_label("Legal name").fill(legal_name)
    page.get_by_label("Registration number").fill("91310000MA1FL8XQ3K")
    page.get_by_label("Country of registration").select_option(label="China (CN)")
    page.get_by_label(re.compile(r"^Website")).fill("https://heartbeat.example.org")
    page.get_by_label("About the organisation").fill("We design wearable heart monitors in Shanghai.")
    page.get_by_role("button", name="Register organisation").click()
    expect(flash(page, f"{legal_name} is registered")).to_be_visible()


def start_draft(site: Site, page: Page, kind: CampaignKind, title: str, goal: str, category: str) -> None:
    page.goto(site.url("/campaigns/new"))
    page.get_by_role("radio", name=re.compile(rf"^{kind.label}\b")).check()
    page.get_by_label("Title", exact=True).fill(title)
    page.get_by_label("Category").select_option(label=category)
    page.get_by_label("Currency").select_option("CNY")
    page.get_by_label("Goal", exact=True).fill(goal)
    page.get_by_role("button", name="Create draft").click()
    expect(flash(page, "Draft created")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_contain_text(title)


def fill_basics(page: Page, summary: str, story: str) -> None:
    """Summary, dates (starting this minute, for 30 days) and story on the draft form."""
    start = utcnow().replace(second=0, microsecond=0)
    page.get_by_label(re.compile(r"^Summary")).fill(summary)
    page.get_by_label("Starts (UTC)").fill(start.strftime(FORM_DATETIME))
    page.get_by_label("Ends (UTC)").fill((start + timedelta(days=30)).strftime(FORM_DATETIME))
    page.get_by_label(re.compile(r"^Your story")).fill(story)


def save_draft(page: Page) -> None:
    page.get_by_role("button", name="Save", exact=True).click()
    expect(flash(page, "Saved.")).to_be_visible()


def submit_for_review(page: Page) -> None:
    expect(page.get_by_text("Everything is filled in.")).to_be_visible()
    page.get_by_label(re.compile(r"^Note for the reviewer")).fill("Ready for review.")
    page.get_by_role("button", name="Submit for review").click()
    expect(flash(page, "Submitted.")).to_be_visible()


def approve(site: Site, page: Page, title: str) -> None:
    page.goto(site.url("/operator/review"))
    page.get_by_role("link", name=title, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    expect(page.get_by_text("All complete.")).to_be_visible()
    page.get_by_label("Comment for the campaigner").fill("Credentials checked.")
    page.get_by_role("button", name="Approve").click()
    expect(flash(page, "Approved: the campaign is live now.")).to_be_visible()


def add_card(page: Page, number: str) -> None:
    """Fill and send the sandbox card form (the page is already open)."""
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiry (MM/YY)").fill(f"12/{(utcnow().year + 4) % 100:02d}")
    page.get_by_label("Security code (CVC)").fill("123")
    page.get_by_label("Name on card").fill("Wang Fang")
    page.get_by_role("button", name="Save card").click()


def assert_styled(page: Page) -> None:
    """Bootstrap's CSS is loaded (from this site): the main navbar has Bootstrap's primary blue."""
    navbar = page.get_by_role("navigation", name="Main")
    background = navbar.evaluate("el => getComputedStyle(el).backgroundColor")
    assert background == "rgb(13, 110, 253)", f"navbar background is {background}: Bootstrap CSS missing?"
    sheets = page.evaluate("() => Array.from(document.styleSheets, s => s.href).filter(Boolean)")
    assert any("bootstrap" in href for href in sheets), sheets


#: Form controls that a person fills in but no label names (nor aria-label/-labelledby),
#: and ids used twice (a label's `for` then points at the wrong control).
UNLABELLED = """() => {
  const controls = Array.from(document.querySelectorAll('input, select, textarea'))
    .filter(el => !['hidden', 'submit', 'button', 'reset', 'image'].includes((el.type || '').toLowerCase()));
  const named = el => (el.labels && Array.from(el.labels).some(l => l.textContent.trim()))
    || (el.getAttribute('aria-label') || '').trim() || el.getAttribute('aria-labelledby');
  const unlabelled = controls.filter(el => !named(el)).map(el => el.outerHTML.slice(0, 160));
  const ids = controls.map(el => el.id).filter(Boolean);
  const duplicates = ids.filter((id, i) => ids.indexOf(id) !== i).map(id => 'duplicate id: ' + id);
  return {count: controls.length, problems: unlabelled.concat(duplicates)};
}"""


def assert_labelled(page: Page) -> None:
    result = page.evaluate(UNLABELLED)
    assert result["count"] > 0, f"no form controls on {page.url}"
    assert result["problems"] == [], f"{page.url}: {result['problems']}"


# ---------------------------------------------------------------------------
# Journey 1: from registration to four live campaigns
# ---------------------------------------------------------------------------

STORY = "## Why we build it\n\nHeart disease kills **millions** every year.\n\n- pocket size\n- 7-day battery"

KIND_TERMS = {
    CampaignKind.EQUITY: {
        "title": "Own a share of Heartbeat Devices",
        "goal": "1,000,000",
        "category": "Medical devices",
    },
    CampaignKind.DEBT: {
        "title": "Lend to our Pudong clinic",
        "goal": "500,000",
        "category": "Clinics & care",
    },
    CampaignKind.DONATION: {
        "title": "Help Li Wei beat leukaemia",
        "goal": "200,000",
        "category": "Patient aid",
    },
}


def fill_terms(page: Page, kind: CampaignKind) -> None:
    """Each kind's terms section of the draft form."""
    if kind is CampaignKind.EQUITY:
        page.get_by_label("Security offered").select_option(label="Common shares")
        page.get_by_label("Price per share").fill("10")
        page.get_by_label("Pre-money valuation").fill("20,000,000")
        page.get_by_label(re.compile(r"^Minimum target")).fill("1,000,000")
        page.get_by_label(re.compile(r"^Maximum target")).fill("3,000,000")
        page.get_by_label("Minimum investment").fill("1,000")
    elif kind is CampaignKind.DEBT:
        page.get_by_label("Annual interest rate (%)").fill("8.5")
        page.get_by_label("Term (months)").fill("24")
        page.get_by_label("Minimum loan amount").fill("400,000")
        page.get_by_label("Maximum loan amount").fill("600,000")
        page.get_by_label("Smallest loan share").fill("500")
    else:
        page.get_by_label(re.compile(r"^Beneficiary")).fill("Li Wei")
        page.get_by_label("This is patient aid").check()
        page.get_by_label(re.compile(r"^Patient's full name")).fill("Li Wei")
        page.get_by_label(re.compile(r"^Hospital")).fill("Peking Union Medical College Hospital")
        page.get_by_label(re.compile(r"^Diagnosis summary")).fill(
            "Acute leukaemia; six rounds of chemotherapy."
        )


def test_campaigner_drafts_all_four_kinds_and_operator_puts_them_live(site: Site, tmp_path):
    operator = make_user(role=Role.OPERATOR, name="Olga Operator")
    operator_email = operator.email
    db.session.remove()

    page = site.page
    register(site, page, "Zhang Min", "zhang.min@example.org")
    register_organisation(site, page, "Shanghai Heartbeat Devices Ltd")

    # A reward campaign with one tier.
    reward_title = "Pocket ECG monitor"
    start_draft(site, page, CampaignKind.REWARD, reward_title, "50,000", "Medical devices")
    fill_basics(page, "A pocket ECG that sends readings to your cardiologist.", STORY)
    save_draft(page)
    page.get_by_label("Reward", exact=True).fill("Early bird monitor")
    page.get_by_label("What backers get").fill("One monitor from the first batch.")
    page.get_by_label("Price", exact=True).fill("699")
    page.get_by_label(re.compile(r"^Quantity available")).fill("200")
    page.get_by_label(re.compile(r"^Estimated delivery")).fill("2030-03-01")
    page.get_by_label("This reward is shipped").check()
    page.get_by_label(re.compile(r"^Ships to")).fill("Worldwide")
    page.get_by_role("button", name="Add reward").click()
    expect(flash(page, "Reward added.")).to_be_visible()
    expect(page.get_by_role("region", name="Reward tiers")).to_contain_text("Early bird monitor")
    submit_for_review(page)
    expect(page.get_by_role("row", name=re.compile(reward_title))).to_contain_text("Submitted")

    # The operator, in a browser of their own, approves it; it goes live at once.
    operator_page = site.new_page()
    log_in(site, operator_page, operator_email)
    approve(site, operator_page, reward_title)

    # The public finds it in the listing, and its page offers the tier.
    page.goto(site.url("/campaigns"))
    page.get_by_role("link", name=reward_title).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(reward_title)
    expect(page.get_by_role("heading", name="Why we build it")).to_be_visible()
    rewards = page.get_by_role("list", name="Choose a reward")
    expect(rewards).to_contain_text("Early bird monitor")
    expect(rewards).to_contain_text("¥699.00")
    expect(rewards.get_by_role("link", name="Select Early bird monitor")).to_be_visible()

    # Equity, debt and donation campaigns through the same forms.
    for kind, spec in KIND_TERMS.items():
        start_draft(site, page, kind, spec["title"], spec["goal"], spec["category"])
        fill_basics(page, f"{spec['title']}: what the money is for.", STORY)
        fill_terms(page, kind)
        save_draft(page)
        submit_for_review(page)
    for spec in KIND_TERMS.values():
        approve(site, operator_page, spec["title"])
    expect(operator_page.get_by_text("Nothing to review")).to_be_visible()

    # All four are live, and each kind's filter shows its own campaign only.
    titles = {CampaignKind.REWARD: reward_title, **{k: s["title"] for k, s in KIND_TERMS.items()}}
    page.goto(site.url("/campaigns"))
    expect(page.locator("#result-count")).to_contain_text("of 4 campaigns")
    kinds_nav = page.get_by_role("navigation", name="Campaign kinds")
    for kind, title in titles.items():
        kinds_nav.get_by_role("link", name=kind.label, exact=True).click()
        expect(page.get_by_role("heading", level=1)).to_have_text(f"{kind.label} campaigns")
        expect(page.get_by_role("link", name=title, exact=True)).to_be_visible()
        for other in set(titles.values()) - {title}:
            expect(page.get_by_role("link", name=other, exact=True)).to_have_count(0)

    page.goto(site.url("/campaigns"))
    assert_styled(page)
    page.screenshot(path=str(tmp_path / "journey1-listing.png"), full_page=True)

    tiers = db.session.execute(
        select(RewardTier.title, RewardTier.price_amount, RewardTier.quantity_limit)
    ).all()
    assert tiers == [("Early bird monitor", 69_900, 200)]
    states = db.session.execute(select(Campaign.kind, Campaign.state)).all()
    assert sorted((k.value, s) for k, s in states) == sorted((k.value, CampaignState.LIVE) for k in titles)
    site.assert_clean()


# ---------------------------------------------------------------------------
# Journey 2: a backer pledges, then a donation is declined
# ---------------------------------------------------------------------------


def test_backer_pledges_with_a_new_card_and_a_declined_donation_leaves_no_pledge(site: Site, tmp_path):
    reward = make_campaign(
        title="Pocket ECG monitor",
        tiers=[{"title": "Early bird", "price_amount": 69_900, "quantity_limit": 100}],
    )
    donation = make_campaign(kind=CampaignKind.DONATION, title="Help Li Wei beat leukaemia")
    backer = make_user(name="Wang Fang")
    reward_id, reward_slug, donation_id, donation_slug = reward.id, reward.slug, donation.id, donation.slug
    backer_email = backer.email
    db.session.remove()

    page = site.page
    log_in(site, page, backer_email)

    # Choose the tier on the campaign page; without a card, the form sends us to add one.
    page.goto(site.url(f"/campaigns/{reward_slug}"))
    page.get_by_role("link", name="Select Early bird").click()
    expect(page.get_by_text("You need a saved card to pledge.")).to_be_visible()
    page.get_by_role("link", name="Add a card").click()
    expect(page.get_by_role("heading", name="Add a card")).to_be_visible()
    assert_labelled(page)
    add_card(page, "4242 4242 4242 4242")
    expect(flash(page, "is saved and is now your default card")).to_be_visible()

    # Back on the pledge form, with the tier still chosen and the card selected.
    expect(page).to_have_url(re.compile(rf"/campaigns/{reward_slug}/back\?tier="))
    expect(page.get_by_role("radio", name=re.compile(r"^Early bird"))).to_be_checked()
    expect(page.get_by_label("Pay with")).to_contain_text("4242")
    assert_labelled(page)
    page.get_by_role("button", name="Review").click()

    expect(page.get_by_role("heading", name="Check and confirm")).to_be_visible()
    expect(page.get_by_role("note")).to_contain_text("Nothing is charged now")
    expect(page.get_by_role("main")).to_contain_text("Early bird × 1")
    page.get_by_role("button", name="Confirm pledge").click()

    expect(flash(page, "Your pledge of ¥699.00 is recorded")).to_be_visible()
    expect(page.get_by_role("heading", name="My pledges")).to_be_visible()
    row = page.get_by_role("row", name=re.compile("Pocket ECG monitor"))
    expect(row).to_contain_text("Early bird × 1")
    expect(row).to_contain_text("¥699.00")
    expect(row).to_contain_text("Active")

    page.goto(site.url(f"/campaigns/{reward_slug}"))
    funding = page.get_by_role("complementary", name="Funding")
    expect(funding).to_contain_text("¥699.00")
    expect(funding).to_contain_text(re.compile(r"\b1\s*backer\b"))
    assert_styled(page)
    page.screenshot(path=str(tmp_path / "journey2-campaign.png"), full_page=True)

    # A donation: a card declined when saved is refused with a clear message ...
    page.goto(site.url(f"/campaigns/{donation_slug}"))
    page.get_by_role("link", name="Donate").click()
    page.get_by_role("link", name="Add another card").click()
    add_card(page, "4000 0000 0000 0002")
    expect(page.get_by_text(DECLINED_ON_SAVE["4000000000000002"][1])).to_be_visible()
    expect(page.get_by_role("heading", name="Add a card")).to_be_visible()

    # ... and a card that is saved but declined when charged fails the donation.
    add_card(page, "4000 0000 0000 0341")
    expect(flash(page, "is saved and is now your default card")).to_be_visible()
    expect(page).to_have_url(re.compile(rf"/campaigns/{donation_slug}/back"))
    expect(page.get_by_label("Pay with").locator("option:checked")).to_contain_text("0341")
    page.get_by_label(re.compile(r"^Amount to give")).fill("50")
    page.get_by_role("button", name="Review").click()
    expect(page.get_by_role("note")).to_contain_text("will be charged ¥50.00 now")
    page.get_by_role("button", name="Donate ¥50.00 now").click()
    expect(page.get_by_role("alert").filter(has_text=DECLINE_SHOWN_TO_BACKER)).to_be_visible()
    expect(page.get_by_label(re.compile(r"^Amount to give"))).to_have_value("50")  # back on the form

    # Nothing was given: the campaign shows no money and no donor; the attempt is listed as failed.
    page.goto(site.url(f"/campaigns/{donation_slug}"))
    funding = page.get_by_role("complementary", name="Funding")
    expect(funding).to_contain_text("¥0.00")
    expect(funding).to_contain_text(re.compile(r"\b0\s*donors\b"))
    page.goto(site.url("/my/pledges"))
    failed = page.get_by_role("row", name=re.compile("Help Li Wei"))
    expect(failed).to_contain_text("Failed")
    expect(failed).to_contain_text(DECLINE_SHOWN_TO_BACKER)

    pledges = db.session.execute(
        select(Pledge.campaign_id, Pledge.state, Pledge.amount_amount).order_by(Pledge.id)
    ).all()
    assert pledges == [(reward_id, PledgeState.ACTIVE, 69_900), (donation_id, PledgeState.FAILED, 5_000)]
    assert db.session.scalars(select(SandboxCharge.status)).all() == ["failed"]
    raised = dict(db.session.execute(select(Campaign.id, Campaign.raised_amount)).all())
    backers = dict(db.session.execute(select(Campaign.id, Campaign.backer_count)).all())
    assert raised == {reward_id: 69_900, donation_id: 0}
    assert backers == {reward_id: 1, donation_id: 0}
    site.assert_clean()


# ---------------------------------------------------------------------------
# Journey 3: labels and keyboard
# ---------------------------------------------------------------------------


def test_every_form_field_has_a_label_and_the_keyboard_works(site: Site):
    user = make_user(name="Chen Jie")
    org = make_org(owner=user)
    drafts = [make_campaign(kind=kind, org=org, state=CampaignState.DRAFT) for kind in CampaignKind]
    email, draft_ids = user.email, [c.id for c in drafts]
    db.session.remove()

    page = site.page
    for path in ("/register", "/login"):
        page.goto(site.url(path))
        assert_labelled(page)

    # Keyboard only: the first Tab reaches the skip link, which leads past the menu
    # straight to the login form; the form is filled and sent with keys.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(page.get_by_label("E-mail address")).to_be_focused()
    page.keyboard.type(email)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password", exact=True)).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(flash(page, "Welcome back")).to_be_visible()

    paths = ["/organisations/new", "/campaigns/new", *(f"/studio/{i}" for i in draft_ids)]
    for path in paths:
        page.goto(site.url(path))
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        assert_labelled(page)
    site.assert_clean()


def test_pages_work_under_the_content_security_policy(site: Site):
    """Progress bars, the dashboard's bars, selecting a new token and the ledger's filter all
    work without inline styles or handlers; and a blocked inline style is caught."""
    page = site.page
    operator = make_user(role=Role.ADMIN, email="csp-operator@example.org")
    owner = make_user(email="csp-owner@example.org")
    campaign = make_campaign(org=make_org(owner), title="Pocket ECG")
    campaign.raised_amount = campaign.goal_amount // 2
    db.session.commit()

    page.goto(site.url("/"))
    fill = page.locator(".hf-progress-fill rect").first
    expect(fill).to_be_visible()
    assert 0 < fill.bounding_box()["width"] < page.locator(".progress").first.bounding_box()["width"]

    log_in(site, page, owner.email)
    page.goto(site.url(f"/studio/{campaign.id}/dashboard"))
    expect(page.get_by_role("heading", level=1)).to_be_visible()

    page.goto(site.url("/account/tokens"))
    page.get_by_label("Token name").fill("csp check")
    page.get_by_role("button", name=re.compile("Create")).click()
    secret = page.get_by_label("Your new token")
    secret.click()
    assert (
        page.evaluate("() => { const i = document.activeElement; return i.selectionEnd - i.selectionStart; }")
        > 10
    )

    operator_page = site.new_page()
    log_in(site, operator_page, operator.email)
    operator_page.goto(site.url("/operator/ledger"))
    value = operator_page.get_by_label("Purpose").locator("option").nth(1).get_attribute("value")
    operator_page.get_by_label("Purpose").select_option(value)
    operator_page.wait_for_url(re.compile(rf"purpose={value}"))
    site.assert_clean()

    # The watcher sees what the policy blocks: an inline style set from a script.
    page.evaluate("() => document.body.setAttribute('style', 'outline: 1px solid red')")
    page.wait_for_timeout(300)
    blocked = [p for p in site.problems if p.startswith("CSP violation")]
    assert blocked, "an inline style should have been blocked and reported"
    site.problems.clear()
