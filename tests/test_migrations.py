"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from crowdfund import create_app
from crowdfund.extensions import db
from tests.conftest import TEST_DATABASE_URL, _config, _create_postgres_database


@pytest.fixture
def fresh_database_url(tmp_path):
    if TEST_DATABASE_URL:
        url, drop = _create_postgres_database(TEST_DATABASE_URL)
        yield url
        drop()
    else:
        yield f"sqlite:///{tmp_path / 'migrations.db'}"


def _schema_diff(app) -> list:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def test_migrations_match_the_models(fresh_database_url, tmp_path):
    app = create_app(_config(fresh_database_url, tmp_path))
    with app.app_context():
        upgrade()
        diff = _schema_diff(app)
        assert diff == [], f"models and migrations disagree: {diff}"
        tables = set(inspect(db.engine).get_table_names())
        assert {"users", "campaigns", "reward_tiers", "alembic_version"} <= tables
        db.engine.dispose()


def test_migrations_downgrade_to_nothing_and_back(fresh_database_url, tmp_path):
    app = create_app(_config(fresh_database_url, tmp_path))
    with app.app_context():
        upgrade()
        downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        upgrade()
        assert _schema_diff(app) == []
        db.engine.dispose()


@pytest.mark.postgres
def test_postgres_guard_triggers_are_installed_by_the_migrations(fresh_database_url, tmp_path):
    app = create_app(_config(fresh_database_url, tmp_path))
    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            triggers = {
                row[0]
                for row in conn.execute(
                    text(
                        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgrelid::regclass::text LIKE 'ledger%'"
                    )
                )
            }
        assert triggers, "the ledger's PostgreSQL guards are missing after `flask db upgrade`"
        db.engine.dispose()


def _check_constraints(url: str) -> dict[str, set[str]]:
    import re

    from sqlalchemy import create_engine

    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'table'")).all()
    engine.dispose()
    pattern = r"CONSTRAINT \w+ CHECK \((?:[^()]|\([^()]*\))*\)"
    return {
        name: set(re.findall(pattern, re.sub(r"\s+", " ", sql)))
        for name, sql in rows
        if name != "alembic_version"
    }


def test_migrations_build_the_same_check_constraints_as_the_models(tmp_path):
    """Alembic's comparison ignores CHECK constraints, so a widened enum (a new state, a new
    account purpose) could be missing from the migrations: compare them table by table."""
    if TEST_DATABASE_URL:
        pytest.skip("compares SQLite's stored table definitions")
    from crowdfund.models import create_schema

    migrated, modelled = f"sqlite:///{tmp_path / 'migrated.db'}", f"sqlite:///{tmp_path / 'models.db'}"
    app = create_app(_config(migrated, tmp_path))
    with app.app_context():
        upgrade()
        db.engine.dispose()
    app = create_app(_config(modelled, tmp_path))
    with app.app_context():
        create_schema()
        db.engine.dispose()
    assert _check_constraints(migrated) == _check_constraints(modelled)
