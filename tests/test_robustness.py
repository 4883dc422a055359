"""Nothing a user types gives a 500: every URL, every method, garbage everywhere.

For each role (anonymous, backer, campaigner with drafts of each kind, operator) and every
rule in `app.url_map`, the URL parameters are filled with real ids (the user's own and
other users'), 0, huge numbers, words, long strings, unicode and NUL bytes; then garbage
query strings and form bodies are sent (empty, 100k characters, NUL bytes, unicode,
negative and huge numbers, duplicated keys, unknown choices, impossible dates, odd
amounts). Forms that a user fills in are also sent valid with one field at a time
replaced by garbage, so the garbage reaches the services. CSRF protection is on and every
post carries a valid token. No response may be a 5xx, and nothing may raise.
"""

from __future__ import annotations

import re
import traceback
from collections import Counter
from collections.abc import Iterable, Iterator
from urllib.parse import quote, urlsplit

import pytest
from flask import url_for
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict
from wtforms.fields.core import UnboundField

from crowdfund.accounts.models import User
from crowdfund.campaigns import service as campaigns
from crowdfund.campaigns.forms import TierForm
from crowdfund.campaigns.models import CampaignKind
from crowdfund.campaigns.service import TERM_FIELDS
from crowdfund.engine import service as engine
from crowdfund.errors import ValidationError
from crowdfund.extensions import db
from crowdfund.money import Money
from crowdfund.web.converters import MAX_ID, parse_id
from tests.factories import login, make_campaign, make_user
from tests.factories.accounts import campaigner
from tests.factories.campaigns import TIER_FORM, edit_form
from tests.factories.engine import make_backer, make_investor
from tests.factories.payments import VISA
from tests.robustness_world import World, build_world, csrf_client, forget_csrf_token

ROLES = ("anonymous", "backer", "campaigner", "operator")

#: What goes into form fields and query strings.
GARBAGE: tuple[str, ...] = (
    "",
    " ",
    "x" * 100_000,
    "\x00",
    "a\x00b",
    "\u00fc\u00f1\u00ee\u00e7\u00f8d\u00e9 \u6f22\u5b57 \U0001f600",
    "\u202e\u200b\ufeff",
    "-1",
    "0",
    "-0",
    "1e309",
    "NaN",
    "Infinity",
    "\u00a5\u00a5",
    "\u00b2",
    "\uff11\uff12",
    "\u0661\u0662\u0663",
    "1_000",
    "0.001",
    "1,000,000,000,000,000,000",
    str(2**31),
    str(2**63),
    "9" * 400,
    "-9223372036854775809",
    "2026-02-30",
    "2026-02-30T10:00",
    "9999-12-31T23:59",
    "9999-12-31",
    "0001-01-01T00:00",
    "0001-01-01",
    "abc",
    "unknown_kind",
    "y",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "/\r\nSet-Cookie: x=1",
    "//evil.example/",
    "%00",
)
#: The shorter list used when one field of a valid form is replaced at a time.
FIELD_GARBAGE: tuple[str, ...] = (
    "",
    "\u00b2" * 16,
    "\u0661" * 16,
    "x" * 100_000,
    "a\x00b",
    "\u00fc\u00f1\u00ee\u00e7\u00f8d\u00e9 \U0001f600",
    "-1",
    "-0",
    "1e309",
    "NaN",
    "\u00a5\u00a5",
    str(2**31),
    "9" * 400,
    "2026-02-30T10:00",
    "9999-12-31T23:59",
    "0001-01-01T00:00",
    "9999-12-31",
    "abc",
)
#: Query-string names the pages read.
QUERY_NAMES = (
    "page",
    "kind",
    "category",
    "status",
    "q",
    "sort",
    "next",
    "tier",
    "after",
    "key",
    "purpose",
    "v",
)

