"""Sessions and guessing (issue 9, items 9–12): logout ends the session on the server,
log-ins are throttled per account as well as per address in a store every process
shares, the change-password form is throttled, registration is throttled, and the app
warns when its rate-limit counts are per process.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid

import pytest
from flask import url_for
from sqlalchemy import select

from crowdfund import create_app
from crowdfund.accounts import service
from crowdfund.accounts.models import User
from crowdfund.errors import NotFound
from crowdfund.extensions import db as _db
from crowdfund.extensions import gunicorn_workers
from tests.factories import PASSWORD, login, make_user

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
REQUIRE_SERVICES = os.environ.get("REQUIRE_POSTGRES") == "1"
NEW_PASSWORD = "a brand new passphrase"


def _redis_or_skip() -> str:
    """The Redis URL for these tests; skips them when Redis is down (fails in CI)."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        if REQUIRE_SERVICES:
            pytest.fail(f"Redis at {REDIS_URL} is unreachable: {exc}")
        pytest.skip(f"Redis unreachable: {exc}")
    return REDIS_URL


def _unique_email() -> str:
    """An address no earlier run used: counts in Redis outlive a test run."""
    return f"victim-{uuid.uuid4().hex[:12]}@example.org"


def _address(n: int) -> dict[str, str]:
    """A client address, distinct for each n and each run."""
    run = uuid.uuid4().int % 250
    return {"REMOTE_ADDR": f"10.{run}.{n // 250}.{n % 250 + 1}"}


def _login(client, email: str, password: str, n: int = 0):
    return client.post("/login", data={"email": email, "password": password}, environ_base=_address(n))


def _logged_in(client) -> bool:
    with client.session_transaction() as session:
        return "_user_id" in session


# --- logout ends the session (item 9) ---------------------------------------


def test_a_copied_session_cookie_is_refused_after_logout(app, client, db):
    user = make_user(email="bob@example.org")
    assert client.post("/login", data={"email": "bob@example.org", "password": PASSWORD}).status_code == 302
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
    private = ["/account", url_for("engine.my_pledges"), url_for("payments.methods"), "/account/tokens"]
    thief = app.test_client()
    thief.set_cookie(app.config["SESSION_COOKIE_NAME"], cookie)
    assert [thief.get(path).status_code for path in private] == [200] * len(private)
    carried = user.session_token

    assert client.post("/logout").status_code == 302

    for path in private:
        response = thief.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"], path
    db.session.refresh(user)
    assert user.session_token != carried


def test_logout_ends_the_sessions_on_other_devices_too(app, db):
    make_user(email="bob@example.org")
    laptop, phone = app.test_client(), app.test_client()
    for device in (laptop, phone):
        device.post("/login", data={"email": "bob@example.org", "password": PASSWORD})
        assert device.get("/account").status_code == 200
    laptop.post("/logout")
    assert phone.get("/account").status_code == 302
    # Logging in again works, and starts a session the old cookies cannot use.
    assert phone.post("/login", data={"email": "bob@example.org", "password": PASSWORD}).status_code == 302
    assert phone.get("/account").status_code == 200
    assert laptop.get("/account").status_code == 302


def test_the_logout_page_says_every_device_is_logged_out(client, db):
    login(client, make_user())
    assert b"every other browser or device" in client.get("/logout").data


def test_use_cases_on_a_vanished_account_leave_no_transaction_open(app, db):
    """A refusal inside a unit of work rolls back (before, the write lock stayed held)."""
    ghost = User(id=987_654, email="ghost@example.org", name="Ghost", password_hash="x", session_token="t")
    with pytest.raises(NotFound):
        service.change_password(ghost, PASSWORD, NEW_PASSWORD)
    assert not _db.session().in_transaction()
    with pytest.raises(NotFound):
        service.end_all_sessions(ghost)
    assert not _db.session().in_transaction()
    make_user(email="still-writable@example.org")  # another writer is not blocked


# --- log-in throttling per account (item 10) ---------------------------------


