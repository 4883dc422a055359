"""Flask extensions, created unbound and initialised in `create_app`."""

from __future__ import annotations

import logging
import os
import shlex
import sys

from flask import Flask
from flask_bootstrap import Bootstrap5
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
#: Counts requests per client address unless a limit names another key. Its store is
#: `RATELIMIT_STORAGE_URI`: Redis when several processes serve the site.
limiter = Limiter(key_func=get_remote_address)
bootstrap = Bootstrap5()


logger = logging.getLogger(__name__)


def init_limiter(app: Flask) -> None:
    """Bind the rate limiter, and warn when its counts would not be shared.

    The in-memory store counts per process: under several gunicorn workers each worker
    keeps its own counts, so an attacker gets the limit once per worker. It is fine for
    development and tests; anywhere else the counts belong in Redis.
    """
    limiter.init_app(app)
    if not app.config["RATELIMIT_ENABLED"] or not app.config["RATELIMIT_STORAGE_URI"].startswith("memory:"):
        return
    workers = gunicorn_workers()
    outside_development = app.config["ENV_NAME"] not in ("development", "test")
    if workers > 1 or outside_development:
        logger.warning(
            "Rate limits are counted in memory, separately by each of %s process(es) (environment %r): "
            "log-in and registration throttling is weaker than configured. Set RATELIMIT_STORAGE_URI "
            "to a Redis server shared by every process, e.g. redis://127.0.0.1:6379.",
            workers or "several",
            app.config["ENV_NAME"],
        )


def gunicorn_workers() -> int:
    """How many worker processes gunicorn was told to run; 0 when not under gunicorn.

    Reads the command line and GUNICORN_CMD_ARGS as gunicorn does (a value set only in a
    gunicorn configuration file is not seen; WEB_CONCURRENCY is gunicorn's default).
    """
    if not os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn/"):
        return 0
    from gunicorn.config import Config as GunicornConfig

    default = int(os.environ.get("WEB_CONCURRENCY", "1") or 1)
    args = shlex.split(os.environ.get("GUNICORN_CMD_ARGS", "")) + sys.argv[1:]
    try:
        parsed, _ = GunicornConfig().parser().parse_known_args(args)
    except (SystemExit, ValueError):  # a command line gunicorn itself accepted; be safe
        return max(default, 2)
    return parsed.workers or default
