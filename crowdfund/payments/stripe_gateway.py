"""The Stripe gateway: real money, through the official `stripe` library.

- One Stripe Customer per user (found again by e-mail and our user id in its metadata).
- Cards are saved with a SetupIntent that Stripe.js confirms in the browser; card data
  never reaches our server. We only keep the PaymentMethod id, brand, last four, expiry.
- Charges are off-session PaymentIntents created and confirmed in one call, with our
  idempotency key and metadata (operation, key, pledge, campaign).
- Refunds refund a PaymentIntent; payouts are Stripe Connect Transfers to the
  organisation's Express account, which the campaigner sets up through an AccountLink.
- Lookups for reconciliation go by the stored id, else by the key in the metadata, so
  exactly-once does not depend on Stripe honouring idempotency keys.

The client is built per gateway with the configured secret key and, when
STRIPE_API_BASE is set (the test suite points it at localstripe), that API base.
Amounts are Stripe's minor units, which are ours for every currency we support.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import stripe

from crowdfund.errors import ErrorCode
from crowdfund.money import Money
from crowdfund.payments.gateway import (
    KEY_METADATA,
    CardError,
    GatewayResult,
    GatewayUnavailable,
    PayoutAccountInfo,
    SavedCard,
    SetupSession,
)
from crowdfund.payments.models import ChargeOutcome, OperationKind

#: What a backer can do about each decline (Stripe decline or error codes).
DECLINE_MESSAGES = {
    "insufficient_funds": "Your card has insufficient funds. Add money to the account or use another card.",
    "expired_card": "Your card has expired. Add a card that is still valid.",
    "incorrect_cvc": "The card's security code was wrong. Add the card again with the right code.",
    "incorrect_number": "The card number is wrong. Add the card again.",
    "card_velocity_exceeded": "Your card has reached its spending limit. Use another card or ask your bank.",
    "processing_error": "Your bank could not process the payment. It will be tried again; you can also use another card.",
    "authentication_required": (
        "Your bank asks you to confirm this payment. Open your payment methods and confirm the card, "
        "or add another card."
    ),
}
GENERIC_DECLINE = "Your bank declined the payment. Use another card or ask your bank why."
CONFIG_PROBLEM = "The payment service is not set up correctly. The site's operators have been told."


def _money(amount: int | None, currency: str | None) -> Money | None:
    if amount is None or not currency:
        return None
    return Money(int(amount), currency.upper())


def metadata_of(obj: Any) -> dict[str, str]:
    """A Stripe object's metadata as a plain dict."""
    meta = _get(obj, "metadata") or {}
    if hasattr(meta, "to_dict"):
        meta = meta.to_dict()
    return {str(k): str(v) for k, v in dict(meta).items()}


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """Attribute of a StripeObject or key of a dict, whichever it is."""
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    try:
        return obj[name]
    except (KeyError, TypeError):
        return getattr(obj, name, default)


def decline_message(code: str | None) -> str:
    return DECLINE_MESSAGES.get(code or "", GENERIC_DECLINE)


def payment_intent_result(pi: Any) -> GatewayResult:
    """Map a PaymentIntent's current state onto our outcomes."""
    status = _get(pi, "status") or ""
    amount = _money(_get(pi, "amount"), _get(pi, "currency"))
    meta = metadata_of(pi)
    if status == "succeeded":
        return GatewayResult(ChargeOutcome.SUCCEEDED, pi.id, status, amount, metadata=meta)
    if status == "requires_action":
        code = "authentication_required"
        return GatewayResult(
            ChargeOutcome.NEEDS_AUTHENTICATION,
            pi.id,
            status,
            amount,
            code,
            decline_message(code),
            metadata=meta,
        )
    if status == "requires_payment_method":
        error = _get(pi, "last_payment_error")
        code = _get(error, "decline_code") or _get(error, "code") or "card_declined"
        if code in ("authentication_required", "payment_intent_authentication_failure"):
            return GatewayResult(
                ChargeOutcome.NEEDS_AUTHENTICATION,
                pi.id,
                status,
                amount,
                "authentication_required",
                decline_message("authentication_required"),
                metadata=meta,
            )
        return GatewayResult(
            ChargeOutcome.DECLINED, pi.id, status, amount, code, decline_message(code), metadata=meta
        )
    if status == "canceled":
        return GatewayResult(
            ChargeOutcome.PERMANENT,
            pi.id,
            status,
            amount,
            "canceled",
            "The payment was cancelled.",
            metadata=meta,
        )
    # processing, requires_confirmation, requires_capture: not settled yet
    return GatewayResult(None, pi.id, status, amount, metadata=meta)


