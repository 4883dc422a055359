"""Register, log in, log out, change password; organisations."""

from flask import Blueprint

bp = Blueprint("accounts", __name__)

from crowdfund.accounts.models import User  # noqa: E402
from crowdfund.extensions import db, login_manager  # noqa: E402

login_manager.login_view = "accounts.login"
login_manager.login_message = "Please log in to continue."
login_manager.login_message_category = "info"


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    user_id, _, token = session_id.partition(":")
    if not user_id.isdigit():
        return None
    user = db.session.get(User, int(user_id))
    if user is None or user.session_token != token:
        return None
    return user
