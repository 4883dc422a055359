"""The public pages run a fixed number of SQL statements, however much data there is."""

from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import event

from crowdfund.campaigns.models import CampaignKind
from crowdfund.extensions import db
from tests.factories import make_campaign, make_org

#: Transaction control is not a query.
_IGNORED = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "PRAGMA")


@contextmanager
def count_queries():
    """Collect the SQL statements run on db.engine inside the block."""
    statements: list[str] = []

    def before_cursor_execute(conn, cursor, statement, parameters, context, executemany):
        if not statement.lstrip().upper().startswith(_IGNORED):
            statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", before_cursor_execute)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", before_cursor_execute)


def _get(client, url: str) -> list[str]:
    db.session.expunge_all()  # nothing cached from creating the data
    with count_queries() as statements:
        response = client.get(url)
    assert response.status_code == 200, url
    return statements


def _make_campaigns(start: int, stop: int) -> None:
    kinds = list(CampaignKind)
    for i in range(start, stop):
        make_campaign(kinds[i % len(kinds)], org=make_org(), slug=f"q-{i}", featured=i % 3 == 0)


def test_listing_and_home_run_the_same_queries_for_2_and_30_campaigns(client):
    counts: dict[str, list[int]] = {"/": [], "/campaigns": [], "/campaigns?sort=funded&page=2": []}
    for start, stop in ((0, 2), (2, 30)):
        _make_campaigns(start, stop)
        for url, seen in counts.items():
            seen.append(len(_get(client, url)))
    for url, (few, many) in counts.items():
        assert few == many, f"{url}: {few} queries for 2 campaigns, {many} for 30"
        assert many <= 4, f"{url}: {many} queries"


def test_campaign_page_runs_the_same_queries_for_1_and_20_tiers(client):
    found = []
    for n in (1, 20):
        tiers = [
            {"title": f"Tier {i}", "price_amount": 1_000 * (i + 1), "quantity_limit": 10} for i in range(n)
        ]
        campaign = make_campaign(CampaignKind.REWARD, slug=f"tiers-{n}", tiers=tiers)
        statements = _get(client, f"/campaigns/{campaign.slug}")
        found.append(len(statements))
        html_tiers = client.get(f"/campaigns/{campaign.slug}").get_data(as_text=True).count("Tier ")
        assert html_tiers >= n
    assert found[0] == found[1], f"campaign page: {found[0]} queries with 1 tier, {found[1]} with 20"
    assert found[1] <= 2, f"campaign page: {found[1]} queries"


def test_campaign_page_of_each_kind_runs_the_same_queries(client):
    found = {}
    for kind in CampaignKind:
        campaign = make_campaign(kind, slug=f"kind-{kind.value}")
        found[kind.value] = len(_get(client, f"/campaigns/{campaign.slug}"))
    assert len(set(found.values())) == 1, f"queries per kind: {found}"
