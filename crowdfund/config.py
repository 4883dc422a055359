"""Configuration read from the environment.

`Config` is the base; `DevelopmentConfig` is what `make run` uses, `ProductionConfig`
refuses to start without a real `SECRET_KEY`, and `TestConfig` is what the test suite
passes to `create_app`.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
INSTANCE_DIR = BASE_DIR / "instance"


def _bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def normalise_database_url(url: str) -> str:
    """Let `postgres://` and `postgresql://` URLs use psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


class Config:
    ENV_NAME = "base"
    SECRET_KEY = os.environ.get("SECRET_KEY")
    SQLALCHEMY_DATABASE_URI = normalise_database_url(
        os.environ.get("DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'healthfund.db'}")
    )
    SQLALCHEMY_ENGINE_OPTIONS: dict = {}
    #: Where uploaded files (cover images, documents) live: never under static/.
    UPLOAD_DIR = os.environ.get("UPLOAD_DIR", str(INSTANCE_DIR / "uploads"))
    MAX_CONTENT_LENGTH = int(os.environ.get("MAX_UPLOAD_BYTES", 8 * 1024 * 1024))
    #: Rate-limit store, shared by every process that serves the site: use Redis
    #: (redis://127.0.0.1:6379) whenever more than one process runs; memory:// counts per
    #: process and the app warns about it at start-up outside development.
    RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    #: Prefix of every key in the store, so several sites can share one Redis.
    RATELIMIT_KEY_PREFIX = os.environ.get("RATELIMIT_KEY_PREFIX", "healthfund")
    RATELIMIT_ENABLED = _bool("RATELIMIT_ENABLED", True)
    #: Log-in attempts per client address (every attempt counts).
    LOGIN_RATE_LIMIT = os.environ.get("LOGIN_RATE_LIMIT", "10 per minute;50 per hour")
    #: Failed log-ins per account (the typed e-mail address), from whatever addresses.
    LOGIN_ACCOUNT_RATE_LIMIT = os.environ.get("LOGIN_ACCOUNT_RATE_LIMIT", "5 per minute;20 per hour")
    #: Wrong current passwords per account on the change-password form.
    PASSWORD_CHECK_RATE_LIMIT = os.environ.get("PASSWORD_CHECK_RATE_LIMIT", "5 per 15 minutes")
    #: Registrations per client address.
    REGISTER_RATE_LIMIT = os.environ.get("REGISTER_RATE_LIMIT", "10 per hour")
    WTF_CSRF_ENABLED = True
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = _bool("SESSION_COOKIE_SECURE", False)
    BOOTSTRAP_SERVE_LOCAL = True
    SITE_NAME = "HealthFund"
    DEFAULT_CURRENCY = os.environ.get("DEFAULT_CURRENCY", "CNY")
    #: Payment gateway: "sandbox" (built in, offline) or "stripe".
    PAYMENT_GATEWAY = os.environ.get("PAYMENT_GATEWAY", "sandbox")
    STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY")
    STRIPE_PUBLISHABLE_KEY = os.environ.get("STRIPE_PUBLISHABLE_KEY")
    STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET")
    #: Point the stripe library elsewhere (the test suite points it at localstripe).
    STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE")
    #: Webhook events signed longer ago than this (seconds) are refused.
    STRIPE_WEBHOOK_TOLERANCE = int(os.environ.get("STRIPE_WEBHOOK_TOLERANCE", 300))
    #: Seconds a webhook signature may be dated in the future (clocks differ a little).
    STRIPE_WEBHOOK_CLOCK_SKEW = int(os.environ.get("STRIPE_WEBHOOK_CLOCK_SKEW", 60))
    #: Stripe.js, loaded only on the Stripe "add a card" page (localstripe serves a stand-in).
    STRIPE_JS_URL = os.environ.get("STRIPE_JS_URL", "https://js.stripe.com/v3/")
    #: Seconds one process may spend on a gateway call before another may retry the operation.
    PAYMENT_CALL_LEASE_SECONDS = int(os.environ.get("PAYMENT_CALL_LEASE_SECONDS", 120))
    #: Most requests a second to the payment gateway, from all processes together (Stripe
    #: allows 25 per endpoint); shared in Redis when RATELIMIT_STORAGE_URI (else
    #: CELERY_BROKER_URL) is a redis:// URL. 0: no limit. See crowdfund/payments/ratelimit.py.
    GATEWAY_RATE_LIMIT = float(os.environ.get("GATEWAY_RATE_LIMIT", 20))
    #: The same for the built-in sandbox, which lives in our database: no limit by default.
    SANDBOX_RATE_LIMIT = float(os.environ.get("SANDBOX_RATE_LIMIT", 0))
    #: On a "rate limited" answer: pause about BACKOFF s, doubling up to BACKOFF_MAX s, at most RETRIES times.
    GATEWAY_RATE_LIMIT_RETRIES = int(os.environ.get("GATEWAY_RATE_LIMIT_RETRIES", 5))
    GATEWAY_BACKOFF_SECONDS = float(os.environ.get("GATEWAY_BACKOFF_SECONDS", 0.5))
    GATEWAY_BACKOFF_MAX_SECONDS = float(os.environ.get("GATEWAY_BACKOFF_MAX_SECONDS", 8))
    #: Celery broker of the production workers (redis://127.0.0.1:6379/0 or
    #: amqp://guest:guest@127.0.0.1:5672//). Empty: no Celery; `flask jobs run` runs the jobs in-process.
    CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
    #: Celery beat: seconds between runs of the jobs that run "every pass" in `flask jobs run`.
    CELERY_BEAT_SECONDS = float(os.environ.get("CELERY_BEAT_SECONDS", 5))
    #: Platform fee in basis points of what a campaign collects.
    PLATFORM_FEE_BP = int(os.environ.get("PLATFORM_FEE_BP", 500))
    #: Settlement: days after close on which a failed charge is tried again (the last is the last try).
    SETTLEMENT_RETRY_DAYS = os.environ.get("SETTLEMENT_RETRY_DAYS", "2,4,6,7")
    #: Settlement: days after close until an unpaid pledge is dropped.
    SETTLEMENT_GRACE_DAYS = int(os.environ.get("SETTLEMENT_GRACE_DAYS", 7))
    #: Settlement: days after close before the organisation is paid out (refunds, disputes).
    PAYOUT_DELAY_DAYS = int(os.environ.get("PAYOUT_DELAY_DAYS", 14))
    #: What the payment processor keeps per successful charge: basis points of it plus a fixed
    #: amount in minor units (the sandbox keeps nothing by default; Stripe: 290 and 30).
    PROCESSING_FEE_BP = int(os.environ.get("PROCESSING_FEE_BP", 0))
    PROCESSING_FEE_FIXED = int(os.environ.get("PROCESSING_FEE_FIXED", 0))
    #: Loans: days after an instalment's due date before it counts as late and the late fee is charged.
    LOAN_GRACE_DAYS = int(os.environ.get("LOAN_GRACE_DAYS", 15))
    #: Loans: the late fee per late instalment: "2%" (of the instalment's scheduled payment) or a
    #: fixed amount in major units of the loan's currency ("50").
    LOAN_LATE_FEE = os.environ.get("LOAN_LATE_FEE", "2%")
    #: Loans: penalty interest in basis points a month on what stays overdue after the grace period.
    LOAN_PENALTY_BP = int(os.environ.get("LOAN_PENALTY_BP", 0))
    #: Loans: days an instalment stays unpaid after its due date before the loan is in default.
    LOAN_DEFAULT_DAYS = int(os.environ.get("LOAN_DEFAULT_DAYS", 120))
    CAMPAIGNS_PER_PAGE = 12
    #: Pledging (engine): smallest donation and "no reward" pledge, in major units of the campaign's currency.
    DONATION_MINIMUM = int(os.environ.get("DONATION_MINIMUM", 1))
    NO_REWARD_MINIMUM = int(os.environ.get("NO_REWARD_MINIMUM", 1))
    #: Largest single pledge in major units: anything above is refused as a typing mistake.
    PLEDGE_MAXIMUM = int(os.environ.get("PLEDGE_MAXIMUM", 10_000_000))
    #: Most units of one reward tier in one pledge.
    REWARD_MAX_QUANTITY = int(os.environ.get("REWARD_MAX_QUANTITY", 100))
    #: 12-month investment limit for non-accredited investors (Reg CF by default), in USD:
    #: the greater of FLOOR or LOW_BP of the greater of income and net worth when either is
    #: under THRESHOLD, else HIGH_BP of it; never more than CAP.
    INVESTMENT_LIMIT_FLOOR_USD = int(os.environ.get("INVESTMENT_LIMIT_FLOOR_USD", 2_500))
    INVESTMENT_LIMIT_THRESHOLD_USD = int(os.environ.get("INVESTMENT_LIMIT_THRESHOLD_USD", 124_000))
    INVESTMENT_LIMIT_CAP_USD = int(os.environ.get("INVESTMENT_LIMIT_CAP_USD", 124_000))
    INVESTMENT_LIMIT_LOW_BP = int(os.environ.get("INVESTMENT_LIMIT_LOW_BP", 500))
    INVESTMENT_LIMIT_HIGH_BP = int(os.environ.get("INVESTMENT_LIMIT_HIGH_BP", 1_000))
    INVESTMENT_LIMIT_WINDOW_DAYS = int(os.environ.get("INVESTMENT_LIMIT_WINDOW_DAYS", 365))
    #: Fixed rates (US dollars per one major unit) used only for the investment limit, to
    #: count commitments in other currencies than the investor's profile currency.
    INVESTMENT_LIMIT_FX = {
        "USD": "1",
        "CNY": "0.14",
        "EUR": "1.08",
        "GBP": "1.27",
        "HKD": "0.128",
        "JPY": "0.0067",
    }
    #: An equity campaign that reaches its maximum closes early, but not before this many days live.
    EQUITY_EARLY_CLOSE_DAYS = int(os.environ.get("EQUITY_EARLY_CLOSE_DAYS", 21))
    #: After a material change to a live equity round, committed investors reconfirm within
    #: this many business days (Monday to Friday) or their commitment is cancelled.
    EQUITY_RECONFIRM_BUSINESS_DAYS = int(os.environ.get("EQUITY_RECONFIRM_BUSINESS_DAYS", 5))
    #: Largest goal of a patient-aid donation campaign: "<CURRENCY> <amount>"; such campaigns
    #: raise money in this currency.
    PATIENT_AID_CAP = os.environ.get("PATIENT_AID_CAP", "CNY 500000")
    #: Patient aid: hours an approved tranche is shown on the campaign page before it is paid.
    PATIENT_AID_NOTICE_HOURS = int(os.environ.get("PATIENT_AID_NOTICE_HOURS", 24))
    #: Patient aid: days after close when an appeal ends by itself and its surplus goes back to donors.
    PATIENT_AID_SURPLUS_DAYS = int(os.environ.get("PATIENT_AID_SURPLUS_DAYS", 365))
    #: Patient aid: largest invoice file accepted (bytes; the request is capped by MAX_CONTENT_LENGTH).
    PATIENT_AID_INVOICE_MAX_BYTES = int(os.environ.get("PATIENT_AID_INVOICE_MAX_BYTES", 8 * 1024 * 1024))
    #: Largest cover image accepted (bytes); the whole request is capped by MAX_CONTENT_LENGTH.
    COVER_MAX_BYTES = int(os.environ.get("COVER_MAX_BYTES", 5 * 1024 * 1024))


