"""Helpers for the Stripe tests: configuration, what Stripe.js does, signed events, and a test double.

The `localstripe` server itself comes from tests/stripe_fixtures.py. localstripe has no
Connect (accounts, account links, transfers) and ignores idempotency keys.
`ConnectAndIdempotencyDouble` fills exactly that gap: a stand-in for the parts of
`stripe.StripeClient` we use for Connect, which honours idempotency keys the way Stripe
does (same key + same request -> the first response), so the payout code can be tested.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import json
import time
from types import SimpleNamespace

import stripe

WEBHOOK_SECRET = "whsec_test_healthfund"


def configure_stripe(config, base_url: str) -> None:
    """Point a test config class at localstripe."""
    config.PAYMENT_GATEWAY = "stripe"
    config.STRIPE_SECRET_KEY = "sk_test_healthfund"
    config.STRIPE_PUBLISHABLE_KEY = "pk_test_healthfund"
    config.STRIPE_API_BASE = base_url
    config.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    config.STRIPE_JS_URL = base_url + "/js.stripe.com/v3/"


def stripe_client(base_url: str) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_healthfund", base_addresses={"api": base_url}, max_network_retries=0)


def card_saved_in_browser(base_url: str, client_secret_or_intent: str, number: str) -> str:
    """What Stripe.js does on the page: create the card PaymentMethod and confirm the SetupIntent.

    localstripe accepts raw card numbers over the API; in production only Stripe.js sees them.
    Returns the SetupIntent id, which the page then posts to us.
    """
    client = stripe_client(base_url)
    intent_id = client_secret_or_intent.split("_secret_")[0]
    pm = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": number.replace(" ", ""), "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        }
    )
    with contextlib.suppress(stripe.CardError):  # declined: the SetupIntent says so; confirm_setup reports it
        client.v1.setup_intents.confirm(intent_id, params={"payment_method": pm.id})
    return intent_id


def sign(payload: str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """A Stripe-Signature header for `payload`, as Stripe computes it."""
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def event(event_type: str, obj: dict, event_id: str | None = None) -> str:
    return json.dumps(
        {
            "id": event_id or f"evt_{time.time_ns()}",
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "data": {"object": obj},
        }
    )


class ConnectAndIdempotencyDouble:
    """Test double for what localstripe lacks: Connect accounts, account links, transfers — with idempotency replay.

    It is handed to `StripeGateway(client=…)` and forwards everything else to a real
    `stripe.StripeClient` pointed at localstripe. Requests are recorded in `calls`.
    """

    def __init__(self, real: stripe.StripeClient):
        self._real = real
        self.calls: list[tuple[str, dict, str | None]] = []
        self._replies: dict[str, tuple[dict, SimpleNamespace]] = {}
        self.transfers_store: dict[str, SimpleNamespace] = {}
        self.accounts_store: dict[str, SimpleNamespace] = {}
        self.fail_next_transfer_with: Exception | None = None
        self._ids = itertools.count(1)
        double = self

        class _Transfers:
            def create(self, params, options=None):
                return double._idempotent("transfers.create", params, options, double._create_transfer)

            def retrieve(self, transfer_id, params=None, options=None):
                return double.transfers_store[transfer_id]

            def list(self, params=None, options=None):
                dest = (params or {}).get("destination")
                items = [t for t in double.transfers_store.values() if dest is None or t.destination == dest]
                return SimpleNamespace(data=items, auto_paging_iter=lambda: iter(items))

        class _Accounts:
            def create(self, params, options=None):
                return double._idempotent("accounts.create", params, options, double._create_account)

            def retrieve(self, account_id, params=None, options=None):
                return double.accounts_store[account_id]

        class _AccountLinks:
            def create(self, params, options=None):
                double.calls.append(("account_links.create", params, None))
                return SimpleNamespace(url=f"https://connect.stripe.test/setup/{params['account']}")

        real_v1 = real.v1
        self.v1 = SimpleNamespace(
            transfers=_Transfers(),
            accounts=_Accounts(),
            account_links=_AccountLinks(),
            customers=real_v1.customers,
            setup_intents=real_v1.setup_intents,
            payment_methods=real_v1.payment_methods,
            payment_intents=real_v1.payment_intents,
            refunds=real_v1.refunds,
        )

    def _idempotent(self, name, params, options, create):
        key = (options or {}).get("idempotency_key")
        self.calls.append((name, params, key))
        if key and key in self._replies:
            first_params, reply = self._replies[key]
            if first_params != params:
                raise stripe.IdempotencyError(
                    "Keys for idempotent requests can only be used with the same parameters."
                )
            return reply
        reply = create(params)
        if key:
            self._replies[key] = (params, reply)
        return reply

    def _create_transfer(self, params):
        if self.fail_next_transfer_with is not None:
            exc, self.fail_next_transfer_with = self.fail_next_transfer_with, None
            raise exc
        transfer = SimpleNamespace(
            id=f"tr_double_{next(self._ids)}",
            amount=params["amount"],
            currency=params["currency"],
            destination=params["destination"],
            metadata=dict(params.get("metadata") or {}),
            reversed=False,
        )
        self.transfers_store[transfer.id] = transfer
        return transfer

    def _create_account(self, params):
        account = SimpleNamespace(
            id=f"acct_double_{next(self._ids)}", payouts_enabled=False, metadata=params["metadata"]
        )
        self.accounts_store[account.id] = account
        return account
