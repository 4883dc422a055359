"""Nothing a client sends to the API produces a 500: generated bodies, headers and paths."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crowdfund.campaigns.models import CampaignKind
from tests.factories import make_campaign, make_user
from tests.factories.api import bearer, make_token
from tests.factories.payments import add_card

API = "/api/v1"
FIELDS = [
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
    "other",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2, 3, -1, 2**31, 2**63, 10**15, 10**16]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["CNY", "USD", "xxx", "", "\x00", "300.00", "-1"]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(["amount", "currency", "display", "x"]), children, max_size=3),
    ),
    max_leaves=6,
)
bodies = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


#: The fixtures live for the whole test, across examples: set up once per app.
_CONTEXT: dict[int, tuple[dict[str, str], list[int]]] = {}


def _setup() -> tuple[dict[str, str], list[int]]:
    user = make_user()
    add_card(user)
    campaign_ids = [make_campaign(kind).id for kind in CampaignKind]
    return bearer(make_token(user)), campaign_ids


def _assert_json_error_or_success(r) -> None:
    assert r.status_code < 500, r.get_data(as_text=True)
    if r.status_code >= 400:
        assert isinstance(r.json["error"]["code"], str)


@FUZZ
@given(body=bodies, pick=st.integers(min_value=0, max_value=3))
def test_generated_pledge_bodies_never_give_a_500(db, client, body, pick):
    key = id(client.application)
    if key not in _CONTEXT:
        _CONTEXT.clear()
        _CONTEXT[key] = _setup()
    headers, campaign_ids = _CONTEXT[key]
    campaign_id = campaign_ids[pick]
    body = {"campaign": campaign_id, **body} if "campaign" not in body and pick % 2 else body
    r = client.post(
        f"{API}/pledges", data=json.dumps(body), headers={**headers, "Content-Type": "application/json"}
    )
    _assert_json_error_or_success(r)
    if r.status_code == 201:
        pid = r.json["id"]
        _assert_json_error_or_success(client.patch(f"{API}/pledges/{pid}", json=body, headers=headers))
        _assert_json_error_or_success(client.post(f"{API}/pledges/{pid}/cancel", headers=headers))


@FUZZ
@given(
    path=st.text(max_size=40),
    query=st.dictionaries(
        st.sampled_from(["kind", "category", "status", "page", "per_page", "q", "sort"]),
        st.text(max_size=20),
        max_size=4,
    ),
)
def test_generated_campaign_paths_and_queries_never_give_a_500(db, client, path, query):
    _assert_json_error_or_success(client.get(f"{API}/campaigns", query_string=query))
    _assert_json_error_or_success(client.get(f"{API}/campaigns/{path.replace('/', '').replace('?', '')}"))


@FUZZ
@given(
    authorization=st.text(max_size=120), key=st.text(alphabet=st.characters(max_codepoint=255), max_size=120)
)
def test_generated_headers_never_give_a_500(db, client, authorization, key):
    try:
        headers = {"Authorization": authorization, "Idempotency-Key": key}
        r = client.post(f"{API}/pledges", json={"campaign": 1}, headers=headers)
    except ValueError:  # the test client itself refuses header values with newlines
        return
    _assert_json_error_or_success(r)
