"""The public money trail (HTML and JSON), the chain JSON, operator pages and `flask ledger verify`."""

from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import event, func, select

from crowdfund.accounts.models import Organisation, Role
from crowdfund.campaigns.models import CampaignKind, CampaignState
from crowdfund.extensions import db as database
from crowdfund.ledger import postings, service, views
from crowdfund.ledger.models import (
    LedgerAccount,
    LedgerEntry,
    LedgerError,
    LedgerTransaction,
    canonical_content,
)
from crowdfund.ledger.service import Leg
from crowdfund.money import Money
from crowdfund.payments import service as payments
from crowdfund.settlement import service as settlement
from crowdfund.settlement.models import SettlementState
from tests.factories import login, make_campaign, make_user, operator
from tests.factories.ledger import post_charge, release, transfer
from tests.settlement_world import DAY, campaign_with_pledges, close
from tests.test_ledger import tamper


def refund_to_wallet(campaign, user_id: int, amount: int):
    """Escrow -> the backer's wallet (a refund to balance)."""
    return transfer(
        service.escrow_account(campaign),
        service.wallet_account(user_id, campaign.currency),
        amount,
        kind="refund",
        campaign_id=campaign.id,
    )


def funded_campaign():
    """A campaign with two charges, a refund to a wallet and a release with a fee."""
    backer = make_user(name="Zhang Secretname", email="zhang.secret@example.org")
    campaign = make_campaign(title="Portable ECG")
    post_charge(campaign, 10_000, key=f"pledge:{backer.id}:charge")
    post_charge(campaign, 5_000)
    refund_to_wallet(campaign, backer.id, 2_000)
    release(campaign, 8_000, fee=400)
    return campaign, backer


# --- public money trail ---------------------------------------------------------------
def test_the_money_trail_shows_figures_transactions_and_the_head_hash(client, db):
    campaign, backer = funded_campaign()
    response = client.get(f"/campaigns/{campaign.slug}/money-trail")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    figure = {
        "money_in": "¥150.00",
        "refunded": "¥20.00",
        "fees": "¥4.00",
        "platform_fee": "¥4.00",
        "processing_fee": "¥0.00",
        "released": "¥76.00",
        "paid_out": "¥0.00",  # released, not paid out yet
        "recovered": "¥0.00",
        "held_in_escrow": "¥50.00",
        "corrections": "¥0.00",
    }
    for name, value in figure.items():
        assert f'data-figure="{name}">{value}<' in page
    assert service.chain_head()[1] in page
    assert "ledger verify" in page
    assert "Backer balance" in page
    # Never who paid: no names, e-mails, keys or descriptions on the public page.
    for private in ("Zhang", "zhang.secret", f"pledge:{backer.id}", "charge of 10000", f"user:{backer.id}"):
        assert private not in page


def test_the_json_trail_lets_anyone_recompute_each_hash(client, db):
    campaign, backer = funded_campaign()
    body = client.get(f"/campaigns/{campaign.slug}/money-trail.json").get_json()
    assert body["figures"]["money_in"]["amount"] == 15_000
    assert body["figures"]["held_in_escrow"]["amount"] == 5_000
    assert body["figures"]["released"]["amount"] == 7_600
    assert body["figures"]["paid_out"]["amount"] == 0
    assert body["figures"]["fees"]["amount"] == 400
    assert body["figures"]["refunded"]["amount"] == 2_000
    assert body["pagination"]["total"] == 4
    assert body["chain"]["head_hash"] == service.chain_head()[1]
    assert [t["sequence"] for t in body["transactions"]] == [4, 3, 2, 1]
    for t in body["transactions"]:
        document = {
            "sequence": t["sequence"],
            "key_sha256": t["key_sha256"],
            "created_at": t["created_at"],
            "kind": t["kind"],
            "description_sha256": t["description_sha256"],
            "campaign_id": t["campaign_id"],
            "reverses_id": t["reverses_id"],
            "entries": sorted(
                [e["account_id"], e["account_sha256"], e["side"], e["amount"], e["currency"]]
                for e in t["entries"]
            ),
            "prev_hash": t["prev_hash"],
        }
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        assert hashlib.sha256(text.encode()).hexdigest() == t["hash"]
    # Anyone can check that the escrow in the hash is this campaign's escrow.
    escrow_sha256 = hashlib.sha256(f"campaign_escrow:campaign:{campaign.id}:CNY".encode()).hexdigest()
    escrow_entries = [
        e for t in body["transactions"] for e in t["entries"] if e["account_id"] == body["escrow_account_id"]
    ]
    assert escrow_entries and {e["account_sha256"] for e in escrow_entries} == {escrow_sha256}
    raw = json.dumps(body)
    assert "Zhang" not in raw and f"pledge:{backer.id}" not in raw