@pytest.fixture
def throttled(app_config, request):
    """The app with rate limits on: 5 failed log-ins per account, many per address."""
    app_config.RATELIMIT_ENABLED = True
    app_config.LOGIN_RATE_LIMIT = "1000 per minute"
    app_config.LOGIN_ACCOUNT_RATE_LIMIT = "5 per minute"
    return request.getfixturevalue("app")


def test_forty_addresses_guessing_one_account_are_refused_after_the_account_limit(throttled, db):
    make_user(email="victim@example.org")
    client = throttled.test_client()
    statuses = [_login(client, "victim@example.org", f"guess {n}", n).status_code for n in range(40)]
    assert statuses == [200] * 5 + [429] * 35
    # The right password is refused too while the account is throttled, from a new address.
    assert _login(client, "Victim@Example.org ", PASSWORD, 99).status_code == 429
    assert not _logged_in(client)
    # Other accounts are not affected.
    make_user(email="other@example.org")
    assert _login(client, "other@example.org", PASSWORD, 100).status_code == 302


def test_an_unknown_address_is_throttled_exactly_like_an_account(throttled, db):
    """The throttle does not tell who has an account."""
    make_user(email="victim@example.org")
    client = throttled.test_client()
    known = [_login(client, "victim@example.org", "guess", n).status_code for n in range(7)]
    unknown = [_login(client, "nobody@example.org", "guess", n).status_code for n in range(7)]
    assert known == unknown == [200] * 5 + [429] * 2


def test_right_passwords_do_not_use_up_the_account_limit(throttled, db):
    make_user(email="bob@example.org")
    for n in range(8):
        client = throttled.test_client()
        assert _login(client, "bob@example.org", PASSWORD, n).status_code == 302


def _redis_config(app_config, redis_url: str) -> type:
    class RedisConfig(app_config):
        RATELIMIT_ENABLED = True
        RATELIMIT_STORAGE_URI = redis_url
        LOGIN_RATE_LIMIT = "1000 per minute"
        LOGIN_ACCOUNT_RATE_LIMIT = "3 per minute"

    return RedisConfig


def _dispose(app) -> None:
    with app.app_context():
        _db.engine.dispose()


@pytest.mark.parametrize("store", ["redis", "memory"])
def test_two_app_processes_share_the_count_only_through_redis(app_config, store):
    """Two apps (two worker processes) built on one store share the per-account count.

    With the in-memory store each new app starts counting afresh: the gap issue 9 found.
    """
    uri = _redis_or_skip() if store == "redis" else "memory://"
    config = _redis_config(app_config, uri)
    email = _unique_email()
    first = create_app(config)
    one = first.test_client()
    assert [_login(one, email, "guess", n).status_code for n in range(3)] == [200] * 3
    second = create_app(config)  # another worker: its own app and its own connection
    two = second.test_client()
    expected = 429 if store == "redis" else 200
    assert _login(two, email, "guess", 50).status_code == expected
    _dispose(first)
    _dispose(second)


CHILD = """
import sys
from crowdfund import create_app
from crowdfund.config import TestConfig

class Config(TestConfig):
    SQLALCHEMY_DATABASE_URI = sys.argv[1]
    RATELIMIT_ENABLED = True
    RATELIMIT_STORAGE_URI = sys.argv[2]
    LOGIN_RATE_LIMIT = "1000 per minute"
    LOGIN_ACCOUNT_RATE_LIMIT = "3 per minute"

app = create_app(Config)
response = app.test_client().post(
    "/login", data={"email": sys.argv[3], "password": "guess"}, environ_base={"REMOTE_ADDR": sys.argv[4]}
)
print(response.status_code)
"""


