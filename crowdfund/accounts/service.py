"""Account and organisation use cases: register, authenticate, change password, log out
everywhere, staff accounts, and create / edit / verify organisations.

Every use case that writes is one `unit_of_work()`: it commits once, or rolls back
whatever it did when it raises. Errors a user can cause are `crowdfund.errors` domain
errors naming an `ErrorCode` and the form field they belong to.
"""

from __future__ import annotations

import secrets
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from crowdfund.accounts.countries import COUNTRIES
from crowdfund.accounts.models import (
    ApiToken,
    Membership,
    Organisation,
    OrganisationType,
    Role,
    User,
    VerificationStatus,
)
from crowdfund.accounts.passwords import MIN_PASSWORD_LENGTH, hash_password, verify_password
from crowdfund.database import lock, retry_on_lock, unit_of_work, valid_id
from crowdfund.errors import Conflict, ErrorCode, Forbidden, NotFound, ValidationError
from crowdfund.extensions import db
from crowdfund.models_base import utcnow

#: Longest password accepted; hashing megabytes of input is a cheap denial of service.
MAX_PASSWORD_LENGTH = 256
MAX_NAME_LENGTH = 120
MAX_EMAIL_LENGTH = 254
MAX_DESCRIPTION_LENGTH = 5000

#: Organisation fields whose change sends a verified organisation back to review.
IDENTITY_FIELDS = ("type", "legal_name", "registration_number", "country")


