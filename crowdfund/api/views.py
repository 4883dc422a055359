"""The JSON API under /api/v1: campaigns (public) and the caller's own pledges (Bearer token).

Views parse JSON, authenticate the token, call the same services the pages use, and
turn every `DomainError` into `{"error": {"code", "message", "field"}}` with the status
of its `ErrorCode`; anything unexpected is a generic 500 `internal_error` that shows no
detail (the traceback goes to the log). The API is CSRF-exempt because it never reads the session cookie: a request is
authenticated only by its `Authorization: Bearer hf_…` header.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from werkzeug.exceptions import HTTPException

from crowdfund.api import parsing
from crowdfund.api.openapi import openapi_document
from crowdfund.api.serialise import campaign_to_dict, pledge_to_dict
from crowdfund.api.service import authenticate
from crowdfund.campaigns.models import PUBLIC_STATES, Campaign, CampaignKind, HealthCategory
from crowdfund.database import valid_id
from crowdfund.engine import service as engine
from crowdfund.errors import DomainError, ErrorCode, NotFound, ValidationError
from crowdfund.extensions import csrf, db
from crowdfund.models_base import utcnow
from crowdfund.money import MoneyError
from crowdfund.public import queries as catalogue

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)

#: Campaigns per page when `per_page` is not given, and the most a page may hold.
DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
PLEDGE_FIELDS = {
    "campaign",
    "campaign_id",
    "tier_id",
    "quantity",
    "amount",
    "extra",
    "shipping_address",
    "risk_acknowledged",
    "message",
    "anonymous",
    "payment_method_id",
    "shares",
}
CHANGE_FIELDS = {"tier_id", "quantity", "amount", "extra", "shipping_address", "payment_method_id"}


# ---------------------------------------------------------------------------
# Errors and authentication
# ---------------------------------------------------------------------------


#: The code an HTTP error raised inside a view answers with, by its status.
HTTP_ERROR_CODES: dict[int, ErrorCode] = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.REQUEST_TOO_LARGE,
    429: ErrorCode.RATE_LIMITED,
}


def error_response(
    code: ErrorCode, message: str | None = None, field: str | None = None, *, status: int | None = None
) -> Response:
    """`{"error": {"code", "message", "field"}}` with the code's status (or `status`)."""
    body: dict[str, Any] = {"code": code.value, "message": message or code.text}
    if field:
        body["field"] = field
    response = jsonify(error=body)
    response.status_code = status or code.status
    if response.status_code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="HealthFund API"'
    return response


@bp.errorhandler(DomainError)
def domain_error(exc: DomainError) -> Response:
    return error_response(exc.code, exc.message, exc.field)


@bp.errorhandler(MoneyError)
def money_error(exc: MoneyError) -> Response:
    return error_response(ErrorCode.VALIDATION_ERROR, str(exc))


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = HTTP_ERROR_CODES.get(status, ErrorCode.BAD_REQUEST if status < 500 else ErrorCode.INTERNAL_ERROR)
    response = error_response(code, exc.description if status < 500 else None, status=status)
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


@bp.errorhandler(Exception)
def unexpected_error(exc: Exception) -> Response:
    """Last resort: a bug. Logged with its traceback; the client gets a generic JSON 500."""
    log.exception("unexpected error in the API")
    db.session.rollback()  # the failed statement may have left the session unusable
    return error_response(ErrorCode.INTERNAL_ERROR)


