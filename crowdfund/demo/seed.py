"""`seed_demo`: create the demo data (`crowdfund.demo.data`) through the services.

Everything goes through the same use cases as the pages, in the order a person would
take them, with `now=` where a service takes it to place a step in the past: a backer
registers, a campaigner creates an organisation and an operator verifies it; the
campaigner writes a draft, adds reward tiers and a cover, submits it; an operator approves
it, and `launch_due_campaigns` puts it live on its start date. Backers save the sandbox
test card 4242 4242 4242 4242 and state investor profiles; every pledge is placed with
`place_pledge` exactly as the pledge form places it (donations are charged through the
sandbox gateway at once, so the ledger shows them). Verified organisations save sandbox
bank details, so they can be paid out.

The closed campaigns are then closed and settled by the real periodic jobs
(`crowdfund.jobs.run_jobs`), run as of the moments that mattered: each campaign's end,
the settlement's retry days, the end of its grace period and its payout date
(SETTLEMENT_RETRY_DAYS, SETTLEMENT_GRACE_DAYS, PAYOUT_DELAY_DAYS after the close), in
time order. So QuietCuff is charged at close, Li Na's card (4000 0000 0000 0341) is
declined on every try until her pledge is dropped, fees are posted and the rest is paid
out; CareDose Guardian missed its goal and its pledges are released, nobody charged.
The counters (`raised_amount`, `backer_count`, tiers' `claimed`) are the pledges' own.

After success, the same jobs do the rest as of the payout date: Heartline's seed round
(`SETTLED_ROUND`) has its shares issued (`equity.issue`: certificates, the cap table, with
the pre-round shares Heartline states), and Qingshan's portable-ultrasound loan
(`LOAN_IN_REPAYMENT`) is opened (`loans.open`). The borrower then repays instalment 1 from
its saved card and instalment 2 by sandbox bank transfer (`REPAYMENTS`, each split among the
lenders) on their days, and the jobs run the day after instalment 3's grace period ends
(`loans.late`), which adds the late fee to it: a loan in repayment with one instalment
late. The settled patient-aid appeal (`SETTLED_APPEAL`, the Chen family's first appeal for
Xiaoyu) kept its money in escrow when it settled: an operator registers and verifies its
hospital (`HOSPITAL`, sandbox bank details), the family requests a tranche against the
hospital's itemised invoice (a PDF made in memory), the operator approves it, and the jobs
pay it to the hospital (`patient_aid.pay`) when its 24-hour public notice is over; a second
tranche is requested and approved a few hours before the seed, so its public notice is
running (`TRANCHES`). All of it interleaved with the other campaigns' job moments in time
order.

Idempotent: whatever exists is found (see `crowdfund.demo.data`) and left as it is, so a
second run creates nothing and changes nothing. One approved campaign starts 30 seconds
after the first run: `make run`'s jobs put it live while you watch; one live campaign
(`ENDING_SOON`) ends two days after the first run, for `flask jobs tick --now …`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import partial

from flask import current_app
from sqlalchemy import select

from crowdfund.accounts import service as accounts
from crowdfund.accounts.models import Organisation, Role, User, VerificationStatus
from crowdfund.campaigns import service as campaigns
from crowdfund.campaigns.models import Campaign, CampaignKind, CampaignState
from crowdfund.demo.covers import draw_cover
from crowdfund.demo.data import (
    ADDRESSES,
    APPEAL_CAMPAIGNER,
    BACKERS,
    BORROWER,
    CAMPAIGNS,
    DEMO_PASSWORD,
    EXTRA_CARDS,
    HOSPITAL,
    LATE_INSTALMENT,
    LOAN_IN_REPAYMENT,
    ORGS,
    PLEDGES,
    PRE_ROUND_SHARES,
    PROFILES,
    REPAYMENTS,
    SETTLED_APPEAL,
    TRANCHES,
    USERS,
    DemoCampaign,
    DemoOrg,
    DemoPledge,
    DemoRepayment,
    DemoTranche,
    DemoUser,
)
from crowdfund.demo.invoices import invoice_pdf
from crowdfund.engine import service as engine
from crowdfund.engine.models import Pledge
from crowdfund.equity import service as equity
from crowdfund.equity.models import PreRoundShares
from crowdfund.errors import DomainError
from crowdfund.extensions import db
from crowdfund.jobs import run_jobs
from crowdfund.loans import service as loans
from crowdfund.loans.models import Loan, Repayment
from crowdfund.models_base import utcnow
from crowdfund.money import Money
from crowdfund.patient_aid import service as aid
from crowdfund.patient_aid.models import Hospital, Tranche, TrancheState
from crowdfund.payments import service as payments
from crowdfund.payments.models import PaymentMethod
from crowdfund.review import service as review
from crowdfund.settlement import service as settlement

S = CampaignState
#: How far the review steps lie before a campaign's start.
SUBMITTED_BEFORE_START = timedelta(days=4)
APPROVED_BEFORE_START = timedelta(days=2)
APPROVAL_COMMENT = "Identity, registration and health credentials checked."
#: Demo campaigns that have closed by the time the seed runs.
CLOSED = frozenset({S.SUCCEEDED, S.FAILED, S.SETTLED})
OPERATOR = "operator@healthfund.example"


@dataclass
class SeedResult:
    created_users: int = 0
    created_organisations: int = 0
    created_campaigns: int = 0
    covers_written: int = 0
    cards_saved: int = 0
    investor_profiles: int = 0
    pledges_placed: int = 0
    payout_accounts: int = 0
    #: Moments in the past the periodic jobs were run as of (closes, retries, payouts, late rules).
    job_runs: int = 0
    #: Loan repayments the borrower made (by card or bank transfer).
    repayments: int = 0
    #: Hospitals an operator registered (and verified) for patient aid.
    hospitals: int = 0
    #: Tranches the patient-aid campaigner requested against the hospital's invoices.
    tranches: int = 0
    #: Steps the services refused (e.g. a pledge to a campaign that has closed since the first seed).
    skipped: list[str] = field(default_factory=list)


# --- people and organisations ------------------------------------------------------------


def _user(spec: DemoUser, result: SeedResult) -> User:
    user = accounts.find_user_by_email(spec.email)
    if user is not None:
        return user
    if spec.role is Role.BACKER:
        user = accounts.register_user(spec.name, spec.email, DEMO_PASSWORD)
    else:
        user, _ = accounts.create_staff_user(spec.email, spec.name, DEMO_PASSWORD, spec.role)
    result.created_users += 1
    return user


def _details(spec: DemoOrg) -> accounts.OrganisationDetails:
    return accounts.OrganisationDetails(
        type=spec.type,
        legal_name=spec.legal_name,
        registration_number=spec.registration_number,
        country=spec.country,
        description=spec.description,
        website=spec.website,
    )


def _organisation(spec: DemoOrg, owner: User, operator: User, result: SeedResult) -> Organisation:
    """Find the organisation (under its name or a former one) or register it; verify it if new or renamed."""
    names = (spec.legal_name, *spec.former_names)
    org = db.session.scalars(
        select(Organisation).where(Organisation.legal_name.in_(names)).order_by(Organisation.id)
    ).first()
    if org is None:
        org = accounts.create_organisation(owner, _details(spec))
        result.created_organisations += 1
    elif org.legal_name != spec.legal_name:  # seeded under a former name: the owner renames it
        org, _ = accounts.update_organisation(owner, org.id, _details(spec))
    else:
        return org
    if spec.verified and org.verification_status is not VerificationStatus.VERIFIED:
        org = accounts.set_verification_status(operator, org.id, VerificationStatus.VERIFIED)
    return org


def _payout_account(spec: DemoOrg, org: Organisation, result: SeedResult) -> None:
    """A verified organisation's sandbox bank details, so settlement can pay it out."""
    if not spec.verified or payments.payout_destination(org.id) is not None:
        return
    digits = int(hashlib.sha256(spec.registration_number.encode()).hexdigest(), 16) % 10**10
    payments.save_sandbox_bank_details(
        org, bank_name="HealthFund Sandbox Bank", account_number=f"{digits:010d}"
    )
    result.payout_accounts += 1


