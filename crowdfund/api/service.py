"""API token use cases: create, list, revoke, and authenticate a Bearer secret."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, text, update

from crowdfund.accounts.models import ApiToken, User
from crowdfund.database import is_postgres, lock, retry_on_lock, unit_of_work
from crowdfund.errors import ErrorCode, NotFound, ValidationError
from crowdfund.extensions import db
from crowdfund.models_base import utcnow

#: Every secret starts with this, so that it is recognisable (and scannable) when leaked.
TOKEN_PREFIX = "hf_"
#: Random bytes in a secret (url-safe base64 makes 43 characters of them).
TOKEN_BYTES = 32
#: Longest Authorization value looked at; anything longer cannot be one of ours.
MAX_SECRET_LENGTH = 100
MAX_TOKEN_NAME_LENGTH = 80
#: How often `last_used_at` is written for a token in use.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class CreatedToken:
    """A new token and its secret: the only moment the secret is known."""

    token: ApiToken
    secret: str


def hash_secret(secret: str) -> str:
    """Hex SHA-256 of a token secret, as stored in `ApiToken.token_hash`."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(user: User, name: str | None) -> CreatedToken:
    """Create a personal API token for `user`; the returned secret is shown once."""
    clean = (name or "").strip()
    if not clean:
        raise ValidationError(
            "Give the token a name, such as the script that will use it.",
            code=ErrorCode.REQUIRED,
            field="name",
        )
    if len(clean) > MAX_TOKEN_NAME_LENGTH:
        raise ValidationError(
            f"Token names are at most {MAX_TOKEN_NAME_LENGTH} characters.",
            code=ErrorCode.TOO_LONG,
            field="name",
        )
    if not clean.isprintable():
        raise ValidationError(
            "Token names cannot contain control characters.", code=ErrorCode.TEXT_INVALID, field="name"
        )
    secret = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    with unit_of_work():
        token = ApiToken(
            user_id=user.id,
            name=clean,
            token_hash=hash_secret(secret),
            prefix=secret[: len(TOKEN_PREFIX) + 4],
            last4=secret[-4:],
        )
        db.session.add(token)
    return CreatedToken(token=token, secret=secret)


def list_tokens(user: User) -> list[ApiToken]:
    """The user's tokens, active ones first, newest first."""
    tokens = db.session.scalars(
        select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc())
    ).all()
    return sorted(tokens, key=lambda t: not t.is_active)


@retry_on_lock
def revoke_token(user: User, token_id: int, *, now: datetime | None = None) -> ApiToken:
    """Revoke one of the user's tokens; it stops working at once. Revoking twice is harmless."""
    with unit_of_work():
        token = lock(ApiToken, token_id)
        if token is None or token.user_id != user.id:
            raise NotFound("That token does not exist.", code=ErrorCode.NOT_FOUND)
        token.revoke(now or utcnow())
    return token


def authenticate(authorization: str | None, *, now: datetime | None = None) -> User | None:
    """The active user whose active token is in an `Authorization: Bearer …` value, or None.

    The secret is hashed and the hash looked up (an index lookup on the hash, so no
    comparison ever runs over the secret itself). `last_used_at` is refreshed at most once a minute.
    """
    secret = _bearer_secret(authorization)
    if secret is None:
        return None
    digest = hash_secret(secret)
    row = db.session.execute(
        select(ApiToken, User).join(User, User.id == ApiToken.user_id).where(ApiToken.token_hash == digest)
    ).first()
    if row is None:
        return None
    token, user = row
    if not token.is_active or not user.is_active:
        return None
    now = now or utcnow()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        _touch(token.id, now)
    return user


def _touch(token_id: int, now: datetime) -> None:
    """Record that a token was used, in its own short transaction.

    On PostgreSQL this commit does not wait for the disk (`synchronous_commit = off`):
    losing a last-use time in a crash is harmless, and a crowd of first requests should
    not queue behind each other's WAL flushes.
    """
    with unit_of_work():
        if is_postgres():
            db.session.execute(text("SET LOCAL synchronous_commit TO OFF"))
        db.session.execute(
            update(ApiToken)
            .where(ApiToken.id == token_id)
            .where((ApiToken.last_used_at.is_(None)) | (ApiToken.last_used_at < now - LAST_USED_RESOLUTION))
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )


def _bearer_secret(authorization: str | None) -> str | None:
    if not authorization or len(authorization) > MAX_SECRET_LENGTH + 10:
        return None
    scheme, _, secret = authorization.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret.startswith(TOKEN_PREFIX) or len(secret) > MAX_SECRET_LENGTH:
        return None
    return secret