def test_canonical_content_matches_the_published_recipe(db):
    txn = post_charge(make_campaign(), 100)
    document = json.loads(txn.canonical_content())
    assert sorted(document) == sorted(
        [
            "sequence",
            "key_sha256",
            "created_at",
            "kind",
            "description_sha256",
            "campaign_id",
            "reverses_id",
            "entries",
            "prev_hash",
        ]
    )
    assert (
        canonical_content(
            sequence=1,
            key="k",
            created_at=txn.created_at,
            kind="charge",
            description="",
            campaign_id=None,
            reverses_id=None,
            entries=[(2, "b" * 64, "credit", 1, "CNY"), (1, "a" * 64, "debit", 1, "CNY")],
            prev_hash="0" * 64,
        ).count(f'"entries":[[1,"{"a" * 64}","debit",1,"CNY"],[2,"{"b" * 64}","credit",1,"CNY"]]')
        == 1
    )


def test_a_campaign_without_money_has_an_empty_trail(client, db):
    campaign = make_campaign(state=CampaignState.SUCCEEDED)
    assert "No money has moved" in client.get(f"/campaigns/{campaign.slug}/money-trail").get_data(
        as_text=True
    )
    body = client.get(f"/campaigns/{campaign.slug}/money-trail.json").get_json()
    assert body["transactions"] == [] and body["figures"]["held_in_escrow"]["amount"] == 0


@pytest.mark.parametrize("state", [CampaignState.DRAFT, CampaignState.SUBMITTED, CampaignState.REJECTED])
def test_campaigns_the_public_cannot_see_have_no_trail(client, db, state):
    campaign = make_campaign(state=state)
    assert client.get(f"/campaigns/{campaign.slug}/money-trail").status_code == 404
    assert client.get(f"/campaigns/{campaign.slug}/money-trail.json").status_code == 404
    assert client.get("/campaigns/no-such-campaign/money-trail").status_code == 404


def test_reversals_show_as_corrections_and_the_figures_still_add_up(client, db):
    campaign = make_campaign()
    first = post_charge(campaign, 3_000)
    post_charge(campaign, 1_000)
    postings.reverse_transaction(first, "fix:1", "duplicate charge")
    db.session.commit()
    figures = client.get(f"/campaigns/{campaign.slug}/money-trail.json").get_json()["figures"]
    assert figures["money_in"]["amount"] == 4_000
    assert figures["corrections"]["amount"] == -3_000
    assert figures["held_in_escrow"]["amount"] == 1_000


def _settled_campaign(app, pledges: int = 4, amount: int = 10_001):
    """A campaign settled by the settlement service: charged at close, fees, release, payout."""
    app.config["PROCESSING_FEE_BP"] = 290
    app.config["PROCESSING_FEE_FIXED"] = 30
    campaign, pledge_ids = campaign_with_pledges(pledges, amount=amount)
    org = database.session.get(Organisation, campaign.organisation_id)
    payments.save_sandbox_bank_details(org, bank_name="Bank", account_number="12345678")
    closed = close(campaign)
    settlement.open_settlement(campaign.id, now=closed)
    settlement.process_due_items(now=closed)
    assert settlement.finalise_due_settlements(now=closed + 14 * DAY) == 1
    database.session.expire_all()
    return campaign, pledge_ids, settlement.settlement_for(campaign.id)


