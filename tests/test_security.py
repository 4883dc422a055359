"""Security properties that hold for the whole site: CSRF protection on every form."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from werkzeug.routing.converters import NumberConverter

from crowdfund.accounts.models import Organisation, Role, User
from tests.factories import PASSWORD, login, make_user

#: Machine-to-machine endpoints authenticate otherwise (API tokens, signed webhooks).
CSRF_EXEMPT_PREFIXES = ("/api/", "/webhooks/")


@pytest.fixture
def csrf_app(app_config, request):
    """The app with CSRF protection switched on, as in every real configuration."""
    app_config.WTF_CSRF_ENABLED = True
    return request.getfixturevalue("app")


def _count(db, model) -> int:
    return db.session.execute(select(func.count(model.id))).scalar_one()


def test_real_configurations_have_csrf_on():
    from crowdfund.config import DevelopmentConfig, ProductionConfig

    assert DevelopmentConfig.WTF_CSRF_ENABLED and ProductionConfig.WTF_CSRF_ENABLED


def test_forms_without_a_token_are_refused(csrf_app, db):
    client = csrf_app.test_client()
    user = make_user(email="bob@example.org")

    register = client.post(
        "/register",
        data={"name": "Eve", "email": "eve@example.org", "password": "x" * 12, "confirm": "x" * 12},
    )
    assert register.status_code == 400
    assert _count(db, User) == 1

    signed_in = client.post("/login", data={"email": "bob@example.org", "password": PASSWORD})
    assert signed_in.status_code == 400
    with client.session_transaction() as session:
        assert "_user_id" not in session

    login(client, user)
    created = client.post(
        "/organisations/new",
        data={
            "type": "clinic",
            "legal_name": "Forged Ltd",
            "registration_number": "1",
            "country": "CN",
            "description": "x",
        },
    )
    assert created.status_code == 400
    assert _count(db, Organisation) == 0

    logged_out = client.post("/logout")
    assert logged_out.status_code == 400
    assert client.get("/account").status_code == 200  # still logged in


def test_forms_with_the_token_work(csrf_app, db):
    """The pages render a token that the same session can post back."""
    client = csrf_app.test_client()
    page = client.get("/register").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    response = client.post(
        "/register",
        data={
            "csrf_token": token,
            "name": "Ada",
            "email": "ada@example.org",
            "password": "x" * 12,
            "confirm": "x" * 12,
        },
    )
    assert response.status_code == 302
    assert _count(db, User) == 1


def _sample_path(rule) -> str:
    """A concrete URL for `rule`, with 1 for numbers and "x" for every other part."""
    values = {}
    for name in rule.arguments:
        converter = rule._converters[name]
        kind = type(converter).__name__
        if isinstance(converter, NumberConverter):
            values[name] = 1
        elif kind == "UUIDConverter":
            values[name] = "00000000-0000-0000-0000-000000000001"
        elif kind == "AnyConverter":
            values[name] = next(iter(converter.items)) if hasattr(converter, "items") else "x"
        else:
            values[name] = "x"
    _, path = rule.build(values, append_unknown=False)
    return path


def test_every_post_route_needs_a_csrf_token(csrf_app, db):
    """Walk every route that accepts POST (outside the API and webhooks) and post without a token."""
    client = csrf_app.test_client()
    login(client, make_user(role=Role.ADMIN))
    checked = []
    for rule in csrf_app.url_map.iter_rules():
        if "POST" not in (rule.methods or ()):
            continue
        path = _sample_path(rule)
        if path.startswith(CSRF_EXEMPT_PREFIXES):
            continue
        response = client.post(path, data={"anything": "1"})
        redirected_to_login = response.status_code in (301, 302, 303) and "/login" in response.headers.get(
            "Location", ""
        )
        assert response.status_code == 400 or redirected_to_login, (rule.rule, response.status_code)
        checked.append(rule.rule)
    assert "/register" in checked and "/login" in checked and "/logout" in checked
