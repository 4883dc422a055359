"""Ledger pages: the public money trail of each campaign (HTML and JSON) and the operator's view.

Public pages show amounts, kinds and account purposes, never who paid: descriptions and
keys stay with operators (the JSON carries only their SHA-256, as they enter the hash).
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from crowdfund.accounts.permissions import operator_required
from crowdfund.campaigns.models import PUBLIC_STATES, Campaign, CampaignState
from crowdfund.extensions import db
from crowdfund.ledger import service
from crowdfund.ledger.forms import KeySearchForm
from crowdfund.ledger.models import AccountPurpose, LedgerAccount, LedgerEntry, LedgerTransaction

bp = Blueprint("ledger", __name__)

TRAIL_PER_PAGE = 50
#: The money trail's figures, as the JSON names them (and the page's `data-figure`).
FIGURES = (
    "money_in",
    "refunded",
    "fees",
    "platform_fee",
    "processing_fee",
    "released",
    "paid_out",
    "paid_to_providers",
    "recovered",
    "repaid_to_lenders",
    "corrections",
    "held_in_escrow",
)
OPERATOR_PER_PAGE = 50
CHAIN_PAGE_LIMIT = 500


#: Larger page numbers or sequences than this are treated as this (no integer overflow in SQL).
MAX_ARG = 10**9


def _page_arg() -> int:
    return min(max(request.args.get("page", 1, type=int) or 1, 1), MAX_ARG)


def _public_campaign(slug: str) -> Campaign:
    if "\x00" in slug:
        abort(404)
    campaign = db.session.scalars(select(Campaign).where(Campaign.slug == slug)).one_or_none()
    if campaign is None or campaign.state not in PUBLIC_STATES:
        abort(404)
    return campaign


# --- public ---------------------------------------------------------------------------
@bp.route("/campaigns/<slug>/money-trail")
def money_trail(slug: str):
    campaign = _public_campaign(slug)
    trail = service.campaign_money_trail(campaign, page=_page_arg(), per_page=TRAIL_PER_PAGE)
    campaign_url = url_for("public.campaign", slug=campaign.slug)
    return render_template(
        "ledger/money_trail.html",
        campaign=campaign,
        trail=trail,
        settled=campaign.state is CampaignState.SETTLED,
        campaign_url=campaign_url,
        public_account_label=service.public_account_label,
    )


@bp.route("/campaigns/<slug>/money-trail.json")
def money_trail_json(slug: str):
    campaign = _public_campaign(slug)
    trail = service.campaign_money_trail(campaign, page=_page_arg(), per_page=TRAIL_PER_PAGE)

    def money(m):
        return {"amount": m.amount, "currency": m.currency, "formatted": m.format(with_code=True)}

    return jsonify(
        {
            "campaign": {
                "id": campaign.id,
                "slug": campaign.slug,
                "title": campaign.title,
                "state": campaign.state.value,
            },
            "currency": trail.currency,
            "figures": {name: money(getattr(trail, name)) for name in FIGURES},
            "figures_add_up": (
                "money_in - refunded - platform_fee - processing_fee - released + recovered - repaid_to_lenders "
                "+ the sum of other_escrow_movements' net + corrections = held_in_escrow (the escrow account's "
                "balance); fees = platform_fee + processing_fee; paid_out is what was sent on from what was "
                "released, paid_to_providers the part of it paid to hospitals and other providers. money_in is "
                "every payment into the escrow: backers' payments and, for a loan, the borrower's repayments. "
                "Each figure sums the campaign's entries of one transaction kind on one kind of account."
            ),
            "movements": [
                {
                    "kind": m.kind.value,
                    "label": m.label,
                    "transactions": m.transactions,
                    "amount": money(m.amount),
                }
                for m in trail.movements
            ],
            "other_escrow_movements": [
                {"kind": m.kind.value, "label": m.label, "net": money(m.net)}
                for m in trail.other_escrow_movements
            ],
            "after_success": {
                line.name: {
                    "label": line.label,
                    "count": line.count,
                    "unit": line.unit,
                    "amount": money(line.amount),
                    "recipients": line.recipients,
                    "recipients_unit": line.recipients_unit,
                }
                for line in trail.after_success
            },
            "escrow_account_id": trail.escrow_account_id,
            "transactions": [service.public_transaction(t) for t in trail.transactions],
            "pagination": {
                "page": trail.page,
                "per_page": trail.per_page,
                "pages": trail.pages,
                "total": trail.total_transactions,
            },
            "chain": {
                "head_sequence": trail.head_sequence,
                "head_hash": trail.head_hash,
                "hash_algorithm": "sha256",
                "canonical_content": (
                    "JSON, sorted keys, separators ',' and ':', ASCII, of: sequence, key_sha256, created_at, kind, "
                    "description_sha256, campaign_id, reverses_id, entries (sorted [account_id, account_sha256, "
                    "side, amount, currency]; account_sha256 is the SHA-256 of the account's code "
                    "purpose:owner_type:owner_id:currency), prev_hash"
                ),
                "all_hashes": url_for("ledger.chain_json", _external=True),
            },
        }
    )


@bp.route("/ledger/chain.json")
def chain_json():
    """Every transaction's sequence, prev_hash and hash, in chain order (paged by `after`)."""
    after = min(max(0, request.args.get("after", 0, type=int) or 0), MAX_ARG)
    links = service.chain_page(after=after, limit=CHAIN_PAGE_LIMIT)
    head_sequence, head_hash = service.chain_head()
    body = {"head_sequence": head_sequence, "head_hash": head_hash, "links": links}
    if len(links) == CHAIN_PAGE_LIMIT:
        body["next"] = url_for("ledger.chain_json", after=links[-1]["sequence"], _external=True)
    return jsonify(body)