def token_required(view: Callable) -> Callable:
    """Authenticate `Authorization: Bearer hf_…` and put the user in `g.api_user`; else 401."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        user = authenticate(request.headers.get("Authorization"))
        if user is None:
            return error_response(
                ErrorCode.UNAUTHORIZED,
                "Send a valid personal API token as 'Authorization: Bearer hf_…'; "
                "create one on your account's API tokens page.",
            )
        g.api_user = user
        return view(*args, **kwargs)

    return wrapped


# ---------------------------------------------------------------------------
# Service endpoints
# ---------------------------------------------------------------------------


@bp.get("/ping")
def ping():
    """Liveness check that touches nothing (no database, no session)."""
    return {"ok": True}


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())


# ---------------------------------------------------------------------------
# Campaigns (public)
# ---------------------------------------------------------------------------


def _query_choice(name: str, choices: list[str]) -> str | None:
    value = request.args.get(name)
    if value is None or value == "":
        return None
    if value not in choices:
        raise ValidationError(f"{name} must be one of {', '.join(choices)}.", field=name)
    return value


def _query_text(name: str, max_length: int) -> str | None:
    """A free-text query parameter, refused (not cut) when longer than documented."""
    value = request.args.get(name)
    if value is not None and len(value) > max_length:
        raise ValidationError(f"{name} is at most {max_length} characters.", field=name)
    return value


def _query_int(name: str, default: int, minimum: int, maximum: int) -> int:
    value = request.args.get(name)
    if value is None or value == "":
        return default
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        raise ValidationError(f"{name} must be a whole number.", field=name)
    number = int(value)
    if not minimum <= number <= maximum:
        raise ValidationError(f"{name} must be between {minimum} and {maximum}.", field=name)
    return number


def _with_details(campaigns: list[Campaign]) -> None:
    """Load tiers and terms for a page of campaigns: a fixed number of queries for any page."""
    if not campaigns:
        return
    db.session.scalars(
        select(Campaign)
        .where(Campaign.id.in_([c.id for c in campaigns]))
        .options(
            selectinload(Campaign.tiers),
            selectinload(Campaign.equity_terms),
            selectinload(Campaign.debt_terms),
            selectinload(Campaign.donation_terms),
        )
    ).all()


@bp.get("/campaigns")
def list_campaigns():
    """Public campaigns, filtered like the listing page, one page at a time."""
    kind = _query_choice("kind", [k.value for k in CampaignKind])
    category = _query_choice("category", [c.value for c in HealthCategory])
    status = _query_choice("status", list(catalogue.STATUSES)) or "live"
    sort = _query_choice("sort", list(catalogue.SORTS)) or "newest"
    page = _query_int("page", 1, 1, catalogue.MAX_PAGE)
    per_page = _query_int("per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
    filters = catalogue.CampaignFilters(
        kind=CampaignKind(kind) if kind else None,
        category=HealthCategory(category) if category else None,
        status=status,
        q=catalogue.clean_query(_query_text("q", catalogue.MAX_QUERY_LENGTH)),
        sort=sort,
        page=page,
    )
    now = utcnow()
    result = catalogue.search_campaigns(filters, now, per_page)
    items = result.items if result.requested_page is None else []
    _with_details(items)
    return {
        "campaigns": [campaign_to_dict(c, now) for c in items],
        "page": page,
        "per_page": per_page,
        "pages": result.pages,
        "total": result.total,
    }


def _public_campaign(ref: str) -> Campaign:
    """A public campaign by id or slug, with its tiers and terms; NotFound otherwise."""
    slug: str | None = ref
    if ref.isascii() and ref.isdigit():
        ident = int(ref) if len(ref) <= 10 else 0
        slug = (
            db.session.scalar(select(Campaign.slug).where(Campaign.id == ident)) if valid_id(ident) else None
        )
    campaign = catalogue.campaign_by_slug(slug) if slug else None
    if campaign is None or not campaign.is_public:
        raise NotFound("There is no public campaign with that id or slug.")
    return campaign


@bp.get("/campaigns/<ref>")
def get_campaign(ref: str):
    return campaign_to_dict(_public_campaign(ref), utcnow())


# ---------------------------------------------------------------------------
# Pledges (the caller's own)
# ---------------------------------------------------------------------------


def _campaign_for_pledge(ref: int | str) -> tuple[int, str]:
    """(id, currency) of the public campaign a new pledge names; NotFound otherwise (drafts too)."""
    column = Campaign.id if isinstance(ref, int) else Campaign.slug
    row = db.session.execute(
        select(Campaign.id, Campaign.currency).where(column == ref, Campaign.state.in_(PUBLIC_STATES))
    ).first()
    if row is None:
        raise NotFound("There is no campaign with that id or slug.", field="campaign")
    return row.id, row.currency


@bp.get("/pledges")
@token_required
def list_pledges():
    now = utcnow()
    return {"pledges": [pledge_to_dict(p, now) for p in engine.list_own_pledges(g.api_user)]}


@bp.post("/pledges")
@token_required
def create_pledge():
    data = parsing.json_object(request)
    parsing.refuse_unknown(data, PLEDGE_FIELDS)
    key = parsing.idempotency_key(request.headers.get("Idempotency-Key"))
    ref = parsing.campaign_ref(data)
    # Only public campaigns: a draft's id or slug is "not found", as on GET /campaigns/<ref>.
    campaign_id, currency = _campaign_for_pledge(ref)
    req = engine.PledgeRequest(
        amount=parsing.money(data, "amount", currency),
        tier_id=parsing.integer(data, "tier_id"),
        quantity=parsing.integer(data, "quantity") or 1,
        extra=parsing.money(data, "extra", currency, allow_zero=True),
        shipping_address=parsing.text(data, "shipping_address", multiline=True),
        risk_acknowledged=bool(parsing.boolean(data, "risk_acknowledged")),
        message=parsing.text(data, "message", multiline=True),
        anonymous=bool(parsing.boolean(data, "anonymous")),
        payment_method_id=parsing.integer(data, "payment_method_id"),
        shares=parsing.integer(data, "shares"),
        idempotency_token=f"api:{key}" if key else None,
    )
    pledge = engine.place_pledge(g.api_user, campaign_id, req)
    response = jsonify(pledge_to_dict(pledge, utcnow()))
    response.status_code = 201
    response.headers["Location"] = f"{bp.url_prefix}/pledges/{pledge.id}"
    return response


@bp.get("/pledges/<int:pledge_id>")
@token_required
def get_pledge(pledge_id: int):
    pledge = engine.get_own_pledge(g.api_user, pledge_id)
    return pledge_to_dict(pledge, utcnow())


@bp.patch("/pledges/<int:pledge_id>")
@token_required
def change_pledge(pledge_id: int):
    """Change a reward pledge; fields left out keep their current values."""
    data = parsing.json_object(request)
    parsing.refuse_unknown(data, CHANGE_FIELDS)
    current = engine.get_own_pledge(g.api_user, pledge_id)
    currency = current.currency
    tier_given = "tier_id" in data
    req = engine.PledgeRequest(
        tier_id=parsing.integer(data, "tier_id") if tier_given else current.tier_id,
        quantity=parsing.integer(data, "quantity") or current.quantity,
        amount=parsing.money(data, "amount", currency) if "amount" in data else None,
        extra=parsing.money(data, "extra", currency, allow_zero=True) if "extra" in data else current.extra,
        shipping_address=parsing.text(data, "shipping_address", multiline=True)
        if "shipping_address" in data
        else current.shipping_address,
        payment_method_id=parsing.integer(data, "payment_method_id"),
    )
    if req.tier_id is None and req.amount is None and not tier_given:
        req.amount = current.amount
    pledge = engine.change_pledge(g.api_user, current.id, req)
    return pledge_to_dict(pledge, utcnow())


@bp.post("/pledges/<int:pledge_id>/cancel")
@token_required
def cancel_pledge(pledge_id: int):
    pledge = engine.cancel_pledge(g.api_user, pledge_id)
    return pledge_to_dict(pledge, utcnow())