#: Query strings sent with valid forms: redirect targets a hostile link could carry.
NEXT_QUERIES = tuple(
    "next=" + quote(target, safe="")
    for target in (
        "/\r\nSet-Cookie: x=1",
        "/\t/evil.example",
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/",
        "/\u00fc\u00f1\u00ee \U0001f600",
        "/" + "x" * 5000,
        "/a\x00b",
    )
)
#: Pages whose success replaces the session.
SESSION_CHANGERS = ("/logout", "/account/password", "/login", "/register")
#: Endpoints whose success ends the session or destroys what later requests use: sent last.
LAST = (
    "payments.remove_method",
    "tokens.revoke",
    "engine.cancel",
    "api.cancel_pledge",
    "campaigns.delete_tier",
    "campaigns.remove_cover",
    "campaigns.submit",
    "accounts.password",
    "accounts.logout",
)


def _form_field_names() -> list[str]:
    """Every field name of every form in the app (with the review forms' prefixes)."""
    names: set[str] = set()
    pending = list(FlaskForm.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        for klass in cls.__mro__:
            names.update(k for k, v in vars(klass).items() if isinstance(v, UnboundField))
    for prefix, field in (("approve", "comment"), ("changes", "comment"), ("reject", "reason")):
        names.add(f"{prefix}-{field}")
    return sorted(names)


FIELD_NAMES = _form_field_names()


# ---------------------------------------------------------------------------
# URL parameters
# ---------------------------------------------------------------------------

BAD_IDS = ("0", str(2**31), str(2**63), "9" * 40, "9" * 5000, "-1", "abc", "\uff11", "%00")
BAD_STRINGS = (
    "abc",
    "x" * 3000,
    "\u00fc\u00f1\u00ee \u6f22\u5b57 \U0001f600",
    "%00",
    "a%00b",
    "..%2F..%2Fetc%2Fpasswd",
)


def _own_and_other_ids(world: World, role: str, param: str) -> list[str]:
    """Real ids for `param`: the role's own objects first, then other users'."""
    w = world
    own_party = w.party(role)
    ids: dict[str, list[int]] = {
        "method_id": [w.backer.card.id, w.rival.card.id],
        "token_id": [w.backer.token_id, w.rival.token_id],
        "pledge_id": [p.id for p in w.backer.pledges] + [w.donor.pledges[0].id],
        "org_id": [w.campaigner.org.id, w.rival.org.id],
        "campaign_id": [c.id for c in w.campaigner.drafts.values()]
        + [w.campaigner.live[CampaignKind.REWARD].id, w.rival.drafts[CampaignKind.REWARD].id, w.submitted.id],
        "tier_id": [
            w.campaigner.drafts[CampaignKind.REWARD].tiers[0].id,
            w.rival.drafts[CampaignKind.REWARD].tiers[0].id,
        ],
        "account_id": [w.ledger_account_id],
        "txn_id": [w.ledger_txn_id],
    }
    if own_party is not None and param == "method_id" and own_party.card:
        ids["method_id"].insert(0, own_party.card.id)
    if own_party is not None and param == "token_id" and own_party.token_id:
        ids["token_id"].insert(0, own_party.token_id)
    return [str(i) for i in dict.fromkeys(ids.get(param, []))]


def _string_values(world: World, param: str) -> list[str]:
    w = world
    if param == "slug":
        return [c.slug for c in w.campaigner.live.values()] + [
            w.campaigner.drafts[CampaignKind.REWARD].slug,
            w.rival.drafts[CampaignKind.REWARD].slug,
        ]
    if param == "ref":
        live = w.campaigner.live[CampaignKind.REWARD]
        return [str(live.id), live.slug, str(w.rival.drafts[CampaignKind.REWARD].id), "0", str(2**63)]
    if param == "name":
        return [w.cover_name]
    if param == "decision":
        return ["approve", "changes", "reject"]
    if param == "filename":
        return ["css/bootstrap.min.css", "..%2F..%2Fconfig.py", "a%00b"]
    return []


_PARAM = re.compile(r"<(?:(?P<conv>[a-z]+)(?:\([^)]*\))?:)?(?P<name>[a-z_]+)>")


def _fill(rule: str, values: dict[str, str]) -> str:
    return _PARAM.sub(lambda m: values[m.group("name")], rule)


def url_variants(world: World, role: str, rule) -> Iterator[tuple[str, str]]:
    """(url, depth) for a rule: its first real object ("full": every garbage body and query),
    the other real objects ("light": a few), then each parameter garbled in turn ("bad")."""
    params = [(m.group("name"), m.group("conv") or "default") for m in _PARAM.finditer(rule.rule)]
    if not params:
        yield rule.rule, "full"
        return
    real: dict[str, list[str]] = {}
    for name, conv in params:
        real[name] = (
            _own_and_other_ids(world, role, name) if conv == "int" else _string_values(world, name)
        ) or ["1"]
    # Every combination of real values (small: at most a few per parameter).
    combos: list[dict[str, str]] = [{}]
    for name, _ in params:
        combos = [{**c, name: quote(v, safe="/%")} for c in combos for v in real[name]]
    for i, combo in enumerate(combos):
        yield _fill(rule.rule, combo), "full" if i == 0 else "light"
    base = {name: quote(real[name][0], safe="/%") for name, _ in params}
    for name, conv in params:
        for bad in BAD_IDS if conv == "int" else BAD_STRINGS:
            yield _fill(rule.rule, {**base, name: quote(bad, safe="%")}), "bad"


# ---------------------------------------------------------------------------
# Bodies
# ---------------------------------------------------------------------------


def garbage_bodies() -> Iterator[tuple[str, MultiDict]]:
    """(what it is, body): every field the same garbage, then every field several times."""
    for value in GARBAGE:
        yield f"all fields={value[:20]!r}", MultiDict([(name, value) for name in FIELD_NAMES])
    yield (
        "duplicated keys",
        MultiDict([(name, v) for name in FIELD_NAMES for v in ("1", "-1", "\x00", "abc")]),
    )


def garbage_queries() -> Iterator[str]:
    for value in GARBAGE:
        if len(value) > 5000:
            value = value[:5000]
        yield "&".join(f"{n}={quote(value, safe='')}" for n in QUERY_NAMES)
    yield "&".join(f"{n}=1&{n}=abc&{n}=%00" for n in QUERY_NAMES)
    yield "page=%FF%FE&q=%C0%80&next=%E2%80%AE"  # bytes that are not UTF-8


def valid_forms(world: World, role: str) -> dict[str, list[tuple[str, dict[str, str]]]]:
    """For each endpoint: (url, a form that would pass) to garble one field at a time."""
    w = world
    c = w.campaigner
    reward_draft = c.drafts[CampaignKind.REWARD]
    tier = reward_draft.tiers[0]
    live = c.live
    forms: dict[str, list[tuple[str, dict[str, str]]]] = {
        "accounts.register": [
            (
                "/register",
                {"name": "Ada", "email": "ada@example.org", "password": "x" * 12, "confirm": "x" * 12},
            )
        ],
        "accounts.login": [("/login", {"email": "named.donor@example.org", "password": "wrong password"})],
        "tokens.create": [("/account/tokens", {"name": "my script"})],
        "engine.investor_profile": [
            (
                "/account/investor",
                {"currency": "USD", "annual_income": "100,000", "net_worth": "50,000", "accredited": "y"},
            )
        ],
        "payments.add_method": [
            ("/account/payment-methods/new", {"number": VISA, "expiry": "12/39", "cvc": "123", "name": "Ada"})
        ],
    }
    if role == "backer":
        card = str(w.backer.card.id)
        reward_slug = live[CampaignKind.REWARD].slug
        pledge_forms = {
            CampaignKind.REWARD: {
                "tier": str(live[CampaignKind.REWARD].tiers[0].id),
                "quantity": "1",
                "extra": "5",
                "shipping_address": "1 Road",
            },
            CampaignKind.EQUITY: {"shares": "10", "risk": "y"},
            CampaignKind.DEBT: {"amount": "500", "risk": "y"},
            CampaignKind.DONATION: {"amount": "50", "message": "Hello", "anonymous": "y"},
        }
        for step in ("review", "confirm"):
            forms[f"engine.{step}"] = [
                (f"/campaigns/{live[k].slug}/back/{step}", {**f, "payment_method_id": card, "token": ""})
                for k, f in pledge_forms.items()
            ]
        forms["engine.back"] = [(f"/campaigns/{reward_slug}/back", pledge_forms[CampaignKind.REWARD])]
        forms["engine.change"] = [
            (
                f"/pledges/{w.backer.pledges[0].id}/change",
                {"tier": "none", "amount": "300", "quantity": "1", "payment_method_id": card},
            )
        ]
    if role == "campaigner":
        forms["campaigns.new"] = [
            (
                "/campaigns/new",
                {
                    "organisation": str(c.org.id),
                    "kind": "reward",
                    "title": "New idea",
                    "category": "medical_devices",
                    "currency": "CNY",
                    "goal": "10,000",
                },
            )
        ]
        # The shared fields on the reward draft; the kind's own terms on each other kind.
        forms["campaigns.edit"] = [(f"/studio/{reward_draft.id}", edit_form(CampaignKind.REWARD))] + [
            (f"/studio/{d.id}", {"only": ",".join(TERM_FIELDS[k]), **edit_form(k)})
            for k, d in c.drafts.items()
            if k is not CampaignKind.REWARD
        ]
        forms["campaigns.add_tier"] = [(f"/studio/{reward_draft.id}/tiers", TIER_FORM)]
        forms["campaigns.edit_tier"] = [(f"/studio/{reward_draft.id}/tiers/{tier.id}", TIER_FORM)]
        org_form = {
            "type": "clinic",
            "legal_name": "Carla Health Ltd",
            "registration_number": "91310000MA1234567X",
            "country": "CN",
            "website": "https://example.org",
            "description": "We heal.",
        }
        forms["accounts.organisation_new"] = [("/organisations/new", org_form)]
        forms["accounts.organisation_edit"] = [(f"/organisations/{c.org.id}/edit", org_form)]
        forms["payments.payouts"] = [
            (f"/organisations/{c.org.id}/payouts", {"bank_name": "Bank", "account_number": "12345678"})
        ]
        forms["campaigns.submit"] = [(f"/studio/{c.drafts[CampaignKind.DEBT].id}/submit", {"note": "Please"})]
    if role == "operator":
        forms["review.decide"] = [
            (f"/operator/review/{w.submitted.id}/changes", {"changes-comment": "Fix the story."}),
            (f"/operator/review/{w.submitted.id}/reject", {"reject-reason": "No."}),
        ]
        forms["accounts.organisation_verify"] = [
            (f"/organisations/{c.org.id}/verification", {"status": "verified"})
        ]
    return forms


def one_field_garbled(form: dict[str, str]) -> Iterator[tuple[str, MultiDict]]:
    """(what was garbled, body) for each field of a valid form and each garbage value
    (only the fields named in its "only" entry, when it has one)."""
    form = dict(form)
    only = form.pop("only", "")
    for name in only.split(",") if only else list(form):
        for value in FIELD_GARBAGE:
            yield (
                f"{name}={value[:20]!r}",
                MultiDict([(k, value if k == name else v) for k, v in form.items()]),
            )
        # The same field twice: a valid value, then garbage.
        yield f"{name} twice", MultiDict([*form.items(), (name, "\x00")])


# ---------------------------------------------------------------------------
# Driving requests
# ---------------------------------------------------------------------------


class Probe:
    """Sends requests and keeps every 5xx or exception."""

    def __init__(self, app, world: World, role: str):
        self.app = app
        self.world = world
        self.role = role
        party = world.party(role)
        self.user = party.user if party else None
        self.api_headers = {"Authorization": f"Bearer {party.token_secret}"} if party else {}
        self.failures: list[str] = []
        self.statuses: Counter[int] = Counter()
        self.count = 0
        self.relogin()

    def relogin(self) -> None:
        self.client, self.token = csrf_client(self.app, self.user)

    def send(
        self, method: str, url: str, data=None, query: str = "", json_body: str | None = None, note: str = ""
    ) -> None:
        self.count += 1
        target = f"{url}?{query}" if query else url
        kwargs: dict = {}
        if url.startswith("/api/"):
            kwargs["headers"] = self.api_headers
            if json_body is not None:
                kwargs["data"] = json_body
                kwargs["content_type"] = "application/json"
        elif data is not None:
            # The current session's token: a relogin after a failure makes a new one.
            data = MultiDict(data)
            data.setlist("csrf_token", [self.token])
            kwargs["data"] = data
        forget_csrf_token()
        try:
            response = self.client.open(target, method=method, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the point is to report it
            db.session.rollback()
            frames = traceback.extract_tb(exc.__traceback__)
            where = next(
                (
                    f"{f.filename.split('/work/main/')[-1]}:{f.lineno}"
                    for f in reversed(frames)
                    if "crowdfund" in f.filename
                ),
                "?",
            )
            self.failures.append(
                f"{method} {target[:120]!r} {note} -> {type(exc).__name__}: {str(exc)[:160]} at {where}"
            )
            self.relogin()
            return
        self.statuses[response.status_code] += 1
        if response.status_code >= 500:
            self.failures.append(f"{method} {target[:120]!r} {note} -> {response.status_code}")
        location = response.headers.get("Location", "")
        if urlsplit(location).netloc not in ("", "localhost") or location.replace("\\", "/").startswith("//"):
            self.failures.append(
                f"{method} {target[:120]!r} {note} -> redirect off the site: {location[:80]}"
            )
        # A request that ended the session (logging out, a new password, a new login):
        # start again as the same user.
        if url in SESSION_CHANGERS or (
            self.user is not None and "/login" in response.headers.get("Location", "")
        ):
            self.relogin()


JSON_BODIES = (
    "",
    "null",
    "[]",
    '{"campaign": "live-reward", "tier_id": 1, "quantity": 1}',
    '{"campaign_id": 9223372036854775808, "amount": {"amount": 1e309, "currency": "CNY"}}',
    '{"campaign": "\\u0000", "message": "\\u0000"}',
    '{"amount": {"amount": -1, "currency": "\u00a5\u00a5"}, "tier_id": "abc"}',
    '{"tier_id": null, "amount": {"amount": 100, "currency": "CNY"}, "quantity": 99999999999999999999}',
    "x" * 100_000,
    '{"a": ' * 5000,
)


def _methods(rule) -> list[str]:
    return sorted(rule.methods - {"HEAD", "OPTIONS"})


def _rules(app) -> list:
    rules = [r for r in app.url_map.iter_rules()]
    return sorted(
        rules, key=lambda r: (r.endpoint in LAST, LAST.index(r.endpoint) if r.endpoint in LAST else 0, r.rule)
    )


def _run(app, world: World, role: str) -> Probe:
    probe = Probe(app, world, role)
    forms = valid_forms(world, role)
    for rule in _rules(app):
        if rule.endpoint in ("static", "bootstrap.static"):
            for filename in ("css/bootstrap.min.css", "..%2F..%2Fcrowdfund%2Fconfig.py", "a%00b", "x" * 3000):
                probe.send("GET", rule.rule.replace("<path:filename>", filename))
            continue
        for url, depth in url_variants(world, role, rule):
            take = {"full": None, "light": 3, "bad": 0}[depth]
            for method in _methods(rule):
                if url.startswith("/api/"):
                    bodies: Iterable = JSON_BODIES if method != "GET" else ("",)
                    for body in list(bodies)[:take] if take is not None else bodies:
                        probe.send(method, url, json_body=body)
                    continue
                if method == "GET":
                    probe.send("GET", url)
                    for query in list(garbage_queries())[:take]:
                        probe.send("GET", url, query=query)
                else:
                    probe.send(method, url, data=MultiDict(), note="empty form")
                    for note, body in list(garbage_bodies())[:take]:
                        probe.send(method, url, data=body, note=note)
        for url, form in forms.get(rule.endpoint, []):
            for note, body in one_field_garbled(form):
                probe.send("POST", url, data=body, note=note)
            # The valid form with a hostile query string (where to go next, and the rest).
            clean = MultiDict([(k, v) for k, v in form.items() if k != "only"])
            for query in NEXT_QUERIES:
                probe.send("POST", url, data=clean, query=query, note="valid form")
    return probe


@pytest.fixture
def csrf_app(app_config, request):
    """The app with CSRF protection switched on, as in every real configuration."""
    app_config.WTF_CSRF_ENABLED = True
    return request.getfixturevalue("app")


@pytest.mark.parametrize("role", ROLES)
def test_no_request_gives_a_server_error(csrf_app, role):
    world = build_world()
    probe = _run(csrf_app, world, role)
    assert probe.count > 1000  # the sweep really ran
    if role != "anonymous":  # forms were processed, not all refused by CSRF protection
        assert probe.statuses[422] > 100 and probe.statuses[200] > 100
    unique = list(dict.fromkeys(probe.failures))
    assert not unique, f"{len(unique)} requests failed as {role}:\n" + "\n".join(unique[:60])


# ---------------------------------------------------------------------------
# The fixes the sweep led to, one by one
# ---------------------------------------------------------------------------


def test_ids_in_urls_are_ascii_and_fit_an_integer_column(app, client):
    login(client, make_user())
    for ident in (str(MAX_ID + 1), str(2**63), "9" * 5000, "\uff11", "\u0661", "-1"):
        assert client.get(f"/studio/{quote(ident)}").status_code == 404, ident
        assert client.post(f"/pledges/{quote(ident)}/cancel").status_code == 404, ident
    assert url_for("campaigns.edit", campaign_id=MAX_ID).endswith(f"/studio/{MAX_ID}")
    assert [parse_id(v) for v in ("12", " 7 ", "0", str(MAX_ID))] == [12, 7, 0, MAX_ID]
    assert [parse_id(v) for v in ("", None, "\u00b2", "\u0661\u0662", "1_0", str(MAX_ID + 1), "-3")] == [
        None
    ] * 7


def test_whole_number_fields_refuse_what_int_would_misread(app):
    with app.test_request_context(method="POST"):
        for typed in ("9" * 400, "\u0661\u0662", "1_000", "\u00b2", "1e3", "12345678901"):
            form = TierForm(
                formdata=MultiDict({"title": "T", "price": "1", "quantity_limit": typed}),
                meta={"csrf": False},
            )
            assert not form.validate() and form.quantity_limit.errors, typed
        ok = TierForm(
            formdata=MultiDict({"title": "T", "price": "1", "quantity_limit": " 25 "}), meta={"csrf": False}
        )
        assert ok.validate() and ok.quantity_limit.data == 25


def test_a_nul_character_in_any_posted_form_is_a_clear_400(app, client):
    for data in (
        {"name": "Ada\x00", "email": "a@example.org", "password": "x" * 12, "confirm": "x" * 12},
        {"na\x00me": "Ada"},
    ):
        response = client.post("/register", data=data)
        assert response.status_code == 400
        assert "NUL character" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count(User.id))) == 0
    assert client.get("/campaigns?q=%00").status_code == 200  # query strings are read leniently