# --- campaigns -------------------------------------------------------------------------------


def _dates(spec: DemoCampaign, now: datetime) -> tuple[datetime, datetime]:
    if spec.starts_in_seconds is not None:
        start = (now + timedelta(seconds=spec.starts_in_seconds)).replace(microsecond=0)
    else:
        start = (now - timedelta(days=spec.started_days_ago)).replace(minute=0, second=0, microsecond=0)
    end = (now + timedelta(days=spec.ends_in_days)).replace(minute=0, second=0, microsecond=0)
    return start, end


def _tier_data(tier: dict, today: date) -> dict:
    months = tier["months"]
    delivery = (today + timedelta(days=30 * months)).replace(day=1) if months else None
    return {
        "title": tier["title"],
        "description": tier["description"],
        "price": tier["price"],
        "quantity_limit": tier["quantity_limit"],
        "estimated_delivery": delivery,
        "ships": bool(tier["ships_to"]),
        "ships_to": tier["ships_to"],
    }


def _find_campaign(spec: DemoCampaign, org: Organisation) -> Campaign | None:
    return db.session.scalar(
        select(Campaign)
        .where(Campaign.organisation_id == org.id, Campaign.title == spec.title)
        .order_by(Campaign.id)
        .limit(1)
    )


def _create_campaign(
    spec: DemoCampaign, org: Organisation, owner: User, operator: User, now: datetime
) -> Campaign:
    """Draft, tiers and cover, then submitted, approved and launched as far as the spec's state."""
    start, end = _dates(spec, now)
    draft = {
        "title": spec.title,
        "summary": spec.summary,
        "story": spec.story,
        "category": spec.category,
        "currency": spec.currency,
        "goal": spec.goal,
        "start_at": start,
        "end_at": end,
        **spec.terms,
    }
    campaign = campaigns.create_draft(owner, org, spec.kind, draft)
    for tier in spec.tiers:
        campaigns.add_tier(campaign, owner, _tier_data(tier, now.date()))
    campaign = campaigns.set_cover(campaign, owner, draw_cover(spec.category, spec.key))
    if spec.state is S.DRAFT:
        return campaign
    campaign = campaigns.submit_for_review(
        campaign, owner, "Ready for review.", now=min(start - SUBMITTED_BEFORE_START, now)
    )
    if spec.state is S.SUBMITTED:
        return campaign
    campaign = review.approve(
        campaign, operator, APPROVAL_COMMENT, now=min(start - APPROVED_BEFORE_START, now)
    )
    if start <= now:
        campaigns.launch_due_campaigns(now=start)
    return campaign


