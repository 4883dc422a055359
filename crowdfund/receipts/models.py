"""Donor messages a campaigner has hidden from the campaign page.

One row per donation whose message was ever hidden: who hid it and when, and who showed
it again and when (`hidden` is true while `shown_again_at` is empty).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from crowdfund.extensions import db
from crowdfund.models_base import UTCDateTime, utcnow


class HiddenDonorMessage(db.Model):
    __tablename__ = "hidden_donor_messages"

    pledge_id: Mapped[int] = mapped_column(ForeignKey("pledges.id"), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    hidden_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    hidden_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Set when a member showed the message again (and cleared if it is hidden once more).
    shown_again_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    shown_again_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def hidden(self) -> bool:
        return self.shown_again_at is None
