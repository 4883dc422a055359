"""API: tokens and the headers that carry them."""

from __future__ import annotations

from crowdfund.accounts.models import User
from crowdfund.api.service import create_token


def make_token(user: User, name: str = "script") -> str:
    """A new API token for `user`; returns the secret."""
    return create_token(user, name).secret


def bearer(secret: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", **headers}
