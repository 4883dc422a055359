"""Accounts: register, log in, log out, change password, safe redirects, rate limit, staff CLI."""

from __future__ import annotations

import pytest
from flask import Blueprint
from sqlalchemy import func, select

from crowdfund.accounts import service
from crowdfund.accounts.models import Role, User
from crowdfund.accounts.permissions import admin_required, operator_required
from crowdfund.accounts.views import LOGIN_FAILED, REGISTERED, safe_next_url
from crowdfund.errors import Conflict, ValidationError
from tests.factories import PASSWORD, login, make_user

NEW_PASSWORD = "a brand new passphrase"


def register(
    client,
    email="Ada@Example.org",
    password="long enough password",
    confirm=None,
    name="Ada Lovelace",
    **extra,
):
    data = {
        "name": name,
        "email": email,
        "password": password,
        "confirm": password if confirm is None else confirm,
    }
    return client.post("/register", data={**data, **extra})


def do_login(client, email, password=PASSWORD, **extra):
    return client.post("/login", data={"email": email, "password": password, **extra})


def user_count(db) -> int:
    return db.session.execute(select(func.count(User.id))).scalar_one()


def logged_in_user_id(client) -> str | None:
    with client.session_transaction() as session:
        return session.get("_user_id")


# --- register -------------------------------------------------------------


def test_register_creates_a_backer_who_then_logs_in(client, db):
    response = register(client)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/login")
    user = db.session.execute(select(User)).scalar_one()
    assert user.email == "ada@example.org"  # stripped and lower-cased
    assert user.name == "Ada Lovelace"
    assert user.role is Role.BACKER
    assert not user.is_campaigner
    # Registering does not log in (a taken address could not be), it sends you to log in,
    # with the address filled in.
    assert logged_in_user_id(client) is None
    page = client.get("/login")
    assert REGISTERED.encode() in page.data
    assert b'value="Ada@Example.org"' in page.data
    assert do_login(client, "ada@example.org", "long enough password").status_code == 302
    assert logged_in_user_id(client) == user.get_id()
    page = client.get("/account")
    assert page.status_code == 200
    assert b"ada@example.org" in page.data


def test_register_keeps_a_safe_next_for_the_login(client, db):
    response = register(client, next="/organisations")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/login?next=/organisations")
    assert (
        register(client, email="b@example.org", next="https://evil.example/")
        .headers["Location"]
        .endswith("/login")
    )


def test_register_strips_spaces_around_email(client, db):
    assert register(client, email="  Grace@Example.ORG  ").status_code == 302
    assert db.session.execute(select(User.email)).scalar_one() == "grace@example.org"


def test_password_is_stored_hashed(client, db):
    register(client, password="my secret passphrase")
    user = db.session.execute(select(User)).scalar_one()
    assert "my secret passphrase" not in user.password_hash
    assert user.password_hash.startswith("scrypt:")
    assert len(user.session_token) == 64


def _answer(client, response) -> tuple:
    """What a visitor can observe of a registration: status, target, the page it leads to."""
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    flashed = page.count(REGISTERED)
    return response.status_code, response.headers["Location"], flashed, logged_in_user_id(client)


@pytest.mark.parametrize("email", ["ada@example.org", "ADA@EXAMPLE.ORG", " Ada@example.org "])
def test_a_taken_email_gets_the_same_answer_as_a_new_one(app, db, email):
    """Registration does not reveal who has an account (issue 9, item 12).

    Before, a taken address was refused with "already exists"; now both answers are the
    same, the existing account is untouched, and nobody is logged in.
    """
    owner = make_user(email="ada@example.org")
    password_hash, token = owner.password_hash, owner.session_token
    taken = app.test_client()
    fresh = app.test_client()
    taken_answer = _answer(taken, register(taken, email=email, password="attacker password"))
    fresh_answer = _answer(
        fresh, register(fresh, email="nobody.yet@example.org", password="attacker password")
    )
    assert taken_answer == (302, "/login", 1, None)
    assert fresh_answer == taken_answer
    assert user_count(db) == 2  # the owner and the new address; no twin of the owner
    db.session.refresh(owner)
    assert (owner.password_hash, owner.session_token) == (password_hash, token)
    assert LOGIN_FAILED.encode() in do_login(taken, "ada@example.org", "attacker password").data
    assert do_login(taken, "ada@example.org").status_code == 302


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"password": "short"}, b"between 10 and"),
        ({"confirm": "something else entirely"}, b"do not match"),
        ({"email": "not-an-email"}, b"valid e-mail"),
        ({"email": "someone@localhost"}, b"valid e-mail"),
        ({"name": "   "}, b"Enter your name"),
    ],
)
def test_register_rejects_bad_input_with_a_message(client, db, overrides, message):
    response = register(client, **overrides)
    assert response.status_code == 200
    assert message in response.data
    assert user_count(db) == 0