# --- money ---------------------------------------------------------------------------------


def _save_card(user: User, number: str, result: SeedResult) -> None:
    expiry = f"12/{(utcnow().year + 4) % 100:02d}"
    payments.save_payment_method(user, {"number": number, "expiry": expiry, "cvc": "123", "name": user.name})
    result.cards_saved += 1


def _card(user: User, last4: str) -> PaymentMethod | None:
    """The user's saved card ending in `last4`."""
    return next((m for m in payments.list_payment_methods(user) if m.last4 == last4), None)


def _backers_money(emails: list[str], result: SeedResult) -> None:
    """Give each demo backer a saved sandbox card (4242, their default; some an older card
    too, `EXTRA_CARDS`) and, for some, an investor profile."""
    for email in emails:
        user = accounts.find_user_by_email(email)
        if payments.default_payment_method(user) is None:
            _save_card(user, "4242 4242 4242 4242", result)
        extra = EXTRA_CARDS.get(email)
        if extra is not None and _card(user, extra[-4:]) is None:
            _save_card(user, extra, result)  # a new card becomes the default: 4242 stays it
            payments.set_default_payment_method(user, _card(user, "4242").id)
        profile = PROFILES.get(email)
        if profile is not None and engine.get_investor_profile(user) is None:
            engine.save_investor_profile(
                user,
                currency=profile.currency,
                annual_income=Money.from_major(profile.income, profile.currency),
                net_worth=Money.from_major(profile.net_worth, profile.currency),
                accredited=profile.accredited,
            )
            result.investor_profiles += 1


def _pledge_time(spec: DemoPledge, campaign: Campaign, now: datetime) -> datetime:
    """When the pledge was placed: `spec.at` of the campaign's open time, off the full hour."""
    if spec.at is None:
        return now
    until = min(now, campaign.end_at)
    when = campaign.start_at + (until - campaign.start_at) * spec.at
    minutes = int(hashlib.sha256(spec.token.encode()).hexdigest(), 16) % 57
    return min(when + timedelta(minutes=minutes), until - timedelta(minutes=1))


