"""The API answers as its OpenAPI document says: a schema-driven fuzzer (schemathesis).

For every operation in /api/v1/openapi.json, schemathesis generates requests from the
document — valid ones and ones that break it (a field of the wrong type, an id past
`MAX_ID`, a search string past `maxLength`) — and sends them to the app in-process (WSGI).
Every answer must be one the document describes: a documented status, JSON of the
documented shape, never a 5xx; invalid input must be refused with a 4xx; a method the
path does not have gets 405 with `Allow`. Requests carry a real token of a user with a
card, and the campaigns of all four kinds exist, so valid requests reach the services.

Bounded: a few examples per operation and mode, no shrinking past a deadline (< 60 s).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from crowdfund.api.openapi import DOCUMENT
from crowdfund.campaigns.models import CampaignKind
from tests.factories import make_campaign, make_user
from tests.factories.api import bearer, make_token
from tests.factories.payments import add_card

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

OPERATIONS = [(method.upper(), path) for path, item in DOCUMENT["paths"].items() for method in item]


def _can_be_broken(method: str, path: str) -> bool:
    """Whether any request to the operation can break its document (not so: no input, any string)."""
    operation = DOCUMENT["paths"][path][method.lower()]
    schemas = [p["schema"] for p in operation.get("parameters", ())]
    return "requestBody" in operation or any(schema != {"type": "string"} for schema in schemas)


BREAKABLE = [(m, p) for m, p in OPERATIONS if _can_be_broken(m, p)]
EXAMPLES = 25
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def api_schema(app):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


@pytest.fixture
def auth_headers(db):
    user = make_user()
    add_card(user)
    for kind in CampaignKind:
        make_campaign(kind)
    return bearer(make_token(user))


def _run(api_schema, auth_headers, method: str, path: str, mode: GenerationMode) -> None:
    operation = api_schema[path][method]
    checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def test(case):
        # Documented security: a valid bearer token unless the case tests the header itself.
        headers = {} if "Authorization" in (case.headers or {}) else auth_headers
        case.call_and_validate(headers=headers, checks=checks)

    test()


@pytest.mark.parametrize("method,path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_valid_requests_get_documented_answers(api_schema, auth_headers, method, path):
    _run(api_schema, auth_headers, method, path, GenerationMode.POSITIVE)


@pytest.mark.parametrize("method,path", BREAKABLE, ids=[f"{m} {p}" for m, p in BREAKABLE])
def test_invalid_requests_are_refused_with_documented_answers(api_schema, auth_headers, method, path):
    _run(api_schema, auth_headers, method, path, GenerationMode.NEGATIVE)


@pytest.mark.parametrize("method", ["TRACE", "PUT", "DELETE", "PATCH"])
def test_methods_a_path_lacks_get_405_with_allow(client, method):
    r = client.open("/api/v1/campaigns", method=method)
    assert r.status_code == 405
    assert set(r.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "OPTIONS"}
    assert r.json["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("method", ["GET", "PATCH", "TRACE"])
@pytest.mark.parametrize("pledge_id", [2**31, 2**31 - 1 + 10**9, 9_999_999_999])
def test_ids_past_max_id_are_not_found_with_any_method(client, auth_headers, method, pledge_id):
    r = client.open(f"/api/v1/pledges/{pledge_id}", method=method, json={}, headers=auth_headers)
    assert r.status_code == 404, r.json
    assert r.json["error"]["code"] == "not_found"


def test_search_longer_than_documented_is_refused(client):
    documented = next(
        p["schema"]["maxLength"]
        for p in DOCUMENT["paths"]["/campaigns"]["get"]["parameters"]
        if p["name"] == "q"
    )
    assert client.get("/api/v1/campaigns", query_string={"q": "x" * documented}).status_code == 200
    r = client.get("/api/v1/campaigns", query_string={"q": "x" * (documented + 1)})
    assert r.status_code == 422
    assert r.json["error"] == {
        "code": "validation_error",
        "field": "q",
        "message": f"q is at most {documented} characters.",
    }


def test_documented_id_bounds_are_max_id():
    from crowdfund.database import MAX_ID

    pledge_id = DOCUMENT["paths"]["/pledges/{pledge_id}"]["get"]["parameters"][0]["schema"]
    assert (pledge_id["minimum"], pledge_id["maximum"]) == (1, MAX_ID)