def test_register_service_rules(app, db):
    with pytest.raises(ValidationError) as short:
        service.register_user("Ada", "ada@example.org", "x" * 9)
    assert short.value.field == "password"
    service.register_user("Ada", "ada@example.org", "x" * 10)
    with pytest.raises(Conflict):
        service.register_user("Other", "ADA@example.org", "y" * 12)
    with pytest.raises(ValidationError):
        service.register_user("Ada\x00", "nul@example.org", "x" * 12)
    assert user_count(db) == 1


# --- log in / log out -------------------------------------------------------


def test_login_with_the_right_password(client, db):
    user = make_user(email="bob@example.org")
    response = do_login(client, "  BOB@example.org ")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/account")
    assert logged_in_user_id(client) == user.get_id()


def test_wrong_password_and_unknown_email_get_the_same_message(client, db):
    make_user(email="bob@example.org")
    wrong = do_login(client, "bob@example.org", "not the password")
    unknown = do_login(client, "nobody@example.org", "not the password")
    for response in (wrong, unknown):
        assert response.status_code == 200
        assert LOGIN_FAILED.encode() in response.data
    assert logged_in_user_id(client) is None


def test_login_only_looks_the_address_up(client, db):
    """Accounts made by the seed or CLI with a reserved test domain can still log in."""
    user = make_user(email="demo@healthfund.test")
    assert do_login(client, "Demo@HealthFund.test").status_code == 302
    assert logged_in_user_id(client) == user.get_id()


def test_deactivated_account_cannot_log_in(client, db):
    user = make_user(email="gone@example.org")
    user.is_active_account = False
    db.session.commit()
    response = do_login(client, "gone@example.org")
    assert LOGIN_FAILED.encode() in response.data
    assert logged_in_user_id(client) is None


def test_login_starts_a_new_session(client, db, app):
    make_user(email="bob@example.org")
    with client.session_transaction() as session:
        session["planted_by_attacker"] = "x"
    cookie_name = app.config["SESSION_COOKIE_NAME"]
    before = client.get_cookie(cookie_name).value
    do_login(client, "bob@example.org")
    after = client.get_cookie(cookie_name).value
    assert after != before
    with client.session_transaction() as session:
        assert "planted_by_attacker" not in session
        assert session["_user_id"]


def test_logout_needs_a_post(client, db):
    user = make_user()
    login(client, user)
    page = client.get("/logout")
    assert page.status_code == 200
    assert b"Log out" in page.data
    assert logged_in_user_id(client) == user.get_id()
    response = client.post("/logout")
    assert response.status_code == 302
    assert logged_in_user_id(client) is None
    assert client.get("/account").status_code == 302


def test_nav_shows_login_or_the_account_menu(client, db):
    anonymous = client.get("/").data
    assert b"Log in" in anonymous and b"Register" in anonymous
    user = make_user(name="Mei Chen")
    login(client, user)
    page = client.get("/").data
    assert b"Mei Chen" in page
    assert b'action="/logout"' in page and b"My organisations" in page


def test_account_page_needs_login(client, db):
    response = client.get("/account")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


# --- next redirects ---------------------------------------------------------