class DevelopmentConfig(Config):
    ENV_NAME = "development"
    SECRET_KEY = os.environ.get("SECRET_KEY", "dev-only-secret-not-for-production")
    #: `make run`'s sandbox keeps Stripe's processing fee, so the demo's settlements show one.
    PROCESSING_FEE_BP = int(os.environ.get("PROCESSING_FEE_BP", 290))
    PROCESSING_FEE_FIXED = int(os.environ.get("PROCESSING_FEE_FIXED", 30))


class ProductionConfig(Config):
    ENV_NAME = "production"
    SESSION_COOKIE_SECURE = _bool("SESSION_COOKIE_SECURE", True)


class TestConfig(Config):
    ENV_NAME = "test"
    TESTING = True
    SECRET_KEY = "test-secret"
    SQLALCHEMY_DATABASE_URI = "sqlite://"
    WTF_CSRF_ENABLED = False
    RATELIMIT_ENABLED = False
    RATELIMIT_STORAGE_URI = "memory://"
    PAYMENT_GATEWAY = "sandbox"
    #: Tests do not wait for the gateway's pace (tests/test_rate_limit.py sets one).
    GATEWAY_RATE_LIMIT = 0
    SERVER_NAME = "localhost"


CONFIGS = {
    "development": DevelopmentConfig,
    "production": ProductionConfig,
    "test": TestConfig,
}


def config_from_environment() -> type[Config]:
    """Pick the config class named by HEALTHFUND_ENV (development by default)."""
    name = os.environ.get("HEALTHFUND_ENV", "development").lower()
    if name not in CONFIGS:
        raise RuntimeError(f"HEALTHFUND_ENV must be one of {', '.join(CONFIGS)}, not {name!r}")
    return CONFIGS[name]