def test_services_refuse_nul_too(app):
    user, org = campaigner()
    with pytest.raises(ValidationError) as err:
        campaigns.create_draft(
            user,
            org,
            "reward",
            {"title": "a\x00b", "category": "medical_devices", "currency": "CNY", "goal": "5"},
        )
    assert "title" in err.value.errors
    donation = make_campaign(CampaignKind.DONATION)
    backer = make_backer()
    for req in (
        engine.PledgeRequest(amount=Money(500, "CNY"), message="hi\x00"),
        engine.PledgeRequest(amount=Money(500, "CNY"), idempotency_token="t\x00"),
    ):
        with pytest.raises(ValidationError):
            engine.place_pledge(backer, donation.id, req)


def test_too_many_shares_is_a_message_not_a_crash(app, client):
    equity = make_campaign(CampaignKind.EQUITY)
    investor = make_investor()
    with pytest.raises(ValidationError) as err:
        engine.place_pledge(
            investor, equity.id, engine.PledgeRequest(shares=2**31 - 1, risk_acknowledged=True)
        )
    assert err.value.field == "shares" and "too many shares" in err.value.message
    login(client, investor)
    for shares in (str(2**31 - 1), "9" * 400, "\u0661" * 16):
        response = client.post(f"/campaigns/{equity.slug}/back/review", data={"shares": shares, "risk": "y"})
        assert response.status_code == 422, shares


@pytest.mark.parametrize("target", ["/\r\nSet-Cookie: x=1", "/\t/evil.example", "//evil.example", "/\\evil"])
def test_the_investor_profile_never_redirects_off_the_site(app, client, target):
    login(client, make_user())
    response = client.post(
        f"/account/investor?next={quote(target, safe='')}",
        data={"currency": "USD", "annual_income": "1,000", "net_worth": "1,000"},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/account/investor"
