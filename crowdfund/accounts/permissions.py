"""Role checks for views: `operator_required`, `admin_required`, `is_staff`.

Anonymous visitors are sent to the login page (with `next`); a logged-in user without the
role gets 403.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TypeVar

from flask import abort
from flask_login import current_user

from crowdfund.extensions import login_manager

F = TypeVar("F", bound=Callable)


def _require(check: Callable[[object], bool]) -> Callable[[F], F]:
    def decorator(view: F) -> F:
        @wraps(view)
        def wrapped(*args, **kwargs):
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if not check(current_user):
                abort(403)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator


def is_operator(user: object) -> bool:
    """True for operators and admins (admins can do everything operators can)."""
    return bool(getattr(user, "is_authenticated", False) and getattr(user, "is_operator", False))


def is_admin(user: object) -> bool:
    """True for admins only."""
    return bool(getattr(user, "is_authenticated", False) and getattr(user, "is_admin", False))


#: Operators and admins; 403 for other logged-in users, login redirect for anonymous ones.
operator_required = _require(is_operator)
#: Admins only; 403 for other logged-in users, login redirect for anonymous ones.
admin_required = _require(is_admin)
