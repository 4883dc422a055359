"""Settlement pages: the operator's progress, refunds and cancellation; the campaigner's
statement (page and CSV); the backer's failed payment (retry now) and bank confirmation.

Operators see every settlement; an organisation's members see their campaigns'
statements (others get 404); a backer acts on their own pledges only (others get 404).
My pledges (the engine's page) shows each pledge's settlement through the template
global `settlement_for_backer`, so the engine never imports this package.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from flask import (
    Blueprint,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required

from crowdfund.accounts.permissions import operator_required
from crowdfund.campaigns.models import Campaign
from crowdfund.engine import service as engine
from crowdfund.engine.models import Pledge, PledgeState
from crowdfund.errors import DomainError
from crowdfund.extensions import db
from crowdfund.models_base import utcnow
from crowdfund.money import Money, MoneyError
from crowdfund.payments import service as payments
from crowdfund.payments.models import OperationState, PaymentOperation
from crowdfund.settlement import queries, service
from crowdfund.settlement.forms import (
    CancelCampaignForm,
    ConfirmPaymentForm,
    RefundForm,
    RetryForm,
    new_form_token,
)
from crowdfund.settlement.models import ItemState, SettlementItem, SettlementState
from crowdfund.web.csv_files import csv_download

bp = Blueprint("settlement", __name__)

SETTLEMENTS_PER_PAGE = 50
ITEMS_PER_PAGE = 50


# ---------------------------------------------------------------------------
# The progress bar
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    key: str
    label: str
    count: int
    css: str
    #: Where the segment starts and how wide it is, in percent of the bar.
    x: float = 0.0
    width: float = 0.0


@dataclass
class Bar:
    segments: list[Segment] = field(default_factory=list)
    total: int = 0

    def count(self, key: str) -> int:
        return next((s.count for s in self.segments if s.key == key), 0)


#: (key, label, colour class, item states, shown even at zero), in bar order.
BAR_PARTS: tuple[tuple[str, str, str, frozenset[ItemState], bool], ...] = (
    ("charged", "Charged", "text-success", frozenset({ItemState.CHARGED}), True),
    ("failed", "Failed", "text-danger", frozenset({ItemState.FAILED, ItemState.HARD_DECLINED}), True),
    ("action_required", "Action required", "text-warning", frozenset({ItemState.ACTION_REQUIRED}), True),
    ("dropped", "Dropped", "text-secondary", frozenset({ItemState.DROPPED}), True),
    ("released", "Released", "text-info", frozenset({ItemState.RELEASED}), False),
    ("refunded", "Refunded", "text-dark", frozenset({ItemState.REFUNDING, ItemState.REFUNDED}), False),
    (
        "left",
        "Left",
        "text-body-tertiary",
        frozenset({ItemState.PENDING, ItemState.CHARGING, ItemState.UNKNOWN}),
        True,
    ),
)


def progress_bar(counts: dict[ItemState, int]) -> Bar:
    """The bar's segments from the number of items in each state."""
    total = sum(counts.values())
    bar = Bar(total=total)
    x = 0.0
    for key, label, css, states, always in BAR_PARTS:
        count = sum(counts.get(state, 0) for state in states)
        if not count and not always:
            continue
        width = round(100 * count / total, 2) if total else 0.0
        bar.segments.append(Segment(key, label, count, css, round(x, 2), width))
        x += width
    return bar


# ---------------------------------------------------------------------------
# Template helpers (also used by the engine's My pledges)
# ---------------------------------------------------------------------------


@bp.app_template_global()
def state_label(state) -> str:
    """A state's label for people ("paying_out" → "Paying out")."""
    return getattr(state, "label", None) or str(getattr(state, "value", state)).replace("_", " ").capitalize()


@dataclass
class BackerView:
    """What My pledges needs about settlement: each pledge's item and the backer's cards."""

    items: dict[int, SettlementItem]
    cards: list = field(default_factory=list)
    default_card_id: int | None = None


@bp.app_template_global()
def settlement_for_backer(pledges: Iterable[Pledge]) -> BackerView:
    """The settlement items of the current user's `pledges`, and the cards a retry may use."""
    items = queries.items_for_pledges([p.id for p in pledges])
    view = BackerView(items=items)
    if any(item.state in RETRYABLE for item in items.values()) and current_user.is_authenticated:
        view.cards = _usable_cards()
        default = payments.default_payment_method(current_user)
        view.default_card_id = default.id if default is not None else None
    return view


