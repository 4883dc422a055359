"""Receipt pages (page and PDF, the donor's own: others get 404), the campaigner's donor
messages with hide and show buttons, and the template global `donor_messages` the
campaign page uses (one bounded query)."""

from __future__ import annotations

from flask import Blueprint, Response, abort, flash, redirect, render_template, url_for
from flask_login import current_user, login_required

from crowdfund.campaigns.models import Campaign
from crowdfund.errors import DomainError
from crowdfund.receipts import service
from crowdfund.receipts.pdf import document

bp = Blueprint("receipts", __name__)


@bp.app_template_global()
def donor_messages(campaign: Campaign) -> list[service.DonorMessage]:
    """The messages the campaign page shows (collected donations, not hidden, newest first)."""
    return service.public_messages(campaign.id)


@bp.app_template_global()
def receipt_numbers(pledges) -> dict[int, str]:
    """Receipt number of each collected donation among `pledges` (for My pledges)."""
    return service.receipts_for_pledges(list(pledges))


def _receipt_or_404(pledge_id: int) -> service.Receipt:
    try:
        return service.receipt_for(current_user, pledge_id)
    except DomainError:
        abort(404)


@bp.route("/my/receipts/<int:pledge_id>")
@login_required
def receipt(pledge_id: int):
    return render_template("receipts/receipt.html", receipt=_receipt_or_404(pledge_id))


def receipt_pdf(r: service.Receipt) -> bytes:
    rows = [
        ("Receipt number", r.number),
        ("Donor", r.donor + (" (shown as anonymous on public pages)" if r.anonymous else "")),
        ("Amount", r.amount.format(with_code=True)),
    ]
    if r.refunded.amount:
        rows.append(("Refunded", r.refunded.format(with_code=True)))
        rows.append(("Donation kept", r.kept.format(with_code=True)))
    rows += [
        ("Campaign", r.campaign_title),
        ("Organisation", r.organisation),
        ("Date", r.date.strftime("%d %B %Y")),
        ("Ledger transaction", r.transaction_key or "-"),
        ("Transaction hash", r.transaction_hash or "-"),
    ]
    return document(
        "Donation receipt",
        f"Thank you for your donation to {r.campaign_title}.",
        rows,
        "The payment is the ledger transaction above; anyone can check it in HealthFund's public, "
        "hash-chained ledger.",
    )


@bp.route("/my/receipts/<int:pledge_id>.pdf")
@login_required
def receipt_pdf_download(pledge_id: int):
    r = _receipt_or_404(pledge_id)
    return Response(
        receipt_pdf(r),
        mimetype="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="receipt-{r.number}.pdf"'},
    )


@bp.route("/studio/<int:campaign_id>/messages")
@login_required
def messages(campaign_id: int):
    try:
        campaign = service.campaign_for_messages(current_user, campaign_id)
        found = service.messages_for_campaigner(current_user, campaign.id)
    except DomainError:
        abort(404)
    return render_template("receipts/messages.html", campaign=campaign, messages=found)


def _set_hidden(campaign_id: int, pledge_id: int, hidden: bool):
    try:
        service.set_message_hidden(current_user, campaign_id, pledge_id, hidden)
    except DomainError as exc:
        if exc.status == 404:
            abort(404)
        flash(exc.message, "danger")
    else:
        flash("Message hidden from the campaign page." if hidden else "Message shown again.", "success")
    return redirect(url_for("receipts.messages", campaign_id=campaign_id), 303)


@bp.route("/studio/<int:campaign_id>/messages/<int:pledge_id>/hide", methods=["POST"])
@login_required
def hide_message(campaign_id: int, pledge_id: int):
    return _set_hidden(campaign_id, pledge_id, True)


@bp.route("/studio/<int:campaign_id>/messages/<int:pledge_id>/show", methods=["POST"])
@login_required
def show_message(campaign_id: int, pledge_id: int):
    return _set_hidden(campaign_id, pledge_id, False)
