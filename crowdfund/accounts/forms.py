"""Forms for registration, login, passwords and organisations.

The forms check shape (required, length, choice from the list); the service checks the
rules again and has the last word.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, SelectField, StringField, TextAreaField, URLField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import URL, DataRequired, EqualTo, Length, Optional
from wtforms.validators import ValidationError as FieldError

from crowdfund.accounts.countries import COUNTRIES
from crowdfund.accounts.models import ORGANISATION_TYPE_LABELS, VerificationStatus
from crowdfund.accounts.passwords import MIN_PASSWORD_LENGTH
from crowdfund.accounts.service import (
    MAX_DESCRIPTION_LENGTH,
    MAX_EMAIL_LENGTH,
    MAX_NAME_LENGTH,
    MAX_PASSWORD_LENGTH,
    normalise_email,
)
from crowdfund.errors import ValidationError

PASSWORD_HELP = f"At least {MIN_PASSWORD_LENGTH} characters. A few unrelated words make a strong password."


def _new_password(label: str) -> PasswordField:
    return PasswordField(
        label,
        validators=[
            DataRequired(message="Choose a password."),
            Length(
                min=MIN_PASSWORD_LENGTH,
                max=MAX_PASSWORD_LENGTH,
                message=f"Use between {MIN_PASSWORD_LENGTH} and {MAX_PASSWORD_LENGTH} characters.",
            ),
        ],
        description=PASSWORD_HELP,
        render_kw={"autocomplete": "new-password"},
    )


def _email() -> EmailField:
    return EmailField(
        "E-mail address",
        validators=[
            DataRequired(message="Enter your e-mail address."),
            Length(max=MAX_EMAIL_LENGTH, message="That e-mail address is too long."),
        ],
        render_kw={"autocomplete": "email"},
    )


class RegisterForm(FlaskForm):
    name = StringField(
        "Your name",
        validators=[DataRequired(message="Enter your name."), Length(max=MAX_NAME_LENGTH)],
        render_kw={"autocomplete": "name"},
    )
    email = _email()
    password = _new_password("Password")
    confirm = PasswordField(
        "Repeat the password",
        validators=[
            DataRequired(message="Type the password again."),
            EqualTo("password", message="The two passwords do not match."),
        ],
        render_kw={"autocomplete": "new-password"},
    )
    next = HiddenField()

    def validate_email(self, field: EmailField) -> None:
        """Say at once when the address is malformed, alongside the other fields' messages."""
        if field.errors:
            return
        try:
            normalise_email(field.data)
        except ValidationError as exc:
            raise FieldError(exc.message) from None


class LoginForm(FlaskForm):
    email = _email()
    password = PasswordField(
        "Password",
        validators=[DataRequired(message="Enter your password."), Length(max=MAX_PASSWORD_LENGTH)],
        render_kw={"autocomplete": "current-password"},
    )
    next = HiddenField()


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField(
        "Current password",
        validators=[DataRequired(message="Enter your current password."), Length(max=MAX_PASSWORD_LENGTH)],
        render_kw={"autocomplete": "current-password"},
    )
    new_password = _new_password("New password")
    confirm = PasswordField(
        "Repeat the new password",
        validators=[
            DataRequired(message="Type the new password again."),
            EqualTo("new_password", message="The two passwords do not match."),
        ],
        render_kw={"autocomplete": "new-password"},
    )


class LogoutForm(FlaskForm):
    """No fields: only the CSRF token."""


ORGANISATION_TYPE_CHOICES = [SelectChoice("", "Choose the kind of organisation…")] + [
    SelectChoice(kind.value, label) for kind, label in ORGANISATION_TYPE_LABELS.items()
]
COUNTRY_CHOICES = [SelectChoice("", "Choose a country…")] + [
    SelectChoice(code, f"{name} ({code})") for code, name in COUNTRIES.items()
]


class OrganisationForm(FlaskForm):
    type = SelectField(
        "Kind of organisation",
        choices=ORGANISATION_TYPE_CHOICES,
        validators=[DataRequired(message="Choose the kind of organisation.")],
    )
    legal_name = StringField(
        "Legal name",
        validators=[DataRequired(message="Enter the legal name."), Length(max=200)],
        description="As it appears on the registration certificate.",
    )
    registration_number = StringField(
        "Registration number",
        validators=[DataRequired(message="Enter the registration number."), Length(max=100)],
        description="Company, charity or licence number, e.g. a Unified Social Credit Code.",
    )
    country = SelectField(
        "Country of registration",
        choices=COUNTRY_CHOICES,
        validators=[DataRequired(message="Choose the country.")],
    )
    website = URLField(
        "Website",
        validators=[
            Optional(),
            Length(max=300),
            URL(message="Enter the website as a full address, such as https://example.org."),
        ],
        render_kw={"placeholder": "https://"},
    )
    description = TextAreaField(
        "About the organisation",
        validators=[DataRequired(message="Describe the organisation."), Length(max=MAX_DESCRIPTION_LENGTH)],
        description="What you do, who you help, and who runs it. Operators read this when they verify you.",
        render_kw={"rows": 6},
    )


VERIFICATION_CHOICES = [
    SelectChoice(VerificationStatus.VERIFIED.value, "Verified"),
    SelectChoice(VerificationStatus.REJECTED.value, "Rejected"),
    SelectChoice(VerificationStatus.UNVERIFIED.value, "Unverified"),
]


class VerificationForm(FlaskForm):
    status = SelectField(
        "Verification status",
        choices=VERIFICATION_CHOICES,
        validators=[DataRequired(message="Choose a status.")],
    )
