"""Loan pages: the borrower's loan (schedule, next due, repay form, sandbox bank transfer)
and a lender's share; who may see which; bad input gets a message and changes nothing."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from crowdfund.accounts.models import User
from crowdfund.extensions import db
from crowdfund.loans.models import LoanLender, Repayment, RepaymentState
from crowdfund.payments import service as payments
from tests.factories import login, make_user, operator
from tests.loans_world import borrower_of, settled_loan


def _text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)))


def _lender(loan) -> User:
    uid = db.session.scalar(
        select(LoanLender.user_id).where(LoanLender.loan_id == loan.id).order_by(LoanLender.id)
    )
    return db.session.get(User, uid)


def _repayments() -> int:
    return db.session.scalar(select(func.count(Repayment.id)))


def test_the_borrower_sees_the_schedule_next_due_and_repays_by_card(app, client):
    loan, _ = settled_loan(3)
    borrower = borrower_of(loan)
    login(client, borrower)
    page = client.get(f"/loans/{loan.id}")
    assert page.status_code == 200
    text = _text(page)
    assert "Schedule" in text and "Next due" in text and "Repay by card" in text
    due = loan.instalments[0].outstanding.format_plain()
    assert due in page.get_data(as_text=True)
    method = payments.default_payment_method(borrower)
    answer = client.post(
        f"/loans/{loan.id}/repay",
        data={"amount": due, "payment_method_id": str(method.id), "key": "form-key-1"},
    )
    assert answer.status_code == 303
    assert db.session.scalar(select(Repayment.state)) is RepaymentState.SPLIT
    again = client.post(
        f"/loans/{loan.id}/repay",
        data={"amount": due, "payment_method_id": str(method.id), "key": "form-key-1"},
    )
    assert again.status_code == 409 and "already sent" in _text(again)
    assert _repayments() == 1


def test_bad_amounts_get_a_message_and_change_nothing(app, client):
    loan, _ = settled_loan(2)
    borrower = borrower_of(loan)
    login(client, borrower)
    method = payments.default_payment_method(borrower)
    for amount, words in (
        ("abc", "not an amount"),
        ("0", "Enter an amount between"),
        ("99999999", "still owed"),
    ):
        answer = client.post(
            f"/loans/{loan.id}/repay",
            data={"amount": amount, "payment_method_id": str(method.id), "key": "k"},
        )
        assert answer.status_code == 422, amount
        assert words in _text(answer)
    answer = client.post(
        f"/loans/{loan.id}/repay", data={"amount": "10", "payment_method_id": "999999", "key": "k"}
    )
    assert answer.status_code == 422
    answer = client.post(
        f"/loans/{loan.id}/bank-transfer", data={"transfer-amount": "10", "transfer-key": "t"}
    )
    assert answer.status_code == 422 and "reference" in _text(answer)
    assert _repayments() == 0


def test_a_bank_transfer_is_recorded_from_the_page_in_sandbox_mode(app, client):
    loan, _ = settled_loan(2)
    login(client, borrower_of(loan, card=False))
    answer = client.post(
        f"/loans/{loan.id}/bank-transfer",
        data={"transfer-amount": "12.34", "transfer-reference": "REF-9", "transfer-key": "t1"},
    )
    assert answer.status_code == 303
    assert db.session.scalar(select(Repayment.reference)) == "REF-9"


def test_a_lender_sees_their_share_and_the_repayments_they_received(app, client):
    loan, _ = settled_loan(3)
    borrower = borrower_of(loan, card=False)
    from crowdfund.loans import service
    from crowdfund.money import Money

    service.record_bank_transfer(borrower, loan.id, Money(1_000, "CNY"), reference="r", request_key="k")
    lender = _lender(loan)
    login(client, lender)
    page = client.get(f"/loans/{loan.id}/my-share")
    assert page.status_code == 200
    text = _text(page)
    assert "33.33 %" in text and "Repayments received" in text and "¥3.34" in text
    mine = client.get("/my/pledges")
    assert mine.status_code == 200
    assert f"/loans/{loan.id}/my-share" in mine.get_data(as_text=True)


def test_who_may_see_which_loan_page(app, client):
    loan, _ = settled_loan(2)
    borrower = borrower_of(loan)
    lender = _lender(loan)
    stranger = make_user()
    pages = {"borrower": f"/loans/{loan.id}", "lender": f"/loans/{loan.id}/my-share"}
    expected = {
        borrower: {"borrower": 200, "lender": 404},
        lender: {"borrower": 404, "lender": 200},
        stranger: {"borrower": 404, "lender": 404},
        operator(): {"borrower": 200, "lender": 404},
    }
    for user, answers in expected.items():
        login(client, user)
        for name, url in pages.items():
            assert client.get(url).status_code == answers[name], (user.email, name)
        client.get("/logout")
    login(client, stranger)
    answer = client.post(
        f"/loans/{loan.id}/repay", data={"amount": "1", "payment_method_id": "1", "key": "k"}
    )
    assert answer.status_code == 404
    answer = client.post(
        f"/loans/{loan.id}/bank-transfer",
        data={"transfer-amount": "1", "transfer-reference": "r", "transfer-key": "k"},
    )
    assert answer.status_code == 404
    assert client.get("/loans/999999").status_code == 404
    assert _repayments() == 0


def test_anonymous_visitors_are_sent_to_log_in(app, client):
    loan, _ = settled_loan(2)
    assert client.get(f"/loans/{loan.id}").status_code in (302, 401)
