"""Forms of the API tokens page."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from crowdfund.api.service import MAX_TOKEN_NAME_LENGTH


class CreateTokenForm(FlaskForm):
    name = StringField(
        "Token name",
        validators=[
            DataRequired(message="Give the token a name, such as the script that will use it."),
            Length(max=MAX_TOKEN_NAME_LENGTH, message=f"At most {MAX_TOKEN_NAME_LENGTH} characters."),
        ],
        description="What will use it, e.g. “pledge tracker on my laptop”.",
    )


class RevokeTokenForm(FlaskForm):
    """No fields: the CSRF token is the point."""
