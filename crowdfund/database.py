"""Database engine settings and the locking helpers services use.

SQLite runs in WAL mode with a busy timeout so concurrent writers wait instead of
failing. `lock_for_update` takes a row lock on PostgreSQL (SELECT … FOR UPDATE); on
SQLite, where writers are serialised by the database lock, services open their
transaction with BEGIN IMMEDIATE instead (see `begin_write`).
"""

from __future__ import annotations

import sqlite3

from flask import Flask
from sqlalchemy import event, select
from sqlalchemy.engine import Engine

from crowdfund.extensions import db

SQLITE_BUSY_TIMEOUT_MS = 30_000


def is_sqlite() -> bool:
    return db.engine.dialect.name == "sqlite"


def is_postgres() -> bool:
    return db.engine.dialect.name == "postgresql"


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


def begin_write() -> None:
    """Make the current session's transaction a writer from its first statement.

    On SQLite this starts the transaction with BEGIN IMMEDIATE (takes the write lock
    now, waiting up to the busy timeout), so two writers never deadlock upgrading a
    read lock. Call it before the first query of a use case that writes. On
    PostgreSQL it does nothing: row locks (`lock_for_update`) do the work there.
    """
    session = db.session()
    if session.get_bind().dialect.name != "sqlite":
        return
    if session.in_transaction() and session.connection().in_transaction():
        conn = session.connection()
        if conn.info.get("write_begun"):
            return
        # A read-only transaction may already be open: end it and start a writer.
        session.rollback()
    conn = session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
    conn.info["write_begun"] = True


def lock_for_update(model, ident):
    """Load one row and lock it for the rest of the transaction (FOR UPDATE on PostgreSQL)."""
    return db.session.execute(select(model).where(model.id == ident).with_for_update()).scalar_one_or_none()


@event.listens_for(Engine, "commit")
def _forget_write_flag(conn):
    conn.info.pop("write_begun", None)


@event.listens_for(Engine, "rollback")
def _forget_write_flag_rb(conn):
    conn.info.pop("write_begun", None)


def create_schema() -> None:
    """Create every table from the models (tests); production uses the migrations."""
    db.create_all()
    if is_postgres():
        install_postgres_guards()


def install_postgres_guards() -> None:
    """Database-level rules that code alone cannot guarantee (PostgreSQL only).

    The migrations install the same SQL; see `crowdfund.ledger.guards`.
    """
    try:
        from crowdfund.ledger.guards import POSTGRES_GUARDS_SQL
    except ImportError:
        return
    with db.engine.begin() as conn:
        conn.exec_driver_sql(POSTGRES_GUARDS_SQL)