def refund_result(refund: Any) -> GatewayResult:
    status = _get(refund, "status") or ""
    amount = _money(_get(refund, "amount"), _get(refund, "currency"))
    meta = metadata_of(refund)
    if status == "succeeded":
        return GatewayResult(ChargeOutcome.SUCCEEDED, refund.id, status, amount, metadata=meta)
    if status in ("failed", "canceled"):
        code = _get(refund, "failure_reason") or status
        return GatewayResult(
            ChargeOutcome.PERMANENT,
            refund.id,
            status,
            amount,
            code,
            "The refund did not go through.",
            metadata=meta,
        )
    return GatewayResult(None, refund.id, status, amount, metadata=meta)


def transfer_result(transfer: Any) -> GatewayResult:
    """A Transfer exists once Stripe accepted it: the money has moved to the connected account."""
    amount = _money(_get(transfer, "amount"), _get(transfer, "currency"))
    if _get(transfer, "reversed"):
        return GatewayResult(
            ChargeOutcome.PERMANENT,
            transfer.id,
            "reversed",
            amount,
            "transfer_reversed",
            "The payout was reversed.",
            metadata=metadata_of(transfer),
        )
    return GatewayResult(ChargeOutcome.SUCCEEDED, transfer.id, "paid", amount, metadata=metadata_of(transfer))


def error_result(exc: stripe.StripeError, amount: Money | None = None) -> GatewayResult:
    """Turn a failed request into a typed result."""
    if isinstance(exc, stripe.CardError):
        error = getattr(exc, "error", None)
        code = _get(error, "decline_code") or exc.code or "card_declined"
        pi = _get(error, "payment_intent")
        gateway_id = _get(pi, "id") if pi is not None else None
        outcome = (
            ChargeOutcome.NEEDS_AUTHENTICATION
            if code == "authentication_required"
            else ChargeOutcome.DECLINED
        )
        return GatewayResult(outcome, gateway_id, "declined", amount, code, decline_message(code))
    if isinstance(exc, stripe.RateLimitError):
        return GatewayResult(
            ChargeOutcome.TEMPORARY,
            None,
            "rate_limited",
            amount,
            "rate_limited",
            "The payment service is busy; this will be tried again shortly.",
            certainly_not_done=True,
        )
    if isinstance(exc, stripe.APIConnectionError | stripe.APIError):
        return GatewayResult(
            ChargeOutcome.TEMPORARY,
            None,
            "unavailable",
            amount,
            "gateway_unavailable",
            "The payment service could not be reached; this will be checked and tried again.",
        )
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return GatewayResult(
            ChargeOutcome.PERMANENT,
            None,
            "configuration",
            amount,
            "gateway_configuration",
            CONFIG_PROBLEM,
            True,
        )
    code = getattr(exc, "code", None) or type(exc).__name__
    return GatewayResult(
        ChargeOutcome.PERMANENT,
        None,
        "invalid_request",
        amount,
        str(code)[:60],
        "The payment could not be made with this card. Add another card.",
        certainly_not_done=isinstance(exc, stripe.InvalidRequestError | stripe.IdempotencyError),
    )


def _unavailable(exc: stripe.StripeError) -> GatewayUnavailable:
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return GatewayUnavailable(CONFIG_PROBLEM, ChargeOutcome.PERMANENT)
    return GatewayUnavailable("The payment service could not be reached. Please try again in a few minutes.")


