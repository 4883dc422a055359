"""The built-in sandbox gateway: offline, stateful in our database, no real money.

It behaves like a small payment processor living next to the site: it has its own
tables (`sandbox_*`), commits them in its own transaction (so, like a real gateway, what
it did survives when our side crashes before recording the outcome), honours idempotency
keys, and gives Stripe's test card numbers their Stripe meanings:

    4242 4242 4242 4242  succeeds
    4000 0000 0000 0002  is declined when saved
    4000 0000 0000 9995  is declined when saved: insufficient funds
    4000 0027 6000 3184  needs authentication (the card holder confirms it on a page)
    4000 0000 0000 0341  is saved, but every charge on it is declined
    4000 0000 0000 9987  is saved, but every charge on it is declined for good (lost card)
    4000 0000 0000 3220  is saved, but an off-session charge needs the card holder's
                         confirmation (succeeds on-session: metadata hf_on_session=1)

Any other number that passes the Luhn check is accepted and charged successfully. A card
number is looked at once, when the card is saved; only brand, last four, expiry and the
behaviour it selects are kept.
"""

from __future__ import annotations

import enum
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from crowdfund.errors import ErrorCode
from crowdfund.extensions import db
from crowdfund.models_base import UTCDateTime, enum_column, utcnow
from crowdfund.money import Money
from crowdfund.payments.gateway import (
    CardError,
    GatewayResult,
    PayoutAccountInfo,
    SavedCard,
    SetupSession,
)
from crowdfund.payments.models import ChargeOutcome, OperationKind


class CardBehaviour(enum.StrEnum):
    SUCCEEDS = "succeeds"
    #: Saved fine; every charge is declined (4000 0000 0000 0341).
    DECLINES_CHARGES = "declines_charges"
    #: Needs the card holder's confirmation before it can be charged (4000 0027 6000 3184).
    NEEDS_AUTHENTICATION = "needs_authentication"
    #: Saved fine; every charge is declined as a lost card, never to be tried again (4000 0000 0000 9987).
    LOST_CARD = "lost_card"
    #: Saved fine; an off-session charge needs the card holder (4000 0000 0000 3220).
    AUTHENTICATES_CHARGES = "authenticates_charges"


#: Numbers refused when saving: (failure code, what the card holder should do).
DECLINED_ON_SAVE = {
    "4000000000000002": (
        ErrorCode.CARD_DECLINED,
        "Your card was declined. Use another card or ask your bank why.",
    ),
    "4000000000009995": (
        ErrorCode.INSUFFICIENT_FUNDS,
        "Your card has insufficient funds. Use another card or add money to the account.",
    ),
    "4000000000000069": (ErrorCode.EXPIRED_CARD, "Your card has expired. Use a card that is still valid."),
    "4000000000000127": (
        ErrorCode.INCORRECT_CVC,
        "The security code (CVC) is wrong. Check the back of your card.",
    ),
}
#: Numbers with a special behaviour once saved.
SPECIAL_BEHAVIOUR = {
    "4000002760003184": CardBehaviour.NEEDS_AUTHENTICATION,
    "4000000000000341": CardBehaviour.DECLINES_CHARGES,
    "4000000000009987": CardBehaviour.LOST_CARD,
    "4000000000003220": CardBehaviour.AUTHENTICATES_CHARGES,
}
#: Metadata a charge made with the card holder present carries (on-session confirmation).
ON_SESSION_METADATA = "hf_on_session"
#: Shown on the sandbox card form.
TEST_CARDS = [
    ("4242 4242 4242 4242", "Succeeds"),
    ("4000 0000 0000 0002", "Declined when saved"),
    ("4000 0000 0000 9995", "Declined when saved: insufficient funds"),
    ("4000 0027 6000 3184", "Asks you to confirm the card with your bank (authentication)"),
    ("4000 0000 0000 0341", "Saved, but declined when charged"),
    ("4000 0000 0000 9987", "Saved, but declined for good when charged (lost card)"),
    ("4000 0000 0000 3220", "Saved, but each charge asks you to confirm it with your bank"),
]
CHARGE_DECLINED_MESSAGE = "Your bank declined the payment. Use another card or ask your bank why."
AUTHENTICATION_MESSAGE = (
    "Your bank asks you to confirm this card before it can be charged. "
    "Open your payment methods and confirm it, or add another card."
)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