def _request(spec: DemoPledge, campaign: Campaign, user: User) -> engine.PledgeRequest:
    cur = campaign.currency
    req = engine.PledgeRequest(idempotency_token=spec.token)
    if spec.card is not None:
        req.payment_method_id = _card(user, spec.card).id
    if spec.tier is not None:
        tier = next(t for t in campaign.tiers if t.position == spec.tier)
        req.tier_id, req.quantity = tier.id, spec.quantity
        req.extra = Money.from_major(spec.extra, cur) if spec.extra else None
        req.shipping_address = ADDRESSES.get(spec.email) if tier.ships else None
        return req
    req.amount = Money.from_major(spec.amount, cur)
    req.risk_acknowledged = campaign.kind in (CampaignKind.EQUITY, CampaignKind.DEBT)
    req.message, req.anonymous = spec.message, spec.anonymous
    return req


def _place_pledges(campaign_ids: dict[str, int], now: datetime, result: SeedResult) -> None:
    """Place every demo pledge that is not there yet, through the pledge service."""
    for spec in PLEDGES:
        user = accounts.find_user_by_email(spec.email)
        campaign = db.session.get(Campaign, campaign_ids[spec.campaign])
        placed = select(Pledge.id).where(Pledge.user_id == user.id, Pledge.idempotency_token == spec.token)
        if db.session.scalar(placed) is not None:
            continue
        try:
            engine.place_pledge(
                user, campaign.id, _request(spec, campaign, user), now=_pledge_time(spec, campaign, now)
            )
        except DomainError as exc:
            result.skipped.append(f"{spec.email} -> {spec.campaign}: {exc.message}")
            continue
        result.pledges_placed += 1


def _job_moments(campaign: Campaign) -> list[datetime]:
    """When the jobs have work for a campaign that ended: its end (close, settlement opened,
    pledges charged), each retry day, the end of the grace period, the payout date."""
    end = campaign.end_at
    grace = timedelta(days=int(current_app.config["SETTLEMENT_GRACE_DAYS"]))
    payout = timedelta(days=int(current_app.config["PAYOUT_DELAY_DAYS"]))
    return [end, *settlement.retry_schedule(end), end + grace, end + payout]


def _run_jobs(moment: datetime, result: SeedResult) -> None:
    for outcome in run_jobs(now=moment):
        if outcome.error:
            result.skipped.append(f"jobs as of {moment:%Y-%m-%d %H:%M}: {outcome.line().splitlines()[0]}")
    result.job_runs += 1


def _repay(loan: Loan, spec: DemoRepayment, when: datetime, result: SeedResult) -> None:
    """The borrower pays instalment `spec.instalment` in full, once (known by its request key)."""
    if db.session.scalar(select(Repayment.id).where(Repayment.request_key == spec.key)) is not None:
        return
    borrower = accounts.find_user_by_email(BORROWER)
    inst = next(i for i in loan.instalments if i.number == spec.instalment)
    try:
        if spec.method == "card":
            card = payments.default_payment_method(borrower)
            loans.repay_by_card(
                borrower, loan.id, inst.outstanding, payment_method_id=card.id, request_key=spec.key, now=when
            )
        else:
            loans.record_bank_transfer(
                borrower,
                loan.id,
                inst.outstanding,
                reference=f"QS-LOAN-{loan.id}-{spec.instalment:02d}",
                request_key=spec.key,
                now=when,
            )
    except DomainError as exc:
        result.skipped.append(f"repayment of instalment {spec.instalment}: {exc.message}")
        return
    result.repayments += 1


#: One step of a story: (when, its name, what to do as of `when`).
Step = tuple[datetime, str, Callable[[datetime, SeedResult], None]]


class _LoanStory:
    """What happens to the loan in repayment once the loans job has opened it: the repayments
    on their days, then the jobs the day after the late instalment's grace period."""

    def __init__(self, campaign_id: int, now: datetime) -> None:
        self.campaign_id, self.now = campaign_id, now
        self.done: set[str] = set()

    def steps(self) -> list[Step]:
        """Every step due by the seed's `now` (none before the loans job has opened the loan)."""
        loan = loans.loan_for_campaign(self.campaign_id)
        if loan is None:
            return []
        due = {i.number: datetime.combine(i.due_on, time(9), tzinfo=UTC) for i in loan.instalments}
        grace = timedelta(days=int(current_app.config["LOAN_GRACE_DAYS"]))
        steps: list[Step] = [
            (due[r.instalment] + timedelta(days=r.days_from_due), r.key, partial(self._repay, r))
            for r in REPAYMENTS
        ]
        steps.append((due[LATE_INSTALMENT] + grace + timedelta(days=1), "late", _run_jobs))
        return [s for s in steps if s[0] <= self.now]

    def _repay(self, spec: DemoRepayment, when: datetime, result: SeedResult) -> None:
        _repay(loans.loan_for_campaign(self.campaign_id), spec, when, result)


