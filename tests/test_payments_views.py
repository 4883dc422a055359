"""Payment pages in the default sandbox mode: saved cards, authentication, payout accounts."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from crowdfund.extensions import db
from crowdfund.payments import service
from crowdfund.payments.models import MethodStatus, PaymentMethod, PayoutAccount
from tests.factories import login, make_org, make_user
from tests.factories.payments import DECLINED, NEEDS_AUTHENTICATION, VISA, add_card

NEW = "/account/payment-methods/new"


def card(number: str = VISA, **fields) -> dict:
    return {"number": number, "expiry": "12/30", "cvc": "123", "name": "Li Wei"} | fields


def methods_count() -> int:
    return db.session.scalar(select(func.count()).select_from(PaymentMethod))


def test_pages_need_a_login(client):
    for url in ("/account/payment-methods", NEW):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_add_card_page_is_a_clearly_labelled_offline_sandbox(client):
    login(client, make_user())
    html = client.get(NEW).get_data(as_text=True)
    assert "SANDBOX — no real money. Use test card 4242 4242 4242 4242." in html
    for number in (
        "4000 0000 0000 0002",
        "4000 0000 0000 9995",
        "4000 0027 6000 3184",
        "4000 0000 0000 0341",
    ):
        assert number in html
    assert "js.stripe.com" not in html
    assert not re.search(r"""<(script|link)[^>]+(src|href)=["']https?://""", html)


def test_saving_4242_returns_to_next(client):
    user = make_user()
    login(client, user)
    response = client.post(f"{NEW}?next=/campaigns/heart-monitor/pledge", data=card())
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/campaigns/heart-monitor/pledge")
    method = service.default_payment_method(user)
    assert method.last4 == "4242"
    listing = client.get("/account/payment-methods").get_data(as_text=True)
    assert "Visa \u2022\u2022\u2022\u2022 4242 (12/30)" in listing and "Default" in listing


def test_next_pointing_elsewhere_is_ignored(client):
    login(client, make_user())
    response = client.post(f"{NEW}?next=https://evil.example/steal", data=card())
    assert response.status_code == 302 and response.headers["Location"].endswith("/account/payment-methods")


def test_declined_card_shows_the_reason_on_the_form(client):
    login(client, make_user())
    response = client.post(NEW, data=card(DECLINED))
    assert response.status_code == 422
    assert "Your card was declined" in response.get_data(as_text=True)
    assert methods_count() == 0


def test_bad_input_re_renders_the_form_with_messages(client):
    login(client, make_user())
    response = client.post(NEW, data={"number": "1234", "expiry": "99/99", "cvc": "x", "name": ""})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Enter the name on the card." in html
    response = client.post(NEW, data=card(expiry="nonsense"))
    assert response.status_code == 422 and "MM/YY" in response.get_data(as_text=True)
    response = client.post(NEW, data=card("4242 4242 4242 4241"))
    assert response.status_code == 422 and "not valid" in response.get_data(as_text=True)
    assert methods_count() == 0


def test_3184_goes_through_the_sandbox_authentication_page(client):
    user = make_user()
    login(client, user)
    response = client.post(f"{NEW}?next=/account", data=card(NEEDS_AUTHENTICATION))
    assert response.status_code == 302 and "/authenticate" in response.headers["Location"]
    page = client.get(response.headers["Location"])
    assert page.status_code == 200 and "Confirm this card" in page.get_data(as_text=True)
    method = db.session.scalars(select(PaymentMethod)).one()
    assert method.status is MethodStatus.REQUIRES_AUTHENTICATION

    confirmed = client.post(response.headers["Location"])
    assert confirmed.status_code == 302 and confirmed.headers["Location"].endswith("/account")
    db.session.refresh(method)
    assert method.status is MethodStatus.USABLE
    assert service.default_payment_method(user).id == method.id


def test_set_default_and_remove(client):
    user = make_user()
    first = add_card(user)
    second = add_card(user, "5555 5555 5555 4444")
    login(client, user)
    assert client.post(f"/account/payment-methods/{first.id}/default").status_code == 302
    assert service.default_payment_method(user).id == first.id
    assert client.post(f"/account/payment-methods/{first.id}/remove").status_code == 302
    assert [m.id for m in service.list_payment_methods(user)] == [second.id]


def test_someone_elses_card_is_not_found(client):
    owner, other = make_user(), make_user()
    method = add_card(owner)
    login(client, other)
    for url in (
        f"/account/payment-methods/{method.id}/authenticate",
        f"/account/payment-methods/{method.id}/default",
        f"/account/payment-methods/{method.id}/remove",
    ):
        assert client.post(url).status_code == 404
    db.session.refresh(method)
    assert method.status is MethodStatus.USABLE


def test_sandbox_payout_account_for_members_only(client):
    owner, stranger = make_user(), make_user()
    org = make_org(owner)
    login(client, stranger)
    assert client.get(f"/organisations/{org.id}/payouts").status_code == 404
    assert (
        client.post(
            f"/organisations/{org.id}/payouts", data={"bank_name": "X", "account_number": "12345678"}
        ).status_code
        == 404
    )

    login(client, owner)
    page = client.get(f"/organisations/{org.id}/payouts")
    assert page.status_code == 200 and "SANDBOX" in page.get_data(as_text=True)
    bad = client.post(f"/organisations/{org.id}/payouts", data={"bank_name": "Bank", "account_number": "12"})
    assert bad.status_code == 422 and "6 to 34 digits" in bad.get_data(as_text=True)
    ok = client.post(
        f"/organisations/{org.id}/payouts",
        data={"bank_name": "Bank of Health", "account_number": "6222 1234 5678 9012"},
    )
    assert ok.status_code == 302
    account = db.session.scalars(select(PayoutAccount)).one()
    assert (account.bank_name, account.last4, account.payouts_enabled) == ("Bank of Health", "9012", True)
    assert "6222 1234 5678 9012" not in client.get(f"/organisations/{org.id}/payouts").get_data(as_text=True)