# --- the sandbox's own tables ----------------------------------------------------------
class SandboxCustomer(db.Model):
    __tablename__ = "sandbox_customers"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(120))
    #: Our user id, like the metadata a real gateway keeps.
    user_id: Mapped[int] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SandboxCard(db.Model):
    """A saved sandbox card: never the number, only what identifies it and how it behaves."""

    __tablename__ = "sandbox_cards"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("sandbox_customers.id"), index=True)
    brand: Mapped[str] = mapped_column(String(20))
    last4: Mapped[str] = mapped_column(String(4))
    exp_month: Mapped[int] = mapped_column(Integer)
    exp_year: Mapped[int] = mapped_column(Integer)
    behaviour: Mapped[CardBehaviour] = mapped_column(enum_column(CardBehaviour, "sandbox_card_behaviour"))
    authenticated: Mapped[bool] = mapped_column(Boolean, default=False)
    detached: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SandboxCharge(db.Model):
    __tablename__ = "sandbox_charges"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    customer_id: Mapped[str] = mapped_column(String(40), index=True)
    card_id: Mapped[str] = mapped_column(String(40))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    #: succeeded | failed | requires_action
    status: Mapped[str] = mapped_column(String(20))
    failure_code: Mapped[str | None] = mapped_column(String(60))
    refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    details: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SandboxRefund(db.Model):
    __tablename__ = "sandbox_refunds"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    charge_id: Mapped[str] = mapped_column(ForeignKey("sandbox_charges.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20))
    details: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SandboxAccount(db.Model):
    """A sandbox bank account an organisation is paid into."""

    __tablename__ = "sandbox_accounts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organisation_id: Mapped[int] = mapped_column(Integer, index=True)
    name: Mapped[str] = mapped_column(String(200))
    bank_name: Mapped[str | None] = mapped_column(String(120))
    last4: Mapped[str | None] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SandboxPayout(db.Model):
    __tablename__ = "sandbox_payouts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    destination: Mapped[str] = mapped_column(String(40), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(String(300), default="")
    details: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- card numbers ------------------------------------------------------------------------
def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_brand(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"34", "37"}:
        return "amex"
    if number[:2] in {"51", "52", "53", "54", "55"} or 2221 <= int(number[:4]) <= 2720:
        return "mastercard"
    if number.startswith("62"):
        return "unionpay"
    if number.startswith("6011") or number.startswith("65"):
        return "discover"
    if number.startswith("35"):
        return "jcb"
    if number[:2] in {"30", "36", "38"}:
        return "diners"
    return "unknown"


_EXPIRY_RE = re.compile(r"^\s*(\d{1,2})\s*/\s*(\d{2}|\d{4})\s*$")


def parse_expiry(text: str, now: datetime | None = None) -> tuple[int, int]:
    """'12/30' or '12 / 2030' -> (12, 2030); CardError if malformed or in the past."""
    match = _EXPIRY_RE.match(text or "")
    if not match:
        raise CardError(
            "Write the expiry date as MM/YY, for example 12/30.", ErrorCode.INVALID_EXPIRY, "expiry"
        )
    month, year = int(match.group(1)), int(match.group(2))
    if year < 100:
        year += 2000
    if not 1 <= month <= 12:
        raise CardError("The expiry month must be between 01 and 12.", ErrorCode.INVALID_EXPIRY, "expiry")
    now = now or utcnow()
    if (year, month) < (now.year, now.month):
        raise CardError(
            "This card has expired. Use a card that is still valid.", ErrorCode.EXPIRED_CARD, "expiry"
        )
    if year > now.year + 30:
        raise CardError("That expiry year is too far in the future.", ErrorCode.INVALID_EXPIRY, "expiry")
    return month, year


def normalise_number(text: str) -> str:
    """Digits only; CardError for anything that cannot be a card number."""
    digits = re.sub(r"[\s-]", "", text or "")
    if not (digits.isascii() and digits.isdigit()) or not 12 <= len(digits) <= 19:
        raise CardError("Enter the 12 to 19 digits of the card number.", ErrorCode.INVALID_NUMBER, "number")
    if not luhn_ok(digits):
        raise CardError(
            "That card number is not valid. Check the digits.", ErrorCode.INVALID_NUMBER, "number"
        )
    return digits


# --- the gateway -------------------------------------------------------------------------
@contextmanager
def _sandbox_transaction() -> Iterator[Session]:
    """A transaction of the sandbox's own, committed independently of the caller's."""
    with Session(db.engine, expire_on_commit=False) as session:
        if session.get_bind().dialect.name == "sqlite":
            session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        yield session
        session.commit()


def _charge_result(charge: SandboxCharge) -> GatewayResult:
    amount = Money(charge.amount, charge.currency)
    if charge.status == "succeeded":
        return GatewayResult(
            ChargeOutcome.SUCCEEDED, charge.id, "succeeded", amount, metadata=dict(charge.details)
        )
    if charge.status == "requires_action":
        return GatewayResult(
            ChargeOutcome.NEEDS_AUTHENTICATION,
            charge.id,
            "requires_action",
            amount,
            "authentication_required",
            AUTHENTICATION_MESSAGE,
            metadata=dict(charge.details),
        )
    if charge.failure_code == "card_missing":
        return GatewayResult(
            ChargeOutcome.PERMANENT,
            charge.id,
            "failed",
            amount,
            "card_missing",
            "This card is no longer saved. Add a card and try again.",
            metadata=dict(charge.details),
        )
    return GatewayResult(
        ChargeOutcome.DECLINED,
        charge.id,
        "failed",
        amount,
        charge.failure_code or "card_declined",
        CHARGE_DECLINED_MESSAGE,
        metadata=dict(charge.details),
    )


def _simple_result(obj: SandboxRefund | SandboxPayout) -> GatewayResult:
    return GatewayResult(
        ChargeOutcome.SUCCEEDED if obj.status == "succeeded" else ChargeOutcome.PERMANENT,
        obj.id,
        obj.status,
        Money(obj.amount, obj.currency),
        metadata=dict(obj.details),
    )


def _replay(session, model, idempotency_key: str, result, **expected) -> GatewayResult | None:
    """The stored answer for a key already used (None if it is new).

    The same key with other content (`expected` column values) is refused, as Stripe does.
    """
    existing = session.scalars(select(model).where(model.idempotency_key == idempotency_key)).first()
    if existing is None:
        return None
    same = all(getattr(existing, name) == value for name, value in expected.items())
    return result(existing) if same else _key_reused()


def _key_reused() -> GatewayResult:
    return GatewayResult(
        ChargeOutcome.PERMANENT,
        None,
        "idempotency_error",
        failure_code="idempotency_key_reused",
        failure_message="This idempotency key was already used for a different request.",
        certainly_not_done=True,
    )


def _needs_authentication(card: SandboxCard, metadata: dict[str, str]) -> bool:
    """The bank wants the card holder: an unconfirmed 3184 card, or a 3220 card charged off-session."""
    if metadata.get(ON_SESSION_METADATA) == "1":
        return False
    if card.behaviour is CardBehaviour.NEEDS_AUTHENTICATION:
        return not card.authenticated
    return card.behaviour is CardBehaviour.AUTHENTICATES_CHARGES


class SandboxGateway:
    """The offline gateway; see the module docstring."""

    name = "sandbox"

    # customers and cards ------------------------------------------------------------
    def ensure_customer(self, *, user_id: int, email: str, name: str, customer_id: str | None) -> str:
        with _sandbox_transaction() as s:
            if customer_id and s.get(SandboxCustomer, customer_id) is not None:
                return customer_id
            existing = s.scalars(select(SandboxCustomer).where(SandboxCustomer.user_id == user_id)).first()
            if existing is not None:
                return existing.id
            customer = SandboxCustomer(id=_new_id("sbcus"), email=email, name=name, user_id=user_id)
            s.add(customer)
            return customer.id

    def begin_setup(self, *, customer_id: str) -> SetupSession:
        return SetupSession(gateway=self.name)

    def confirm_setup(self, *, customer_id: str, data: dict[str, str]) -> SavedCard:
        number = normalise_number(data.get("number", ""))
        exp_month, exp_year = parse_expiry(data.get("expiry", ""))
        cvc = (data.get("cvc") or "").strip()
        if not (cvc.isascii() and cvc.isdigit()) or len(cvc) not in (3, 4):
            raise CardError(
                "The security code (CVC) is the 3 or 4 digits on your card.", ErrorCode.INVALID_CVC, "cvc"
            )
        if number in DECLINED_ON_SAVE:
            code, message = DECLINED_ON_SAVE[number]
            raise CardError(message, code)
        behaviour = SPECIAL_BEHAVIOUR.get(number, CardBehaviour.SUCCEEDS)
        with _sandbox_transaction() as s:
            if s.get(SandboxCustomer, customer_id) is None:
                raise CardError(
                    "Your payment profile was not found; reload the page and try again.",
                    ErrorCode.SETUP_MISSING,
                )
            card = SandboxCard(
                id=_new_id("sbpm"),
                customer_id=customer_id,
                brand=card_brand(number),
                last4=number[-4:],
                exp_month=exp_month,
                exp_year=exp_year,
                behaviour=behaviour,
                authenticated=False,
            )
            s.add(card)
        return SavedCard(
            gateway_id=card.id,
            brand=card.brand,
            last4=card.last4,
            exp_month=exp_month,
            exp_year=exp_year,
            needs_authentication=behaviour is CardBehaviour.NEEDS_AUTHENTICATION,
        )

    def complete_authentication(
        self, *, customer_id: str, gateway_id: str, reference: str | None
    ) -> SavedCard:
        with _sandbox_transaction() as s:
            card = s.get(SandboxCard, gateway_id)
            if card is None or card.customer_id != customer_id or card.detached:
                raise CardError("This card is no longer saved. Add it again.", ErrorCode.CARD_MISSING)
            card.authenticated = True
        return SavedCard(card.id, card.brand, card.last4, card.exp_month, card.exp_year, False)

    def detach(self, *, customer_id: str, gateway_id: str) -> None:
        with _sandbox_transaction() as s:
            card = s.get(SandboxCard, gateway_id)
            if card is not None and card.customer_id == customer_id:
                card.detached = True

    # money --------------------------------------------------------------------------
    def charge(
        self,
        *,
        customer_id: str,
        payment_method_id: str,
        amount: Money,
        idempotency_key: str,
        description: str,
        metadata: dict[str, str],
    ) -> GatewayResult:
        with _sandbox_transaction() as s:
            replayed = _replay(
                s,
                SandboxCharge,
                idempotency_key,
                _charge_result,
                amount=amount.amount,
                currency=amount.currency,
                card_id=payment_method_id,
            )
            if replayed is not None:
                return replayed
            card = s.get(SandboxCard, payment_method_id)
            charge = SandboxCharge(
                id=_new_id("sbch"),
                idempotency_key=idempotency_key,
                customer_id=customer_id,
                card_id=payment_method_id,
                amount=amount.amount,
                currency=amount.currency,
                details=dict(metadata),
            )
            if card is None or card.customer_id != customer_id or card.detached:
                charge.status, charge.failure_code = "failed", "card_missing"
            elif card.behaviour is CardBehaviour.DECLINES_CHARGES:
                charge.status, charge.failure_code = "failed", "card_declined"
            elif card.behaviour is CardBehaviour.LOST_CARD:
                charge.status, charge.failure_code = "failed", "lost_card"
            elif _needs_authentication(card, metadata):
                charge.status, charge.failure_code = "requires_action", "authentication_required"
            else:
                charge.status = "succeeded"
            s.add(charge)
        return _charge_result(charge)

    def refund(
        self, *, charge_id: str, amount: Money, idempotency_key: str, metadata: dict[str, str]
    ) -> GatewayResult:
        with _sandbox_transaction() as s:
            replayed = _replay(
                s,
                SandboxRefund,
                idempotency_key,
                _simple_result,
                charge_id=charge_id,
                amount=amount.amount,
                currency=amount.currency,
            )
            if replayed is not None:
                return replayed
            charge = s.get(SandboxCharge, charge_id, with_for_update=True)
            if charge is None or charge.status != "succeeded":
                return GatewayResult(
                    ChargeOutcome.PERMANENT,
                    None,
                    "failed",
                    amount,
                    "charge_not_refundable",
                    "Only a successful charge can be refunded.",
                    certainly_not_done=True,
                )
            if charge.currency != amount.currency or charge.refunded + amount.amount > charge.amount:
                return GatewayResult(
                    ChargeOutcome.PERMANENT,
                    None,
                    "failed",
                    amount,
                    "amount_too_large",
                    "The refund is larger than what is left of the charge.",
                    certainly_not_done=True,
                )
            charge.refunded += amount.amount
            refund = SandboxRefund(
                id=_new_id("sbre"),
                idempotency_key=idempotency_key,
                charge_id=charge_id,
                amount=amount.amount,
                currency=amount.currency,
                status="succeeded",
                details=dict(metadata),
            )
            s.add(refund)
        return _simple_result(refund)

    def payout(
        self,
        *,
        destination: str,
        amount: Money,
        idempotency_key: str,
        description: str,
        metadata: dict[str, str],
    ) -> GatewayResult:
        with _sandbox_transaction() as s:
            replayed = _replay(
                s,
                SandboxPayout,
                idempotency_key,
                _simple_result,
                destination=destination,
                amount=amount.amount,
                currency=amount.currency,
            )
            if replayed is not None:
                return replayed
            if s.get(SandboxAccount, destination) is None:
                return GatewayResult(
                    ChargeOutcome.PERMANENT,
                    None,
                    "failed",
                    amount,
                    "no_such_destination",
                    "The organisation has not set up a payout account yet.",
                    certainly_not_done=True,
                )
            payout = SandboxPayout(
                id=_new_id("sbpo"),
                idempotency_key=idempotency_key,
                destination=destination,
                amount=amount.amount,
                currency=amount.currency,
                status="succeeded",
                description=description[:300],
                details=dict(metadata),
            )
            s.add(payout)
        return _simple_result(payout)

    def retrieve(self, kind: OperationKind, gateway_id: str) -> GatewayResult:
        model = {OperationKind.CHARGE: SandboxCharge, OperationKind.REFUND: SandboxRefund}.get(
            kind, SandboxPayout
        )
        with _sandbox_transaction() as s:
            obj = s.get(model, gateway_id)
            if obj is None:
                return GatewayResult(
                    ChargeOutcome.PERMANENT,
                    gateway_id,
                    "missing",
                    failure_code="resource_missing",
                    failure_message="",
                )
            return _charge_result(obj) if kind is OperationKind.CHARGE else _simple_result(obj)

    def find(
        self,
        kind: OperationKind,
        *,
        idempotency_key: str,
        gateway_id: str | None,
        customer_id: str | None = None,
        parent_id: str | None = None,
        destination: str | None = None,
    ) -> GatewayResult | None:
        if gateway_id:
            return self.retrieve(kind, gateway_id)
        model = {OperationKind.CHARGE: SandboxCharge, OperationKind.REFUND: SandboxRefund}.get(
            kind, SandboxPayout
        )
        with _sandbox_transaction() as s:
            obj = s.scalars(select(model).where(model.idempotency_key == idempotency_key)).first()
            if obj is None:
                return None
            return _charge_result(obj) if kind is OperationKind.CHARGE else _simple_result(obj)

    # payout accounts ----------------------------------------------------------------
    def create_payout_account(
        self, *, organisation_id: int, name: str, country: str, email: str | None
    ) -> str:
        with _sandbox_transaction() as s:
            account = SandboxAccount(id=_new_id("sbacct"), organisation_id=organisation_id, name=name)
            s.add(account)
            return account.id

    def set_bank_details(self, account_id: str, *, bank_name: str, account_number: str) -> PayoutAccountInfo:
        """Sandbox only: the campaigner's bank, keeping the last four digits of the account number."""
        digits = re.sub(r"[\s-]", "", account_number or "")
        with _sandbox_transaction() as s:
            account = s.get(SandboxAccount, account_id)
            account.bank_name = bank_name
            account.last4 = digits[-4:]
            return PayoutAccountInfo(account.id, True, account.bank_name, account.last4)

    def payout_account_info(self, account_id: str) -> PayoutAccountInfo:
        with _sandbox_transaction() as s:
            account = s.get(SandboxAccount, account_id)
            if account is None:
                return PayoutAccountInfo(account_id, False)
            return PayoutAccountInfo(account.id, bool(account.bank_name), account.bank_name, account.last4)

    def onboarding_link(self, *, account_id: str, return_url: str, refresh_url: str) -> str | None:
        return None

    # for reconciliation ---------------------------------------------------------------
    def list_charges(self) -> list[GatewayResult]:
        """Every sandbox charge, so reconciliation can spot one we have no record of."""
        with _sandbox_transaction() as s:
            return [
                _charge_result(c) for c in s.scalars(select(SandboxCharge).order_by(SandboxCharge.created_at))
            ]