class _AppealStory:
    """What happens to the settled patient-aid appeal once it has settled: an operator
    registers its hospital with sandbox bank details and verifies it; the campaigner requests
    each tranche (`TRANCHES`) against the hospital's itemised invoice (a PDF), an operator
    approves it, and the jobs pay the first when its public notice is over; the second is
    approved shortly before the seed, so its notice is still running."""

    def __init__(self, campaign_id: int, now: datetime) -> None:
        self.campaign_id, self.now = campaign_id, now
        self.done: set[str] = set()

    def steps(self) -> list[Step]:
        """Every step due by the seed's `now`, from the payout date on (when the appeal settles)."""
        campaign = db.session.get(Campaign, self.campaign_id)
        settled = campaign.end_at + timedelta(days=int(current_app.config["PAYOUT_DELAY_DAYS"]))
        steps: list[Step] = [(settled + timedelta(hours=12), "hospital", self._hospital)]
        for spec in TRANCHES:
            if spec.paid:
                asked = settled + timedelta(days=spec.days_after_settled)
            else:
                asked = (self.now - timedelta(hours=spec.hours_before_seed)).replace(second=0, microsecond=0)
            approved = asked + timedelta(hours=spec.approved_after_hours)
            steps += [
                (asked, f"request:{spec.number}", partial(self._request, spec)),
                (approved, f"approve:{spec.number}", partial(self._approve, spec)),
            ]
            if spec.paid:
                steps.append((approved + aid.notice_period(), f"pay:{spec.number}", partial(self._pay, spec)))
        return [s for s in steps if s[0] <= self.now]

    @staticmethod
    def _find_hospital() -> Hospital | None:
        return db.session.scalar(select(Hospital).where(Hospital.licence_number == HOSPITAL.licence_number))

    def _hospital(self, when: datetime, result: SeedResult) -> None:
        """An operator registers the hospital and its sandbox bank account, and verifies it."""
        operator = accounts.find_user_by_email(OPERATOR)
        hospital = self._find_hospital()
        if hospital is None:
            details = aid.HospitalDetails(
                name=HOSPITAL.name,
                licence_number=HOSPITAL.licence_number,
                city=HOSPITAL.city,
                country="CN",
                bank_name=HOSPITAL.bank_name,
                account_number=HOSPITAL.account_number,
            )
            hospital = aid.register_hospital(operator, details)
            result.hospitals += 1
        if not hospital.is_verified:
            aid.verify_hospital(operator, hospital.id, now=when)

    @staticmethod
    def _tranche(spec: DemoTranche) -> Tranche | None:
        return db.session.scalar(select(Tranche).where(Tranche.request_key == spec.key))

    def _request(self, spec: DemoTranche, when: datetime, result: SeedResult) -> None:
        """The campaigner asks for the tranche against the hospital's invoice (once, by its key)."""
        hospital = self._find_hospital()
        if self._tranche(spec) is not None or hospital is None:
            return
        campaign = db.session.get(Campaign, self.campaign_id)
        items = [(d, Money.parse(a, campaign.currency)) for d, a in spec.items]
        invoice = invoice_pdf(
            hospital=hospital.name,
            city=hospital.city,
            number=spec.invoice_number,
            patient=campaign.donation_terms.patient_name,
            issued=f"{when:%Y-%m-%d}",
            items=items,
        )
        req = aid.TrancheRequest(
            hospital_id=hospital.id,
            invoice_hospital_id=hospital.id,
            purpose=spec.purpose,
            invoice_number=spec.invoice_number,
            items=list(spec.items),
            invoice_data=invoice,
            request_key=spec.key,
        )
        try:
            aid.request_tranche(accounts.find_user_by_email(APPEAL_CAMPAIGNER), campaign.id, req, now=when)
        except DomainError as exc:
            result.skipped.append(f"tranche {spec.number} of {SETTLED_APPEAL}: {exc.message}")
            return
        result.tranches += 1

    def _approve(self, spec: DemoTranche, when: datetime, result: SeedResult) -> None:
        tranche = self._tranche(spec)
        if tranche is None or tranche.state is not TrancheState.REQUESTED:
            return
        try:
            aid.approve_tranche(accounts.find_user_by_email(OPERATOR), tranche.id, now=when)
        except DomainError as exc:
            result.skipped.append(f"approving tranche {spec.number}: {exc.message}")

    def _pay(self, spec: DemoTranche, when: datetime, result: SeedResult) -> None:
        """The jobs as of the end of its notice: `patient_aid.pay` pays it to the hospital."""
        tranche = self._tranche(spec)
        if tranche is not None and tranche.state is not TrancheState.PAID:
            _run_jobs(when, result)


