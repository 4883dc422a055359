"""HealthFund: crowdfunding for the health industry.

`create_app` is the one place that knows every package: it binds the extensions,
registers every blueprint and every CLI group. Nothing registers itself by being
imported, and no package imports another one's views.
"""

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

    from crowdfund import database, extensions, models, web  # noqa: F401  (models: full metadata)
    from crowdfund.web.security import register_security

    database.configure_sqlite(app)
    extensions.db.init_app(app)
    extensions.migrate.init_app(app, extensions.db, directory=str(BASE_DIR / "migrations"))
    extensions.login_manager.init_app(app)
    extensions.csrf.init_app(app)
    extensions.init_limiter(app)
    extensions.bootstrap.init_app(app)

    web.init_app(app)  # before the blueprints: it installs the id converter their rules use
    register_security(app)  # CSP, frame, referrer and cache headers on every answer
    register_blueprints(app)
    register_cli(app)
    register_money_trail(app)
    return app


def register_money_trail(app: Flask) -> None:
    """What the after-success packages add to each campaign's public money trail
    (`crowdfund.ledger.service.TrailLine`), in the order the page shows it: shares issued,
    repayments received, tranches paid to hospitals and surpluses returned."""
    from crowdfund.equity.trail import trail_lines as equity_lines
    from crowdfund.ledger.service import TRAIL_SECTIONS
    from crowdfund.loans.trail import trail_lines as loan_lines
    from crowdfund.patient_aid.trail import trail_lines as patient_aid_lines

    app.extensions[TRAIL_SECTIONS] = (equity_lines, loan_lines, patient_aid_lines)


def register_blueprints(app: Flask) -> None:
    """Every package's pages, in the order their URL rules are matched."""
    from crowdfund.accounts.views import bp as accounts
    from crowdfund.api.views import bp as api
    from crowdfund.api.views_tokens import bp as api_tokens
    from crowdfund.campaigns.views import bp as campaigns
    from crowdfund.engine.views import bp as engine
    from crowdfund.equity.views import bp as equity
    from crowdfund.ledger.views import bp as ledger
    from crowdfund.loans.views import bp as loans
    from crowdfund.patient_aid.views import bp as patient_aid
    from crowdfund.payments.views import bp as payments
    from crowdfund.public.views import bp as public
    from crowdfund.receipts.views import bp as receipts
    from crowdfund.review.views import bp as review
    from crowdfund.settlement.views import bp as settlement

    for bp in (
        public,
        accounts,
        campaigns,
        review,
        ledger,
        engine,
        settlement,
        equity,
        receipts,
        loans,
        patient_aid,
        api,
        api_tokens,
        payments,
    ):
        app.register_blueprint(bp)


def register_cli(app: Flask) -> None:
    """Every package's `flask …` command group, and the jobs registry's."""
    from crowdfund import jobs
    from crowdfund.accounts.cli import users_cli
    from crowdfund.demo.cli import demo_cli
    from crowdfund.engine.cli import reconcile_command
    from crowdfund.ledger.cli import ledger_cli
    from crowdfund.payments.cli import payments_cli
    from crowdfund.settlement.cli import settlement_cli

    payments_cli.add_command(reconcile_command)
    for group in (users_cli, demo_cli, ledger_cli, payments_cli, settlement_cli, *jobs.cli_groups()):
        app.cli.add_command(group)
