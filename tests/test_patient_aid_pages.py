"""Patient-aid pages: the public notice on the campaign page, the invoice only for the appeal's
members and operators (as an attachment; 404 for anyone else), the request form, the
operators' queue, the report form."""

from __future__ import annotations

import io
import re

from sqlalchemy import func, select

from crowdfund.extensions import db
from crowdfund.patient_aid import service as aid
from crowdfund.patient_aid.models import Hospital, Tranche, TrancheReport, TrancheState
from tests.factories import login, make_user, operator
from tests.patient_aid_world import PDF, hospital, request, settled_appeal


def _text(response) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


def test_the_public_notice_shows_the_tranche_without_patient_details(app, client):
    campaign, owner, settled = settled_appeal(2, 10_000)
    h = hospital()
    tranche = request(owner, campaign, h, now=settled)
    page = _text(client.get(f"/campaigns/{campaign.slug}"))
    assert "tranche-notices" not in page  # not before approval
    aid.approve_tranche(operator(), tranche.id)
    page = _text(client.get(f"/campaigns/{campaign.slug}"))
    assert 'id="tranche-notices"' in page
    assert "CNY 80.00" in page and "¥60.00" in page and h.name.replace("'", "&#39;") in page
    assert "Chemotherapy cycle 1" in page and "Blood tests" in page
    assert "Xiaoyu" not in page  # the patient's name is masked everywhere on the page
    assert f"/tranches/{tranche.id}/report" in page
    assert "/invoice" not in page
    assert "Public notice" in page


def test_the_invoice_is_for_members_and_operators_only_as_an_attachment(app, client):
    campaign, owner, settled = settled_appeal(1, 10_000)
    tranche = request(owner, campaign, hospital(), now=settled)
    url = f"/tranches/{tranche.id}/invoice"
    assert client.get(url).status_code == 302  # log in first
    login(client, make_user())
    assert client.get(url).status_code == 404
    assert client.get("/tranches/999999/invoice").status_code == 404
    for who in (owner, operator()):
        login(client, who)
        answer = client.get(url)
        assert answer.status_code == 200
        assert answer.data == PDF
        assert answer.mimetype == "application/pdf"
        assert answer.headers["Content-Disposition"].startswith("attachment")
        assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_the_appeal_page_is_for_members_and_operators(app, client):
    campaign, owner, _ = settled_appeal(1, 10_000)
    url = f"/appeals/{campaign.id}/tranches"
    login(client, make_user())
    assert client.get(url).status_code == 404
    assert client.post(url, data={}).status_code == 404
    assert client.post(f"/appeals/{campaign.id}/end").status_code == 404
    login(client, owner)
    assert client.get(url).status_code == 200
    assert client.get("/appeals/999999/tranches").status_code == 404


def _form(h: Hospital, invoice_hospital: Hospital | None = None, **overrides) -> dict:
    data = {
        "hospital_id": str(h.id),
        "invoice_hospital_id": str((invoice_hospital or h).id),
        "invoice_number": "INV-7",
        "purpose": "Bone-marrow transplant, part 1",
        "item_description": ["Transplant ward, 10 days", "Medicines"],
        "item_amount": ["50.00", "25.50"],
        "amount": "",
        "key": "form-key-0001",
        "invoice_file": (io.BytesIO(PDF), "invoice.pdf"),
    }
    data.update(overrides)
    return data


def _tranches() -> int:
    return db.session.scalar(select(func.count(Tranche.id)))


def test_requesting_a_tranche_through_the_form(app, client):
    campaign, owner, _ = settled_appeal(2, 10_000)
    h, other = hospital(), hospital("Other Hospital")
    login(client, owner)
    url = f"/appeals/{campaign.id}/tranches"
    answer = client.post(url, data=_form(h, other), content_type="multipart/form-data")
    assert answer.status_code == 422 and "another hospital" in _text(answer)
    answer = client.post(url, data=_form(h, item_amount=["900.00", "1"]), content_type="multipart/form-data")
    assert answer.status_code == 409 and "holds" in _text(answer)
    answer = client.post(url, data=_form(h, invoice_file=(io.BytesIO(b"<html>"), "x.pdf")))
    assert answer.status_code == 422 and "web page code" in _text(answer)
    assert _tranches() == 0

    answer = client.post(url, data=_form(h), content_type="multipart/form-data")
    assert answer.status_code == 303
    assert _tranches() == 1
    assert db.session.scalars(select(Tranche)).one().amount_amount == 7_550
    again = client.post(url, data=_form(h), content_type="multipart/form-data")
    assert again.status_code == 409 and "already sent" in _text(again)
    assert _tranches() == 1
    garbage = client.post(url, data=_form(h, hospital_id="x", invoice_hospital_id="-1", key="k2k2k2k2k2"))
    assert garbage.status_code in (404, 422) and _tranches() == 1