def _take_steps(stories: list, until: datetime, result: SeedResult) -> None:
    """Take every story's steps due by `until` and not taken yet, all stories' steps in time
    order (each story's steps are read afresh after every step: a job may have opened a loan)."""
    while True:
        due = [
            (when, name, action, story)
            for story in stories
            for when, name, action in story.steps()
            if when <= until and name not in story.done
        ]
        if not due:
            return
        when, name, action, story = min(due, key=lambda d: d[0])
        story.done.add(name)
        action(when, result)


def _run_jobs_since_the_closes(campaign_ids: dict[str, int], now: datetime, result: SeedResult) -> None:
    """Run the periodic jobs as of every past moment the closed demo campaigns needed them,
    in time order: they close, settle (charge, retry, drop, fees, payout) or release them,
    issue the settled round's shares and open the loan; between two moments, the stories of
    the loan (repayments, the late instalment) and of the patient-aid appeal (its hospital,
    one tranche paid after its public notice, one still in notice) take their steps."""
    moments = sorted(
        {
            moment
            for spec in CAMPAIGNS
            if spec.state in CLOSED
            for moment in _job_moments(db.session.get(Campaign, campaign_ids[spec.key]))
            if moment <= now
        }
    )
    stories: list = [_LoanStory(campaign_ids[LOAN_IN_REPAYMENT], now)]
    if payments.gateway_name() == "sandbox":  # the hospital's payout account is a sandbox one
        stories.append(_AppealStory(campaign_ids[SETTLED_APPEAL], now))
    for n, moment in enumerate(moments):
        _run_jobs(moment, result)
        _take_steps(stories, moments[n + 1] if n + 1 < len(moments) else now, result)


def _pre_round_shares(orgs: dict[str, Organisation], users: dict[str, User]) -> None:
    """What an organisation states it had issued before its HealthFund round (for its cap table)."""
    for key, shares in PRE_ROUND_SHARES.items():
        org = orgs[key]
        if db.session.get(PreRoundShares, org.id) is None:
            owner = users[next(o.owner for o in ORGS if o.key == key)]
            equity.set_pre_round_shares(owner, org.id, shares)


def seed_demo(now: datetime | None = None) -> SeedResult:
    """Create whatever demo data is missing, through the services; returns what was created."""
    now = now or utcnow()
    result = SeedResult()
    users = {spec.email: _user(spec, result) for spec in (*USERS, *BACKERS)}
    operator = users[OPERATOR]
    orgs = {spec.key: _organisation(spec, users[spec.owner], operator, result) for spec in ORGS}
    if payments.gateway_name() == "sandbox":
        for spec in ORGS:
            _payout_account(spec, orgs[spec.key], result)
    campaign_ids: dict[str, int] = {}
    for spec in CAMPAIGNS:
        org = orgs[spec.org]
        campaign = _find_campaign(spec, org)
        if campaign is None:
            owner = users[next(o.owner for o in ORGS if o.key == spec.org)]
            campaign = _create_campaign(spec, org, owner, operator, now)
            result.created_campaigns += 1
            result.covers_written += 1
        campaign_ids[spec.key] = campaign.id

    if payments.gateway_name() == "sandbox":
        _backers_money(["backer@healthfund.example", *(b.email for b in BACKERS), BORROWER], result)
        _place_pledges(campaign_ids, now, result)
    else:
        result.skipped.append("cards and pledges: the demo money needs PAYMENT_GATEWAY=sandbox")
    _pre_round_shares(orgs, users)
    _run_jobs_since_the_closes(campaign_ids, now, result)
    return result
