"""Settlement pages through the HTTP client: the operator's list, progress and totals, refunds
and cancellation; the campaigner's statement and CSV; the backer's failed payment, retry now
and bank confirmation on My pledges. Each page for the right people with the right figures,
403/404 for the others, forms that change state and refuse bad input.

Rendering tests write settlement rows directly (the figures are then known exactly);
the forms go through the real settlement, engine and payments services and the sandbox.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from crowdfund.accounts.models import User
from crowdfund.campaigns.lifecycle import close_campaign_if_due
from crowdfund.campaigns.models import Campaign, CampaignKind, CampaignState
from crowdfund.engine import service as engine
from crowdfund.engine.models import Pledge, PledgeState
from crowdfund.extensions import db
from crowdfund.money import Money
from crowdfund.payments import service as payments
from crowdfund.settlement import service as settlement
from crowdfund.settlement.models import ItemState, Settlement, SettlementItem, SettlementState
from tests.factories import login, make_campaign, make_org, make_user, operator
from tests.factories.engine import make_backer
from tests.factories.payments import DECLINES_CHARGES, VISA, add_card

PRICE = 10_000  #: the tier's price in fen: ¥100.00
AUTHENTICATES_CHARGES = "4000 0000 0000 3220"  #: sandbox: off-session charges need the card holder
LOST_CARD = "4000 0000 0000 9987"  #: sandbox: declined for good


def text_of(response) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


def words(response) -> str:
    """The page's text without its tags."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", response.get_data(as_text=True)))


def fmt(when) -> str:
    """A date as the `datetime` filter writes it."""
    return when.strftime("%d %b %Y %H:%M UTC")


def refresh(obj):
    db.session.expire_all()
    return db.session.get(type(obj), obj.id)


# ---------------------------------------------------------------------------
# Worlds
# ---------------------------------------------------------------------------


def pledge_to(campaign: Campaign, user: User, *, quantity: int = 1) -> Pledge:
    return engine.place_pledge(
        user, campaign.id, engine.PledgeRequest(tier_id=campaign.tiers[0].id, quantity=quantity)
    )


def backer_with(card: str, **kwargs) -> User:
    user = make_backer(card=False, **kwargs)
    add_card(user, card)
    return user


def written_settlement(
    campaign: Campaign,
    items: list[tuple[Pledge, ItemState, dict]],
    *,
    state: SettlementState = SettlementState.COLLECTING,
    **columns,
) -> Settlement:
    """A settlement of `campaign` written directly: one item per (pledge, state, extra columns)."""
    closed = campaign.end_at
    row = Settlement(
        campaign_id=campaign.id,
        organisation_id=campaign.organisation_id,
        state=state,
        currency=campaign.currency,
        pledged_amount=sum(p.amount_amount for p, _, _ in items),
        item_count=len(items),
        closed_at=closed,
        opened_at=closed + timedelta(minutes=1),
        grace_ends_at=closed + timedelta(days=7),
        payout_due_at=closed + timedelta(days=14),
        **columns,
    )
    db.session.add(row)
    db.session.flush()
    for pledge, item_state, extra in items:
        db.session.add(
            SettlementItem(
                settlement_id=row.id,
                campaign_id=campaign.id,
                pledge_id=pledge.id,
                user_id=pledge.user_id,
                state=item_state,
                amount_amount=pledge.amount_amount,
                currency=pledge.currency,
                **extra,
            )
        )
    db.session.commit()
    return row


class Written:
    """A closed reward campaign of six ¥100 pledges, one in each state the bar shows."""

    def __init__(self):
        self.org_owner = make_user(name="Carla Campaigner")
        self.org = make_org(owner=self.org_owner, legal_name="Carla Health Ltd")
        self.campaign = make_campaign(CampaignKind.REWARD, org=self.org, goal=20_000, title="Pulse Meter")
        self.backers = [make_backer(name=f"Backer {n}") for n in range(6)]
        self.pledges = [pledge_to(self.campaign, b) for b in self.backers]
        closed = self.campaign.end_at
        self.campaign.state = CampaignState.SUCCEEDED
        charged_at = closed + timedelta(hours=1)
        self.retry_at = closed + timedelta(days=2)
        c, c2, failed, action, dropped, pending = self.pledges
        self.settlement = written_settlement(
            self.campaign,
            [
                (c, ItemState.CHARGED, {"charged_amount": PRICE, "attempt": 1, "resolved_at": charged_at}),
                (c2, ItemState.CHARGED, {"charged_amount": PRICE, "attempt": 1, "resolved_at": charged_at}),
                (
                    failed,
                    ItemState.FAILED,
                    {"attempt": 1, "failure_code": "insufficient_funds", "next_attempt_at": self.retry_at},
                ),
                (action, ItemState.ACTION_REQUIRED, {"attempt": 1, "failure_code": "requires_action"}),
                (dropped, ItemState.DROPPED, {"attempt": 4, "failure_code": "card_declined"}),
                (pending, ItemState.PENDING, {"next_attempt_at": closed}),
            ],
        )
        self.charged_at = charged_at