def test_operators_approve_reject_and_clear_from_the_queue(app, client):
    campaign, owner, settled = settled_appeal(2, 10_000)
    h = hospital()
    first = request(owner, campaign, h, now=settled)
    second = request(owner, campaign, h, [("Scan", "10.00")], now=settled)
    login(client, owner)
    assert client.get("/operator/tranches").status_code == 403
    assert client.post(f"/operator/tranches/{first.id}/approve").status_code == 403
    login(client, operator())
    page = _text(client.get("/operator/tranches"))
    assert f"Tranche #{first.id}" in page and f"Tranche #{second.id}" in page
    assert client.post(f"/operator/tranches/{first.id}/approve").status_code == 303
    empty = client.post(f"/operator/tranches/{second.id}/reject", data={"reason": ""})
    assert empty.status_code == 422
    assert (
        client.post(f"/operator/tranches/{second.id}/reject", data={"reason": "Not itemised"}).status_code
        == 303
    )
    assert db.session.get(Tranche, first.id).state is TrancheState.IN_NOTICE
    assert db.session.get(Tranche, second.id).state is TrancheState.REJECTED
    assert client.post("/operator/tranches/999999/approve").status_code == 404
    again = client.post(f"/operator/tranches/{first.id}/approve", follow_redirects=True)
    assert "cannot be approved" in _text(again)

    reporter = make_user()
    login(client, reporter)
    assert client.get(f"/tranches/{first.id}/report").status_code == 200
    assert client.post(f"/tranches/{first.id}/report", data={"reason": ""}).status_code == 422
    assert client.post(f"/tranches/{first.id}/report", data={"reason": "Paid twice"}).status_code == 303
    assert client.get(f"/tranches/{second.id}/report").status_code == 404  # rejected: not public
    assert db.session.scalar(select(func.count(TrancheReport.id))) == 1
    login(client, operator())
    assert client.post(f"/operator/tranches/{first.id}/clear").status_code == 303
    assert db.session.get(Tranche, first.id).state is TrancheState.IN_NOTICE


def test_operators_register_and_verify_hospitals(app, client):
    login(client, operator())
    assert client.get("/operator/hospitals").status_code == 200
    bad = client.post("/operator/hospitals", data={"name": "", "licence_number": "", "city": ""})
    assert bad.status_code == 422
    no_bank = client.post(
        "/operator/hospitals", data={"name": "H", "licence_number": "L-1", "city": "C", "country": "CN"}
    )
    assert no_bank.status_code == 422 and "bank" in _text(no_bank)
    ok = client.post(
        "/operator/hospitals",
        data={
            "name": "H",
            "licence_number": "L-1",
            "city": "C",
            "country": "CN",
            "bank_name": "B",
            "account_number": "12345678",
        },
    )
    assert ok.status_code == 303
    h = db.session.scalars(select(Hospital)).one()
    assert not h.is_verified
    assert client.post(f"/operator/hospitals/{h.id}/verify").status_code == 303
    db.session.expire_all()
    assert db.session.get(Hospital, h.id).is_verified
    login(client, make_user())
    assert client.get("/operator/hospitals").status_code == 403


def test_the_money_trail_shows_tranches_paid_and_the_surplus_returned(app, client):
    from datetime import timedelta

    campaign, owner, settled = settled_appeal(2, 10_000)
    tranche = request(owner, campaign, hospital(), now=settled)
    aid.approve_tranche(operator(), tranche.id, now=settled)
    aid.pay_due_tranches(now=settled + timedelta(days=2))
    aid.end_appeal(owner, campaign.id, now=settled + timedelta(days=3))
    lines = {line.name: line for line in app.extensions["money_trail_sections"][2](campaign)}
    assert lines["tranches_paid"].amount.amount == 8_000 and lines["tranches_paid"].recipients == 1
    assert lines["surplus_returned"].amount.amount == 19_000 - 8_000
    trail = client.get(f"/campaigns/{campaign.slug}/money-trail.json")
    assert trail.status_code == 200
    assert "tranches_paid" in trail.get_data(as_text=True)