class StripeGateway:
    """Stripe through the `stripe` library; see the module docstring."""

    name = "stripe"

    def __init__(
        self,
        *,
        secret_key: str | None,
        publishable_key: str | None = None,
        api_base: str | None = None,
        client: stripe.StripeClient | None = None,
    ) -> None:
        self.secret_key = secret_key
        self.publishable_key = publishable_key
        self.api_base = api_base
        self._client = client

    @classmethod
    def from_config(cls, config: dict) -> StripeGateway:
        return cls(
            secret_key=config["STRIPE_SECRET_KEY"],
            publishable_key=config["STRIPE_PUBLISHABLE_KEY"],
            api_base=config["STRIPE_API_BASE"],
        )

    @property
    def client(self) -> stripe.StripeClient:
        if self._client is None:
            if not self.secret_key:
                raise GatewayUnavailable(
                    "Stripe is not configured: set STRIPE_SECRET_KEY.", outcome=ChargeOutcome.PERMANENT
                )
            base = {"api": self.api_base, "connect": self.api_base} if self.api_base else None
            # No library retries: a retried request is reconciled by us, not repeated blindly.
            self._client = stripe.StripeClient(self.secret_key, base_addresses=base, max_network_retries=0)
        return self._client

    # customers and cards ------------------------------------------------------------
    def ensure_customer(self, *, user_id: int, email: str, name: str, customer_id: str | None) -> str:
        try:
            if customer_id:
                return self.client.v1.customers.retrieve(customer_id).id
            for customer in self.client.v1.customers.list(params={"email": email, "limit": 100}).data:
                if metadata_of(customer).get("user_id") == str(user_id):
                    return customer.id
            customer = self.client.v1.customers.create(
                params={"email": email, "name": name, "metadata": {"user_id": str(user_id)}},
                options={"idempotency_key": f"healthfund-customer-{user_id}"},
            )
            return customer.id
        except stripe.StripeError as exc:
            raise _unavailable(exc) from None

    def begin_setup(self, *, customer_id: str) -> SetupSession:
        try:
            intent = self.client.v1.setup_intents.create(
                params={"customer": customer_id, "usage": "off_session", "payment_method_types": ["card"]}
            )
        except stripe.StripeError as exc:
            raise _unavailable(exc) from None
        return SetupSession(
            gateway=self.name,
            reference=intent.id,
            client_secret=intent.client_secret,
            publishable_key=self.publishable_key,
        )

    def _card(self, payment_method_id: str, reference: str | None, needs_authentication: bool) -> SavedCard:
        pm = self.client.v1.payment_methods.retrieve(payment_method_id)
        card = pm.card
        return SavedCard(
            gateway_id=pm.id,
            brand=str(_get(card, "brand") or "unknown"),
            last4=str(_get(card, "last4")),
            exp_month=int(_get(card, "exp_month")),
            exp_year=int(_get(card, "exp_year")),
            needs_authentication=needs_authentication,
            reference=reference,
        )

    def confirm_setup(self, *, customer_id: str, data: dict[str, str]) -> SavedCard:
        """The page posts back the SetupIntent id Stripe.js confirmed; we check it is this customer's."""
        intent_id = (data.get("setup_intent") or "").strip()
        if not intent_id.startswith("seti_"):
            raise CardError(
                "The card form was not completed. Please enter your card again.", ErrorCode.SETUP_MISSING
            )
        try:
            intent = self.client.v1.setup_intents.retrieve(intent_id)
            if intent.customer != customer_id:
                raise CardError(
                    "The card form was not completed. Please enter your card again.", ErrorCode.SETUP_MISMATCH
                )
            if intent.status not in ("succeeded", "requires_action") or not intent.payment_method:
                error = _get(intent, "last_setup_error")
                code = _get(error, "decline_code") or _get(error, "code") or "card_declined"
                raise CardError(decline_message(code), code)
            pm_id = _get(intent.payment_method, "id") or intent.payment_method
            pm = self.client.v1.payment_methods.retrieve(pm_id)
            if not pm.customer:
                self.client.v1.payment_methods.attach(pm_id, params={"customer": customer_id})
            return self._card(pm_id, intent.id, intent.status == "requires_action")
        except stripe.CardError as exc:
            code = _get(exc.error, "decline_code") or exc.code
            raise CardError(decline_message(code), code or "card_declined") from None
        except stripe.StripeError as exc:
            raise _unavailable(exc) from None

    def complete_authentication(
        self, *, customer_id: str, gateway_id: str, reference: str | None
    ) -> SavedCard:
        try:
            if reference:
                intent = self.client.v1.setup_intents.retrieve(reference)
                if intent.customer != customer_id or intent.status != "succeeded":
                    raise CardError(
                        "Your bank has not confirmed this card yet. Finish the confirmation or add another card.",
                        "authentication_required",
                    )
            return self._card(gateway_id, reference, False)
        except stripe.StripeError as exc:
            raise _unavailable(exc) from None

    def detach(self, *, customer_id: str, gateway_id: str) -> None:
        try:
            self.client.v1.payment_methods.detach(gateway_id)
        except stripe.InvalidRequestError:
            return  # already detached
        except stripe.StripeError as exc:
            raise _unavailable(exc) from None

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
        meta = dict(metadata)
        if description:
            meta.setdefault("description", description[:500])
        try:
            pi = self.client.v1.payment_intents.create(
                params={
                    "amount": amount.amount,
                    "currency": amount.currency.lower(),
                    "customer": customer_id,
                    "payment_method": payment_method_id,
                    "off_session": True,
                    "confirm": True,
                    "metadata": meta,
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            return error_result(exc, amount)
        return payment_intent_result(pi)

    def refund(
        self, *, charge_id: str, amount: Money, idempotency_key: str, metadata: dict[str, str]
    ) -> GatewayResult:
        try:
            refund = self.client.v1.refunds.create(
                params={"payment_intent": charge_id, "amount": amount.amount, "metadata": dict(metadata)},
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            return error_result(exc, amount)
        return refund_result(refund)

    def payout(
        self,
        *,
        destination: str,
        amount: Money,
        idempotency_key: str,
        description: str,
        metadata: dict[str, str],
    ) -> GatewayResult:
        params: dict[str, Any] = {
            "amount": amount.amount,
            "currency": amount.currency.lower(),
            "destination": destination,
            "metadata": dict(metadata),
        }
        if metadata.get("campaign_id"):
            # Separate charges and transfers: a campaign's payouts are grouped under its id.
            params["transfer_group"] = f"campaign-{metadata['campaign_id']}"
        if description:
            params["description"] = description[:500]
        try:
            transfer = self.client.v1.transfers.create(
                params=params, options={"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            return error_result(exc, amount)
        return transfer_result(transfer)

    def retrieve(self, kind: OperationKind, gateway_id: str) -> GatewayResult:
        try:
            if kind is OperationKind.CHARGE:
                return payment_intent_result(self.client.v1.payment_intents.retrieve(gateway_id))
            if kind is OperationKind.REFUND:
                return refund_result(self.client.v1.refunds.retrieve(gateway_id))
            return transfer_result(self.client.v1.transfers.retrieve(gateway_id))
        except stripe.StripeError as exc:
            raise _unavailable(exc) from None

    def _match(self, items: Iterable[Any], idempotency_key: str) -> Any | None:
        for item in items:
            if metadata_of(item).get(KEY_METADATA) == idempotency_key:
                return item
        return None

    def _payment_intents_of(self, customer_id: str | None) -> Iterable[Any]:
        """The customer's PaymentIntents, newest first.

        localstripe cannot filter the list by customer (it answers 400), so we then
        list them all and filter here.
        """
        try:
            page = self.client.v1.payment_intents.list(params={"customer": customer_id, "limit": 100})
        except stripe.InvalidRequestError:
            page = self.client.v1.payment_intents.list(params={"limit": 100})
        return (pi for pi in page.auto_paging_iter() if _get(pi, "customer") == customer_id)

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
        try:
            if kind is OperationKind.CHARGE:
                if not customer_id:
                    return None
                found = self._match(self._payment_intents_of(customer_id), idempotency_key)
                return payment_intent_result(found) if found is not None else None
            if kind is OperationKind.REFUND:
                if not parent_id:
                    return None
                page = self.client.v1.refunds.list(params={"payment_intent": parent_id, "limit": 100})
                found = self._match(page.auto_paging_iter(), idempotency_key)
                return refund_result(found) if found is not None else None
            page = self.client.v1.transfers.list(params={"destination": destination, "limit": 100})
            found = self._match(page.auto_paging_iter(), idempotency_key)
            return transfer_result(found) if found is not None else None
        except stripe.StripeError as exc:
            raise _unavailable(exc) from None

    # Connect --------------------------------------------------------------------------
    def create_payout_account(
        self, *, organisation_id: int, name: str, country: str, email: str | None
    ) -> str:
        params: dict[str, Any] = {
            "type": "express",
            "country": country,
            "capabilities": {"transfers": {"requested": True}},
            "business_profile": {"name": name},
            "metadata": {"organisation_id": str(organisation_id)},
        }
        if email:
            params["email"] = email
        try:
            account = self.client.v1.accounts.create(
                params=params, options={"idempotency_key": f"healthfund-account-{organisation_id}"}
            )
        except stripe.StripeError as exc:
            raise _unavailable(exc) from None
        return account.id

    def payout_account_info(self, account_id: str) -> PayoutAccountInfo:
        try:
            account = self.client.v1.accounts.retrieve(account_id)
        except stripe.StripeError as exc:
            raise _unavailable(exc) from None
        return PayoutAccountInfo(account.id, bool(_get(account, "payouts_enabled")))

    def onboarding_link(self, *, account_id: str, return_url: str, refresh_url: str) -> str | None:
        try:
            link = self.client.v1.account_links.create(
                params={
                    "account": account_id,
                    "refresh_url": refresh_url,
                    "return_url": return_url,
                    "type": "account_onboarding",
                }
            )
        except stripe.StripeError as exc:
            raise _unavailable(exc) from None
        return link.url
