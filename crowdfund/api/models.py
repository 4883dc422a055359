"""Personal API tokens.

A token's secret is shown to its owner once, when it is created; the database keeps
only its SHA-256 hash (`token_hash`), so a leaked database does not leak usable tokens.
A request presents the secret as `Authorization: Bearer hf_…`; the server hashes it and
looks the hash up, which compares in constant time with respect to the secret.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crowdfund.extensions import db
from crowdfund.models_base import UTCDateTime, utcnow


class ApiToken(db.Model):
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

    user = relationship("User")

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def display(self) -> str:
        """'hf_AbCd…wxyz': enough to recognise a token, useless to an attacker."""
        return f"{self.prefix}…{self.last4}"

    def __repr__(self) -> str:
        return f"<ApiToken {self.id} user={self.user_id} {self.display}>"
