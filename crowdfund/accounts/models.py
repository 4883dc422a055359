"""Users, roles, organisations and the credentials that act for a user.

A browser session carries the user's id and `session_token`; changing the token (on
logout or a new password) ends every session that carried the old one. A personal API
token's secret is shown to its owner once; only its SHA-256 hash is kept.
"""

from __future__ import annotations

import enum
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import Boolean, ForeignKey, String, Text, UniqueConstraint, update
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crowdfund.extensions import db
from crowdfund.models_base import UTCDateTime, enum_column, utcnow


class Role(enum.Enum):
    BACKER = "backer"
    OPERATOR = "operator"
    ADMIN = "admin"


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Lower-cased, stripped; unique.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(enum_column(Role, "user_role"), default=Role.BACKER)
    #: Part of every session cookie; replaced on logout and on a new password, which ends
    #: every session (on every device) that carried the old value.
    session_token: Mapped[str] = mapped_column(String(64))
    is_active_account: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    memberships: Mapped[list[Membership]] = relationship(back_populates="user")

    def get_id(self) -> str:
        # The session stores id + token: a new token ends the sessions holding the old one.
        return f"{self.id}:{self.session_token}"

    @property
    def is_active(self) -> bool:
        return self.is_active_account

    @property
    def is_operator(self) -> bool:
        return self.role in (Role.OPERATOR, Role.ADMIN)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def is_campaigner(self) -> bool:
        return bool(self.memberships)

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email}>"


class OrganisationType(enum.Enum):
    HEALTH_STARTUP = "health_startup"
    CLINIC = "clinic"
    RESEARCH_GROUP = "research_group"
    NONPROFIT = "nonprofit"
    PATIENT_FAMILY = "patient_family"

    @property
    def label(self) -> str:
        return ORGANISATION_TYPE_LABELS[self]


ORGANISATION_TYPE_LABELS = {
    OrganisationType.HEALTH_STARTUP: "Health startup",
    OrganisationType.CLINIC: "Clinic or hospital",
    OrganisationType.RESEARCH_GROUP: "Research group",
    OrganisationType.NONPROFIT: "Nonprofit",
    OrganisationType.PATIENT_FAMILY: "Patient's family",
}


class VerificationStatus(enum.Enum):
    UNVERIFIED = "unverified"
    VERIFIED = "verified"
    REJECTED = "rejected"


class Organisation(db.Model):
    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[OrganisationType] = mapped_column(enum_column(OrganisationType, "organisation_type"))
    legal_name: Mapped[str] = mapped_column(String(200))
    registration_number: Mapped[str] = mapped_column(String(100))
    #: ISO 3166-1 alpha-2
    country: Mapped[str] = mapped_column(String(2))
    website: Mapped[str | None] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    verification_status: Mapped[VerificationStatus] = mapped_column(
        enum_column(VerificationStatus, "verification_status"), default=VerificationStatus.UNVERIFIED
    )
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    verified_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    memberships: Mapped[list[Membership]] = relationship(back_populates="organisation")

    def has_member(self, user: User | None) -> bool:
        return user is not None and any(m.user_id == user.id for m in self.memberships)

    def __repr__(self) -> str:
        return f"<Organisation {self.id} {self.legal_name}>"


class Membership(db.Model):
    """A user who may act for an organisation (which makes them a campaigner)."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "organisation_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    role: Mapped[str] = mapped_column(String(20), default="owner")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship(back_populates="memberships")
    organisation: Mapped[Organisation] = relationship(back_populates="memberships")


class ApiToken(db.Model):
    """A personal API token, presented as `Authorization: Bearer hf_…`.

    The server hashes the presented secret and looks the hash up, which compares in
    constant time with respect to the secret; a leaked database leaks no usable token.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    #: What the owner called it ("laptop script"), to tell tokens apart.
    name: Mapped[str] = mapped_column(String(80))
    #: Hex SHA-256 of the secret; the secret itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The first characters of the secret ("hf_AbCd"), shown in the token list.
    prefix: Mapped[str] = mapped_column(String(12))
    #: The last four characters of the secret, shown in the token list.
    last4: Mapped[str] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Updated at most once a minute, so that busy clients do not write on every request.
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def display(self) -> str:
        """'hf_AbCd…wxyz': enough to recognise a token, useless to an attacker."""
        return f"{self.prefix}…{self.last4}"

    def revoke(self, now: datetime) -> None:
        """Stop the token working from `now` (a token revoked earlier keeps its date)."""
        if self.revoked_at is None:
            self.revoked_at = now

    @classmethod
    def revoke_all_of(cls, user_id: int, now: datetime) -> int:
        """Revoke every active token of a user; returns how many were active."""
        result = db.session.execute(
            update(cls)
            .where(cls.user_id == user_id, cls.revoked_at.is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session="fetch")
        )
        return result.rowcount

    def __repr__(self) -> str:
        return f"<ApiToken {self.id} user={self.user_id} {self.display}>"
