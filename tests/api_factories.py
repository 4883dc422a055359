"""Factories for the API tests: a token for a user, a saved card, request headers."""

from __future__ import annotations

from crowdfund.accounts.models import User
from crowdfund.api.service import create_token
from crowdfund.models_base import utcnow
from crowdfund.payments.models import PaymentMethod
from crowdfund.payments.service import save_payment_method


def make_token(user: User, name: str = "script") -> str:
    """A new API token for `user`; returns the secret."""
    return create_token(user, name).secret


def bearer(secret: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", **headers}


def add_card(user: User, number: str = "4242424242424242") -> PaymentMethod:
    """Save a sandbox test card for `user` as the card form does; it becomes the default."""
    expiry = f"12/{(utcnow().year + 5) % 100:02d}"
    return save_payment_method(user, {"number": number, "expiry": expiry, "cvc": "123"})
