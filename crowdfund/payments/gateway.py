"""The one gateway protocol the services talk to, and the typed results it returns.

Two implementations exist: `crowdfund.payments.sandbox.SandboxGateway` (built in,
offline, the default) and `crowdfund.payments.stripe_gateway.StripeGateway`. Nothing
outside this package knows which one is in use; `crowdfund.payments.service.get_gateway`
picks it from `PAYMENT_GATEWAY`.

Every call that moves money takes our idempotency key and a small metadata dict, and
every such call has a `find_…` twin that looks the object up again (by the gateway id
we stored, or by the key in its metadata) so that a crashed or timed-out call can be
reconciled instead of repeated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from crowdfund.errors import ErrorCode
from crowdfund.money import Money
from crowdfund.payments.models import ChargeOutcome, OperationKind

#: Metadata key under which every money-moving request carries our idempotency key.
KEY_METADATA = "hf_key"
#: Metadata key carrying our PaymentOperation id.
OPERATION_METADATA = "hf_operation"


@dataclass(frozen=True)
class GatewayResult:
    """What the gateway said about a charge, refund or payout.

    `outcome` is None while the gateway is still working on it (Stripe "processing");
    such an operation stays pending until a webhook or reconciliation settles it.
    """

    outcome: ChargeOutcome | None
    gateway_id: str | None = None
    #: The gateway's own status word ("succeeded", "requires_action", …), for people.
    status: str = ""
    amount: Money | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    #: TEMPORARY only: False when the gateway may have acted (timeout), True when it surely did not.
    certainly_not_done: bool = False
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SetupSession:
    """What the "add a card" page needs to collect a card."""

    gateway: str
    #: Stripe: the SetupIntent id and client secret Stripe.js confirms in the browser.
    reference: str | None = None
    client_secret: str | None = None
    publishable_key: str | None = None


@dataclass(frozen=True)
class SavedCard:
    """A card saved at the gateway: never more than brand, last four and expiry."""

    gateway_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    #: The bank wants the card holder to confirm the card before it can be charged.
    needs_authentication: bool = False
    #: Stripe: the SetupIntent that saved it.
    reference: str | None = None


@dataclass(frozen=True)
class PayoutAccountInfo:
    account_id: str
    payouts_enabled: bool
    bank_name: str | None = None
    last4: str | None = None


class CardError(Exception):
    """Saving a card failed; `message` tells the card holder what to do.

    `code` is one of our `ErrorCode`s or, from Stripe, a code of its open set of decline
    codes; the payment service turns it into one of ours (`models.error_code_for`).
    """

    def __init__(self, message: str, code: str = ErrorCode.CARD_DECLINED, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field


class GatewayUnavailable(Exception):
    """The gateway could not be reached or refused the request for a reason that is not the user's."""

    def __init__(self, message: str, outcome: ChargeOutcome = ChargeOutcome.TEMPORARY):
        super().__init__(message)
        self.message = message
        self.outcome = outcome


class Gateway(Protocol):
    """What a payment gateway does for HealthFund."""

    name: str

    def ensure_customer(self, *, user_id: int, email: str, name: str, customer_id: str | None) -> str:
        """Return the gateway customer id for this user, creating the customer if needed."""

    def begin_setup(self, *, customer_id: str) -> SetupSession:
        """Start saving a card for later off-session charges."""

    def confirm_setup(self, *, customer_id: str, data: dict[str, str]) -> SavedCard:
        """Finish saving a card from what the page posted; raises CardError."""

    def complete_authentication(
        self, *, customer_id: str, gateway_id: str, reference: str | None
    ) -> SavedCard:
        """The card holder confirmed the card with their bank; raises CardError if not."""

    def detach(self, *, customer_id: str, gateway_id: str) -> None:
        """Forget a saved card at the gateway."""

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
        """Charge a saved card off-session."""

    def refund(
        self, *, charge_id: str, amount: Money, idempotency_key: str, metadata: dict[str, str]
    ) -> GatewayResult:
        """Refund all or part of a charge."""

    def payout(
        self,
        *,
        destination: str,
        amount: Money,
        idempotency_key: str,
        description: str,
        metadata: dict[str, str],
    ) -> GatewayResult:
        """Send money to an organisation's or provider's account."""

    def retrieve(self, kind: OperationKind, gateway_id: str) -> GatewayResult:
        """The current state of a charge, refund or payout at the gateway."""

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
        """Look an earlier request up (by gateway id, else by the key in its metadata); None if it never happened."""

    def create_payout_account(
        self, *, organisation_id: int, name: str, country: str, email: str | None
    ) -> str:
        """Create the account an organisation is paid into; returns its id."""

    def payout_account_info(self, account_id: str) -> PayoutAccountInfo:
        """Whether the account can receive money yet."""

    def onboarding_link(self, *, account_id: str, return_url: str, refresh_url: str) -> str | None:
        """Where the campaigner completes their payout details (None when nothing is needed)."""