def _sums_by_kind(campaign) -> dict[tuple[str, str, str], int]:
    """(kind, account purpose, side) -> the sum of the campaign's entries, straight from the tables."""
    rows = database.session.execute(
        select(LedgerTransaction.kind, LedgerAccount.purpose, LedgerEntry.side, func.sum(LedgerEntry.amount))
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .where(LedgerTransaction.campaign_id == campaign.id)
        .group_by(LedgerTransaction.kind, LedgerAccount.purpose, LedgerEntry.side)
    )
    return {(str(k), p.value, side.value): int(total) for k, p, side, total in rows}


def test_a_settled_campaigns_trail_shows_fees_the_payout_and_an_empty_escrow(app, client, db):
    campaign, _, s = _settled_campaign(app)
    assert s.state is SettlementState.SETTLED
    figures = client.get(f"/campaigns/{campaign.slug}/money-trail.json").get_json()["figures"]
    amount = {name: value["amount"] for name, value in figures.items()}
    assert amount["money_in"] == s.collected_amount == 4 * 10_001
    assert amount["platform_fee"] == s.platform_fee_amount == 4 * 10_001 * 500 // 10_000 > 0
    assert amount["processing_fee"] == s.processing_fee_amount == 4 * (10_001 * 290 // 10_000 + 30)
    assert amount["fees"] == s.platform_fee_amount + s.processing_fee_amount
    assert amount["released"] == amount["paid_out"] == s.paid_out_amount > 0
    assert amount["held_in_escrow"] == 0 == service.balance_of_escrow(campaign.id, "CNY").amount
    assert amount["refunded"] == amount["recovered"] == amount["corrections"] == 0
    # Each figure is the campaign's entries of one kind, summed independently here.
    sums = _sums_by_kind(campaign)
    assert sums[("charge", "campaign_escrow", "credit")] == amount["money_in"]
    assert sums[("platform_fee", "campaign_escrow", "debit")] == amount["platform_fee"]
    assert sums[("processing_fee", "campaign_escrow", "debit")] == amount["processing_fee"]
    assert sums[("release", "campaign_escrow", "debit")] == sums[("release", "org_payable", "credit")]
    assert sums[("release", "org_payable", "credit")] == amount["released"]
    assert sums[("payout", "org_payable", "debit")] == amount["paid_out"]
    assert service.verify_ledger().ok

    page = client.get(f"/campaigns/{campaign.slug}/money-trail").get_data(as_text=True)
    assert "Settled." in page and "escrow holds nothing" in page
    assert 'data-figure="held_in_escrow">¥0.00<' in page
    assert f'data-figure="paid_out">{Money(s.paid_out_amount, "CNY").format()}<' in page
    assert "Released but not paid out yet" not in page


def test_a_refund_after_the_payout_shows_as_refunded_and_recovered(app, client, db):
    campaign, pledge_ids, s = _settled_campaign(app, pledges=3, amount=5_000)
    settlement.refund_item(operator(), pledge_ids[0], None, "Reward never shipped")
    figures = client.get(f"/campaigns/{campaign.slug}/money-trail.json").get_json()["figures"]
    assert figures["refunded"]["amount"] == figures["recovered"]["amount"] == 5_000
    assert figures["held_in_escrow"]["amount"] == 0 and figures["corrections"]["amount"] == 0
    assert figures["paid_out"]["amount"] == s.paid_out_amount  # the payout stands; the organisation owes it
    assert service.verify_ledger().ok


def test_a_campaign_before_settlement_holds_its_money_in_escrow(app, client, db):
    campaign, _ = campaign_with_pledges(2, amount=3_000)
    closed = close(campaign)
    settlement.open_settlement(campaign.id, now=closed)
    settlement.process_due_items(now=closed)
    figures = client.get(f"/campaigns/{campaign.slug}/money-trail.json").get_json()["figures"]
    assert figures["money_in"]["amount"] == figures["held_in_escrow"]["amount"] == 6_000
    assert figures["fees"]["amount"] == figures["released"]["amount"] == figures["paid_out"]["amount"] == 0
    assert "Settled." not in client.get(f"/campaigns/{campaign.slug}/money-trail").get_data(as_text=True)


def test_the_trail_is_paginated_and_its_query_count_does_not_grow(client, db, monkeypatch):
    monkeypatch.setattr(views, "TRAIL_PER_PAGE", 3)
    campaign = make_campaign()

    def queries_for(url: str) -> int:
        statements: list[str] = []

        def count(conn, cursor, statement, *args):
            statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", count)
        try:
            assert client.get(url).status_code == 200
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        return len([s for s in statements if s.lstrip().upper().startswith("SELECT")])

    for _ in range(3):
        post_charge(campaign, 100)
    few = queries_for(f"/campaigns/{campaign.slug}/money-trail")
    for _ in range(9):
        post_charge(campaign, 100)
    many = queries_for(f"/campaigns/{campaign.slug}/money-trail")
    assert many == few
    body = client.get(f"/campaigns/{campaign.slug}/money-trail.json?page=2").get_json()
    assert body["pagination"] == {"page": 2, "per_page": 3, "pages": 4, "total": 12}
    assert [t["sequence"] for t in body["transactions"]] == [9, 8, 7]
    assert client.get(f"/campaigns/{campaign.slug}/money-trail?page=abc").status_code == 200


def _trail(client, campaign) -> dict:
    response = client.get(f"/campaigns/{campaign.slug}/money-trail.json")
    assert response.status_code == 200
    return response.get_json()


def _adds_up(body: dict) -> bool:
    """The published equation: every figure and other movement adds up to the escrow's balance."""
    f = {name: value["amount"] for name, value in body["figures"].items()}
    other = sum(row["net"]["amount"] for row in body["other_escrow_movements"])
    return (
        f["money_in"] - f["refunded"] - f["platform_fee"] - f["processing_fee"] - f["released"]
        + f["recovered"] - f["repaid_to_lenders"] + other + f["corrections"]
        == f["held_in_escrow"]
    )  # fmt: skip


def test_loan_repayments_show_as_repaid_to_lenders_and_tie_to_the_lenders_wallets(client, db):
    campaign = make_campaign(kind=CampaignKind.DEBT)
    lenders = [make_user(name="Lender Secretname"), make_user()]
    post_charge(campaign, 10_000)  # what the lenders lent, collected at close
    release(campaign, 10_000, fee=500)
    post_charge(campaign, 1_501)  # the borrower's repayment received into the escrow
    postings.repayment_from_escrow(
        key="loan_repayment:1:split",
        campaign_id=campaign.id,
        shares={lenders[0].id: Money(1_001, "CNY"), lenders[1].id: Money(500, "CNY")},
    )
    db.session.commit()
    body = _trail(client, campaign)
    figures = {name: value["amount"] for name, value in body["figures"].items()}
    sums = _sums_by_kind(campaign)
    assert figures["repaid_to_lenders"] == 1_501 == sums[("repayment", "campaign_escrow", "debit")]
    assert sums[("repayment", "user_wallet", "credit")] == 1_501
    assert figures["money_in"] == 11_501 and figures["held_in_escrow"] == 0 == figures["corrections"]
    assert _adds_up(body) and body["other_escrow_movements"] == []
    by_kind = {row["kind"]: row for row in body["movements"]}
    assert by_kind["repayment"]["transactions"] == 1 and by_kind["repayment"]["amount"]["amount"] == 1_501
    assert by_kind["charge"]["transactions"] == 2 and by_kind["charge"]["amount"]["amount"] == 11_501
    assert sum(row["transactions"] for row in body["movements"]) == body["pagination"]["total"] == 4
    page = client.get(f"/campaigns/{campaign.slug}/money-trail").get_data(as_text=True)
    assert 'data-figure="repaid_to_lenders">¥15.01<' in page and "the borrower&#39;s repayments" in page
    assert 'data-kind-count="repayment">1<' in page and "Lender Secretname" not in page


def test_a_kind_no_figure_names_shows_by_its_label_and_the_figures_still_add_up(client, db):
    campaign = make_campaign(kind=CampaignKind.DONATION)
    post_charge(campaign, 9_000)
    # Escrow -> clearing as a payout: a movement the figures do not name on the escrow.
    transfer(
        service.escrow_account(campaign),
        service.clearing_account("CNY"),
        4_000,
        kind="payout",
        campaign_id=campaign.id,
    )
    body = _trail(client, campaign)
    assert body["other_escrow_movements"] == [
        {
            "kind": "payout",
            "label": "Paid out",
            "net": {
                "amount": -4_000,
                "currency": "CNY",
                "formatted": Money(-4_000, "CNY").format(with_code=True),
            },
        }
    ]
    assert (
        body["figures"]["corrections"]["amount"] == 0 and body["figures"]["held_in_escrow"]["amount"] == 5_000
    )
    assert _adds_up(body)
    page = client.get(f"/campaigns/{campaign.slug}/money-trail").get_data(as_text=True)
    assert 'data-escrow-kind="payout">¥40.00<' in page


def test_payouts_to_a_provider_show_as_paid_to_providers(client, db):
    campaign = make_campaign(kind=CampaignKind.DONATION)
    post_charge(campaign, 20_000)
    transfer(
        service.escrow_account(campaign),
        service.provider_payable_account(7, "CNY"),
        12_000,
        kind="release",
        campaign_id=campaign.id,
    )
    postings.payout(payment_id=99, amount=Money(12_000, "CNY"), provider_id=7, campaign_id=campaign.id)
    db.session.commit()
    body = _trail(client, campaign)
    figures = {name: value["amount"] for name, value in body["figures"].items()}
    assert figures["paid_to_providers"] == figures["paid_out"] == figures["released"] == 12_000
    assert _sums_by_kind(campaign)[("payout", "provider_payable", "debit")] == 12_000
    assert figures["held_in_escrow"] == 8_000 and figures["corrections"] == 0 and _adds_up(body)
    page = client.get(f"/campaigns/{campaign.slug}/money-trail").get_data(as_text=True)
    assert 'data-figure="paid_to_providers">¥120.00<' in page


def test_after_success_sections_listed_by_create_app_appear_on_the_trail(app, client, db, monkeypatch):
    from crowdfund.equity.trail import trail_lines as equity_lines
    from crowdfund.loans.trail import trail_lines as loan_lines

    assert {equity_lines, loan_lines} <= set(app.extensions[service.TRAIL_SECTIONS])
    campaign = make_campaign(kind=CampaignKind.DONATION)
    post_charge(campaign, 30_000)

    def tranches(c):
        return [service.TrailLine("tranches_paid", "Tranches paid to hospitals", 2, "tranches",
                                  Money(25_000, c.currency), 1, "hospitals")]  # fmt: skip

    monkeypatch.setitem(app.extensions, service.TRAIL_SECTIONS, (equity_lines, loan_lines, tranches))
    body = _trail(client, campaign)
    assert body["after_success"] == {
        "tranches_paid": {
            "label": "Tranches paid to hospitals",
            "count": 2,
            "unit": "tranches",
            "amount": {
                "amount": 25_000,
                "currency": "CNY",
                "formatted": Money(25_000, "CNY").format(with_code=True),
            },
            "recipients": 1,
            "recipients_unit": "hospitals",
        }
    }
    page = client.get(f"/campaigns/{campaign.slug}/money-trail").get_data(as_text=True)
    assert 'data-after-success="tranches_paid">2<' in page and "Tranches paid to hospitals" in page
    # Reward, equity and debt campaigns with nothing issued or repaid yet have no such section.
    monkeypatch.setitem(app.extensions, service.TRAIL_SECTIONS, (equity_lines, loan_lines))
    for kind in (CampaignKind.EQUITY, CampaignKind.DEBT):
        assert _trail(client, make_campaign(kind=kind))["after_success"] == {}


def test_the_chain_json_lists_every_link(client, db):
    campaign = make_campaign()
    txns = [post_charge(campaign, 100 + i) for i in range(3)]
    body = client.get("/ledger/chain.json").get_json()
    assert [link["hash"] for link in body["links"]] == [t.hash for t in txns]
    assert body["links"][1]["prev_hash"] == body["links"][0]["hash"]
    assert body["head_hash"] == txns[-1].hash
    assert client.get("/ledger/chain.json?after=2").get_json()["links"][0]["sequence"] == 3


def test_the_money_trail_link_partial_points_at_the_trail(app, db):
    campaign = make_campaign()
    with app.test_request_context():
        html = app.jinja_env.get_template("ledger/_money_trail_link.html").render(campaign=campaign)
    assert f"/campaigns/{campaign.slug}/money-trail" in html and "Money trail" in html


# --- operators ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url", ["/operator/ledger", "/operator/ledger/transactions", "/operator/ledger/transactions/1"]
)
def test_operator_pages_are_for_operators(client, db, url):
    post_charge(make_campaign(), 100)
    assert client.get(url).status_code in (302, 401)
    login(client, make_user())
    assert client.get(url).status_code == 403