def closed_and_charged(cards: list[str], *, kind_goal: int = PRICE) -> tuple[Campaign, list[Pledge], object]:
    """A reward campaign, one ¥100 pledge per card, closed (succeeded) and charged once by the workers."""
    campaign = make_campaign(CampaignKind.REWARD, goal=kind_goal)
    pledges = [pledge_to(campaign, backer_with(card)) for card in cards]
    at = campaign.end_at + timedelta(minutes=1)
    assert close_campaign_if_due(campaign.id, at) is CampaignState.SUCCEEDED
    settlement.open_settlement(campaign.id, now=at)
    settlement.process_due_items(now=at)
    return campaign, pledges, at


def item_of(pledge: Pledge) -> SettlementItem:
    db.session.expire_all()
    return db.session.scalars(select(SettlementItem).where(SettlementItem.pledge_id == pledge.id)).one()


# ---------------------------------------------------------------------------
# Operators: list, settlement page, who may see them
# ---------------------------------------------------------------------------


def test_the_operator_sees_every_settlement_with_its_progress(app, client):
    w = Written()
    login(client, operator())
    listing = client.get("/operator/settlements")
    assert listing.status_code == 200
    text = text_of(listing)
    assert "Pulse Meter" in text and "Collecting" in text
    assert "2 charged · 2 waiting for backers · 1 dropped · 1 left" in text
    assert f'href="/operator/settlements/{w.campaign.id}"' in text
    # Filtered by state: a state with no settlement, then garbage (ignored, never an error).
    assert "Pulse Meter" not in text_of(client.get("/operator/settlements?status=settled"))
    for query in ("status=nonsense", "page=-3", "page=99999999999999", "status=%00"):
        assert client.get(f"/operator/settlements?{query}").status_code == 200, query


def test_the_settlement_page_shows_the_bar_totals_dates_and_items(app, client):
    w = Written()
    login(client, operator())
    page = client.get(f"/operator/settlements/{w.campaign.id}")
    assert page.status_code == 200
    text = text_of(page)
    for key, count in (("charged", 2), ("failed", 1), ("action_required", 1), ("dropped", 1), ("left", 1)):
        assert re.search(rf'id="count-{key}">.*?<strong>{count}</strong>', text), key
    # The bar: a rect per non-empty segment, widths in percent of six items, no inline style.
    assert re.search(r'<rect class="text-success" fill="currentColor" x="0.0%" width="33.33%"', text)
    assert re.search(r'<rect class="text-danger" fill="currentColor" x="33.33%" width="16.67%"', text)
    assert "style=" not in text
    assert re.search(r'id="total-pledged">¥600.00<', text)
    assert re.search(r'id="total-dropped">¥100.00<', text)
    s = w.settlement
    plain = words(page)
    for when in (s.closed_at, s.grace_ends_at, s.payout_due_at):
        assert fmt(when) in plain
    # Per-item table: every pledge, the bank's reason, the next try, a refund link for charged pledges only.
    for p in w.pledges:
        assert f"#{p.id}" in text
    assert "Your card has insufficient funds." in text
    assert fmt(w.retry_at) in plain
    assert text.count("/refund") == 0  # the pledges were not really charged (written rows)
    only_failed = text_of(client.get(f"/operator/settlements/{w.campaign.id}?status=failed"))
    assert f"#{w.pledges[2].id}" in only_failed and f"#{w.pledges[0].id}<" not in only_failed
    for query in ("status=nonsense", "status=%00", "page=-1", "page=" + "9" * 400, "page=abc"):
        assert client.get(f"/operator/settlements/{w.campaign.id}?{query}").status_code == 200, query