@bp.route("/ledger/head.json")
def head_json():
    """The end of the hash chain. Keep a copy: `flask ledger verify --expect-head SEQUENCE:HASH`
    later proves that the history up to it was neither rewritten nor cut short."""
    head_sequence, head_hash = service.chain_head()
    return jsonify(
        {
            "head_sequence": head_sequence,
            "head_hash": head_hash,
            "expect_head": f"{head_sequence}:{head_hash}",
            "all_hashes": url_for("ledger.chain_json", _external=True),
        }
    )


# --- operators ------------------------------------------------------------------------
@bp.route("/operator/ledger")
@operator_required
def operator_accounts():
    form = KeySearchForm(request.args)
    if "key" in request.args:
        if form.validate():
            txn = service.find_transaction(form.key.data.strip())
            if txn is not None:
                return redirect(url_for("ledger.operator_transaction", txn_id=txn.id))
            flash(f"No ledger transaction has the key {form.key.data.strip()!r}.", "warning")
        else:
            flash(form.key.errors[0] if form.key.errors else "Enter an idempotency key.", "warning")
    purpose = request.args.get("purpose") or None
    query = select(LedgerAccount).order_by(LedgerAccount.purpose, LedgerAccount.currency, LedgerAccount.id)
    if purpose is not None:
        try:
            query = query.where(LedgerAccount.purpose == AccountPurpose(purpose))
        except ValueError:
            abort(404)
    accounts = db.paginate(query, page=_page_arg(), per_page=OPERATOR_PER_PAGE, error_out=False)
    head_sequence, head_hash = service.chain_head()
    return render_template(
        "ledger/operator_accounts.html",
        accounts=accounts,
        form=form,
        purposes=list(AccountPurpose),
        purpose=purpose,
        head_sequence=head_sequence,
        head_hash=head_hash,
    )


@bp.route("/operator/ledger/accounts/<int:account_id>")
@operator_required
def operator_account(account_id: int):
    account = db.session.get(LedgerAccount, account_id) or abort(404)
    entries = db.paginate(
        select(LedgerEntry)
        .where(LedgerEntry.account_id == account.id)
        .order_by(LedgerEntry.id.desc())
        .options(selectinload(LedgerEntry.transaction)),
        page=_page_arg(),
        per_page=OPERATOR_PER_PAGE,
        error_out=False,
    )
    return render_template("ledger/operator_account.html", account=account, entries=entries)


@bp.route("/operator/ledger/transactions")
@operator_required
def operator_transactions():
    txns = db.paginate(
        select(LedgerTransaction).order_by(LedgerTransaction.sequence.desc()),
        page=_page_arg(),
        per_page=OPERATOR_PER_PAGE,
        error_out=False,
    )
    return render_template("ledger/operator_transactions.html", txns=txns, form=KeySearchForm())


@bp.route("/operator/ledger/transactions/<int:txn_id>")
@operator_required
def operator_transaction(txn_id: int):
    txn = db.session.scalars(
        select(LedgerTransaction)
        .where(LedgerTransaction.id == txn_id)
        .options(selectinload(LedgerTransaction.entries).selectinload(LedgerEntry.account))
    ).one_or_none() or abort(404)
    reversed_by = db.session.scalars(
        select(LedgerTransaction).where(LedgerTransaction.reverses_id == txn.id)
    ).one_or_none()
    campaign = db.session.get(Campaign, txn.campaign_id) if txn.campaign_id else None
    hash_ok = txn.compute_hash() == txn.hash
    total = db.session.scalar(select(func.count()).select_from(LedgerTransaction))
    return render_template(
        "ledger/operator_transaction.html",
        txn=txn,
        reversed_by=reversed_by,
        campaign=campaign,
        hash_ok=hash_ok,
        total=total,
    )
