"""Security headers on every answer: CSP, framing, referrer, permissions, HSTS, caching."""

from __future__ import annotations

import re

import pytest

from crowdfund import create_app
from crowdfund.accounts.models import Role
from tests.factories import login, make_campaign, make_org, make_user
from tests.factories.api import bearer, make_token


def _csp(response) -> dict[str, list[str]]:
    policy = response.headers["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


def test_every_kind_of_answer_carries_the_headers(db, client):
    campaign = make_campaign()
    answers = {
        "page": client.get("/"),
        "campaign": client.get(f"/campaigns/{campaign.slug}"),
        "not found": client.get("/no-such-page"),
        "api": client.get("/api/v1/campaigns"),
        "api error": client.get("/api/v1/pledges"),
        "static": client.get("/static/css/site.css"),
    }
    for name, r in answers.items():
        assert r.status_code < 500, name
        csp = _csp(r)
        assert csp["default-src"] == ["'self'"], name
        assert csp["script-src"][0] == "'self'" and all(
            s == "'self'" or s.startswith("'nonce-") for s in csp["script-src"]
        ), name
        assert csp["style-src"] == ["'self'"], name
        assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"], name
        assert "'unsafe-inline'" not in r.headers["Content-Security-Policy"], name
        assert r.headers["X-Frame-Options"] == "DENY", name
        assert r.headers["X-Content-Type-Options"] == "nosniff", name
        assert r.headers["Referrer-Policy"] == "strict-origin-when-cross-origin", name
        assert "camera=()" in r.headers["Permissions-Policy"], name
        assert "geolocation=()" in r.headers["Permissions-Policy"], name
        # Development and tests: plain http, no HSTS, no redirect.
        assert "Strict-Transport-Security" not in r.headers, name


def test_pages_have_no_inline_script_style_or_handler(db, client):
    """What the CSP would block: every script carries the nonce, no style attributes or on*=."""
    make_campaign()
    r = client.get("/")
    html = r.get_data(as_text=True)
    nonce = next(s for s in _csp(r)["script-src"] if s.startswith("'nonce-"))[len("'nonce-") : -1]
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts
    assert all(f'nonce="{nonce}"' in tag and "src=" in tag for tag in scripts), scripts
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)
    assert "<style" not in html


def test_the_nonce_changes_with_every_answer(db, client):
    first, second = (_csp(client.get("/login"))["script-src"] for _ in range(2))
    assert first != second


def test_stripe_js_is_allowed_only_in_stripe_mode(db, app_config):
    app_config.PAYMENT_GATEWAY = "stripe"
    app_config.STRIPE_JS_URL = "https://js.stripe.com/v3/"
    stripe_app = create_app(app_config)
    with stripe_app.app_context():
        csp = _csp(stripe_app.test_client().get("/login"))
    assert "https://js.stripe.com" in csp["script-src"]
    assert "https://js.stripe.com" in csp["frame-src"]
    assert "https://api.stripe.com" in csp["connect-src"]


def test_sandbox_mode_allows_no_other_origin(client):
    policy = client.get("/login").headers["Content-Security-Policy"]
    assert "stripe" not in policy and "https:" not in policy and "*" not in policy


def test_production_sends_hsts_on_https_and_redirects_http(db, app_config):
    app_config.ENV_NAME = "production"
    app_config.SESSION_COOKIE_SECURE = True
    prod = create_app(app_config)
    with prod.app_context():
        client = prod.test_client()
        plain = client.get("/login")
        secure = client.get("/login", base_url="https://localhost")
    assert plain.status_code == 302 and plain.headers["Location"].startswith("https://")
    assert secure.status_code == 200
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")


def test_development_does_not_redirect_or_send_hsts(db, app_config):
    app_config.ENV_NAME = "development"
    dev = create_app(app_config)
    with dev.app_context():
        r = dev.test_client().get("/login")
    assert r.status_code == 200
    assert "Strict-Transport-Security" not in r.headers
    assert dev.config["SESSION_COOKIE_SECURE"] is False


@pytest.mark.parametrize(
    "path",
    [
        "/account",
        "/account/payment-methods",
        "/account/tokens",
        "/my/pledges",
        "/studio",
        "/operator/review",
        "/operator/ledger",
        "/",
    ],
)
def test_pages_seen_signed_in_are_never_stored(db, client, path):
    login(client, make_user(role=Role.ADMIN))
    r = client.get(path)
    assert r.status_code == 200, (path, r.status_code)
    assert r.headers["Cache-Control"] == "no-store", path


def test_organisation_payouts_and_dashboards_are_never_stored(db, client):
    owner = make_user()
    org = make_org(owner)
    campaign = make_campaign(org=org)
    login(client, owner)
    for path in (
        f"/organisations/{org.id}",
        f"/organisations/{org.id}/payouts",
        f"/studio/{campaign.id}/dashboard",
    ):
        r = client.get(path)
        assert r.status_code == 200, (path, r.status_code)
        assert r.headers["Cache-Control"] == "no-store", path


def test_api_answers_are_never_stored(db, client):
    user = make_user()
    headers = bearer(make_token(user))
    for r in (client.get("/api/v1/pledges", headers=headers), client.get("/api/v1/campaigns")):
        assert r.headers["Cache-Control"] == "no-store"


def test_public_pages_for_anonymous_visitors_and_static_files_may_be_cached(db, client):
    campaign = make_campaign()
    assert "no-store" not in client.get(f"/campaigns/{campaign.slug}").headers.get("Cache-Control", "")
    login(client, make_user())
    assert "no-store" not in client.get("/static/css/site.css").headers.get("Cache-Control", "")


def test_405_always_names_the_allowed_methods(client):
    r = client.open("/login", method="TRACE")
    assert r.status_code == 405
    assert {"GET", "POST"} <= {m.strip() for m in r.headers["Allow"].split(",")}