def test_operators_see_accounts_transactions_and_can_search_by_key(client, db):
    campaign, backer = funded_campaign()
    login(client, make_user(role=Role.OPERATOR))

    page = client.get("/operator/ledger").get_data(as_text=True)
    escrow = service.escrow_account(campaign)
    assert escrow.code in page and "CNY 50.00" in page

    page = client.get("/operator/ledger?purpose=campaign_escrow").get_data(as_text=True)
    assert escrow.code in page and "gateway_clearing:CNY" not in page
    assert client.get("/operator/ledger?purpose=nonsense").status_code == 404

    key = f"pledge:{backer.id}:charge"
    response = client.get("/operator/ledger", query_string={"key": key})
    txn = service.find_transaction(key)
    assert response.status_code == 302 and response.location.endswith(
        f"/operator/ledger/transactions/{txn.id}"
    )

    detail = client.get(f"/operator/ledger/transactions/{txn.id}").get_data(as_text=True)
    assert key in detail and txn.hash in detail and "matches its content" in detail
    assert "CNY 100.00" in detail

    missing = client.get("/operator/ledger", query_string={"key": "nope:1"}, follow_redirects=True)
    assert "No ledger transaction has the key" in missing.get_data(as_text=True)
    for bad in ("x" * 300, "a\x00b", " "):
        assert client.get("/operator/ledger", query_string={"key": bad}).status_code == 200
    assert client.get("/campaigns/a%00b/money-trail").status_code == 404
    assert client.get("/ledger/chain.json?after=99999999999999999999999").status_code == 200
    assert (
        client.get(f"/campaigns/{campaign.slug}/money-trail.json?page=99999999999999999999").status_code
        == 200
    )
    assert client.get("/operator/ledger/transactions/99999").status_code == 404

    listing = client.get("/operator/ledger/transactions").get_data(as_text=True)
    assert key in listing
    account_page = client.get(f"/operator/ledger/accounts/{escrow.id}").get_data(as_text=True)
    assert escrow.code in account_page and key in account_page