def test_the_items_table_is_paged(app, client, monkeypatch):
    from crowdfund.settlement import views

    monkeypatch.setattr(views, "ITEMS_PER_PAGE", 4)
    w = Written()
    login(client, operator())
    first = text_of(client.get(f"/operator/settlements/{w.campaign.id}"))
    second = text_of(client.get(f"/operator/settlements/{w.campaign.id}?page=2"))
    assert "Page 1 of 2" in first and "Page 2 of 2" in second
    ids = {p.id for p in w.pledges}
    shown_first = {i for i in ids if f"<td>#{i}</td>" in first}
    shown_second = {i for i in ids if f"<td>#{i}</td>" in second}
    assert len(shown_first) == 4 and len(shown_second) == 2 and shown_first | shown_second == ids
    assert client.get(f"/operator/settlements/{w.campaign.id}?page=50").status_code == 200


def test_a_campaign_not_closed_yet_has_no_settlement_but_can_be_cancelled(app, client):
    campaign = make_campaign(CampaignKind.REWARD)
    login(client, operator())
    text = text_of(client.get(f"/operator/settlements/{campaign.id}"))
    assert "Not settled yet" in text and f"/operator/settlements/{campaign.id}/cancel" in text
    assert client.get("/operator/settlements/999999").status_code == 404


@pytest.mark.parametrize("who", ["backer", "campaigner"])
def test_operator_pages_are_forbidden_to_everyone_else(app, client, who):
    w = Written()
    donation = make_campaign(CampaignKind.DONATION, org=w.org)
    gift = engine.place_pledge(w.backers[0], donation.id, engine.PledgeRequest(amount=Money(5_000, "CNY")))
    login(client, w.backers[0] if who == "backer" else w.org_owner)
    before = refresh(gift).refunded_amount
    for method, url, data in (
        ("GET", "/operator/settlements", None),
        ("GET", f"/operator/settlements/{w.campaign.id}", None),
        ("GET", f"/operator/settlements/{w.campaign.id}/cancel", None),
        (
            "POST",
            f"/operator/settlements/{w.campaign.id}/cancel",
            {"reason": "x", "confirm_slug": w.campaign.slug},
        ),
        ("GET", f"/operator/pledges/{gift.id}/refund", None),
        ("POST", f"/operator/pledges/{gift.id}/refund", {"reason": "Mine", "amount": "", "token": "t" * 24}),
    ):
        assert client.open(url, method=method, data=data).status_code == 403, url
    assert refresh(gift).refunded_amount == before
    assert refresh(w.campaign).state is CampaignState.SUCCEEDED


def test_anonymous_visitors_are_sent_to_log_in(app, client):
    w = Written()
    for url in (
        "/operator/settlements",
        f"/operator/settlements/{w.campaign.id}",
        f"/studio/{w.campaign.id}/statement",
        f"/studio/{w.campaign.id}/statement.csv",
        f"/pledges/{w.pledges[3].id}/confirm-payment",
    ):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"], url
    assert client.post(f"/pledges/{w.pledges[2].id}/retry").status_code == 302


# ---------------------------------------------------------------------------
# Campaigners: the statement
# ---------------------------------------------------------------------------


def test_the_statement_is_for_the_organisation_and_operators_only(app, client):
    w = Written()
    login(client, w.org_owner)
    page = client.get(f"/studio/{w.campaign.id}/statement")
    assert page.status_code == 200
    text = text_of(page)
    assert "Statement" in text and "Pulse Meter" in text
    assert "¥600.00" in text  # pledged at close
    assert f"/studio/{w.campaign.id}/statement.csv" in text
    assert fmt(w.settlement.payout_due_at) in words(page)
    dashboard = text_of(client.get(f"/studio/{w.campaign.id}/dashboard"))
    assert f"/studio/{w.campaign.id}/statement" in dashboard

    login(client, operator())
    assert client.get(f"/studio/{w.campaign.id}/statement").status_code == 200
    rival = make_user()
    make_org(owner=rival)
    for user in (rival, w.backers[0]):
        login(client, user)
        assert client.get(f"/studio/{w.campaign.id}/statement").status_code == 404
        assert client.get(f"/studio/{w.campaign.id}/statement.csv").status_code == 404
    assert client.get("/studio/999999/statement").status_code == 404


