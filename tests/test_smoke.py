from crowdfund.campaigns.models import CampaignKind
from tests.factories import make_campaign


def test_home_page_renders(client):
    assert client.get("/").status_code == 200


def test_unknown_page_is_404_in_site_style(client):
    r = client.get("/no-such-page")
    assert r.status_code == 404
    assert b"Back to the home page" in r.data


def test_factories_make_every_kind(db):
    for kind in CampaignKind:
        c = make_campaign(kind)
        assert c.id and c.kind is kind
