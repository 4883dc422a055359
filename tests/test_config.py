"""Configuration: secrets come from the environment; production refuses to start without one."""

import pytest

from crowdfund import create_app
from crowdfund.config import ProductionConfig, config_from_environment, normalise_database_url


def test_production_refuses_to_start_without_a_secret_key(monkeypatch):
    class NoSecret(ProductionConfig):
        SECRET_KEY = None
        SQLALCHEMY_DATABASE_URI = "sqlite://"

    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app(NoSecret)


def test_production_starts_with_a_secret_key_and_secure_cookies():
    class WithSecret(ProductionConfig):
        SECRET_KEY = "from-the-environment"
        SQLALCHEMY_DATABASE_URI = "sqlite://"

    app = create_app(WithSecret)
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True


def test_environment_picks_the_config(monkeypatch):
    monkeypatch.setenv("HEALTHFUND_ENV", "production")
    assert config_from_environment() is ProductionConfig
    monkeypatch.setenv("HEALTHFUND_ENV", "staging")
    with pytest.raises(RuntimeError, match="HEALTHFUND_ENV"):
        config_from_environment()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_database_urls_use_psycopg_3(url, expected):
    assert normalise_database_url(url) == expected


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(app, db):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    from sqlalchemy import text

    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30_000
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
