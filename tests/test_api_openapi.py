"""The OpenAPI document describes exactly the routes the API blueprint serves."""

from __future__ import annotations

import re

from crowdfund.api.openapi import ERROR_CODES

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def _served_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("api."):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule).removeprefix("/api/v1")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method.lower()))
    return routes


def _documented_routes(doc) -> set[tuple[str, str]]:
    return {
        (path, method) for path, item in doc["paths"].items() for method in item if method in HTTP_METHODS
    }


def test_document_is_served_and_is_openapi_3_1(client):
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    assert r.json["openapi"].startswith("3.1")
    assert {"Campaign", "Tier", "Money", "Pledge", "Error"} <= set(r.json["components"]["schemas"])


def test_every_route_is_documented_and_every_documented_route_exists(app, client):
    doc = client.get("/api/v1/openapi.json").json
    served = _served_routes(app)
    assert len(served) >= 9
    assert _documented_routes(doc) == served


def test_error_schema_lists_the_stable_codes(client):
    doc = client.get("/api/v1/openapi.json").json
    codes = doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
    assert codes == list(ERROR_CODES)
    for code in (
        "sold_out",
        "limit_exceeded",
        "campaign_closed",
        "campaign_not_open",
        "validation_error",
        "cancellation_closed",
        "unauthorized",
        "not_found",
        "bad_json",
    ):
        assert code in codes


def test_every_ref_resolves(client):
    doc = client.get("/api/v1/openapi.json").json
    refs = set(re.findall(r'"\$ref": "#/components/schemas/(\w+)"', str(doc).replace("'", '"')))
    assert refs
    assert refs <= set(doc["components"]["schemas"])


def test_secured_operations_declare_bearer(client):
    doc = client.get("/api/v1/openapi.json").json
    assert doc["components"]["securitySchemes"]["bearerToken"]["scheme"] == "bearer"
    for path, item in doc["paths"].items():
        if path.startswith("/pledges"):
            for method, op in item.items():
                assert op["security"] == [{"bearerToken": []}], (path, method)
                assert "401" in op["responses"]
