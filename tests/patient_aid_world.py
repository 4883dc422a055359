"""Shared set-up for the patient-aid tests: a patient-aid appeal whose donations were charged
and settled (fees taken, nothing released: the rest stays in escrow), a verified hospital,
and tranche requests with a small PDF invoice."""

from __future__ import annotations

import secrets
from datetime import datetime

from crowdfund.accounts.models import Organisation, User
from crowdfund.campaigns.models import Campaign, CampaignKind, HealthCategory
from crowdfund.extensions import db
from crowdfund.patient_aid import service as aid
from crowdfund.patient_aid.models import Hospital
from crowdfund.settlement import service as settlement
from tests.factories import make_org, make_user, operator
from tests.settlement_world import DAY, campaign_with_pledges, close

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"

__all__ = ["DAY", "PDF", "hospital", "request", "settled_appeal"]


def settled_appeal(donors: int = 3, amount: int = 10_000, *, amounts: list[int] | None = None):
    """A settled patient-aid appeal; (campaign, campaigner, settled moment)."""
    owner = make_user()
    org = make_org(owner=owner)
    campaign, _ = campaign_with_pledges(
        donors,
        kind=CampaignKind.DONATION,
        amount=amount,
        goal=donors * amount,
        org=org,
        category=HealthCategory.PATIENT_AID,
    )
    terms = campaign.donation_terms
    terms.is_patient_aid, terms.patient_name, terms.hospital_name = True, "Chen Xiaoyu", "Jiangnan"
    db.session.commit()
    closed = close(campaign)
    settlement.open_settlement(campaign.id, now=closed)
    settlement.process_due_items(now=closed)
    settled = closed + 14 * DAY
    assert settlement.finalise_due_settlements(now=settled) == 1
    db.session.expire_all()
    return db.session.get(Campaign, campaign.id), db.session.get(User, owner.id), settled


def hospital(name: str = "Jiangnan Children's Hospital", verified: bool = True) -> Hospital:
    staff = operator()
    h = aid.register_hospital(
        staff,
        aid.HospitalDetails(
            name=name,
            licence_number=f"PDY-{secrets.token_hex(4)}",
            city="Hangzhou",
            bank_name="Bank of Hangzhou",
            account_number="6222020200112233",
        ),
    )
    if verified:
        aid.verify_hospital(staff, h.id)
    return db.session.get(Hospital, h.id)


def request(
    user: User,
    campaign: Campaign,
    h: Hospital,
    items: list[tuple[str, str]] | None = None,
    *,
    invoice_hospital: Hospital | None = None,
    key: str | None = None,
    amount: str = "",
    data: bytes = PDF,
    now: datetime | None = None,
):
    req = aid.TrancheRequest(
        hospital_id=h.id,
        invoice_hospital_id=(invoice_hospital or h).id,
        purpose="Chemotherapy for Chen Xiaoyu, cycles 1-2",
        invoice_number="INV-2027-0012",
        items=items or [("Chemotherapy cycle 1 (Chen Xiaoyu)", "60.00"), ("Blood tests", "20.00")],
        invoice_data=data,
        request_key=key or secrets.token_urlsafe(12),
        amount=amount,
    )
    return aid.request_tranche(user, campaign.id, req, now=now)


def org_of(campaign: Campaign) -> Organisation:
    return db.session.get(Organisation, campaign.organisation_id)