def test_separate_processes_share_the_count_through_redis(app_config):
    """Four real processes, one guess each: the fourth is refused."""
    uri = _redis_or_skip()
    email = _unique_email()
    statuses = []
    for n in range(4):
        done = subprocess.run(
            [sys.executable, "-c", CHILD, app_config.SQLALCHEMY_DATABASE_URI, uri, email, f"10.9.9.{n + 1}"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        assert done.returncode == 0, done.stderr[-2000:]
        statuses.append(int(done.stdout.split()[-1]))
    assert statuses == [200, 200, 200, 429]


# --- change password (item 11) ---------------------------------------------


def test_wrong_current_passwords_are_throttled_per_account(app_config, request):
    app_config.RATELIMIT_ENABLED = True
    app_config.PASSWORD_CHECK_RATE_LIMIT = "3 per minute"
    app = request.getfixturevalue("app")
    user = make_user()
    password_hash = user.password_hash
    client = app.test_client()
    login(client, user)

    def attempt(current: str, n: int):
        data = {"current_password": current, "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
        return client.post("/account/password", data=data, environ_base=_address(n))

    answers = [attempt(f"guess {n}", n) for n in range(3)]
    assert [a.status_code for a in answers] == [200] * 3
    assert all(b"not correct" in a.data for a in answers)
    assert attempt(PASSWORD, 3).status_code == 429  # even the right one, from another address
    _db.session.refresh(user)
    assert user.password_hash == password_hash
    # Another account's form is not affected.
    other = make_user()
    login(client, other)
    assert attempt(PASSWORD, 4).status_code == 302


def test_mistakes_other_than_the_current_password_are_not_counted(app_config, request):
    app_config.RATELIMIT_ENABLED = True
    app_config.PASSWORD_CHECK_RATE_LIMIT = "2 per minute"
    app = request.getfixturevalue("app")
    user = make_user()
    client = app.test_client()
    login(client, user)
    for _ in range(4):
        mismatch = {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm": "different"}
        assert client.post("/account/password", data=mismatch).status_code == 200
    data = {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    assert client.post("/account/password", data=data).status_code == 302


# --- registration (item 12) -------------------------------------------------


def test_registration_is_throttled_per_address(app_config, request):
    app_config.RATELIMIT_ENABLED = True
    app_config.REGISTER_RATE_LIMIT = "3 per hour"
    app = request.getfixturevalue("app")
    client = app.test_client()

    def register(n: int, address: int = 1):
        data = {"name": "Ada", "email": f"ada{n}@example.org", "password": "x" * 12, "confirm": "x" * 12}
        return client.post("/register", data=data, environ_base={"REMOTE_ADDR": f"192.0.2.{address}"})

    assert [register(n).status_code for n in range(4)] == [302, 302, 302, 429]
    assert register(9, address=2).status_code == 302
    assert len(_db.session.scalars(select(User)).all()) == 4
    assert client.get("/register").status_code == 200  # the page itself still loads


# --- start-up warning --------------------------------------------------------


def _build(app_config, caplog, **settings) -> list[str]:
    config = type("Config", (app_config,), {"RATELIMIT_ENABLED": True, **settings})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="crowdfund.extensions"):
        _dispose(create_app(config))
    return [r.getMessage() for r in caplog.records if "RATELIMIT_STORAGE_URI" in r.getMessage()]


def test_startup_warns_when_counts_are_per_process(app_config, caplog, monkeypatch):
    monkeypatch.delenv("SERVER_SOFTWARE", raising=False)
    assert _build(app_config, caplog, ENV_NAME="development") == []
    assert _build(app_config, caplog, ENV_NAME="test") == []
    assert len(_build(app_config, caplog, ENV_NAME="production")) == 1
    assert _build(app_config, caplog, ENV_NAME="production", RATELIMIT_STORAGE_URI=REDIS_URL) == []
    assert _build(app_config, caplog, ENV_NAME="production", RATELIMIT_ENABLED=False) == []

    monkeypatch.setenv("SERVER_SOFTWARE", "gunicorn/27.0.1")
    monkeypatch.setattr(sys, "argv", ["gunicorn", "-w", "4", "-k", "gthread", "app:app"])
    assert gunicorn_workers() == 4
    assert len(_build(app_config, caplog, ENV_NAME="development")) == 1
    monkeypatch.setattr(sys, "argv", ["gunicorn", "app:app"])
    monkeypatch.setenv("WEB_CONCURRENCY", "1")
    assert gunicorn_workers() == 1
    assert _build(app_config, caplog, ENV_NAME="development") == []
