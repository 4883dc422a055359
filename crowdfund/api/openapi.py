"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json.

Written by hand, next to the views it describes; a test checks that every route of the
`api` blueprint is here and that nothing here is missing from the blueprint.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

#: Every `error.code` the API returns. Clients may branch on these; they do not change.
ERROR_CODES: dict[str, str] = {
    "validation_error": "422: a field is missing, of the wrong type or out of range (see `field`).",
    "bad_json": "400: the body is not JSON.",
    "invalid_tier": "422: the tier is not one of this campaign's rewards.",
    "wrong_currency": "422: the amount is not in the campaign's currency.",
    "below_minimum": "422: less than the campaign's minimum investment or loan share.",
    "investor_profile_required": "422: state income, net worth and accreditation on the website first.",
    "unauthorized": "401: no token, an unknown token or a revoked one.",
    "forbidden": "403: the caller may not do this.",
    "not_found": "404: no such campaign, or no such pledge of the caller's.",
    "method_not_allowed": "405: the path exists but not with this method.",
    "sold_out": "409: the reward tier has no units left (for this quantity).",
    "limit_exceeded": "409: the investment would pass the investor's 12-month limit.",
    "over_maximum": "409: the pledge would pass the campaign's maximum (oversubscription cap, patient-aid cap).",
    "campaign_not_open": "409: the campaign is not open for pledges (not live yet, suspended, or not started).",
    "campaign_closed": "409: the campaign has ended.",
    "cancellation_closed": "409: the pledge can no longer be cancelled (past the cancellation deadline).",
    "not_changeable": "409: the pledge cannot be changed (not a reward pledge, or no longer active).",
    "idempotency_conflict": "409: the Idempotency-Key was already used for a pledge to another campaign.",
    "conflict": "409: the current state refuses the request.",
    "payment_method_required": "422: save a card on the website first (Account → Payment methods).",
    "payment_declined": "402: the card was declined; the message says what to do.",
    "internal_error": "500: a bug on our side; never the answer to bad input.",
}

_MONEY_REF = {"$ref": "#/components/schemas/Money"}
_ERROR_RESPONSE = {
    "description": "An error; `error.code` says which.",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _ERROR_RESPONSE for s in statuses}


_PLEDGE_ID = {
    "name": "pledge_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}
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
                    "amount": {"type": "integer", "description": "Minor units (fen, cents)."},
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
                    "kind": {"enum": ["reward", "equity", "debt", "donation"]},
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
                    "kind": {"enum": ["reward", "equity", "debt", "donation"]},
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
                    "campaign": {"type": ["integer", "string"], "description": "The campaign's id or slug."},
                    "campaign_id": {"type": "integer"},
                    "tier_id": {"type": "integer", "minimum": 1},
                    "quantity": {"type": "integer", "minimum": 1, "default": 1},
                    "amount": _MONEY_REF,
                    "extra": _MONEY_REF,
                    "shipping_address": {"type": "string", "maxLength": 2000},
                    "risk_acknowledged": {"type": "boolean"},
                    "message": {"type": "string", "maxLength": 2000},
                    "anonymous": {"type": "boolean"},
                    "payment_method_id": {
                        "type": "integer",
                        "description": "One of your saved cards; your default card when left out.",
                    },
                    "shares": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "Equity: whole shares instead of amount.",
                    },
                },
            },
            "PledgeChange": {
                "type": "object",
                "additionalProperties": False,
                "description": "Reward pledges only; fields left out keep their values.",
                "properties": {
                    "tier_id": {"type": ["integer", "null"]},
                    "quantity": {"type": "integer", "minimum": 1},
                    "amount": _MONEY_REF,
                    "extra": _MONEY_REF,
                    "shipping_address": {"type": "string", "maxLength": 2000},
                    "payment_method_id": {"type": "integer"},
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
                            "code": {"enum": list(ERROR_CODES)},
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
                    {
                        "name": "kind",
                        "in": "query",
                        "schema": {"enum": ["reward", "equity", "debt", "donation"]},
                    },
                    {"name": "category", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"enum": ["live", "funded", "closed", "all"], "default": "live"},
                    },
                    {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 100}},
                    {
                        "name": "sort",
                        "in": "query",
                        "schema": {"enum": ["newest", "ending", "funded", "backers"], "default": "newest"},
                    },
                    {
                        "name": "page",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "default": 1},
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
                        "schema": {"type": "string", "maxLength": 96},
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
