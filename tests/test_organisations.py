"""Organisations: create, view, edit, verify; who may see and change what."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from crowdfund.accounts import service
from crowdfund.accounts.models import Membership, Organisation, OrganisationType, Role, VerificationStatus
from crowdfund.errors import Forbidden, NotFound, ValidationError
from tests.factories import login, make_org, make_user

VALID = {
    "type": "clinic",
    "legal_name": "Sunrise Community Clinic Ltd",
    "registration_number": "91310000MA1FL0XX1A",
    "country": "CN",
    "website": "https://sunrise.example.org",
    "description": "A community clinic in Shanghai serving 20,000 patients a year.",
}


def org_count(db) -> int:
    return db.session.execute(select(func.count(Organisation.id))).scalar_one()


def test_create_organisation_makes_the_creator_its_owner(client, db):
    user = make_user()
    login(client, user)
    assert client.get("/organisations/new").status_code == 200
    response = client.post("/organisations/new", data=VALID)
    assert response.status_code == 302
    org = db.session.execute(select(Organisation)).scalar_one()
    assert response.headers["Location"].endswith(f"/organisations/{org.id}")
    assert org.type is OrganisationType.CLINIC
    assert (org.legal_name, org.country, org.website) == (VALID["legal_name"], "CN", VALID["website"])
    assert org.verification_status is VerificationStatus.UNVERIFIED
    assert org.created_by_id == user.id
    membership = db.session.execute(select(Membership)).scalar_one()
    assert (membership.user_id, membership.organisation_id, membership.role) == (user.id, org.id, "owner")
    db.session.refresh(user)
    assert user.is_campaigner

    page = client.get(f"/organisations/{org.id}")
    assert page.status_code == 200
    assert b"Sunrise Community Clinic Ltd" in page.data and b"Unverified" in page.data
    listing = client.get("/organisations")
    assert b"Sunrise Community Clinic Ltd" in listing.data


def test_my_organisations_lists_only_mine(client, db):
    me, other = make_user(), make_user()
    make_org(owner=me, legal_name="Mine Ltd")
    make_org(owner=other, legal_name="Theirs Ltd")
    login(client, me)
    page = client.get("/organisations").data
    assert b"Mine Ltd" in page and b"Theirs Ltd" not in page


def test_website_is_optional(client, db):
    login(client, make_user())
    response = client.post("/organisations/new", data={**VALID, "website": ""})
    assert response.status_code == 302
    assert db.session.execute(select(Organisation.website)).scalar_one() is None


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("type", "pharma_giant", b"Not a valid choice"),
        ("type", "", b"Choose the kind of organisation"),
        ("country", "ZZ", b"Not a valid choice"),
        ("country", "", b"Choose the country"),
        ("website", "javascript:alert(1)", b"full address"),
        ("website", "ftp://files.example.org", b"full address"),
        ("website", "not a url", b"full address"),
        ("legal_name", "   ", b"Enter the legal name"),
        ("registration_number", "", b"Enter the registration number"),
        ("description", "", b"Describe the organisation"),
        ("legal_name", "x" * 201, b"200 characters"),
    ],
)
def test_create_refuses_bad_details(client, db, field, value, message):
    login(client, make_user())
    response = client.post("/organisations/new", data={**VALID, field: value})
    assert response.status_code == 200
    assert message in response.data
    assert org_count(db) == 0


def test_service_checks_the_details_too(app, db):
    user = make_user()
    details = service.OrganisationDetails(**{**VALID, "country": "XX"})
    with pytest.raises(ValidationError) as exc:
        service.create_organisation(user, details)
    assert exc.value.field == "country"
    with pytest.raises(ValidationError):
        service.create_organisation(
            user, service.OrganisationDetails(**{**VALID, "legal_name": "Nul\x00Ltd"})
        )
    with pytest.raises(ValidationError):
        service.create_organisation(user, service.OrganisationDetails(**{**VALID, "type": "bank"}))
    assert org_count(db) == 0


def test_pages_need_login(client, db):
    org = make_org()
    for path in (
        "/organisations",
        "/organisations/new",
        f"/organisations/{org.id}",
        f"/organisations/{org.id}/edit",
    ):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"], path


def test_another_user_cannot_see_or_edit(client, db):
    org = make_org(legal_name="Private Ltd")
    login(client, make_user())
    assert client.get(f"/organisations/{org.id}").status_code == 404
    assert client.get(f"/organisations/{org.id}/edit").status_code == 404
    response = client.post(f"/organisations/{org.id}/edit", data={**VALID, "legal_name": "Hijacked Ltd"})
    assert response.status_code == 404
    db.session.refresh(org)
    assert org.legal_name == "Private Ltd"
    with pytest.raises(NotFound):
        service.update_organisation(make_user(), org.id, service.OrganisationDetails(**VALID))


def test_unknown_or_absurd_ids_are_404(client, db):
    login(client, make_user(role=Role.OPERATOR))
    for org_id in (999, 2**63, 10**30):
        assert client.get(f"/organisations/{org_id}").status_code == 404
        assert (
            client.post(f"/organisations/{org_id}/verification", data={"status": "verified"}).status_code
            == 404
        )


def test_member_edits_the_organisation(client, db):
    owner = make_user()
    org = make_org(owner=owner, legal_name="Old Name Ltd", country="CN")
    login(client, owner)
    form = client.get(f"/organisations/{org.id}/edit")
    assert form.status_code == 200 and b"Old Name Ltd" in form.data
    response = client.post(
        f"/organisations/{org.id}/edit", data={**VALID, "legal_name": "New Name Ltd", "country": "HK"}
    )
    assert response.status_code == 302
    db.session.refresh(org)
    assert (org.legal_name, org.country, org.type) == ("New Name Ltd", "HK", OrganisationType.CLINIC)


def test_changing_legal_details_of_a_verified_organisation_needs_verification_again(client, db):
    owner, operator = make_user(), make_user(role=Role.OPERATOR)
    org = make_org(
        owner=owner, **{k: v for k, v in VALID.items() if k != "type"}, type=OrganisationType.CLINIC
    )
    service.set_verification_status(operator, org.id, VerificationStatus.VERIFIED)
    login(client, owner)

    client.post(f"/organisations/{org.id}/edit", data={**VALID, "description": "Now with a new wing."})
    db.session.refresh(org)
    assert org.verification_status is VerificationStatus.VERIFIED  # description only

    client.post(f"/organisations/{org.id}/edit", data={**VALID, "registration_number": "OTHER-123"})
    db.session.refresh(org)
    assert org.verification_status is VerificationStatus.UNVERIFIED
    assert org.verified_by_id is None and org.verified_at is None


def test_operator_sees_but_cannot_edit_someone_elses_organisation(client, db):
    org = make_org()
    login(client, make_user(role=Role.OPERATOR))
    assert client.get(f"/organisations/{org.id}").status_code == 200
    assert client.get(f"/organisations/{org.id}/edit").status_code == 403
    with pytest.raises(Forbidden):
        service.update_organisation(
            make_user(role=Role.OPERATOR), org.id, service.OrganisationDetails(**VALID)
        )


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.ADMIN])
def test_operator_verifies_and_rejects(client, db, role):
    org = make_org()
    operator = make_user(role=role)
    login(client, operator)
    page = client.get(f"/organisations/{org.id}")
    assert b"Set verification status" in page.data

    response = client.post(f"/organisations/{org.id}/verification", data={"status": "verified"})
    assert response.status_code == 302
    db.session.refresh(org)
    assert org.verification_status is VerificationStatus.VERIFIED
    assert org.verified_by_id == operator.id and org.verified_at is not None
    assert b"Verified" in client.get(f"/organisations/{org.id}").data

    client.post(f"/organisations/{org.id}/verification", data={"status": "rejected"})
    db.session.refresh(org)
    assert org.verification_status is VerificationStatus.REJECTED

    client.post(f"/organisations/{org.id}/verification", data={"status": "unverified"})
    db.session.refresh(org)
    assert org.verification_status is VerificationStatus.UNVERIFIED
    assert org.verified_by_id is None


def test_operator_verification_refuses_unknown_status(client, db):
    org = make_org()
    login(client, make_user(role=Role.OPERATOR))
    response = client.post(f"/organisations/{org.id}/verification", data={"status": "platinum"})
    assert response.status_code == 302
    db.session.refresh(org)
    assert org.verification_status is VerificationStatus.UNVERIFIED


def test_backer_and_member_cannot_verify(client, db):
    owner = make_user()
    org = make_org(owner=owner)
    for user in (owner, make_user()):
        login(client, user)
        assert (
            client.post(f"/organisations/{org.id}/verification", data={"status": "verified"}).status_code
            == 403
        )
    assert b"Set verification status" not in client.get(f"/organisations/{org.id}").data
    db.session.refresh(org)
    assert org.verification_status is VerificationStatus.UNVERIFIED
    with pytest.raises(Forbidden):
        service.set_verification_status(owner, org.id, VerificationStatus.VERIFIED)


def test_anonymous_verification_goes_to_login(client, db):
    org = make_org()
    response = client.post(f"/organisations/{org.id}/verification", data={"status": "verified"})
    assert response.status_code == 302 and "/login" in response.headers["Location"]


HUGE = "x" * 100_000
GARBAGE = [
    {},
    {name: HUGE for name in VALID},
    {**VALID, "type": "UNKNOWN", "country": "cn"},
    {**VALID, "type": ["clinic", "nonprofit"], "country": ["CN", "US"]},
    {**VALID, "legal_name": "\x00\x01", "registration_number": "\x00", "description": "\x00"},
    {**VALID, "website": "http://" + "a" * 400 + ".com"},
    {**VALID, "website": "http://[::1"},
    {**VALID, "status": "verified", "verification_status": "verified", "created_by_id": "1"},
    {"type": "😀", "country": "😀", "legal_name": "😀" * 300, "description": "😀" * 10_000},
]


@pytest.mark.parametrize("data", GARBAGE)
def test_organisation_forms_survive_garbage(client, db, data):
    owner = make_user()
    org = make_org(owner=owner, legal_name="Stable Ltd")
    login(client, owner)
    for path in ("/organisations/new", f"/organisations/{org.id}/edit"):
        response = client.post(path, data=data)
        assert response.status_code in (200, 302, 400), (path, response.status_code)
    # Only a complete, valid submission (or the first of repeated values) may save anything.
    db.session.refresh(org)
    assert org.legal_name in ("Stable Ltd", VALID["legal_name"])
    assert org_count(db) in (1, 2)
    assert org.verification_status is VerificationStatus.UNVERIFIED


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"status": HUGE},
        {"status": ["rejected", "x"]},
        {"status": "VERIFIED"},
        {"status": "\x00"},
        {"status": "😀"},
    ],
)
def test_verification_form_survives_garbage(client, db, data):
    org = make_org()
    login(client, make_user(role=Role.OPERATOR))
    response = client.post(f"/organisations/{org.id}/verification", data=data)
    assert response.status_code in (302, 400)
    db.session.refresh(org)
    expected = (
        VerificationStatus.REJECTED
        if data.get("status") == ["rejected", "x"]
        else VerificationStatus.UNVERIFIED
    )
    assert org.verification_status is expected