#: Item states in which the backer may choose a card and retry at once.
RETRYABLE = frozenset({ItemState.FAILED, ItemState.HARD_DECLINED, ItemState.ACTION_REQUIRED})


def _usable_cards() -> list:
    now = utcnow()
    return [
        m for m in payments.list_payment_methods(current_user) if m.is_usable and not m.is_expired_at(now)
    ]


def _page_arg() -> int:
    return queries.clamp_page(request.args.get("page", 1, type=int))


def _enum_arg(enum_cls, name: str = "status"):
    """The enum member named by a query argument, or None for anything else."""
    value = request.args.get(name, "")
    try:
        return enum_cls(value) if value else None
    except ValueError:
        return None


# ---------------------------------------------------------------------------
# Operators
# ---------------------------------------------------------------------------


def _campaign_or_404(campaign_id: int) -> Campaign:
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        abort(404)
    return campaign


@bp.route("/operator/settlements")
@operator_required
def operator_list():
    state = _enum_arg(SettlementState)
    listing = queries.settlements_page(_page_arg(), SETTLEMENTS_PER_PAGE, state)
    return render_template(
        "settlement/operator_list.html",
        listing=listing,
        bars={row.settlement.id: progress_bar(row.counts) for row in listing.rows},
        states=list(SettlementState),
        state=state,
    )


@bp.route("/operator/settlements/<int:campaign_id>")
@operator_required
def operator_settlement(campaign_id: int):
    campaign = _campaign_or_404(campaign_id)
    settlement = service.settlement_for(campaign.id)
    state = _enum_arg(ItemState)
    items = progress = None
    totals: list[tuple[str, str, Money | None]] = []
    if settlement is not None:
        items = queries.items_page(settlement.id, _page_arg(), ITEMS_PER_PAGE, state)
        progress = service.settlement_progress(campaign.id)
        totals = [
            ("pledged", "Pledged at close", progress.pledged),
            ("collected", "Collected", progress.collected),
            ("dropped", "Dropped (never charged)", queries.dropped_amount(settlement)),
            ("platform-fee", "Platform fee", progress.platform_fee),
            ("processing-fee", "Processing fee", progress.processing_fee),
            ("paid-out", "Paid out", progress.paid_out),
            ("refunded", "Refunded", progress.refunded),
        ]
    return render_template(
        "settlement/operator_settlement.html",
        campaign=campaign,
        settlement=settlement,
        bar=progress_bar(progress.counts if progress else {}),
        totals=totals,
        items=items,
        item_states=list(ItemState),
        item_state=state,
    )


@bp.route("/operator/settlements/<int:campaign_id>/cancel", methods=["GET", "POST"])
@operator_required
def cancel_campaign(campaign_id: int):
    """Cancel a campaign and refund every payment: a confirmation page, then the use case."""
    campaign = _campaign_or_404(campaign_id)
    form = CancelCampaignForm()
    status = 200
    if request.method == "POST":
        status = 422
        if form.validate_on_submit():
            if form.confirm_slug.data.strip() != campaign.slug:
                form.confirm_slug.errors.append(f"Type {campaign.slug} exactly to confirm.")
            else:
                try:
                    service.cancel_campaign_with_refunds(current_user, campaign.id, form.reason.data)
                except DomainError as exc:
                    if exc.status == 404:
                        abort(404)
                    form.form_errors.append(exc.message)
                    status = exc.status if 400 <= exc.status < 500 else 409
                else:
                    flash(
                        f"{campaign.title} is cancelled: every payment is being refunded and every other "
                        "pledge released.",
                        "success",
                    )
                    return redirect(url_for("settlement.operator_settlement", campaign_id=campaign.id), 303)
    return (
        render_template(
            "settlement/cancel.html",
            campaign=campaign,
            settlement=service.settlement_for(campaign.id),
            summary=queries.cancel_summary(campaign),
            form=form,
        ),
        status,
    )


def _pledge_or_404(pledge_id: int) -> Pledge:
    pledge = db.session.get(Pledge, pledge_id)
    if pledge is None:
        abort(404)
    return pledge


def _refund_amount(form: RefundForm, pledge: Pledge) -> tuple[bool, Money | None]:
    """(parsed, amount): amount None is "everything left"; parsed False puts a message on the field."""
    text = (form.amount.data or "").strip()
    if not text:
        return True, None
    try:
        amount = Money.parse(text, pledge.currency)
    except MoneyError as exc:
        form.amount.errors.append(str(exc))
        return False, None
    if amount.amount <= 0:
        form.amount.errors.append("Enter an amount above zero, or leave it empty to refund everything.")
        return False, None
    return True, amount


