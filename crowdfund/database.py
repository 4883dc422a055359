"""Database engine settings, the unit of work, row locks and lock-conflict retries.

Every use case that writes runs inside one `with unit_of_work():` block: it opens a
writing transaction (`begin_write`: BEGIN IMMEDIATE on SQLite, so two writers never
deadlock upgrading a read lock), commits once at the end, runs the callbacks registered
with `after_commit` in order once the commit has succeeded, and rolls back on any
exception — typed or not — so no half-made change or row lock survives a refusal. A
unit of work opened inside another joins it: only the outermost one commits.

`lock(model, id)` loads one row fresh from the database and locks it for the rest of the
transaction (SELECT … FOR UPDATE on PostgreSQL); it always returns the row as it is
under the lock, never a stale copy from the session. Use cases lock rows in one global
order — campaign, reward tiers by id, investor profile, pledge, payment operation, then
the ledger — so two use cases never wait on each other in a cycle.

`retry_on_lock` runs a whole use case again when the database picks it as a deadlock
victim, reports a serialisation failure, or SQLite stays locked past the busy timeout.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

from flask import Flask
from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from crowdfund.extensions import db

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: The largest id any table hands out (PostgreSQL INTEGER); anything above is "not found".
MAX_ID = 2**31 - 1

_DEPTH = "unit_of_work.depth"
_CALLBACKS = "unit_of_work.after_commit"

F = TypeVar("F", bound=Callable)


def is_postgres() -> bool:
    return db.engine.dialect.name == "postgresql"


def valid_id(value: Any) -> bool:
    """True for a whole number that can be a row id (not a bool, 1 … MAX_ID)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID


def configure_sqlite(app: Flask) -> None:
    """Engine options for SQLite; call before `db.init_app` (which builds the engine)."""
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        return
    # Copies: the dicts may come from a Config class shared by other apps.
    options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    connect_args = dict(options.get("connect_args") or {})
    connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
    # The driver must not open transactions itself: `_sqlite_begin` issues BEGIN, so
    # that BEGIN IMMEDIATE is possible.
    connect_args.setdefault("isolation_level", None)
    options["connect_args"] = connect_args
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_conn, _record):
    if not isinstance(dbapi_conn, sqlite3.Connection):
        return
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # ignored (stays "memory") for in-memory databases
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin(conn):
    if conn.dialect.name == "sqlite":
        mode = conn.get_execution_options().get("sqlite_begin", "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())


@event.listens_for(Engine, "commit")
def _forget_write_flag(conn):
    conn.info.pop("write_begun", None)


@event.listens_for(Engine, "rollback")
def _forget_write_flag_rb(conn):
    conn.info.pop("write_begun", None)


def begin_write() -> None:
    """Make the current session's transaction a writer from its first statement.

    On SQLite this starts the transaction with BEGIN IMMEDIATE (takes the write lock
    now, waiting up to the busy timeout). A read-only transaction already open is ended
    first. On PostgreSQL it does nothing: row locks (`lock`) do the work there.
    `unit_of_work` calls it; nothing else needs to.
    """
    session = db.session()
    if session.get_bind().dialect.name != "sqlite":
        return
    if session.in_transaction() and session.connection().in_transaction():
        conn = session.connection()
        if conn.info.get("write_begun"):
            return
        session.rollback()
    conn = session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
    conn.info["write_begun"] = True


def in_unit_of_work() -> bool:
    return db.session().info.get(_DEPTH, 0) > 0


@contextmanager
def unit_of_work() -> Iterator[Session]:
    """One use case, one transaction: begin as a writer, commit once, then run callbacks.

    Any exception inside rolls everything back (and drops the callbacks) before it
    propagates. Nested inside another unit of work it joins the outer one.
    """
    session = db.session()
    depth = session.info.get(_DEPTH, 0)
    if depth:
        session.info[_DEPTH] = depth + 1
        try:
            yield session
        finally:
            session.info[_DEPTH] = depth
        return
    session.info[_DEPTH] = 1
    session.info[_CALLBACKS] = []
    try:
        begin_write()
        yield session
        session.commit()
    except BaseException:
        session.info.pop(_CALLBACKS, None)
        session.rollback()
        raise
    finally:
        session.info[_DEPTH] = 0
    for callback in session.info.pop(_CALLBACKS, None) or []:
        callback()


def after_commit(callback: Callable[[], Any]) -> None:
    """Run `callback` once the current unit of work has committed (never after a rollback)."""
    session = db.session()
    if not session.info.get(_DEPTH):
        raise RuntimeError("after_commit() is only possible inside a unit_of_work()")
    session.info[_CALLBACKS].append(callback)


def lock(model: type[F], ident: Any) -> F | None:
    """Load one row as it is now and lock it until the transaction ends; None if absent.

    The row is re-read under the lock (`populate_existing`), so a copy loaded earlier in
    the session is refreshed rather than trusted. On PostgreSQL the lock is FOR NO KEY
    UPDATE: it excludes every other writer of the row, but lets inserts that merely
    reference it (a ledger transaction's campaign_id) go on without waiting.
    """
    if not valid_id(ident):
        return None
    return db.session.execute(
        select(model)
        .where(model.id == ident)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


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
    """Run the use case `fn` again (after a rollback) when it fails on a lock conflict."""

    @wraps(fn)
    def wrapped(*args, **kwargs):
        for attempt in range(ATTEMPTS):
            try:
                return fn(*args, **kwargs)
            except OperationalError as exc:
                if in_unit_of_work():
                    raise  # part of a larger use case: the outermost one decides
                db.session.rollback()
                if attempt == ATTEMPTS - 1 or not is_lock_conflict(exc):
                    raise
                time.sleep(0.02 * 2**attempt + random.uniform(0, 0.02))
        raise AssertionError("unreachable")  # pragma: no cover

    return wrapped  # type: ignore[return-value]