def test_the_statement_csv_is_streamed_with_the_statements_lines(app, client):
    w = Written()
    login(client, w.org_owner)
    response = client.get(f"/studio/{w.campaign.id}/statement.csv")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    assert f'filename="statement-{w.campaign.id}.csv"' in response.headers["Content-Disposition"]
    assert response.headers["Cache-Control"] == "no-store"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    expected = settlement.campaign_statement(w.campaign.id).csv_rows()
    assert rows == [[str(c) for c in r] for r in expected]
    assert any("60000" in r or "600.00" in r for r in rows)  # pledged at close, in some form


def test_a_statement_before_close_says_so(app, client):
    w = Written()
    live = make_campaign(CampaignKind.REWARD, org=w.org)
    login(client, w.org_owner)
    page = client.get(f"/studio/{live.id}/statement")
    assert page.status_code == 200 and "No statement yet" in text_of(page)
    assert client.get(f"/studio/{live.id}/statement.csv").status_code == 404


def settled_campaign(cards: list[str]):
    """`closed_and_charged`, then every retry day and the payout: the campaign is paid out."""
    campaign, pledges, at = closed_and_charged(cards)
    payments.save_sandbox_bank_details(campaign.organisation, bank_name="Bank", account_number="12345678")
    for day in (2, 4, 6, 7):
        settlement.process_due_items(now=at + timedelta(days=day, minutes=1))
    settlement.finalise_due_settlements(now=at + timedelta(days=15))
    settlement.finalise_due_settlements(now=at + timedelta(days=15, minutes=1))
    done = settlement.settlement_for(campaign.id)
    assert done.state is SettlementState.SETTLED, done.status_message
    return campaign, pledges, done


def test_a_settled_campaigns_statement_has_every_figure_and_refunds_after_payout(app, client):
    campaign, (paid, also_paid, unpaid), done = settled_campaign([VISA, VISA, DECLINES_CHARGES])
    member = db.session.get(User, campaign.organisation.created_by_id)
    login(client, member)
    page = client.get(f"/studio/{campaign.id}/statement")
    lines = dict(re.findall(r'id="line-([a-z_]+)">.*?class="text-end text-nowrap">([^<]+)<', text_of(page)))
    assert lines["pledged"] == "¥300.00"
    assert lines["collected"] == "¥200.00"
    assert lines["dropped"] == "¥100.00"
    assert lines["platform_fee"] == "¥10.00"  # 5% of what was collected, nothing on the dropped pledge
    assert lines["paid_out"] == "¥190.00"
    assert "owed_by_organisation" not in lines  # nothing owed: the line is left out
    assert fmt(done.paid_out_at) in words(page)

    # An operator refunds a pledge after the payout: the organisation owes it back.
    login(client, operator())
    form = client.get(f"/operator/pledges/{paid.id}/refund")
    response = client.post(
        f"/operator/pledges/{paid.id}/refund",
        data={"amount": "", "reason": "Returned the device.", "token": token_of(form)},
    )
    assert response.status_code == 303
    assert refresh(paid).state is PledgeState.REFUNDED
    operator_page = text_of(client.get(f"/operator/settlements/{campaign.id}"))
    assert re.search(r'id="total-refunded">¥100.00<', operator_page)
    login(client, member)
    lines = dict(
        re.findall(
            r'id="line-([a-z_]+)">.*?class="text-end text-nowrap">([^<]+)<',
            text_of(client.get(f"/studio/{campaign.id}/statement")),
        )
    )
    assert lines["refunded"] == "¥100.00" and lines["owed_by_organisation"] == "¥100.00"
    login(client, unpaid.user)
    assert "Dropped: the payment could not be collected" in words(client.get("/my/pledges"))


# ---------------------------------------------------------------------------
# Backers: where each pledge stands on My pledges
# ---------------------------------------------------------------------------


def test_my_pledges_shows_a_failed_payment_with_its_reason_dates_and_a_retry_form(app, client):
    w = Written()
    failed = w.pledges[2]
    add_card(w.backers[2], VISA)  # a second card to choose
    login(client, w.backers[2])
    page = client.get("/my/pledges")
    text = text_of(page)
    block = text[text.index(f'id="settlement-status-{failed.id}"') :]
    assert "Payment failed" in block
    assert "Your card has insufficient funds." in block  # rendered from the stored code
    assert f"Next automatic try: {fmt(w.retry_at)}" in words(page)
    assert f"Pay by {fmt(w.settlement.grace_ends_at)}; after that the pledge is dropped" in words(page)
    assert f'action="/pledges/{failed.id}/retry"' in text
    assert text.count('<option value="') >= 2  # both cards offered