# --- the verifier on the command line -------------------------------------------------
def test_flask_ledger_verify_prints_a_summary_and_exits_zero(app, db):
    campaign, _ = funded_campaign()
    result = app.test_cli_runner().invoke(args=["ledger", "verify"])
    assert result.exit_code == 0, result.output
    assert "transactions: 4" in result.output
    assert "CNY: debits" in result.output
    assert service.chain_head()[1] in result.output
    assert "OK" in result.output


def test_flask_ledger_verify_fails_and_names_the_edited_transaction(app, db):
    campaign = make_campaign()
    post_charge(campaign, 1_000)
    victim = post_charge(campaign, 2_000, key="pledge:42:charge")
    entry_id = victim.entries[0].id
    tamper(db, "UPDATE ledger_entries SET amount = 1 WHERE id = :id", id=entry_id)
    result = app.test_cli_runner().invoke(args=["ledger", "verify"])
    assert result.exit_code == 1
    assert "FAILED at transaction #2" in result.output
    assert "pledge:42:charge" in result.output


def test_posted_money_is_money(db):
    with pytest.raises(LedgerError, match="positive amount"):  # a bare int is not Money
        Leg.debit(service.clearing_account("CNY"), 100)  # type: ignore[arg-type]
    assert Leg.debit(service.clearing_account("CNY"), Money(1, "CNY")).side == "debit"