# ---------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A hash of a random password, checked when the e-mail is unknown so that a login
    attempt takes as long for an unknown e-mail as for a wrong password."""
    return hash_password(secrets.token_hex(16))


def normalise_email(raw: str | None) -> str:
    """Strip, validate (syntax only, no DNS) and lower-case an e-mail address."""
    value = (raw or "").strip()
    if not value:
        raise ValidationError("Enter your e-mail address.", code=ErrorCode.EMAIL_REQUIRED, field="email")
    if len(value) > MAX_EMAIL_LENGTH:
        raise ValidationError("That e-mail address is too long.", code=ErrorCode.EMAIL_INVALID, field="email")
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationError(
            f"Enter a valid e-mail address: {exc}", code=ErrorCode.EMAIL_INVALID, field="email"
        ) from exc
    return result.normalized.lower()


def new_session_token() -> str:
    """A fresh random token for `User.session_token` (64 hex characters)."""
    return secrets.token_hex(32)


def check_new_password(password: str | None, field: str = "password") -> str:
    """Refuse passwords that are too short or too long; return the password unchanged."""
    password = password or ""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(
            f"Choose a password of at least {MIN_PASSWORD_LENGTH} characters.",
            code=ErrorCode.PASSWORD_TOO_SHORT,
            field=field,
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError(
            f"Passwords can be at most {MAX_PASSWORD_LENGTH} characters.",
            code=ErrorCode.PASSWORD_TOO_LONG,
            field=field,
        )
    return password


def _check_printable(value: str, field: str, label: str, allow_newlines: bool = False) -> str:
    """Refuse control characters (NUL and friends) that no real name or text contains."""
    allowed = "\n\r\t" if allow_newlines else ""
    if any((ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0) and ch not in allowed for ch in value):
        raise ValidationError(
            f"The {label} contains characters we cannot accept.", code=ErrorCode.TEXT_INVALID, field=field
        )
    return value


def _clean_name(name: str | None) -> str:
    value = " ".join((name or "").split())
    if not value:
        raise ValidationError("Enter your name.", code=ErrorCode.NAME_REQUIRED, field="name")
    _check_printable(value, "name", "name")
    if len(value) > MAX_NAME_LENGTH:
        raise ValidationError(
            f"Names can be at most {MAX_NAME_LENGTH} characters.", code=ErrorCode.NAME_TOO_LONG, field="name"
        )
    return value


def find_user_by_email(email: str) -> User | None:
    """The user with this e-mail (compared case-insensitively), or None."""
    email = (email or "").strip().lower()
    if not email:
        return None
    return db.session.execute(select(User).where(func.lower(User.email) == email)).scalar_one_or_none()


def _email_taken() -> Conflict:
    return Conflict(
        "An account with that e-mail address already exists. Log in, or use another address.",
        code=ErrorCode.EMAIL_TAKEN,
        field="email",
    )


def _add_user(name: str, email: str, password_hash: str, role: Role) -> User:
    """Add a user inside the current unit of work; a concurrent twin e-mail is a Conflict."""
    user = User(
        name=name,
        email=email,
        password_hash=password_hash,
        role=role,
        session_token=new_session_token(),
    )
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError as exc:  # another request registered the same e-mail just now
        raise _email_taken() from exc
    return user


def register_user(name: str, email: str, password: str) -> User:
    """Create a backer account. Raises ValidationError, or Conflict when the e-mail is taken.

    The password is hashed before the address is looked up, so a taken address takes
    as long to refuse as a new one takes to register.
    """
    name = _clean_name(name)
    email = normalise_email(email)
    password_hash = hash_password(check_new_password(password))
    with unit_of_work():
        if find_user_by_email(email) is not None:
            raise _email_taken()
        return _add_user(name, email, password_hash, Role.BACKER)


def authenticate(email: str, password: str) -> User | None:
    """The active user with this e-mail and password, or None (never says which was wrong)."""
    password = password or ""
    if len(password) > MAX_PASSWORD_LENGTH:
        return None
    email = lookup_key(email)
    usable = 0 < len(email) <= MAX_EMAIL_LENGTH and not any(ord(ch) < 32 for ch in email)
    user = find_user_by_email(email) if usable else None
    if user is None:
        verify_password(_dummy_hash(), password)
        return None
    if not verify_password(user.password_hash, password) or not user.is_active:
        return None
    return user


def lookup_key(email: str | None) -> str:
    """The form of a typed e-mail address used to find its account (and to count attempts).

    Only a lookup: no syntax rules here, so any address that has an account can log in.
    """
    return unicodedata.normalize("NFC", (email or "").strip()).lower()


@retry_on_lock
def change_password(user: User, current_password: str, new_password: str) -> User:
    """Set a new password after checking the current one.

    Every session of the account ends (`session_token` is replaced; the caller logs the
    current session in again with the returned user) and every API token is revoked:
    whoever held the old password may have made one.
    """
    new_password = check_new_password(new_password, field="new_password")
    with unit_of_work():
        account = lock(User, user.id)
        if account is None:
            raise NotFound("That account no longer exists.", code=ErrorCode.NOT_FOUND)
        if not verify_password(account.password_hash, current_password or ""):
            raise ValidationError(
                "Your current password is not correct.",
                code=ErrorCode.WRONG_PASSWORD,
                field="current_password",
            )
        if verify_password(account.password_hash, new_password):
            raise ValidationError(
                "The new password must be different from the current one.",
                code=ErrorCode.PASSWORD_UNCHANGED,
                field="new_password",
            )
        account.password_hash = hash_password(new_password)
        account.session_token = new_session_token()
        ApiToken.revoke_all_of(account.id, utcnow())
    return account


@retry_on_lock
def end_all_sessions(user: User) -> User:
    """Log the account out everywhere: every session cookie issued so far stops working.

    The user loader accepts a session only while it carries the current `session_token`,
    so replacing the token ends this session and every copy of any other one.
    """
    with unit_of_work():
        account = lock(User, user.id)
        if account is None:
            raise NotFound("That account no longer exists.", code=ErrorCode.NOT_FOUND)
        account.session_token = new_session_token()
    return account


def create_staff_user(
    email: str, name: str | None, password: str | None, role: Role, promote: bool = False
) -> tuple[User, bool]:
    """Create an operator or admin account, or with `promote` give an existing account `role`.

    Returns (user, created). An existing e-mail without `promote` raises Conflict.
    """
    if role not in (Role.OPERATOR, Role.ADMIN):
        raise ValidationError(
            "Staff accounts are operators or admins.", code=ErrorCode.BAD_ROLE, field="role"
        )
    email = normalise_email(email)
    with unit_of_work():
        existing = find_user_by_email(email)
        if existing is not None:
            if not promote:
                raise Conflict(
                    f"An account with the e-mail {email} already exists. "
                    f"Pass --promote to make it an {role.value}.",
                    code=ErrorCode.EMAIL_TAKEN,
                    field="email",
                )
            existing.role = role
            return existing, False
        name = _clean_name(name)
        password_hash = hash_password(check_new_password(password))
        return _add_user(name, email, password_hash, role), True


def list_users(role: Role | None = None) -> list[User]:
    """Every user (optionally only those with `role`), oldest first."""
    query = select(User).order_by(User.id)
    if role is not None:
        query = query.where(User.role == role)
    return list(db.session.execute(query).scalars())


# ---------------------------------------------------------------------------
# Organisations
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OrganisationDetails:
    """What a campaigner tells us about an organisation."""

    type: OrganisationType | str
    legal_name: str
    registration_number: str
    country: str
    description: str
    website: str | None = None


def _required_text(value: str | None, field: str, label: str, max_length: int) -> str:
    text = " ".join((value or "").split())
    if not text:
        raise ValidationError(f"Enter the {label}.", code=ErrorCode.REQUIRED, field=field)
    _check_printable(text, field, label)
    if len(text) > max_length:
        raise ValidationError(
            f"The {label} can be at most {max_length} characters.", code=ErrorCode.TOO_LONG, field=field
        )
    return text


def clean_website(value: str | None) -> str | None:
    """An http(s) URL with a host, or None for an empty value."""
    url = (value or "").strip()
    if not url:
        return None
    _check_printable(url, "website", "website address")
    if len(url) > 300:
        raise ValidationError(
            "The website address can be at most 300 characters.",
            code=ErrorCode.WEBSITE_INVALID,
            field="website",
        )
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or "." not in parts.hostname
    ):
        raise ValidationError(
            "Enter the website as a full address, such as https://example.org.",
            code=ErrorCode.WEBSITE_INVALID,
            field="website",
        )
    return url


def _clean_details(details: OrganisationDetails) -> dict:
    try:
        org_type = (
            details.type if isinstance(details.type, OrganisationType) else OrganisationType(details.type)
        )
    except ValueError:
        raise ValidationError(
            "Choose the kind of organisation from the list.", code=ErrorCode.TYPE_INVALID, field="type"
        ) from None
    country = (details.country or "").strip().upper()
    if country not in COUNTRIES:
        raise ValidationError(
            "Choose the country from the list.", code=ErrorCode.COUNTRY_INVALID, field="country"
        )
    description = (details.description or "").strip()
    if not description:
        raise ValidationError(
            "Describe the organisation.", code=ErrorCode.DESCRIPTION_REQUIRED, field="description"
        )
    _check_printable(description, "description", "description", allow_newlines=True)
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise ValidationError(
            f"The description can be at most {MAX_DESCRIPTION_LENGTH} characters.",
            code=ErrorCode.DESCRIPTION_TOO_LONG,
            field="description",
        )
    return {
        "type": org_type,
        "legal_name": _required_text(details.legal_name, "legal_name", "legal name", 200),
        "registration_number": _required_text(
            details.registration_number, "registration_number", "registration number", 100
        ),
        "country": country,
        "website": clean_website(details.website),
        "description": description,
    }


def organisations_of(user: User) -> list[Organisation]:
    """The organisations `user` is a member of, newest first."""
    return list(
        db.session.execute(
            select(Organisation)
            .join(Membership, Membership.organisation_id == Organisation.id)
            .where(Membership.user_id == user.id)
            .order_by(Organisation.created_at.desc(), Organisation.id.desc())
        ).scalars()
    )


def _not_found() -> NotFound:
    return NotFound("We could not find that organisation.", code=ErrorCode.NOT_FOUND)


def get_organisation_for(user: User | None, organisation_id: int) -> Organisation:
    """The organisation if `user` is a member or an operator; NotFound otherwise.

    Non-members are told "not found" rather than "forbidden" so that the existence of
    an organisation's private page leaks nothing.
    """
    org = db.session.get(Organisation, organisation_id) if valid_id(organisation_id) else None
    if org is None or user is None or not (org.has_member(user) or user.is_operator):
        raise _not_found()
    return org


def create_organisation(user: User, details: OrganisationDetails) -> Organisation:
    """Register an organisation; its creator becomes its owner (and thus a campaigner)."""
    values = _clean_details(details)
    with unit_of_work():
        org = Organisation(**values, created_by_id=user.id, verification_status=VerificationStatus.UNVERIFIED)
        db.session.add(org)
        db.session.flush()
        db.session.add(Membership(user_id=user.id, organisation_id=org.id, role="owner"))
    return org


@retry_on_lock
def update_organisation(
    user: User, organisation_id: int, details: OrganisationDetails
) -> tuple[Organisation, bool]:
    """Edit an organisation's details (members only). Returns (organisation, sent_back_to_review).

    Changing the type, legal name, registration number or country of a verified or
    rejected organisation returns it to "unverified": an operator must look again.
    """
    values = _clean_details(details)
    with unit_of_work():
        org = lock(Organisation, organisation_id)
        if org is None or not (org.has_member(user) or user.is_operator):
            raise _not_found()
        if not org.has_member(user):
            raise Forbidden("Only the organisation's members can edit it.", code=ErrorCode.FORBIDDEN)
        identity_changed = any(getattr(org, name) != values[name] for name in IDENTITY_FIELDS)
        for name, value in values.items():
            setattr(org, name, value)
        reset = identity_changed and org.verification_status is not VerificationStatus.UNVERIFIED
        if reset:
            org.verification_status = VerificationStatus.UNVERIFIED
            org.verified_at = None
            org.verified_by_id = None
    return org, reset


@retry_on_lock
def set_verification_status(
    operator: User, organisation_id: int, status: VerificationStatus | str
) -> Organisation:
    """An operator marks an organisation verified, rejected or unverified.

    Verified and rejected record who decided and when; unverified clears both. An
    operator never decides about an organisation they belong to.
    """
    if operator is None or not operator.is_operator:
        raise Forbidden("Only operators can verify organisations.", code=ErrorCode.FORBIDDEN)
    try:
        status = status if isinstance(status, VerificationStatus) else VerificationStatus(status)
    except ValueError:
        raise ValidationError(
            "Choose verified, rejected or unverified.", code=ErrorCode.STATUS_INVALID, field="status"
        ) from None
    with unit_of_work():
        org = lock(Organisation, organisation_id)
        if org is None:
            raise _not_found()
        if org.has_member(operator):
            raise Forbidden(
                "You belong to this organisation; another operator must verify it.", code=ErrorCode.FORBIDDEN
            )
        org.verification_status = status
        if status is VerificationStatus.UNVERIFIED:
            org.verified_at = None
            org.verified_by_id = None
        else:
            org.verified_at = utcnow()
            org.verified_by_id = operator.id
    return org
