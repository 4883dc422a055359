"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json.

Written by hand, next to the views it describes, from the same constants the views
check (id and text bounds, choices); the list of error codes is generated from
`crowdfund.errors.ErrorCode`. Tests hold the document and the answers to each other: every
route of the `api` blueprint is here and nothing else, and a schema-driven fuzzer
(schemathesis) checks that every answer is one the document describes.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from crowdfund.api.parsing import MAX_IDEMPOTENCY_KEY_LENGTH, MAX_TEXT_LENGTH
from crowdfund.campaigns.models import CampaignKind, HealthCategory
from crowdfund.database import MAX_ID
from crowdfund.errors import ErrorCode
from crowdfund.money import MAX_MINOR
from crowdfund.public.queries import MAX_PAGE, MAX_QUERY_LENGTH, SORTS, STATUSES

#: Every stable `error.code`, with the HTTP status it comes with: generated from
#: `crowdfund.errors.ErrorCode`, the one registry (the README's table is too).
ERROR_CODES: dict[str, str] = {code.value: f"{code.status}: {code.text}" for code in ErrorCode}
_ERROR_CODES_DESCRIPTION = "Stable codes with their HTTP status; clients may branch on them.\n\n" + "\n".join(
    f"- `{code}` — {text}" for code, text in ERROR_CODES.items()
)
#: Every id in a path or a body: a PostgreSQL INTEGER primary key.
_ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
_COUNT = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
_KINDS = [kind.value for kind in CampaignKind]

_MONEY_REF = {"$ref": "#/components/schemas/Money"}
_ERROR_RESPONSE = {
    "description": "An error; `error.code` says which.",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _ERROR_RESPONSE for s in statuses}


