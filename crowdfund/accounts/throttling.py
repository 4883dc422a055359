"""Who is counted when the account pages throttle guesses.

The limits themselves are Flask-Limiter decorators on the views; their counts live in
the limiter's store (`RATELIMIT_STORAGE_URI`: Redis when several processes serve the
site, so every process sees the same counts). Two kinds of key are used:

- the client address (Flask-Limiter's default), for every log-in and registration;
- the account: for log-ins the address typed into the form, whether or not it has an
  account (so the throttle itself reveals nothing), and for the change-password form
  the logged-in user. These limits count only failed password checks, so a user who
  types the right password is not slowed down by their own earlier success.

The e-mail address is hashed before it becomes part of a key: the store never holds
the addresses people typed.
"""

from __future__ import annotations

import hashlib

from flask import g, request
from flask_login import current_user
from werkzeug.wrappers import Response

from crowdfund.accounts.service import lookup_key

_FAILED = "password_check_failed"


def submitted_account() -> str:
    """The log-in form's account: a hash of the typed e-mail address, as it is looked up."""
    typed = lookup_key(request.form.get("email", ""))
    return "login:" + hashlib.sha256(typed.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def current_account() -> str:
    """The logged-in user (anonymous requests share one key; they never check a password)."""
    if current_user.is_authenticated:
        return f"user:{current_user.id}"
    return "anonymous"


def note_failed_password_check() -> None:
    """Count this request against its account's limit (called when a password was wrong)."""
    setattr(g, _FAILED, True)


def password_check_failed(_response: Response) -> bool:
    """`deduct_when` for the per-account limits: only failed password checks count."""
    return bool(g.pop(_FAILED, False))