def test_my_pledges_shows_each_state_in_plain_words(app, client):
    w = Written()
    expectations = {
        0: f"Charged ¥100.00 on {fmt(w.charged_at)}",
        3: f'href="/pledges/{w.pledges[3].id}/confirm-payment"',
        4: "Dropped: the payment could not be collected",
        5: "this pledge is charged from",
    }
    for index, expected in expectations.items():
        login(client, w.backers[index])
        page = client.get("/my/pledges")
        text = text_of(page) + words(page)
        assert expected in text, (index, expected)
        assert "Not funded" not in text


def test_a_released_pledge_of_a_failed_campaign_says_it_was_not_charged(app, client):
    campaign = make_campaign(CampaignKind.REWARD, goal=1_000_000)
    backer = make_backer()
    pledge = pledge_to(campaign, backer)
    campaign.state = CampaignState.FAILED
    written_settlement(campaign, [(pledge, ItemState.RELEASED, {})], state=SettlementState.RELEASED)
    login(client, backer)
    assert "Not funded — you were not charged." in text_of(client.get("/my/pledges"))


# ---------------------------------------------------------------------------
# Backers: retry now and confirm with the bank (real services, sandbox)
# ---------------------------------------------------------------------------


def test_a_backer_changes_card_and_retries_at_once(app, client):
    campaign, (pledge,), at = closed_and_charged([DECLINES_CHARGES])
    assert item_of(pledge).state is ItemState.FAILED
    owner = pledge.user
    login(client, owner)
    text = text_of(client.get("/my/pledges"))
    assert "Payment failed" in text and "declined" in text.lower()

    new_card = add_card(owner, VISA)
    response = client.post(f"/pledges/{pledge.id}/retry", data={"payment_method_id": str(new_card.id)})
    assert response.status_code == 303
    item = item_of(pledge)
    assert item.state is ItemState.CHARGED and item.charged_amount == PRICE
    assert refresh(pledge).state is PledgeState.CHARGED
    assert "was charged" in text_of(client.get("/my/pledges"))
    # Again: nothing left to pay, nothing charged twice.
    client.post(f"/pledges/{pledge.id}/retry", data={"payment_method_id": str(new_card.id)})
    assert item_of(pledge).charged_amount == PRICE


def test_a_retry_refuses_bad_cards_and_other_peoples_pledges(app, client):
    campaign, (pledge,), at = closed_and_charged([DECLINES_CHARGES])
    other = make_backer()
    login(client, other)
    card = add_card(other, VISA)
    assert (
        client.post(f"/pledges/{pledge.id}/retry", data={"payment_method_id": str(card.id)}).status_code
        == 404
    )
    assert client.get(f"/pledges/{pledge.id}/confirm-payment").status_code == 404
    assert item_of(pledge).state is ItemState.FAILED

    login(client, pledge.user)
    for value in ("abc", "\u0661", "9" * 40, str(card.id)):  # garbage, and another user's card
        response = client.post(f"/pledges/{pledge.id}/retry", data={"payment_method_id": value})
        assert response.status_code == 303, value
        assert item_of(pledge).state is ItemState.FAILED, value
    messages = text_of(client.get("/my/pledges"))
    assert "Choose one of your saved cards." in messages


def test_a_payment_that_needs_the_bank_is_confirmed_on_its_page(app, client):
    campaign, (pledge,), at = closed_and_charged([AUTHENTICATES_CHARGES])
    assert item_of(pledge).state is ItemState.ACTION_REQUIRED
    login(client, pledge.user)
    assert f"/pledges/{pledge.id}/confirm-payment" in text_of(client.get("/my/pledges"))
    page = client.get(f"/pledges/{pledge.id}/confirm-payment")
    assert page.status_code == 200
    assert "¥100.00" in text_of(page) and "Confirm the payment" in text_of(page)

    done = client.post(f"/pledges/{pledge.id}/confirm-payment")
    assert done.status_code == 303
    assert item_of(pledge).state is ItemState.CHARGED
    assert refresh(pledge).state is PledgeState.CHARGED
    # Nothing left to confirm: the page sends the backer back to My pledges.
    assert client.get(f"/pledges/{pledge.id}/confirm-payment").status_code == 303