_PLEDGE_ID = {"name": "pledge_id", "in": "path", "required": True, "schema": _ID}
_SECURED = [{"bearerToken": []}]

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "HealthFund API",
        "version": "1.0.0",
        "description": (
            "Read campaigns; create, read, change and cancel your own pledges. "
            "Authenticate with a personal API token (Account → API tokens) sent as "
            "`Authorization: Bearer hf_…`. Money is integer minor units plus an ISO currency: "
            '`{"amount": 30000, "currency": "CNY"}` is ¥300.00. Errors are '
            '`{"error": {"code": …, "message": …, "field": …}}` with a stable `code`.'
        ),
    },
    "servers": [{"url": "/api/v1"}],
    "components": {
        "securitySchemes": {
            "bearerToken": {"type": "http", "scheme": "bearer", "description": "A personal API token, hf_…"}
        },
        "schemas": {
            "Money": {
                "type": "object",
                "required": ["amount", "currency"],
                "properties": {
                    "amount": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": MAX_MINOR,
                        "description": "Minor units (fen, cents).",
                    },
                    "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "examples": ["CNY"]},
                    "display": {"type": "string", "readOnly": True, "examples": ["¥300.00"]},
                },
            },
            "Tier": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "title": {"type": "string"},
                    "description": {"type": "string"},
                    "price": _MONEY_REF,
                    "quantity_limit": {"type": ["integer", "null"], "description": "null: unlimited"},
                    "claimed": {"type": "integer"},
                    "remaining": {"type": ["integer", "null"]},
                    "sold_out": {"type": "boolean"},
                    "estimated_delivery": {"type": ["string", "null"], "format": "date"},
                    "ships": {"type": "boolean"},
                    "ships_to": {"type": "string"},
                },
            },
            "Campaign": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "slug": {"type": "string"},
                    "title": {"type": "string"},
                    "summary": {"type": "string"},
                    "kind": {"enum": _KINDS},
                    "category": {"type": "string"},
                    "state": {"type": "string"},
                    "is_open": {"type": "boolean", "description": "Live and inside its dates."},
                    "funding_model": {"enum": ["all_or_nothing", "keep_it_all"]},
                    "organisation": {
                        "type": "object",
                        "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
                    },
                    "currency": {"type": "string"},
                    "goal": _MONEY_REF,
                    "raised": _MONEY_REF,
                    "backers": {"type": "integer"},
                    "percent_funded": {"type": "integer"},
                    "start_at": {"type": "string", "format": "date-time"},
                    "end_at": {"type": "string", "format": "date-time"},
                    "tiers": {"type": "array", "items": {"$ref": "#/components/schemas/Tier"}},
                    "terms": {
                        "type": ["object", "null"],
                        "description": "Equity: price per share, targets, minimum investment. "
                        "Debt: annual rate (basis points), term, amounts. Donation: beneficiary.",
                    },
                },
            },
            "CampaignList": {
                "type": "object",
                "properties": {
                    "campaigns": {"type": "array", "items": {"$ref": "#/components/schemas/Campaign"}},
                    "page": {"type": "integer"},
                    "per_page": {"type": "integer"},
                    "pages": {"type": "integer"},
                    "total": {"type": "integer"},
                },
            },
            "Pledge": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "campaign": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "integer"},
                            "slug": {"type": "string"},
                            "title": {"type": "string"},
                        },
                    },
                    "kind": {"enum": _KINDS},
                    "state": {
                        "enum": [
                            "pending",
                            "active",
                            "cancelled",
                            "charged",
                            "failed",
                            "released",
                            "refunded",
                        ]
                    },
                    "amount": _MONEY_REF,
                    "tier_id": {"type": ["integer", "null"]},
                    "quantity": {"type": "integer"},
                    "extra": _MONEY_REF,
                    "shares": {"type": ["integer", "null"]},
                    "shipping_address": {"type": ["string", "null"]},
                    "message": {"type": ["string", "null"]},
                    "anonymous": {"type": "boolean"},
                    "risk_acknowledged": {"type": "boolean"},
                    "payment_method_id": {"type": ["integer", "null"]},
                    "failure_message": {"type": ["string", "null"]},
                    "created_at": {"type": "string", "format": "date-time"},
                    "updated_at": {"type": "string", "format": "date-time"},
                    "cancelled_at": {"type": ["string", "null"], "format": "date-time"},
                    "cancellation_deadline": {"type": ["string", "null"], "format": "date-time"},
                    "can_change": {"type": "boolean"},
                    "can_cancel": {"type": "boolean"},
                },
            },
            "PledgeCreate": {
                "type": "object",
                "additionalProperties": False,
                "description": "Reward: tier_id + quantity (or amount for no reward), optional extra. "
                "Equity and debt: amount and risk_acknowledged. Donation: amount, optional message, anonymous.",
                "properties": {
                    "campaign": {
                        "anyOf": [_ID, {"type": "string", "minLength": 1, "maxLength": 140}],
                        "description": "The campaign's id or slug.",
                    },
                    "campaign_id": _ID,
                    "tier_id": _ID,
                    "quantity": {**_COUNT, "default": 1},
                    "amount": _MONEY_REF,
                    "extra": _MONEY_REF,
                    "shipping_address": {"type": "string", "maxLength": MAX_TEXT_LENGTH},
                    "risk_acknowledged": {"type": "boolean"},
                    "message": {"type": "string", "maxLength": MAX_TEXT_LENGTH},
                    "anonymous": {"type": "boolean"},
                    "payment_method_id": {
                        **_ID,
                        "description": "One of your saved cards; your default card when left out.",
                    },
                    "shares": {**_COUNT, "description": "Equity: whole shares instead of amount."},
                },
            },
            "PledgeChange": {
                "type": "object",
                "additionalProperties": False,
                "description": "Reward pledges only; fields left out keep their values.",
                "properties": {
                    "tier_id": {"anyOf": [_ID, {"type": "null"}], "description": "null: no reward."},
                    "quantity": _COUNT,
                    "amount": _MONEY_REF,
                    "extra": _MONEY_REF,
                    "shipping_address": {"type": "string", "maxLength": MAX_TEXT_LENGTH},
                    "payment_method_id": _ID,
                },
            },
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"enum": list(ERROR_CODES), "description": _ERROR_CODES_DESCRIPTION},
                            "message": {"type": "string", "description": "Fit to show to a person."},
                            "field": {"type": "string", "description": "The input the message is about."},
                        },
                    }
                },
            },
        },
    },
    "paths": {
        "/ping": {
            "get": {
                "summary": "Liveness check (no database access).",
                "responses": {"200": _json({"type": "object", "properties": {"ok": {"const": True}}}, "Up.")},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document.",
                "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
            }
        },
        "/campaigns": {
            "get": {
                "summary": "List public campaigns with their tiers and totals.",
                "parameters": [
                    {"name": "kind", "in": "query", "schema": {"enum": _KINDS}},
                    {
                        "name": "category",
                        "in": "query",
                        "schema": {"enum": [category.value for category in HealthCategory]},
                    },
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"enum": list(STATUSES), "default": next(iter(STATUSES))},
                    },
                    {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": MAX_QUERY_LENGTH}},
                    {
                        "name": "sort",
                        "in": "query",
                        "schema": {"enum": list(SORTS), "default": next(iter(SORTS))},
                    },
                    {
                        "name": "page",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1},
                    },
                    {
                        "name": "per_page",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                    },
                ],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/CampaignList"}, "One page of campaigns."),
                    **_errors(422),
                },
            }
        },
        "/campaigns/{ref}": {
            "get": {
                "summary": "One public campaign by id or slug.",
                "parameters": [{"name": "ref", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Campaign"}, "The campaign."),
                    **_errors(404),
                },
            }
        },
        "/pledges": {
            "get": {
                "summary": "Your pledges, newest first.",
                "security": _SECURED,
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "pledges": {"type": "array", "items": {"$ref": "#/components/schemas/Pledge"}}
                            },
                        },
                        "Your pledges.",
                    ),
                    **_errors(401),
                },
            },
            "post": {
                "summary": "Pledge to a campaign.",
                "description": "Send an `Idempotency-Key` header to make retries safe: the same key "
                "returns the pledge the first request made, and no second pledge is created.",
                "security": _SECURED,
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "schema": {"type": "string", "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/PledgeCreate"}}
                    },
                },
                "responses": {
                    "201": _json({"$ref": "#/components/schemas/Pledge"}, "The pledge."),
                    **_errors(400, 401, 402, 403, 404, 409, 422),
                },
            },
        },
        "/pledges/{pledge_id}": {
            "get": {
                "summary": "One of your pledges.",
                "security": _SECURED,
                "parameters": [_PLEDGE_ID],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Pledge"}, "The pledge."),
                    **_errors(401, 404),
                },
            },
            "patch": {
                "summary": "Change a reward pledge (tier, quantity, extra, address).",
                "security": _SECURED,
                "parameters": [_PLEDGE_ID],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/PledgeChange"}}
                    },
                },
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Pledge"}, "The changed pledge."),
                    **_errors(400, 401, 403, 404, 409, 422),
                },
            },
        },
        "/pledges/{pledge_id}/cancel": {
            "post": {
                "summary": "Cancel one of your pledges (within the cancellation rules).",
                "security": _SECURED,
                "parameters": [_PLEDGE_ID],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Pledge"}, "The cancelled pledge."),
                    **_errors(401, 404, 409),
                },
            }
        },
    },
}


def openapi_document() -> dict[str, Any]:
    """A copy of the document (callers may change theirs freely)."""
    return deepcopy(DOCUMENT)