@bp.route("/operator/pledges/<int:pledge_id>/refund", methods=["GET", "POST"])
@operator_required
def refund(pledge_id: int):
    """Refund all or part of a charged pledge or donation, with a reason, exactly once per form."""
    pledge = _pledge_or_404(pledge_id)
    form = RefundForm()
    status = 200
    if request.method == "POST":
        status = 422
        valid = form.validate_on_submit()
        parsed, amount = _refund_amount(form, pledge)
        token = form.valid_token()
        if valid and parsed and token is None:
            form.form_errors.append("This form has expired. Check the amount and send it again.")
        elif valid and parsed:
            key = f"pledge:{pledge.id}:refund:{token}"
            try:
                service.refund_item(current_user, pledge.id, amount, form.reason.data, key=key)
            except DomainError as exc:
                if exc.status == 404:
                    abort(404)
                _field_error(form, exc)
                status = exc.status if 400 <= exc.status < 500 else 409
                form.token.data = new_form_token()  # nothing was refunded: the next try is a new refund
            else:
                operation = payments.find_operation(key)
                if operation is not None and operation.state is not OperationState.FAILED:
                    flash(_refund_message(pledge, operation), "success")
                    return redirect(
                        url_for("settlement.operator_settlement", campaign_id=pledge.campaign_id), 303
                    )
                form.form_errors.append(_refund_message(pledge, operation))
                form.token.data = new_form_token()
                status = 409
    form.ensure_token()
    return (
        render_template(
            "settlement/refund.html",
            pledge=pledge,
            campaign=pledge.campaign,
            item=service.item_for_pledge(pledge.id),
            refundable=Money(pledge.counted_amount, pledge.currency)
            if pledge.state is PledgeState.CHARGED
            else None,
            form=form,
        ),
        status,
    )


def _refund_message(pledge: Pledge, operation: PaymentOperation | None) -> str:
    if operation is None:
        return "The refund was not made: the payment service refused it."
    if operation.state is OperationState.SUCCEEDED:
        return f"Refunded {operation.amount} of pledge #{pledge.id}."
    if operation.state is OperationState.PENDING:
        return f"The refund of {operation.amount} is on its way; the pledge follows once the bank confirms."
    return f"The refund failed: {operation.failure_message or 'the payment service refused it.'}"


def _field_error(form, exc: DomainError) -> None:
    field_ = getattr(form, exc.field, None) if exc.field else None
    if field_ is not None and hasattr(field_, "errors") and isinstance(field_.errors, list):
        field_.errors.append(exc.message)
    else:
        form.form_errors.append(exc.message)


# ---------------------------------------------------------------------------
# Campaigners: the statement
# ---------------------------------------------------------------------------


def _campaign_for_member(campaign_id: int) -> Campaign:
    """The campaign, for its organisation's members and operators; 404 for anyone else."""
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None or not (current_user.is_operator or campaign.organisation.has_member(current_user)):
        abort(404)
    return campaign


#: The statement's lines as the campaigner reads them (the service names them by key).
STATEMENT_LABELS = {
    "pledged": "Pledged at close",
    "collected": "Collected",
    "dropped": "Dropped (never charged, no fee)",
    "refunded": "Refunded to backers",
    "platform_fee": "Platform fee",
    "processing_fee": "Processing fee",
    "released": "Released to the organisation",
    "paid_out": "Paid out",
    "owed_by_organisation": "Owed back by the organisation (refunds after the payout)",
}
#: Lines left out of the page while they are zero.
HIDDEN_WHEN_ZERO = frozenset({"owed_by_organisation"})


def statement_lines(statement) -> list[tuple[str, str, object, Money]]:
    """(key, label, date, amount) for each line of the statement worth showing."""
    return [
        (key, STATEMENT_LABELS.get(key, state_label(key)), when, amount)
        for key, when, amount in statement.lines
        if amount.amount or key not in HIDDEN_WHEN_ZERO
    ]


@bp.route("/studio/<int:campaign_id>/statement")
@login_required
def statement(campaign_id: int):
    campaign = _campaign_for_member(campaign_id)
    settlement = service.settlement_for(campaign.id)
    return render_template(
        "settlement/statement.html",
        campaign=campaign,
        settlement=settlement,
        lines=statement_lines(service.campaign_statement(campaign.id)) if settlement is not None else [],
    )


