"""The three review decisions; each posts its own form from the review page."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from crowdfund.campaigns.service import MAX_COMMENT_LENGTH


class ApproveForm(FlaskForm):
    comment = TextAreaField("Comment for the campaigner", [Optional(), Length(max=MAX_COMMENT_LENGTH)])


class RequestChangesForm(FlaskForm):
    comment = TextAreaField(
        "What needs to change",
        [
            DataRequired(message="Write what needs to change: the campaigner sees it."),
            Length(max=MAX_COMMENT_LENGTH),
        ],
    )


class RejectForm(FlaskForm):
    reason = TextAreaField(
        "Reason for rejecting",
        [DataRequired(message="Write the reason: the campaigner sees it."), Length(max=MAX_COMMENT_LENGTH)],
        description="Rejection is final: the campaign can never be submitted again.",
    )


def decision_forms(formdata=None) -> dict[str, FlaskForm]:
    """The three forms with distinct prefixes, so their fields never clash on one page."""
    return {
        "approve": ApproveForm(formdata=formdata, prefix="approve"),
        "changes": RequestChangesForm(formdata=formdata, prefix="changes"),
        "reject": RejectForm(formdata=formdata, prefix="reject"),
    }
