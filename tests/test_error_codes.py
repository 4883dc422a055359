"""The error codes are one registry (`ErrorCode`); the OpenAPI document and the README follow it."""

from __future__ import annotations

import re

from crowdfund.config import BASE_DIR
from crowdfund.errors import ErrorCode, markdown_table

START, END = "<!-- error-codes:start -->", "<!-- error-codes:end -->"


def test_readme_table_is_the_registry():
    readme = (BASE_DIR / "README.md").read_text(encoding="utf-8")
    assert START in readme and END in readme, "README.md lost its error-codes markers"
    section = readme.split(START, 1)[1].split(END, 1)[0]
    assert section.strip() == markdown_table().strip(), (
        "README's error codes differ from crowdfund.errors.ErrorCode: paste "
        "crowdfund.errors.markdown_table() between the markers"
    )


def test_markdown_table_has_every_code_with_its_status():
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", markdown_table(), flags=re.MULTILINE)
    assert rows == [(code.value, str(code.status)) for code in ErrorCode]


def test_openapi_lists_every_registered_code_with_its_status(client):
    error = client.get("/api/v1/openapi.json").json["components"]["schemas"]["Error"]
    code = error["properties"]["error"]["properties"]["code"]
    assert code["enum"] == [c.value for c in ErrorCode]
    for member in ErrorCode:
        assert f"- `{member.value}` — {member.status}: " in code["description"]


def test_every_code_the_api_answers_with_is_registered(db, client):
    """Codes the API produces for its own errors (auth, routing, bad JSON) are in the registry."""
    answers = [
        client.get("/api/v1/pledges"),
        client.get("/api/v1/nothing-here"),
        client.open("/api/v1/campaigns", method="DELETE"),
        client.post("/api/v1/pledges", data="{", headers={"Authorization": "Bearer hf_x"}),
        client.get("/api/v1/campaigns", query_string={"per_page": "0"}),
    ]
    codes = [r.json["error"]["code"] for r in answers]
    assert codes == ["unauthorized", "not_found", "method_not_allowed", "unauthorized", "validation_error"]
    for r in answers:
        assert ErrorCode(r.json["error"]["code"]).status == r.status_code