def test_a_charged_pledge_has_no_confirmation_page(app, client):
    campaign, (pledge,), at = closed_and_charged([VISA])
    login(client, pledge.user)
    assert client.get(f"/pledges/{pledge.id}/confirm-payment").status_code == 303
    assert client.post(f"/pledges/{pledge.id}/confirm-payment").status_code == 303
    assert item_of(pledge).charged_amount == PRICE


# ---------------------------------------------------------------------------
# Operators: refund and cancel (real services)
# ---------------------------------------------------------------------------


def token_of(response) -> str:
    match = re.search(r'name="token" type="hidden" value="([^"]+)"', response.get_data(as_text=True))
    assert match, "the refund form carries no token"
    return match.group(1)


def test_an_operator_refunds_part_of_a_pledge_once_per_form(app, client):
    campaign, (pledge,), at = closed_and_charged([VISA])
    login(client, operator())
    page = client.get(f"/operator/pledges/{pledge.id}/refund")
    assert page.status_code == 200
    assert re.search(r'id="refundable">CNY 100.00<', text_of(page))
    data = {"amount": "30", "reason": "The backer asked for part back.", "token": token_of(page)}
    done = client.post(f"/operator/pledges/{pledge.id}/refund", data=data)
    assert done.status_code == 303
    assert done.headers["Location"].endswith(f"/operator/settlements/{campaign.id}")
    assert refresh(pledge).refunded_amount == 3_000
    client.post(f"/operator/pledges/{pledge.id}/refund", data=data)  # the same form again
    assert refresh(pledge).refunded_amount == 3_000
    listing = text_of(client.get(f"/operator/settlements/{campaign.id}"))
    assert f"/operator/pledges/{pledge.id}/refund" in listing


def test_a_refund_refuses_bad_input_with_a_message(app, client):
    campaign, (pledge,), at = closed_and_charged([VISA])
    login(client, operator())
    token = token_of(client.get(f"/operator/pledges/{pledge.id}/refund"))
    cases = [
        ({"amount": "30", "reason": "", "token": token}, "Write the reason"),
        ({"amount": "abc", "reason": "r", "token": token}, "is not an amount"),
        ({"amount": "0", "reason": "r", "token": token}, "above zero"),
        ({"amount": "-5", "reason": "r", "token": token}, "must be positive"),
        ({"amount": "0.001", "reason": "r", "token": token}, "decimal places"),
        ({"amount": "9" * 400, "reason": "r", "token": token}, "too large"),
        ({"amount": "500", "reason": "r", "token": token}, "can still be refunded"),
        ({"amount": "30", "reason": "r", "token": "short"}, "expired"),
        ({"amount": "30", "reason": "x" * 501, "token": token}, "Field cannot be longer"),
    ]
    for data, message in cases:
        response = client.post(f"/operator/pledges/{pledge.id}/refund", data=data)
        assert response.status_code in (409, 422), data
        assert message in text_of(response), (data, message)
    assert refresh(pledge).refunded_amount == 0
    assert client.get("/operator/pledges/999999/refund").status_code == 404


def test_an_uncharged_pledge_cannot_be_refunded(app, client):
    campaign, (pledge,), at = closed_and_charged([DECLINES_CHARGES])
    login(client, operator())
    page = client.get(f"/operator/pledges/{pledge.id}/refund")
    assert "only a charged pledge can be refunded" in text_of(page)
    token = "t" * 24
    response = client.post(f"/operator/pledges/{pledge.id}/refund", data={"reason": "r", "token": token})
    assert response.status_code == 409
    assert refresh(pledge).refunded_amount == 0


