"""The four kinds of campaign — reward, equity, debt, donation — one class each.

Everything that differs by kind lives in that kind's class, so services ask the class
instead of branching on `campaign.kind`:

- drafting: the terms section's fields, how they are parsed and stored (`parse_terms`,
  `store_terms`, `current_terms`), the default funding model;
- submission: `submission_problems(campaign, now)`, the checks before review;
- closing: `succeeded(campaign)` (the success rule) and `closes_early(campaign, now)`;
- settlement: `settlement_waits(campaign)` (a succeeded campaign's collection does not open
  yet: equity investors still asked to reconfirm), `settlement_minimum(campaign)` (what must
  still be collected once unpaid pledges are dropped, or everyone is refunded),
  `pays_out_through_tranches(campaign)`
  (patient aid: nothing is released to the organisation; it stays in escrow for the
  hospital's tranches);
- pledging: `charge_at_close` (recorded now, charged if the campaign succeeds),
  `investment` (the investor's 12-month limit and the risk acknowledgement apply; the
  engine checks the limit), `cancellation_deadline(campaign)`, `tier_ids(request)` (the
  reward tiers to lock) and `pledge_terms(campaign, request, tiers)` (what a backer's
  request comes to once checked);
- words: `description` (for campaigners), `blurb` (home page), `review_checklist`.

`kind_rules(kind_or_campaign)` returns the one instance for a `CampaignKind`, its value
("equity") or a campaign. A new kind is a new class here plus its terms model.
This module imports no other domain package (the engine imports it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Protocol

from flask import current_app
from sqlalchemy import ColumnElement, and_, select

from crowdfund.campaigns import parsing
from crowdfund.campaigns.models import (
    Campaign,
    CampaignKind,
    DebtTerms,
    DonationTerms,
    EquityTerms,
    FundingModel,
    HealthCategory,
    RewardTier,
    SecurityType,
)
from crowdfund.errors import Conflict, ErrorCode, ValidationError
from crowdfund.money import Money

MAX_NAME_LENGTH = 200
MAX_DIAGNOSIS_LENGTH = 2_000
MAX_TERM_MONTHS = 120
#: Pledge form limits.
MAX_ADDRESS_LENGTH = 1000
MAX_MESSAGE_LENGTH = 500
#: Equity and debt commitments can be cancelled until this long before the deadline.
INVESTMENT_CANCELLATION_CUTOFF = timedelta(hours=48)

_TERM_LABELS = {
    "security_type": "the type of security",
    "price_per_share": "the price per share",
    "pre_money_valuation": "the pre-money valuation",
    "min_target": "the minimum target",
    "max_target": "the maximum target",
    "min_investment": "the minimum investment",
    "annual_rate": "the annual interest rate",
    "term_months": "the term",
    "min_amount": "the minimum loan amount",
    "max_amount": "the maximum loan amount",
    "min_loan_share": "the smallest loan share",
    "beneficiary_name": "the beneficiary",
}


@dataclass(frozen=True)
class Problem:
    """One thing that stops a draft from being submitted; `field` is the form field, if any."""

    field: str | None
    message: str


class PledgeAsk(Protocol):
    """What a backer asks for (the engine's `PledgeRequest` has these attributes)."""

    amount: Money | None
    tier_id: int | None
    quantity: int
    extra: Money | None
    shipping_address: str | None
    risk_acknowledged: bool
    message: str | None
    anonymous: bool
    shares: int | None


@dataclass
class PledgeTerms:
    """What a pledge request comes to once checked: amount, tier units and the rest."""

    amount: Money
    tier: RewardTier | None = None
    quantity: int = 1
    extra: Money | None = None
    shares: int | None = None
    shipping_address: str | None = None
    message: str | None = None
    anonymous: bool = False
    risk_acknowledged: bool = False


# --- checks a pledge's values pass (shared by the kinds) ----------------------------------


def pledge_amount(
    value: Money | None,
    campaign: Campaign,
    *,
    field: str,
    minimum: Money | None = None,
    label: str = "amount",
) -> Money:
    """A positive amount in the campaign's currency, at least `minimum`, not absurdly large."""
    if value is None:
        raise ValidationError(f"Enter an {label}.", code=ErrorCode.VALIDATION_ERROR, field=field)
    if not isinstance(value, Money):
        raise ValidationError(
            f"The {label} must be an amount of money.", code=ErrorCode.VALIDATION_ERROR, field=field
        )
    if value.currency != campaign.currency:
        raise ValidationError(
            f"This campaign takes {campaign.currency}; enter the {label} in {campaign.currency}.",
            code=ErrorCode.WRONG_CURRENCY,
            field=field,
        )
    if value.amount <= 0:
        raise ValidationError(
            f"The {label} must be more than zero.", code=ErrorCode.VALIDATION_ERROR, field=field
        )
    maximum = Money.from_major(current_app.config["PLEDGE_MAXIMUM"], campaign.currency)
    if value > maximum:
        raise ValidationError(
            f"That {label} is too large: at most {maximum} per pledge.",
            code=ErrorCode.VALIDATION_ERROR,
            field=field,
        )
    if minimum is not None and value < minimum:
        raise ValidationError(
            f"The {label} must be at least {minimum}.", code=ErrorCode.VALIDATION_ERROR, field=field
        )
    return value


def pledge_text(value: str | None, limit: int, field: str, what: str) -> str | None:
    """Optional text a backer typed, stripped; None when empty."""
    result = (value or "").strip()
    if "\x00" in result:  # PostgreSQL cannot store it, and no one types it
        raise ValidationError(
            f"The {what} contains a NUL character; remove it.", code=ErrorCode.VALIDATION_ERROR, field=field
        )
    if len(result) > limit:
        raise ValidationError(
            f"The {what} can be at most {limit} characters.", code=ErrorCode.VALIDATION_ERROR, field=field
        )
    return result or None


def reward_quantity(value: Any) -> int:
    limit = current_app.config["REWARD_MAX_QUANTITY"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(
            "Choose a quantity of at least 1.", code=ErrorCode.VALIDATION_ERROR, field="quantity"
        )
    if value > limit:
        raise ValidationError(
            f"At most {limit} of one reward per pledge.", code=ErrorCode.VALIDATION_ERROR, field="quantity"
        )
    return value


def optional_extra(value: Money | None, campaign: Campaign) -> Money:
    """The optional extra on top of a reward tier's price (zero when none)."""
    if value is None or (
        isinstance(value, Money) and value.amount == 0 and value.currency == campaign.currency
    ):
        return Money.zero(campaign.currency)
    return pledge_amount(value, campaign, field="extra", label="extra amount")


def check_room(campaign: Campaign, amount: Money, maximum: Money, what: str, minimum: Money) -> None:
    """Never let commitments pass the campaign's maximum."""
    if campaign.raised + amount <= maximum:
        return
    left = maximum - campaign.raised
    if left < minimum:
        raise Conflict(
            f"This {what} is fully subscribed: it reached its maximum of {maximum}.",
            code=ErrorCode.OVER_MAXIMUM,
        )
    raise Conflict(
        f"Only {left} of this {what} is still open (maximum {maximum}); commit at most that.",
        code=ErrorCode.OVER_MAXIMUM,
        field="amount",
    )


def require_risk(req: PledgeAsk) -> None:
    if not req.risk_acknowledged:
        raise ValidationError(
            "Tick the box to confirm you understand you could lose all of this money.",
            code=ErrorCode.VALIDATION_ERROR,
            field="risk_acknowledged",
        )


def patient_aid_cap() -> Money:
    """PATIENT_AID_CAP from the config ("CNY 500000") as Money."""
    code, _, amount = str(current_app.config["PATIENT_AID_CAP"]).strip().partition(" ")
    return Money.parse(amount, code)


# --- the kinds ------------------------------------------------------------------------------


class KindRules:
    """What every kind answers; the subclasses fill it in."""

    kind: ClassVar[CampaignKind]
    #: What the kind means, for a campaigner choosing one.
    description: ClassVar[str]
    #: One line for the public home page.
    blurb: ClassVar[str]
    #: What an operator checks by hand, besides the automatic checks.
    review_checklist: ClassVar[tuple[str, ...]]
    #: The fields of the kind's terms section (besides the common fields).
    term_fields: ClassVar[tuple[str, ...]] = ()
    #: Term fields that must all be given before the terms can be saved.
    required_term_fields: ClassVar[tuple[str, ...]] = ()
    #: Pledges are recorded now and charged only if the campaign succeeds.
    charge_at_close: ClassVar[bool] = True
    #: The investor's 12-month limit and the risk acknowledgement apply.
    investment: ClassVar[bool] = False
    #: The campaigner may choose all-or-nothing or keep-it-all.
    chooses_funding_model: ClassVar[bool] = False
    default_funding_model: ClassVar[FundingModel] = FundingModel.ALL_OR_NOTHING
    #: The kind has reward tiers.
    has_tiers: ClassVar[bool] = False

    # --- drafting ------------------------------------------------------------------------
    def terms_of(self, campaign: Campaign) -> Any:
        """The campaign's terms row, or None."""
        return None

    def current_terms(self, campaign: Campaign) -> dict[str, Any]:
        """The saved terms as the values `parse_terms` understands."""
        return {}

    def parse_terms(self, raw: dict[str, Any], currency: str, errors: dict[str, str]) -> dict[str, Any]:
        """Parse a terms section; problems go into `errors`."""
        return {}

    def store_terms(self, campaign: Campaign, values: dict[str, Any], errors: dict[str, str]) -> None:
        """Save parsed terms on the campaign (or put a cross-field problem in `errors`)."""

    def clear_terms(self, campaign: Campaign) -> None:
        """Nothing entered: the campaign has no terms yet."""

    def missing_terms(self, values: dict[str, Any], errors: dict[str, str]) -> None:
        for field in self.required_term_fields:
            if values.get(field) is None and field not in errors:
                errors[field] = f"Enter {_TERM_LABELS[field]}, or leave this whole section empty for now."

    # --- submission ----------------------------------------------------------------------
    def submission_problems(self, campaign: Campaign, now: datetime) -> list[Problem]:
        """What keeps the kind's own part of the campaign from being submitted."""
        problems = self.terms_problems(campaign)
        if campaign.category is HealthCategory.PATIENT_AID:
            problems.insert(
                0, Problem("category", "Patient aid is raised as donations; choose another category.")
            )
        return problems

    def terms_problems(self, campaign: Campaign) -> list[Problem]:
        return []

    # --- closing -------------------------------------------------------------------------
    def succeeded(self, campaign: Campaign) -> bool:
        """Whether the campaign met its kind's target when it closes."""
        return campaign.raised_amount >= campaign.goal_amount

    def closes_early(self, campaign: Campaign, now: datetime) -> bool:
        """Whether a live campaign closes before its end (equity at its cap)."""
        return False

    def early_close_filter(self, now: datetime) -> ColumnElement[bool] | None:
        """SQL for the live campaigns of this kind that `closes_early` (None: never)."""
        return None

    # --- settlement ----------------------------------------------------------------------
    def settlement_waits(self, campaign: Campaign) -> bool:
        """Whether a succeeded campaign's settlement must not open yet (nothing is charged):
        equity while investors are still asked to reconfirm an amendment — their answers,
        or their lapse, come first."""
        return False

    def settlement_minimum(self, campaign: Campaign) -> Money | None:
        """What settlement must collect once unpaid pledges are dropped, or every payment is
        refunded (equity: the minimum target; debt: the minimum loan). None: whatever is collected stands."""
        return None

    def pays_out_through_tranches(self, campaign: Campaign) -> bool:
        """Whether settlement keeps what was collected in escrow instead of releasing it to the
        organisation: a patient-aid appeal is paid to the hospital in tranches
        (`crowdfund.patient_aid`), never to the family."""
        return False

    # --- pledging ------------------------------------------------------------------------
    def cancellation_deadline(self, campaign: Campaign) -> datetime | None:
        """Until when a backer may cancel a pledge; None means never."""
        return campaign.end_at

    def tier_ids(self, req: PledgeAsk) -> set[int]:
        """The reward tiers a pledge request needs locked (in id order, by the engine)."""
        return set()

    def pledge_terms(self, campaign: Campaign, req: PledgeAsk, tiers: dict[int, RewardTier]) -> PledgeTerms:
        raise NotImplementedError


class RewardRules(KindRules):
    kind = CampaignKind.REWARD
    description = (
        "Backers pre-order a product or service at a price tier. All-or-nothing by default: "
        "cards are charged only if the goal is reached."
    )
    blurb = "Pre-order a health product and receive it when it ships."
    review_checklist = (
        "The organisation is who it says it is (registration, identity of the people behind it).",
        "Health credentials fit the product: device registration or drug approval where required.",
        "Rewards are deliverable at these prices and dates; shipping is realistic.",
        "The story makes no medical claims it cannot support.",
    )
    chooses_funding_model = True
    has_tiers = True

    def terms_problems(self, campaign: Campaign) -> list[Problem]:
        return [] if campaign.tiers else [Problem(None, "Add at least one reward tier.")]

    def succeeded(self, campaign: Campaign) -> bool:
        if campaign.funding_model is FundingModel.KEEP_IT_ALL:
            return campaign.raised_amount > 0
        return campaign.raised_amount >= campaign.goal_amount

    def tier_ids(self, req: PledgeAsk) -> set[int]:
        return set() if req.tier_id is None else {req.tier_id}

    def pledge_terms(self, campaign: Campaign, req: PledgeAsk, tiers: dict[int, RewardTier]) -> PledgeTerms:
        if req.tier_id is None:
            minimum = Money.from_major(current_app.config["NO_REWARD_MINIMUM"], campaign.currency)
            amount = pledge_amount(req.amount, campaign, field="amount", minimum=minimum)
            return PledgeTerms(amount=amount, extra=Money.zero(campaign.currency))
        tier = tiers[req.tier_id]
        quantity = reward_quantity(req.quantity)
        extra = optional_extra(req.extra, campaign)
        address = None
        if tier.ships:
            address = pledge_text(
                req.shipping_address, MAX_ADDRESS_LENGTH, "shipping_address", "shipping address"
            )
            if not address:
                raise ValidationError(
                    "This reward is shipped: enter a shipping address.",
                    code=ErrorCode.VALIDATION_ERROR,
                    field="shipping_address",
                )
        if tier.quantity_limit is not None and tier.claimed + quantity > tier.quantity_limit:
            left = tier.quantity_limit - tier.claimed
            if left <= 0:
                raise Conflict(
                    f"Sorry, “{tier.title}” is sold out.", code=ErrorCode.SOLD_OUT, field="tier_id"
                )
            raise Conflict(
                f"Only {left} of “{tier.title}” left; choose a smaller quantity.",
                code=ErrorCode.SOLD_OUT,
                field="quantity",
            )
        amount = pledge_amount(tier.price * quantity + extra, campaign, field="quantity", label="total")
        return PledgeTerms(amount=amount, tier=tier, quantity=quantity, extra=extra, shipping_address=address)


class EquityRules(KindRules):
    kind = CampaignKind.EQUITY
    description = (
        "Investors buy shares in your organisation at a fixed price, between a minimum target "
        "and an oversubscription cap."
    )
    blurb = "Invest in a health company and own shares in it."
    review_checklist = (
        "The organisation is a registered company that can issue these securities.",
        "Price per share and valuation are plausible; targets and minimum investment are consistent.",
        "Risks are stated plainly in the story; no promises of returns.",
        "Health credentials (licences, approvals) match what the company does.",
    )
    term_fields = (
        "security_type",
        "price_per_share",
        "pre_money_valuation",
        "min_target",
        "max_target",
        "min_investment",
    )
    required_term_fields = term_fields
    investment = True
    _amounts = ("price_per_share", "pre_money_valuation", "min_target", "max_target", "min_investment")
    _amount_labels = {
        "price_per_share": "The price per share",
        "pre_money_valuation": "The pre-money valuation",
        "min_target": "The minimum target",
        "max_target": "The maximum target",
        "min_investment": "The minimum investment",
    }

    def terms_of(self, campaign: Campaign) -> EquityTerms | None:
        return campaign.equity_terms

    def current_terms(self, campaign: Campaign) -> dict[str, Any]:
        t = campaign.equity_terms
        if t is None:
            return {}
        values: dict[str, Any] = {"security_type": t.security_type}
        for name in self._amounts:
            values[name] = Money(getattr(t, f"{name}_amount"), campaign.currency)
        return values

    def parse_terms(self, raw: dict[str, Any], currency: str, errors: dict[str, str]) -> dict[str, Any]:
        values: dict[str, Any] = {
            "security_type": parsing.choice(
                SecurityType, raw.get("security_type"), "security_type", errors, "a type of security"
            )
        }
        for name in self._amounts:
            values[name] = parsing.money(raw.get(name), currency, name, errors, self._amount_labels[name])
        return values

    def store_terms(self, campaign: Campaign, values: dict[str, Any], errors: dict[str, str]) -> None:
        if values["max_target"] < values["min_target"]:
            errors["max_target"] = "The maximum target cannot be below the minimum target."
            return
        terms = campaign.equity_terms or EquityTerms()
        terms.security_type = values["security_type"]
        for name in self._amounts:
            setattr(terms, f"{name}_amount", values[name].amount)
        campaign.equity_terms = terms

    def clear_terms(self, campaign: Campaign) -> None:
        campaign.equity_terms = None

    def terms_problems(self, campaign: Campaign) -> list[Problem]:
        t = campaign.equity_terms
        if t is None:
            return [Problem("min_target", "Fill in the equity terms.")]
        problems = []
        if t.max_target_amount < t.min_target_amount:
            problems.append(Problem("max_target", "The maximum target cannot be below the minimum target."))
        if t.min_investment_amount > t.max_target_amount:
            problems.append(
                Problem("min_investment", "The minimum investment cannot exceed the maximum target.")
            )
        if t.price_per_share_amount <= 0:
            problems.append(Problem("price_per_share", "The price per share must be more than zero."))
        if t.min_target_amount != campaign.goal_amount:
            problems.append(
                Problem(
                    "goal",
                    f"For equity the goal is the minimum target: set the goal to "
                    f"{t.money('min_target').format()} or change the minimum target.",
                )
            )
        return problems

    def succeeded(self, campaign: Campaign) -> bool:
        return campaign.raised_amount >= campaign.equity_terms.min_target_amount

    def settlement_minimum(self, campaign: Campaign) -> Money | None:
        return Money(campaign.equity_terms.min_target_amount, campaign.currency)

    def settlement_waits(self, campaign: Campaign) -> bool:
        return campaign.equity_terms is not None and campaign.equity_terms.reconfirm_until is not None

    def closes_early(self, campaign: Campaign, now: datetime) -> bool:
        """At its maximum, after EQUITY_EARLY_CLOSE_DAYS — but never while an investor is
        still asked to reconfirm an amendment (`EquityTerms.reconfirm_until` is set)."""
        days = current_app.config["EQUITY_EARLY_CLOSE_DAYS"]
        return (
            campaign.equity_terms is not None
            and campaign.equity_terms.reconfirm_until is None
            and campaign.raised_amount >= campaign.equity_terms.max_target_amount
            and now >= campaign.start_at + timedelta(days=days)
        )

    def early_close_filter(self, now: datetime) -> ColumnElement[bool] | None:
        full = (
            select(EquityTerms.campaign_id)
            .where(
                EquityTerms.campaign_id == Campaign.id,
                EquityTerms.reconfirm_until.is_(None),
                Campaign.raised_amount >= EquityTerms.max_target_amount,
            )
            .exists()
        )
        return and_(
            Campaign.kind == self.kind,
            Campaign.start_at <= now - timedelta(days=current_app.config["EQUITY_EARLY_CLOSE_DAYS"]),
            full,
        )

    def cancellation_deadline(self, campaign: Campaign) -> datetime | None:
        return campaign.end_at - INVESTMENT_CANCELLATION_CUTOFF

    def pledge_terms(self, campaign: Campaign, req: PledgeAsk, tiers: dict[int, RewardTier]) -> PledgeTerms:
        terms = campaign.equity_terms
        price = Money(terms.price_per_share_amount, campaign.currency)
        amount = self._shares_amount(campaign, req, price) if req.shares is not None else None
        if amount is None:
            amount = pledge_amount(req.amount, campaign, field="amount")
            if amount.amount % price.amount:
                lower = amount.amount // price.amount
                raise ValidationError(
                    f"Invest in whole shares of {price}: for example "
                    f"{Money(lower * price.amount, campaign.currency)} ({lower} shares) or "
                    f"{Money((lower + 1) * price.amount, campaign.currency)} ({lower + 1} shares).",
                    code=ErrorCode.VALIDATION_ERROR,
                    field="amount",
                )
        minimum = Money(terms.min_investment_amount, campaign.currency)
        if amount < minimum:
            raise ValidationError(
                f"The minimum investment is {minimum}.", code=ErrorCode.BELOW_MINIMUM, field="amount"
            )
        check_room(campaign, amount, Money(terms.max_target_amount, campaign.currency), "round", minimum)
        require_risk(req)
        return PledgeTerms(amount=amount, shares=amount.amount // price.amount, risk_acknowledged=True)

    @staticmethod
    def _shares_amount(campaign: Campaign, req: PledgeAsk, price: Money) -> Money:
        shares = req.shares
        if isinstance(shares, bool) or not isinstance(shares, int) or shares < 1:
            raise ValidationError(
                "Enter a whole number of shares, at least 1.", code=ErrorCode.VALIDATION_ERROR, field="shares"
            )
        maximum = Money.from_major(current_app.config["PLEDGE_MAXIMUM"], campaign.currency)
        if price.amount * shares > maximum.amount:  # before Money, which refuses absurd sums
            raise ValidationError(
                f"That is too many shares: at most {maximum} per pledge.",
                code=ErrorCode.VALIDATION_ERROR,
                field="shares",
            )
        return pledge_amount(price * shares, campaign, field="shares")


class DebtRules(KindRules):
    kind = CampaignKind.DEBT
    description = (
        "Lenders fund a loan at a fixed annual rate over a fixed term; you repay them in instalments."
    )
    blurb = "Lend to a clinic or company and be repaid with interest."
    review_checklist = (
        "The borrower can repay: revenue, existing debt, track record.",
        "Rate and term are reasonable; the goal lies between the minimum and maximum.",
        "The organisation's credit grade allows borrowing.",
        "Clinic or care licences are valid.",
    )
    term_fields = ("annual_rate", "term_months", "min_amount", "max_amount", "min_loan_share")
    required_term_fields = term_fields
    investment = True

    def terms_of(self, campaign: Campaign) -> DebtTerms | None:
        return campaign.debt_terms

    def current_terms(self, campaign: Campaign) -> dict[str, Any]:
        t = campaign.debt_terms
        if t is None:
            return {}
        cur = campaign.currency
        return {
            "annual_rate": Decimal(t.annual_rate_bp) / 100,
            "term_months": t.term_months,
            "min_amount": Money(t.min_amount, cur),
            "max_amount": Money(t.max_amount, cur),
            "min_loan_share": Money(t.min_loan_share_amount, cur),
        }

    def parse_terms(self, raw: dict[str, Any], currency: str, errors: dict[str, str]) -> dict[str, Any]:
        return {
            "annual_rate": parsing.rate_bp(raw.get("annual_rate"), "annual_rate", errors),
            "term_months": parsing.whole_number(
                raw.get("term_months"), "term_months", errors, "The term in months", 1, MAX_TERM_MONTHS
            ),
            "min_amount": parsing.money(
                raw.get("min_amount"), currency, "min_amount", errors, "The minimum loan amount"
            ),
            "max_amount": parsing.money(
                raw.get("max_amount"), currency, "max_amount", errors, "The maximum loan amount"
            ),
            "min_loan_share": parsing.money(
                raw.get("min_loan_share"), currency, "min_loan_share", errors, "The smallest loan share"
            ),
        }

    def store_terms(self, campaign: Campaign, values: dict[str, Any], errors: dict[str, str]) -> None:
        if values["max_amount"] < values["min_amount"]:
            errors["max_amount"] = "The maximum loan amount cannot be below the minimum."
            return
        terms = campaign.debt_terms or DebtTerms()
        terms.annual_rate_bp = values["annual_rate"]
        terms.term_months = values["term_months"]
        terms.repayment_frequency = "monthly"
        terms.min_amount = values["min_amount"].amount
        terms.max_amount = values["max_amount"].amount
        terms.min_loan_share_amount = values["min_loan_share"].amount
        campaign.debt_terms = terms

    def clear_terms(self, campaign: Campaign) -> None:
        campaign.debt_terms = None

    def terms_problems(self, campaign: Campaign) -> list[Problem]:
        t = campaign.debt_terms
        if t is None:
            return [Problem("min_amount", "Fill in the loan terms.")]
        if not t.min_amount <= campaign.goal_amount <= t.max_amount:
            return [
                Problem(
                    "goal",
                    f"The goal must lie between the minimum ({Money(t.min_amount, campaign.currency)}) and the "
                    f"maximum ({Money(t.max_amount, campaign.currency)}) loan amount.",
                )
            ]
        return []

    def succeeded(self, campaign: Campaign) -> bool:
        return campaign.raised_amount >= campaign.debt_terms.min_amount

    def settlement_minimum(self, campaign: Campaign) -> Money | None:
        return Money(campaign.debt_terms.min_amount, campaign.currency)

    def cancellation_deadline(self, campaign: Campaign) -> datetime | None:
        return campaign.end_at - INVESTMENT_CANCELLATION_CUTOFF

    def pledge_terms(self, campaign: Campaign, req: PledgeAsk, tiers: dict[int, RewardTier]) -> PledgeTerms:
        terms = campaign.debt_terms
        minimum = Money(terms.min_loan_share_amount, campaign.currency)
        amount = pledge_amount(req.amount, campaign, field="amount")
        if amount < minimum:
            raise ValidationError(
                f"The minimum loan share is {minimum}.", code=ErrorCode.BELOW_MINIMUM, field="amount"
            )
        check_room(campaign, amount, Money(terms.max_amount, campaign.currency), "loan", minimum)
        require_risk(req)
        return PledgeTerms(amount=amount, risk_acknowledged=True)


class DonationRules(KindRules):
    kind = CampaignKind.DONATION
    description = (
        "Donors give without return and receive a receipt. Patient-aid campaigns are paid to the hospital."
    )
    blurb = "Give to a patient or a health cause and get a receipt."
    review_checklist = (
        "The beneficiary is real and the money reaches them.",
        "Patient aid: identity of patient and initiator, diagnosis and hospital documents, family assets disclosed.",
        "Patient aid: the hospital can receive payouts against invoices.",
        "The story respects the patient's privacy.",
    )
    term_fields = ("beneficiary_name", "is_patient_aid", "patient_name", "hospital_name", "diagnosis_summary")
    required_term_fields = ("beneficiary_name",)
    charge_at_close = False
    default_funding_model = FundingModel.KEEP_IT_ALL
    _texts = (
        ("beneficiary_name", MAX_NAME_LENGTH, "The beneficiary"),
        ("patient_name", MAX_NAME_LENGTH, "The patient's name"),
        ("hospital_name", MAX_NAME_LENGTH, "The hospital"),
        ("diagnosis_summary", MAX_DIAGNOSIS_LENGTH, "The diagnosis summary"),
    )

    def terms_of(self, campaign: Campaign) -> DonationTerms | None:
        return campaign.donation_terms

    def current_terms(self, campaign: Campaign) -> dict[str, Any]:
        t = campaign.donation_terms
        if t is None:
            return {}
        return {field: getattr(t, field) for field in self.term_fields}

    def parse_terms(self, raw: dict[str, Any], currency: str, errors: dict[str, str]) -> dict[str, Any]:
        values: dict[str, Any] = {"is_patient_aid": bool(raw.get("is_patient_aid"))}
        for field, limit, label in self._texts:
            values[field] = parsing.text(raw.get(field), field, limit, errors, label)
        return values

    def store_terms(self, campaign: Campaign, values: dict[str, Any], errors: dict[str, str]) -> None:
        terms = campaign.donation_terms or DonationTerms()
        for name, value in values.items():
            setattr(terms, name, value)
        campaign.donation_terms = terms

    def clear_terms(self, campaign: Campaign) -> None:
        campaign.donation_terms = None

    def submission_problems(self, campaign: Campaign, now: datetime) -> list[Problem]:
        t = campaign.donation_terms
        if t is None:
            return [Problem("beneficiary_name", "Say who receives the donations.")]
        if t.is_patient_aid:
            return self._patient_aid_problems(campaign, t)
        if campaign.category is HealthCategory.PATIENT_AID:
            return [Problem("is_patient_aid", "Tick 'This is patient aid' and give the patient's details.")]
        return []

    @staticmethod
    def _patient_aid_problems(campaign: Campaign, t: DonationTerms) -> list[Problem]:
        problems = []
        if not (t.patient_name or "").strip():
            problems.append(
                Problem("patient_name", "Enter the patient's name as on the hospital's documents.")
            )
        if not (t.hospital_name or "").strip():
            problems.append(
                Problem("hospital_name", "Enter the hospital that treats the patient; payouts go to it.")
            )
        if not (t.diagnosis_summary or "").strip():
            problems.append(Problem("diagnosis_summary", "Summarise the diagnosis."))
        cap = patient_aid_cap()
        if campaign.currency != cap.currency:
            problems.append(Problem("currency", f"Patient-aid campaigns raise money in {cap.currency}."))
        elif campaign.goal > cap:
            problems.append(Problem("goal", f"A patient-aid campaign can raise at most {cap.format()}."))
        if campaign.category is not HealthCategory.PATIENT_AID:
            problems.append(
                Problem("category", "Choose the Patient aid category for a patient-aid campaign.")
            )
        return problems

    def succeeded(self, campaign: Campaign) -> bool:
        return campaign.raised_amount > 0

    def pays_out_through_tranches(self, campaign: Campaign) -> bool:
        return bool(campaign.donation_terms and campaign.donation_terms.is_patient_aid)

    def cancellation_deadline(self, campaign: Campaign) -> datetime | None:
        return None

    def pledge_terms(self, campaign: Campaign, req: PledgeAsk, tiers: dict[int, RewardTier]) -> PledgeTerms:
        minimum = Money.from_major(current_app.config["DONATION_MINIMUM"], campaign.currency)
        amount = pledge_amount(req.amount, campaign, field="amount", minimum=minimum)
        message = pledge_text(req.message, MAX_MESSAGE_LENGTH, "message", "message")
        return PledgeTerms(amount=amount, message=message, anonymous=bool(req.anonymous))


#: The one instance of each kind's rules.
KINDS: dict[CampaignKind, KindRules] = {
    rules.kind: rules for rules in (RewardRules(), EquityRules(), DebtRules(), DonationRules())
}


def kind_rules(kind_or_campaign: CampaignKind | str | Campaign) -> KindRules:
    """The rules of a kind, given the kind, its value ("equity") or a campaign."""
    if isinstance(kind_or_campaign, Campaign):
        return KINDS[kind_or_campaign.kind]
    return KINDS[CampaignKind(kind_or_campaign)]
