"""The demo data, seeded once per test module (a seed goes through every service, so
seeding for each test would take minutes): `demo_config`, `demo_app`, and the small
look-ups the demo tests share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, g
from sqlalchemy import select

from crowdfund import create_app
from crowdfund.accounts.models import User
from crowdfund.campaigns.models import Campaign
from crowdfund.config import DevelopmentConfig
from crowdfund.demo.data import CAMPAIGNS
from crowdfund.extensions import db


def demo_config(database_url: str, upload_dir):
    """The test config with the processing fee `make run` (development) charges in the sandbox."""
    from tests.conftest import _config

    base = _config(database_url, upload_dir)

    class Config(base):
        PROCESSING_FEE_BP = DevelopmentConfig.PROCESSING_FEE_BP
        PROCESSING_FEE_FIXED = DevelopmentConfig.PROCESSING_FEE_FIXED

    return Config


@contextmanager
def demo_app(database_url: str, upload_dir, *, seed: bool) -> Iterator[Flask]:
    """An app on the test database (seeded with `flask demo seed` when `seed`), emptied after."""
    from tests.conftest import _truncate_all

    app = create_app(demo_config(database_url, upload_dir))

    @app.before_request
    def _fresh_request_state():
        g.pop("_login_user", None)

    with app.app_context():
        if seed:
            result = app.test_cli_runner().invoke(args=["demo", "seed"])
            assert result.exit_code == 0 and "skipped" not in result.output, result.output
        yield app
        db.session.remove()
        _truncate_all()
        db.engine.dispose()


def demo_campaign(key: str) -> Campaign:
    spec = next(c for c in CAMPAIGNS if c.key == key)
    return db.session.scalar(select(Campaign).where(Campaign.title == spec.title))


def demo_user(email: str) -> User:
    return db.session.scalar(select(User).where(User.email == email))