def test_cancelling_needs_a_reason_and_the_campaigns_address(app, client):
    campaign, pledges, at = closed_and_charged([VISA, DECLINES_CHARGES], kind_goal=PRICE)
    login(client, operator())
    page = client.get(f"/operator/settlements/{campaign.id}/cancel")
    assert page.status_code == 200
    text = text_of(page)
    assert "1 payment (¥100.00) is refunded in full" in text
    assert "1 other pledge is released" in text
    url = f"/operator/settlements/{campaign.id}/cancel"
    settling = refresh(campaign).state
    for data, message in (
        ({"reason": "", "confirm_slug": campaign.slug}, "Write the reason"),
        ({"reason": "Fraud", "confirm_slug": "another-campaign"}, f"Type {campaign.slug} exactly"),
        ({"reason": "Fraud", "confirm_slug": ""}, "Type the campaign"),
    ):
        response = client.post(url, data=data)
        assert response.status_code == 422 and message in text_of(response), data
        assert refresh(campaign).state is settling

    done = client.post(url, data={"reason": "The clinic lost its licence.", "confirm_slug": campaign.slug})
    assert done.status_code == 303
    cancelled = settlement.settlement_for(campaign.id)
    assert cancelled.state is SettlementState.REFUNDED
    charged, failed = (refresh(p) for p in pledges)
    assert charged.state is PledgeState.REFUNDED and charged.refunded_amount == PRICE
    assert failed.state is PledgeState.RELEASED
    again = client.post(url, data={"reason": "Twice", "confirm_slug": campaign.slug})
    assert again.status_code in (409, 422)
    assert refresh(charged).refunded_amount == PRICE


# ---------------------------------------------------------------------------
# CSRF: every form needs the token
# ---------------------------------------------------------------------------


@pytest.fixture
def csrf_app(app_config, request):
    app_config.WTF_CSRF_ENABLED = True
    return request.getfixturevalue("app")


def test_every_settlement_form_needs_the_csrf_token(csrf_app):
    client = csrf_app.test_client()
    w = Written()
    staff = operator()
    donation = make_campaign(CampaignKind.DONATION, org=w.org)
    gift = engine.place_pledge(w.backers[0], donation.id, engine.PledgeRequest(amount=Money(5_000, "CNY")))
    login(client, staff)
    for url, data in (
        (f"/operator/settlements/{w.campaign.id}/cancel", {"reason": "x", "confirm_slug": w.campaign.slug}),
        (f"/operator/pledges/{gift.id}/refund", {"reason": "x", "token": "t" * 24}),
    ):
        assert client.post(url, data=data).status_code == 400, url
    login(client, w.backers[2])
    assert client.post(f"/pledges/{w.pledges[2].id}/retry", data={}).status_code == 400
    login(client, w.backers[3])
    assert client.post(f"/pledges/{w.pledges[3].id}/confirm-payment").status_code == 400
    assert refresh(gift).refunded_amount == 0
    assert refresh(w.campaign).state is CampaignState.SUCCEEDED
    assert item_of(w.pledges[3]).state is ItemState.ACTION_REQUIRED


def test_the_operator_menu_and_review_page_link_to_settlements(app, client):
    w = Written()
    login(client, operator())
    assert 'href="/operator/settlements"' in text_of(client.get("/operator/review"))
    review = text_of(client.get(f"/operator/review/{w.campaign.id}"))
    assert f'href="/operator/settlements/{w.campaign.id}"' in review


# ---------------------------------------------------------------------------
# Garbage in every field of every settlement form: a message, never a 5xx
# ---------------------------------------------------------------------------

FIELDS = ("amount", "reason", "token", "confirm_slug", "payment_method_id")


def test_garbage_in_every_settlement_form_is_never_a_server_error(app, client):
    from tests.test_robustness import FIELD_GARBAGE, GARBAGE

    w = Written()
    campaign, (charged,), at = closed_and_charged([VISA])
    staff = operator()
    requests = [
        (staff, f"/operator/settlements/{w.campaign.id}/cancel"),
        (staff, f"/operator/settlements/{campaign.id}/cancel"),
        (staff, f"/operator/pledges/{charged.id}/refund"),
        (staff, f"/operator/pledges/{w.pledges[0].id}/refund"),
        (w.backers[2], f"/pledges/{w.pledges[2].id}/retry"),
        (w.backers[3], f"/pledges/{w.pledges[3].id}/confirm-payment"),
        (charged.user, f"/pledges/{charged.id}/retry"),
    ]
    failures = []
    for user, url in requests:
        login(client, user)
        for value in dict.fromkeys(GARBAGE + FIELD_GARBAGE):
            response = client.post(url, data={name: value for name in FIELDS})
            if response.status_code >= 500:
                failures.append(f"{url} {value[:20]!r}: {response.status_code}")
    assert not failures, "\n".join(failures)
    assert refresh(charged).refunded_amount == 0  # no garbage made a refund
    assert settlement.settlement_for(campaign.id).state is SettlementState.COLLECTING
