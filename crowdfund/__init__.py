"""HealthFund: crowdfunding for the health industry."""

from __future__ import annotations

from flask import Flask

from crowdfund.config import BASE_DIR, Config, config_from_environment


def create_app(config: type[Config] | dict | None = None) -> Flask:
    """Build the app: configuration, extensions, blueprints and CLI commands.

    `config` is a Config class, or a dict of overrides on top of the class named by
    HEALTHFUND_ENV (development by default).
    """
    app = Flask(__name__, root_path=str(BASE_DIR))
    base = config if isinstance(config, type) else config_from_environment()
    app.config.from_object(base)
    if isinstance(config, dict):
        app.config.update(config)
    if not app.config.get("SECRET_KEY"):
        raise RuntimeError("SECRET_KEY must be set in the environment outside development and tests.")

    from crowdfund import database, extensions, models  # noqa: F401  (models: full metadata)
    from crowdfund.web import register_blueprints, register_cli, register_template_helpers

    database.configure_sqlite(app)
    extensions.db.init_app(app)
    extensions.migrate.init_app(app, extensions.db, directory=str(BASE_DIR / "migrations"))
    extensions.login_manager.init_app(app)
    extensions.csrf.init_app(app)
    extensions.limiter.init_app(app)
    extensions.bootstrap.init_app(app)

    register_blueprints(app)
    register_template_helpers(app)
    register_cli(app)
    return app
