"""What we know about payments, whichever gateway moves the money.

`PaymentOperation` is the heart of exactly-once: every charge, refund and payout is
written down as *pending*, with its idempotency key, and committed before the gateway
is called; the outcome is recorded afterwards. A pending operation therefore means
"the gateway may or may not have acted": it is reconciled (looked up at the gateway)
before anything is tried again. `PaymentMethod`, `GatewayCustomer` and `PayoutAccount`
map our users and organisations to the gateway's ids; `WebhookEvent` stores each
gateway event once. No table here ever holds a full card number.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crowdfund.errors import ErrorCode, describe
from crowdfund.extensions import db
from crowdfund.models_base import StateMachine, UTCDateTime, enum_column, utcnow
from crowdfund.money import Money


class ChargeOutcome(enum.StrEnum):
    """What a gateway call came to, in terms the rest of the code can act on."""

    SUCCEEDED = "succeeded"
    #: The bank said no; the operation's `failure_code` says why.
    DECLINED = "declined"
    #: The bank wants the card holder to confirm (3-D Secure); the backer must act.
    NEEDS_AUTHENTICATION = "needs_authentication"
    #: Rate-limited, unreachable or a gateway hiccup: try again later with the same key.
    TEMPORARY = "temporary"
    #: A request that will never work as it is (bad configuration, unknown card).
    PERMANENT = "permanent"


class OperationKind(enum.StrEnum):
    CHARGE = "charge"
    REFUND = "refund"
    PAYOUT = "payout"


class OperationState(enum.StrEnum):
    #: Persisted before the gateway call; the outcome is not known (yet).
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: The card holder must authenticate before the charge can go through.
    REQUIRES_ACTION = "requires_action"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ").capitalize()


#: Every allowed move of an operation; a final state never changes again.
OPERATION_TRANSITIONS: dict[OperationState, frozenset[OperationState]] = {
    OperationState.PENDING: frozenset(
        {OperationState.SUCCEEDED, OperationState.FAILED, OperationState.REQUIRES_ACTION}
    ),
    OperationState.REQUIRES_ACTION: frozenset({OperationState.SUCCEEDED, OperationState.FAILED}),
    OperationState.SUCCEEDED: frozenset(),
    OperationState.FAILED: frozenset(),
}

#: Gateway codes that mean something of ours under another name.
GATEWAY_CODE_ALIASES: dict[str, ErrorCode] = {
    "authentication_required": ErrorCode.REQUIRES_ACTION,
    "payment_intent_authentication_failure": ErrorCode.REQUIRES_ACTION,
    "incorrect_number": ErrorCode.INVALID_NUMBER,
    "rate_limited": ErrorCode.GATEWAY_UNAVAILABLE,
    "no_customer": ErrorCode.SETUP_MISSING,
}
#: Our codes a gateway may name directly (the rest of its open set of decline codes is a decline).
GATEWAY_CODES_OF_OURS = frozenset(
    {
        ErrorCode.CARD_DECLINED,
        ErrorCode.INSUFFICIENT_FUNDS,
        ErrorCode.EXPIRED_CARD,
        ErrorCode.INCORRECT_CVC,
        ErrorCode.INVALID_NUMBER,
        ErrorCode.INVALID_EXPIRY,
        ErrorCode.INVALID_CVC,
        ErrorCode.CARD_MISSING,
        ErrorCode.SETUP_MISSING,
        ErrorCode.SETUP_MISMATCH,
        ErrorCode.GATEWAY_UNAVAILABLE,
        ErrorCode.GATEWAY_CONFIGURATION,
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
    }
)


def error_code_for(gateway_code: str | None, default: ErrorCode = ErrorCode.CARD_DECLINED) -> ErrorCode:
    """Our stable code for a code a gateway answered with (an open set: unknown ones are `default`)."""
    code = (gateway_code or "").strip()
    if code in GATEWAY_CODE_ALIASES:
        return GATEWAY_CODE_ALIASES[code]
    if code in GATEWAY_CODES_OF_OURS:
        return ErrorCode(code)
    return default


class MethodStatus(enum.StrEnum):
    USABLE = "usable"
    #: Saved, but the card holder has not yet confirmed it with their bank.
    REQUIRES_AUTHENTICATION = "requires_authentication"
    REMOVED = "removed"


class GatewayCustomer(db.Model):
    """A user's customer record at one gateway (Stripe `cus_…`, sandbox `sbcus_…`)."""

    __tablename__ = "payment_gateway_customers"
    __table_args__ = (UniqueConstraint("user_id", "gateway"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    gateway: Mapped[str] = mapped_column(String(20))
    customer_id: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PaymentMethod(db.Model):
    """A card a user saved for later off-session charges: brand, last four and expiry only."""

    __tablename__ = "payment_methods"
    __table_args__ = (
        UniqueConstraint("gateway", "gateway_id"),
        CheckConstraint("exp_month BETWEEN 1 AND 12", name="exp_month_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    gateway: Mapped[str] = mapped_column(String(20))
    #: The gateway's id for the saved card (Stripe `pm_…`, sandbox `sbpm_…`).
    gateway_id: Mapped[str] = mapped_column(String(100))
    brand: Mapped[str] = mapped_column(String(20))
    last4: Mapped[str] = mapped_column(String(4))
    exp_month: Mapped[int] = mapped_column(Integer)
    exp_year: Mapped[int] = mapped_column(Integer)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[MethodStatus] = mapped_column(
        enum_column(MethodStatus, "payment_method_status"), default=MethodStatus.USABLE
    )
    #: Stripe: the SetupIntent waiting for authentication; sandbox: unused.
    setup_reference: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user = relationship("User")

    @property
    def label(self) -> str:
        """'Visa •••• 4242 (12/30)'."""
        return f"{BRAND_LABELS.get(self.brand, self.brand.title())} \u2022\u2022\u2022\u2022 {self.last4} ({self.expiry})"

    @property
    def expiry(self) -> str:
        return f"{self.exp_month:02d}/{self.exp_year % 100:02d}"

    @property
    def is_usable(self) -> bool:
        return self.status is MethodStatus.USABLE

    def is_expired_at(self, when: datetime) -> bool:
        return (self.exp_year, self.exp_month) < (when.year, when.month)


BRAND_LABELS = {
    "visa": "Visa",
    "mastercard": "Mastercard",
    "amex": "American Express",
    "discover": "Discover",
    "unionpay": "UnionPay",
    "jcb": "JCB",
    "diners": "Diners Club",
    "unknown": "Card",
}


class PaymentOperation(StateMachine, db.Model):
    """One charge, refund or payout: intent first, outcome after (see module docstring).

    Its states move only as `OPERATION_TRANSITIONS` allows; staying in the same state is
    allowed (a gateway may say the same thing twice).
    """

    TRANSITIONS = OPERATION_TRANSITIONS
    ALLOW_SAME_STATE = True
    STATE_MODEL_NAME = "payment"

    __tablename__ = "payment_operations"
    __table_args__ = (
        CheckConstraint("amount_amount > 0", name="amount_positive"),
        CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= amount_amount", name="refund_within_amount"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[OperationKind] = mapped_column(
        enum_column(OperationKind, "payment_operation_kind"), index=True
    )
    #: The caller's key: the same key never moves money twice.
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    gateway: Mapped[str] = mapped_column(String(20))
    state: Mapped[OperationState] = mapped_column(
        enum_column(OperationState, "payment_operation_state"), default=OperationState.PENDING, index=True
    )
    #: The typed outcome of the last gateway answer (None while nothing came back).
    result: Mapped[ChargeOutcome | None] = mapped_column(enum_column(ChargeOutcome, "payment_outcome"))
    amount_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    #: Charges only: how much of it has been refunded (succeeded refunds).
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    payment_method_id: Mapped[int | None] = mapped_column(ForeignKey("payment_methods.id"))
    #: Refunds: the charge being refunded.
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("payment_operations.id"), index=True)
    #: The gateway's id once known (PaymentIntent `pi_…`, refund `re_…`, transfer `tr_…`, sandbox ids).
    gateway_id: Mapped[str | None] = mapped_column(String(100), index=True)
    #: Payouts: the gateway account that receives the money (Stripe `acct_…`, sandbox `sbacct_…`).
    destination: Mapped[str | None] = mapped_column(String(100))
    #: Payouts to a health provider (hospital) rather than to the organisation itself.
    provider_id: Mapped[int | None] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(300), default="")
    #: The gateway's code for the last failure, as it sent it (an open set, for operators);
    #: `error_code` is ours, and the sentence shown to people is rendered from that.
    failure_code: Mapped[str | None] = mapped_column(String(60))
    #: The gateway's own words about the failure, for operators only (never shown to backers).
    gateway_message: Mapped[str | None] = mapped_column(String(500))
    #: Strings sent to the gateway with the request (pledge id, campaign id …).
    details: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    #: How many times the gateway has been called for this operation.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Set while one process is calling the gateway for this operation; nobody else calls
    #: it before then (a process that died mid-call leaves it to expire).
    call_lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Idempotency key of the ledger transaction posted for the outcome, once posted.
    ledger_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    parent: Mapped[PaymentOperation | None] = relationship(remote_side=[id])
    payment_method: Mapped[PaymentMethod | None] = relationship()

    @property
    def amount(self) -> Money:
        return Money(self.amount_amount, self.currency)

    @property
    def refunded(self) -> Money:
        return Money(self.refunded_amount or 0, self.currency)

    @property
    def refundable(self) -> Money:
        if self.kind is not OperationKind.CHARGE or self.state is not OperationState.SUCCEEDED:
            return Money.zero(self.currency)
        return self.amount - self.refunded

    @property
    def error_code(self) -> ErrorCode | None:
        """Our stable code for why this operation failed or waits (None when nothing went wrong)."""
        if not self.failure_code:
            return None
        if self.state is OperationState.REQUIRES_ACTION or self.result is ChargeOutcome.NEEDS_AUTHENTICATION:
            return ErrorCode.REQUIRES_ACTION
        if self.result is ChargeOutcome.TEMPORARY:
            return ErrorCode.GATEWAY_UNAVAILABLE
        default = ErrorCode.CARD_DECLINED if self.kind is OperationKind.CHARGE else ErrorCode.FAILED
        return error_code_for(self.failure_code, default)

    @property
    def failure_message(self) -> str | None:
        """What the person who can act on it reads, rendered from `error_code`."""
        code = self.error_code
        return describe(code) if code is not None else None

    def __repr__(self) -> str:
        return f"<PaymentOperation {self.id} {self.kind.value} {self.state.value} {self.amount}>"


class PayoutAccount(db.Model):
    """Where an organisation's money goes: a Stripe Connect account or a sandbox bank account."""

    __tablename__ = "payout_accounts"
    __table_args__ = (UniqueConstraint("organisation_id", "gateway"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    gateway: Mapped[str] = mapped_column(String(20))
    #: Stripe Connect `acct_…` or sandbox `sbacct_…`.
    account_id: Mapped[str] = mapped_column(String(100), unique=True)
    #: Sandbox: the bank name the campaigner typed; Stripe: None (Stripe holds the details).
    bank_name: Mapped[str | None] = mapped_column(String(120))
    last4: Mapped[str | None] = mapped_column(String(4))
    #: True once the gateway says the account can receive transfers.
    payouts_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WebhookEvent(db.Model):
    """A gateway event, stored once by its id; replays are acknowledged and ignored."""

    __tablename__ = "payment_webhook_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(100), unique=True)
    type: Mapped[str] = mapped_column(String(100), index=True)
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: When we acted on it (or decided there was nothing to do); None if handling failed.
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: What we did: "charge 12 succeeded", "ignored", or the error that stopped us.
    outcome: Mapped[str | None] = mapped_column(String(300))