def test_login_follows_a_safe_next(client, db):
    make_user(email="bob@example.org")
    response = do_login(client, "bob@example.org", next="/organisations?x=1")
    assert response.headers["Location"].endswith("/organisations?x=1")


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "http:/evil.example",
        "/ok\r\nLocation: https://evil.example",
        "evil.example",
    ],
)
def test_login_refuses_an_open_redirect(client, db, target):
    make_user(email="bob@example.org")
    response = do_login(client, "bob@example.org", next=target)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/account")
    assert "evil" not in response.headers["Location"]
    assert safe_next_url(target) is None


def test_login_page_drops_an_unsafe_next_from_the_query(client, db):
    page = client.get("/login?next=https://evil.example/")
    assert b"evil.example" not in page.data
    page = client.get("/login?next=/organisations")
    assert b'value="/organisations"' in page.data


# --- change password --------------------------------------------------------


def test_change_password_logs_out_other_sessions_but_not_this_one(app, db):
    make_user(email="bob@example.org")
    this, other = app.test_client(), app.test_client()
    do_login(this, "bob@example.org")
    do_login(other, "bob@example.org")
    assert other.get("/account").status_code == 200

    response = this.post(
        "/account/password",
        data={"current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert response.status_code == 302
    assert this.get("/account").status_code == 200
    assert other.get("/account").status_code == 302  # sent to log in

    user = db.session.execute(select(User)).scalar_one()
    db.session.refresh(user)
    assert user.password_hash.startswith("scrypt:")
    fresh = app.test_client()
    assert LOGIN_FAILED.encode() in do_login(fresh, "bob@example.org", PASSWORD).data
    assert do_login(fresh, "bob@example.org", NEW_PASSWORD).status_code == 302


@pytest.mark.parametrize(
    "data, message",
    [
        (
            {"current_password": "wrong password!", "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
            b"not correct",
        ),
        ({"current_password": PASSWORD, "new_password": "short", "confirm": "short"}, b"between 10 and"),
        (
            {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm": "different"},
            b"do not match",
        ),
        (
            {"current_password": PASSWORD, "new_password": PASSWORD, "confirm": PASSWORD},
            b"different from the current",
        ),
        ({}, b"Enter your current password"),
    ],
)
def test_change_password_refuses_bad_input(client, db, data, message):
    user = make_user()
    token, password_hash = user.session_token, user.password_hash
    login(client, user)
    response = client.post("/account/password", data=data)
    assert response.status_code == 200
    assert message in response.data
    db.session.refresh(user)
    assert (user.session_token, user.password_hash) == (token, password_hash)


# --- permissions ------------------------------------------------------------


def test_role_decorators(app, db):
    staff = Blueprint("staff_probe", __name__)
    staff.add_url_rule("/probe/operator", "op", operator_required(lambda: "operator ok"))
    staff.add_url_rule("/probe/admin", "adm", admin_required(lambda: "admin ok"))
    app.register_blueprint(staff)
    client = app.test_client()
    backer, operator, admin = make_user(), make_user(role=Role.OPERATOR), make_user(role=Role.ADMIN)

    anonymous = client.get("/probe/operator")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    expected = {backer: (403, 403), operator: (200, 403), admin: (200, 200)}
    for user, (op_status, admin_status) in expected.items():
        login(client, user)
        assert client.get("/probe/operator").status_code == op_status
        assert client.get("/probe/admin").status_code == admin_status


# --- rate limit -------------------------------------------------------------


def test_login_is_rate_limited(app_config, request):
    app_config.RATELIMIT_ENABLED = True
    app_config.LOGIN_RATE_LIMIT = "3 per minute"
    app = request.getfixturevalue("app")
    make_user(email="bob@example.org")
    client = app.test_client()
    statuses = [do_login(client, "bob@example.org", "wrong password").status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    assert do_login(client, "bob@example.org", "wrong password").status_code == 429
    # Even the right password is refused until the window passes; the page itself still loads.
    assert do_login(client, "bob@example.org").status_code == 429
    assert logged_in_user_id(client) is None
    assert client.get("/login").status_code == 200


# --- staff CLI --------------------------------------------------------------


def test_cli_create_admin(app, db):
    result = app.test_cli_runner().invoke(
        args=[
            "users",
            "create-admin",
            "--email",
            "Root@Example.org",
            "--name",
            "Root",
            "--password",
            "admin password 1",
        ]
    )
    assert result.exit_code == 0, result.output
    user = db.session.execute(select(User)).scalar_one()
    assert (user.email, user.role) == ("root@example.org", Role.ADMIN)
    assert user.password_hash.startswith("scrypt:")


def test_cli_create_operator_prompts_for_the_password(app, db):
    result = app.test_cli_runner().invoke(
        args=["users", "create-operator", "--email", "op@example.org", "--name", "Op"],
        input="operator password\noperator password\n",
    )
    assert result.exit_code == 0, result.output
    assert "operator password" not in result.output  # hidden input
    user = db.session.execute(select(User)).scalar_one()
    assert user.role is Role.OPERATOR
    client = app.test_client()
    assert do_login(client, "op@example.org", "operator password").status_code == 302


def test_cli_refuses_an_existing_email_unless_promote(app, db):
    user = make_user(email="bob@example.org")
    runner = app.test_cli_runner()
    refused = runner.invoke(
        args=["users", "create-operator", "--email", "BOB@example.org", "--name", "B", "--password", "x" * 12]
    )
    assert refused.exit_code != 0
    assert "already exists" in refused.stderr and "--promote" in refused.stderr
    db.session.refresh(user)
    assert user.role is Role.BACKER

    promoted = runner.invoke(args=["users", "create-operator", "--email", "bob@example.org", "--promote"])
    assert promoted.exit_code == 0, promoted.output
    db.session.refresh(user)
    assert user.role is Role.OPERATOR
    assert user_count(db) == 1


def test_cli_errors_go_to_stderr(app, db):
    runner = app.test_cli_runner()
    short = runner.invoke(
        args=["users", "create-admin", "--email", "a@example.org", "--name", "A", "--password", "short"]
    )
    assert short.exit_code != 0
    assert "at least 10 characters" in short.stderr
    bad = runner.invoke(
        args=["users", "create-admin", "--email", "nope", "--name", "A", "--password", "x" * 12]
    )
    assert bad.exit_code != 0 and "valid e-mail" in bad.stderr
    assert user_count(db) == 0


def test_cli_list(app, db):
    make_user(email="bob@example.org", name="Bob")
    make_user(email="op@example.org", role=Role.OPERATOR)
    runner = app.test_cli_runner()
    everyone = runner.invoke(args=["users", "list"])
    assert everyone.exit_code == 0
    assert "bob@example.org" in everyone.output and "op@example.org" in everyone.output
    operators = runner.invoke(args=["users", "list", "--role", "operator"])
    assert "op@example.org" in operators.output and "bob@example.org" not in operators.output


# --- garbage input ----------------------------------------------------------

HUGE = "x" * 100_000
GARBAGE = [
    {},
    {"name": HUGE, "email": HUGE, "password": HUGE, "confirm": HUGE, "next": HUGE},
    {"name": "\x00", "email": "a\x00@example.org", "password": "\x00" * 12, "confirm": "\x00" * 12},
    {"name": ["a", "b"], "email": ["x@example.org", "y@example.org"], "password": ["1", "2"]},
    {"email": "@", "password": " " * 20, "confirm": " " * 20, "next": "//evil"},
    {"current_password": HUGE, "new_password": HUGE, "confirm": HUGE},
    {"email": "😀@😀.😀", "name": "😀" * 200, "password": "😀" * 20, "confirm": "😀" * 20},
]


@pytest.mark.parametrize("data", GARBAGE)
@pytest.mark.parametrize(
    "path, logged_in", [("/register", False), ("/login", False), ("/account/password", True)]
)
def test_account_forms_survive_garbage(client, db, path, logged_in, data):
    user = make_user(email="bob@example.org")
    if logged_in:
        login(client, user)
    response = client.post(path, data=data)
    assert response.status_code in (200, 400), response.status_code
    assert user_count(db) == 1
