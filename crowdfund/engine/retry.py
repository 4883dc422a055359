"""Retry a use case when the database reports a lock conflict instead of waiting.

SQLite writers wait up to the busy timeout (BEGIN IMMEDIATE); if a writer still gets
"database is locked", or PostgreSQL picks the transaction as a deadlock victim or a
serialisation failure, the whole use case is rolled back and run again a few times with
a growing, jittered pause. A user never sees the raw error.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

from sqlalchemy.exc import OperationalError

from crowdfund.extensions import db

F = TypeVar("F", bound=Callable)

ATTEMPTS = 6
#: SQLSTATEs PostgreSQL uses for "run it again": serialization_failure, deadlock_detected.
RETRY_SQLSTATES = frozenset({"40001", "40P01"})


def is_lock_conflict(exc: OperationalError) -> bool:
    """True for errors that go away when the transaction is simply run again."""
    if getattr(exc.orig, "sqlstate", None) in RETRY_SQLSTATES:
        return True
    text = str(exc.orig).lower()
    return "database is locked" in text or "database table is locked" in text


def retry_on_lock(fn: F) -> F:
    """Run `fn` again (after a rollback) when it fails on a lock conflict."""

    @wraps(fn)
    def wrapped(*args, **kwargs):
        for attempt in range(ATTEMPTS):
            try:
                return fn(*args, **kwargs)
            except OperationalError as exc:
                db.session.rollback()
                if attempt == ATTEMPTS - 1 or not is_lock_conflict(exc):
                    raise
                time.sleep(0.02 * 2**attempt + random.uniform(0, 0.02))
        raise AssertionError("unreachable")  # pragma: no cover

    return wrapped  # type: ignore[return-value]
