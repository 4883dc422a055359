"""Personal API tokens: created with a secret shown once, stored hashed, revocable."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from crowdfund.accounts.models import ApiToken
from crowdfund.api import service
from crowdfund.errors import NotFound, ValidationError
from crowdfund.models_base import utcnow
from tests.factories import PASSWORD, login, make_user
from tests.factories.api import bearer, make_token


def test_create_token_returns_secret_once_and_stores_only_its_hash(db):
    user = make_user()
    created = service.create_token(user, "  my script ")
    assert re.fullmatch(r"hf_[A-Za-z0-9_-]{43}", created.secret)
    token = db.session.get(ApiToken, created.token.id)
    assert token.name == "my script"
    assert token.token_hash == hashlib.sha256(created.secret.encode()).hexdigest()
    assert token.display == f"{created.secret[:7]}…{created.secret[-4:]}"
    row = db.session.execute(select(ApiToken.__table__)).one()._asdict()
    assert all(created.secret not in str(value) for value in row.values())


@pytest.mark.parametrize("name", ["", "   ", "x" * 81, "bad\x00name"])
def test_create_token_refuses_bad_names(db, name):
    user = make_user()
    with pytest.raises(ValidationError):
        service.create_token(user, name)
    assert db.session.scalar(select(func.count(ApiToken.id))) == 0


def test_authenticate_accepts_only_the_exact_active_secret(db):
    user = make_user()
    secret = make_token(user)
    assert service.authenticate(f"Bearer {secret}").id == user.id
    assert service.authenticate(f"bearer   {secret}  ").id == user.id
    for value in (
        None,
        "",
        secret,
        f"Basic {secret}",
        f"Bearer {secret}x",
        f"Bearer {secret[:-1]}",
        "Bearer hf_",
        "Bearer " + "hf_" + "a" * 500,
        "Bearer \x00",
    ):
        assert service.authenticate(value) is None


def test_authenticate_records_last_use_at_most_once_a_minute(db):
    user = make_user()
    created = service.create_token(user, "s")
    t0 = utcnow()
    service.authenticate(f"Bearer {created.secret}", now=t0)
    assert db.session.get(ApiToken, created.token.id).last_used_at == t0
    service.authenticate(f"Bearer {created.secret}", now=t0 + timedelta(seconds=30))
    db.session.expire_all()
    assert db.session.get(ApiToken, created.token.id).last_used_at == t0
    later = t0 + timedelta(minutes=2)
    service.authenticate(f"Bearer {created.secret}", now=later)
    db.session.expire_all()
    assert db.session.get(ApiToken, created.token.id).last_used_at == later


def test_revoked_token_and_deactivated_user_are_refused(db, client):
    user = make_user()
    created = service.create_token(user, "s")
    assert client.get("/api/v1/pledges", headers=bearer(created.secret)).status_code == 200
    service.revoke_token(user, created.token.id)
    r = client.get("/api/v1/pledges", headers=bearer(created.secret))
    assert r.status_code == 401
    assert r.json["error"]["code"] == "unauthorized"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")

    other = make_user()
    secret = make_token(other)
    other.is_active_account = False
    db.session.commit()
    assert client.get("/api/v1/pledges", headers=bearer(secret)).status_code == 401


def test_cannot_revoke_someone_elses_token(db):
    owner, intruder = make_user(), make_user()
    created = service.create_token(owner, "s")
    with pytest.raises(NotFound):
        service.revoke_token(intruder, created.token.id)
    assert db.session.get(ApiToken, created.token.id).revoked_at is None


# --- the page ---------------------------------------------------------------------------


def test_tokens_page_needs_login(client):
    r = client.get("/account/tokens")
    assert r.status_code == 302
    assert "/login" in r.headers["Location"]


def test_create_on_the_page_shows_the_secret_once(db, client):
    user = make_user()
    login(client, user)
    r = client.post("/account/tokens", data={"name": "tracker"})
    assert r.status_code == 201
    assert r.headers["Cache-Control"] == "no-store"
    secret = re.search(rb'value="(hf_[A-Za-z0-9_-]{43})"', r.data).group(1).decode()
    assert service.authenticate(f"Bearer {secret}").id == user.id

    again = client.get("/account/tokens")
    assert again.status_code == 200
    assert b"tracker" in again.data
    assert secret.encode() not in again.data
    assert secret[-4:].encode() in again.data


def test_create_with_empty_name_rerenders_with_a_message(db, client):
    login(client, make_user())
    r = client.post("/account/tokens", data={"name": ""})
    assert r.status_code == 422
    assert b"Give the token a name" in r.data
    assert db.session.scalar(select(func.count(ApiToken.id))) == 0


def test_revoke_on_the_page(db, client):
    user = make_user()
    created = service.create_token(user, "old")
    login(client, user)
    r = client.post(f"/account/tokens/{created.token.id}/revoke")
    assert r.status_code == 303
    db.session.expire_all()
    assert db.session.get(ApiToken, created.token.id).revoked_at is not None
    assert service.authenticate(f"Bearer {created.secret}") is None


def test_revoke_someone_elses_token_on_the_page_changes_nothing(db, client):
    owner = make_user()
    created = service.create_token(owner, "mine")
    login(client, make_user())
    r = client.post(f"/account/tokens/{created.token.id}/revoke")
    assert r.status_code == 404
    db.session.expire_all()
    assert db.session.get(ApiToken, created.token.id).revoked_at is None


def test_account_page_links_to_tokens(db, client):
    login(client, make_user())
    assert b"/account/tokens" in client.get("/account").data


# --- a new password revokes every token (issue 9, item 11) ------------------------------


def test_changing_the_password_revokes_every_token_of_that_user(db, client):
    user, other = make_user(), make_user()
    mine = [make_token(user, "laptop"), make_token(user, "server")]
    revoked_earlier = service.create_token(user, "old")
    earlier = utcnow() - timedelta(days=3)
    service.revoke_token(user, revoked_earlier.token.id, now=earlier)
    theirs = make_token(other)
    for secret in (*mine, theirs):
        assert client.get("/api/v1/pledges", headers=bearer(secret)).status_code == 200

    login(client, user)
    new = "a brand new passphrase"
    response = client.post(
        "/account/password", data={"current_password": PASSWORD, "new_password": new, "confirm": new}
    )
    assert response.status_code == 302
    assert "API tokens are revoked" in client.get(response.headers["Location"]).get_data(as_text=True)

    for secret in mine:
        assert client.get("/api/v1/pledges", headers=bearer(secret)).status_code == 401
    assert client.get("/api/v1/pledges", headers=bearer(theirs)).status_code == 200
    db.session.expire_all()
    rows = {t.name: t for t in service.list_tokens(user)}
    assert all(not t.is_active for t in rows.values())
    assert rows["old"].revoked_at == earlier  # an earlier revocation keeps its date


def test_a_refused_password_change_keeps_the_tokens(db, client):
    user = make_user()
    secret = make_token(user)
    login(client, user)
    data = {"current_password": "not my password", "new_password": "x" * 12, "confirm": "x" * 12}
    assert client.post("/account/password", data=data).status_code == 200
    assert client.get("/api/v1/pledges", headers=bearer(secret)).status_code == 200


def test_the_tokens_page_says_a_new_password_revokes_them(db, client):
    login(client, make_user())
    assert b"Changing your password revokes every token" in client.get("/account/tokens").data