@bp.route("/studio/<int:campaign_id>/statement.csv")
@login_required
def statement_csv(campaign_id: int):
    campaign = _campaign_for_member(campaign_id)
    if service.settlement_for(campaign.id) is None:
        abort(404)
    return csv_download(service.campaign_statement(campaign.id).csv_rows(), f"statement-{campaign.id}.csv")


# ---------------------------------------------------------------------------
# Backers: retry a failed payment, confirm a payment with the bank
# ---------------------------------------------------------------------------


def _own_item(pledge_id: int) -> tuple[Pledge, SettlementItem | None]:
    """The current user's pledge and its settlement item; 404 for anyone else's."""
    try:
        pledge = engine.get_own_pledge(current_user, pledge_id)
    except DomainError:
        abort(404)
    return pledge, service.item_for_pledge(pledge.id)


def _back_to_pledge(pledge_id: int):
    return redirect(url_for("engine.my_pledges", _anchor=f"pledge-{pledge_id}"), 303)


def _flash_outcome(item: SettlementItem | None, pledge: Pledge) -> str | None:
    """Flash what a retry or a confirmation did; the endpoint to go to next when the bank wants the backer."""
    if item is None:
        flash("This pledge has nothing to pay now.", "info")
    elif item.state is ItemState.CHARGED:
        flash(f"Thank you! {item.charged or item.amount} was charged for {pledge.campaign.title}.", "success")
    elif item.state is ItemState.ACTION_REQUIRED:
        flash("Your bank asks you to confirm this payment.", "warning")
        return "settlement.confirm_payment"
    elif item.state in (ItemState.CHARGING, ItemState.UNKNOWN, ItemState.PENDING):
        flash("We are waiting for your bank's answer; this page shows it as soon as it comes.", "info")
    else:
        flash(f"The payment did not go through: {item.failure_message or 'your bank declined it.'}", "error")
    return None


@bp.route("/pledges/<int:pledge_id>/retry", methods=["POST"])
@login_required
def retry(pledge_id: int):
    """Charge a failed pledge at once, with the card the backer chose."""
    pledge, item = _own_item(pledge_id)
    form = RetryForm()
    if item is None:
        flash("This pledge has nothing to pay now.", "info")
        return _back_to_pledge(pledge.id)
    if not form.validate_on_submit():
        flash("The form has expired. Choose the card and try again.", "error")
        return _back_to_pledge(pledge.id)
    method_id = form.method_id()
    chosen = (form.payment_method_id.data or "").strip()
    if chosen and method_id not in {card.id for card in _usable_cards()}:
        flash("Choose one of your saved cards.", "error")
        return _back_to_pledge(pledge.id)
    try:
        service.retry_now(current_user, pledge.id, method_id)
    except DomainError as exc:  # the pledge is the user's own: a refusal is a message, never a 404
        flash(exc.message, "error")
        return _back_to_pledge(pledge.id)
    nxt = _flash_outcome(service.item_for_pledge(pledge.id), pledge)
    if nxt:
        return redirect(url_for(nxt, pledge_id=pledge.id), 303)
    return _back_to_pledge(pledge.id)


@bp.route("/pledges/<int:pledge_id>/confirm-payment", methods=["GET", "POST"])
@login_required
def confirm_payment(pledge_id: int):
    """The bank's confirmation of a payment that needs the backer (the sandbox plays the bank)."""
    pledge, item = _own_item(pledge_id)
    if item is None or item.state is not ItemState.ACTION_REQUIRED:
        if request.method == "POST":
            flash("This payment needs no confirmation now.", "info")
        return _back_to_pledge(pledge.id)
    form = ConfirmPaymentForm()
    if form.validate_on_submit():
        try:
            service.confirm_authentication(current_user, pledge.id)
        except DomainError as exc:
            flash(exc.message, "error")
            return _back_to_pledge(pledge.id)
        nxt = _flash_outcome(service.item_for_pledge(pledge.id), pledge)
        if nxt:
            return redirect(url_for(nxt, pledge_id=pledge.id), 303)
        return _back_to_pledge(pledge.id)
    return render_template(
        "settlement/confirm_payment.html",
        pledge=pledge,
        item=item,
        settlement=item.settlement,
        form=form,
        gateway=payments.gateway_name(),
    ), (422 if request.method == "POST" else 200)
