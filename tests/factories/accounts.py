"""Accounts: users, organisations, logging a test client in."""

from __future__ import annotations

import itertools
from functools import lru_cache

from werkzeug.security import generate_password_hash

from crowdfund.accounts.models import Membership, Organisation, OrganisationType, Role, User
from crowdfund.extensions import db

PASSWORD = "correct horse battery"
#: One counter for every factory, so e-mails, slugs and keys never collide within a run.
sequence = itertools.count(1)


@lru_cache(maxsize=1)
def password_hash() -> str:
    """The hash of PASSWORD, computed once (hashing is deliberately slow)."""
    return generate_password_hash(PASSWORD)


def next_key(prefix: str = "test") -> str:
    """A fresh idempotency key such as `charge:17`."""
    return f"{prefix}:{next(sequence)}"


def make_user(email: str | None = None, role: Role = Role.BACKER, name: str | None = None) -> User:
    n = next(sequence)
    user = User(
        email=email or f"user{n}@example.org",
        name=name or f"User {n}",
        password_hash=password_hash(),
        role=role,
        session_token=f"token{n}",
    )
    db.session.add(user)
    db.session.commit()
    return user


def make_users_fast(n: int) -> list[User]:
    """`n` plain backers in one commit, for tests that need many (concurrency)."""
    users = []
    for _ in range(n):
        k = next(sequence)
        users.append(
            User(
                email=f"bulk{k}@example.org",
                name=f"Backer {k}",
                password_hash=password_hash(),
                session_token=f"t{k}",
            )
        )
    db.session.add_all(users)
    db.session.commit()
    return users


def operator() -> User:
    return make_user(role=Role.OPERATOR)


def make_org(owner: User | None = None, **fields) -> Organisation:
    owner = owner or make_user()
    org = Organisation(
        type=fields.pop("type", OrganisationType.HEALTH_STARTUP),
        legal_name=fields.pop("legal_name", f"Org {next(sequence)} Ltd"),
        registration_number=fields.pop("registration_number", "91310000MA1234567X"),
        country=fields.pop("country", "CN"),
        description=fields.pop("description", "A health organisation."),
        created_by_id=owner.id,
        **fields,
    )
    db.session.add(org)
    db.session.flush()
    db.session.add(Membership(user_id=owner.id, organisation_id=org.id, role="owner"))
    db.session.commit()
    return org


def campaigner(**org_fields) -> tuple[User, Organisation]:
    """A user who owns an organisation."""
    user = make_user()
    return user, make_org(owner=user, **org_fields)


def login(client, user: User) -> None:
    """Log `user` in on the test client without going through the form."""
    with client.session_transaction() as session:
        session["_user_id"] = user.get_id()
        session["_fresh"] = True
