"""Test fixtures: `app`, `db`, `client`, `is_postgres`, `failing_gateway`; factories live in tests/factories/.

The suite runs on SQLite by default. With TEST_DATABASE_URL pointing at a PostgreSQL
server it creates a database of its own (hf_test_<random>) there, runs on it, and drops
it at the end, so runs never collide. REQUIRE_POSTGRES=1 turns an unreachable server
into a failure instead of a skip.
"""

from __future__ import annotations

import os
import uuid

import pytest
from flask import g
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from crowdfund import create_app
from crowdfund.config import TestConfig, normalise_database_url
from crowdfund.extensions import db as _db
from crowdfund.models import create_schema
from tests.factories.gateway import EXTENSION as GATEWAY_EXTENSION
from tests.factories.gateway import FailingGateway

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
REQUIRE_POSTGRES = os.environ.get("REQUIRE_POSTGRES") == "1"


def _create_postgres_database(server_url: str) -> tuple[str, callable]:
    url = make_url(normalise_database_url(server_url))
    name = f"hf_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url.set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    if TEST_DATABASE_URL:
        try:
            url, drop = _create_postgres_database(TEST_DATABASE_URL)
        except Exception as exc:  # server down, bad URL
            if REQUIRE_POSTGRES:
                pytest.exit(f"PostgreSQL at TEST_DATABASE_URL is unreachable: {exc}", returncode=3)
            pytest.skip(f"PostgreSQL unreachable: {exc}")
        yield url
        drop()
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest.fixture(scope="session")
def _schema(database_url, tmp_path_factory):
    app = create_app(_config(database_url, tmp_path_factory.mktemp("uploads")))
    with app.app_context():
        create_schema()
        _db.engine.dispose()
    return database_url


def _config(database_url: str, upload_dir) -> type[TestConfig]:
    class Config(TestConfig):
        SQLALCHEMY_DATABASE_URI = database_url
        UPLOAD_DIR = str(upload_dir)

    return Config


@pytest.fixture
def app_config(_schema, tmp_path):
    """The config class for this test's app; override attributes before `app` is built."""
    return _config(_schema, tmp_path / "uploads")


@pytest.fixture
def app(app_config):
    app = create_app(app_config)

    @app.before_request
    def _fresh_request_state():
        # The test keeps one app context open across requests, so `g` outlives each
        # request here (in production it does not): drop the user Flask-Login caches
        # in it, as a new request would.
        g.pop("_login_user", None)

    with app.app_context():
        yield app
        _db.session.remove()
        _truncate_all()
        _db.engine.dispose()


def _truncate_all() -> None:
    tables = list(reversed(_db.metadata.sorted_tables))
    with _db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # TRUNCATE costs per table, so only the tables this test wrote to.
            probe = " UNION ALL ".join(
                f"SELECT '{t.name}' WHERE EXISTS (SELECT 1 FROM \"{t.name}\")" for t in tables
            )
            used = [row[0] for row in conn.execute(text(probe))]
            if used:
                names = ", ".join(f'"{name}"' for name in used)
                conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for t in tables:
                conn.execute(t.delete())
            if conn.execute(text("SELECT name FROM sqlite_master WHERE name='sqlite_sequence'")).first():
                conn.execute(text("DELETE FROM sqlite_sequence"))


@pytest.fixture
def db(app):
    return _db


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def is_postgres(app) -> bool:
    return _db.engine.dialect.name == "postgresql"


@pytest.fixture
def failing_gateway(app) -> FailingGateway:
    """The configured payment gateway, wrapped so that a test can make it fail on cue."""
    previous = app.extensions.get(GATEWAY_EXTENSION)
    gateway = FailingGateway(previous)
    app.extensions[GATEWAY_EXTENSION] = gateway
    yield gateway
    if previous is None:
        app.extensions.pop(GATEWAY_EXTENSION, None)
    else:
        app.extensions[GATEWAY_EXTENSION] = previous


def pytest_collection_modifyitems(config, items):
    if TEST_DATABASE_URL:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: set TEST_DATABASE_URL")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)
