"""Settlement, shares and cap tables, donor-message moderation, loans and repayments.

New tables: settlements and settlement_items (one item per pledge of a closed campaign);
share_issues, share_holdings, pre_round_shares, round_amendments, reconfirmations and
investor_notices (equity); hidden_donor_messages (donations); loans, loan_instalments,
loan_lenders, loan_repayments, loan_repayment_shares and loan_notices (debt).
Widened checks: ledger accounts may be an organisation's receivable (what it owes back
after a refund made after its payout); sandbox cards that decline as lost and that need
the card holder present for every charge.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

ACCOUNT_PURPOSES = (
    "'gateway_clearing', 'campaign_escrow', 'user_wallet', 'org_payable', 'provider_payable', "
    "'platform_fee_revenue', 'processing_fee_expense', {}'platform_equity'"
)
CARD_BEHAVIOURS = "'succeeds', 'declines_charges', 'needs_authentication'{}"


def _checks(purposes: str, behaviours: str) -> None:
    with op.batch_alter_table("ledger_accounts", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_ledger_accounts_ledger_account_purpose"), type_="check")
        batch_op.create_check_constraint("ledger_account_purpose", f"purpose IN ({purposes})")
    with op.batch_alter_table("sandbox_cards", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_sandbox_cards_sandbox_card_behaviour"), type_="check")
        batch_op.create_check_constraint("sandbox_card_behaviour", f"behaviour IN ({behaviours})")


# revision identifiers, used by Alembic.
revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    _checks(
        ACCOUNT_PURPOSES.format("'org_receivable', "),
        CARD_BEHAVIOURS.format(", 'lost_card', 'authenticates_charges'"),
    )
    op.create_table(
        "pre_round_shares",
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("shares", sa.BigInteger(), nullable=False),
        sa.Column("set_by_id", sa.Integer(), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("shares > 0", name=op.f("ck_pre_round_shares_pre_round_shares_positive")),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_pre_round_shares_organisation_id_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["set_by_id"], ["users.id"], name=op.f("fk_pre_round_shares_set_by_id_users")
        ),
        sa.PrimaryKeyConstraint("organisation_id", name=op.f("pk_pre_round_shares")),
    )
    op.create_table(
        "round_amendments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("amended_by_id", sa.Integer(), nullable=False),
        sa.Column("before", sa.JSON(), nullable=False),
        sa.Column("after", sa.JSON(), nullable=False),
        sa.Column("reconfirm_by", sa.DateTime(timezone=True), nullable=False),
        sa.Column("asked", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["amended_by_id"], ["users.id"], name=op.f("fk_round_amendments_amended_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_round_amendments_campaign_id_campaigns")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_round_amendments")),
    )
    with op.batch_alter_table("round_amendments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_round_amendments_campaign_id"), ["campaign_id"], unique=False)

    op.create_table(
        "settlements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "collecting",
                "paying_out",
                "settled",
                "releasing",
                "released",
                "refunding",
                "refunded",
                name="settlement_state",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("pledged_amount", sa.BigInteger(), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("collected_amount", sa.BigInteger(), nullable=False),
        sa.Column("platform_fee_amount", sa.BigInteger(), nullable=False),
        sa.Column("processing_fee_amount", sa.BigInteger(), nullable=False),
        sa.Column("released_amount", sa.BigInteger(), nullable=False),
        sa.Column("paid_out_amount", sa.BigInteger(), nullable=False),
        sa.Column("recovered_amount", sa.BigInteger(), nullable=False),
        sa.Column("owed_by_organisation_amount", sa.BigInteger(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("grace_ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payout_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fees_posted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paid_out_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payout_operation_id", sa.Integer(), nullable=True),
        sa.Column("status_code", sa.String(length=60), nullable=True),
        sa.Column("status_params", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("paid_out_amount >= 0", name=op.f("ck_settlements_paid_out_not_negative")),
        sa.CheckConstraint("platform_fee_amount >= 0", name=op.f("ck_settlements_platform_fee_not_negative")),
        sa.CheckConstraint(
            "processing_fee_amount >= 0", name=op.f("ck_settlements_processing_fee_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_settlements_campaign_id_campaigns")
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_settlements_organisation_id_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["payout_operation_id"],
            ["payment_operations.id"],
            name=op.f("fk_settlements_payout_operation_id_payment_operations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlements")),
        sa.UniqueConstraint("campaign_id", name=op.f("uq_settlements_campaign_id")),
    )
    with op.batch_alter_table("settlements", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_settlements_organisation_id"), ["organisation_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_settlements_state"), ["state"], unique=False)

    op.create_table(
        "hidden_donor_messages",
        sa.Column("pledge_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("hidden_by_id", sa.Integer(), nullable=False),
        sa.Column("hidden_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shown_again_by_id", sa.Integer(), nullable=True),
        sa.Column("shown_again_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_hidden_donor_messages_campaign_id_campaigns")
        ),
        sa.ForeignKeyConstraint(
            ["hidden_by_id"], ["users.id"], name=op.f("fk_hidden_donor_messages_hidden_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["pledge_id"], ["pledges.id"], name=op.f("fk_hidden_donor_messages_pledge_id_pledges")
        ),
        sa.ForeignKeyConstraint(
            ["shown_again_by_id"], ["users.id"], name=op.f("fk_hidden_donor_messages_shown_again_by_id_users")
        ),
        sa.PrimaryKeyConstraint("pledge_id", name=op.f("pk_hidden_donor_messages")),
    )
    with op.batch_alter_table("hidden_donor_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_hidden_donor_messages_campaign_id"), ["campaign_id"], unique=False
        )

    op.create_table(
        "investor_notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("pledge_id", sa.Integer(), nullable=True),
        sa.Column("code", sa.String(length=60), nullable=False),
        sa.Column("params", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_investor_notices_campaign_id_campaigns")
        ),
        sa.ForeignKeyConstraint(
            ["pledge_id"], ["pledges.id"], name=op.f("fk_investor_notices_pledge_id_pledges")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_investor_notices_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_investor_notices")),
    )
    with op.batch_alter_table("investor_notices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_investor_notices_user_id"), ["user_id"], unique=False)

    op.create_table(
        "loans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("settlement_id", sa.Integer(), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "repaying",
                "repaid",
                "defaulted",
                name="loan_state",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("principal_amount", sa.BigInteger(), nullable=False),
        sa.Column("annual_rate_ppm", sa.Integer(), nullable=False),
        sa.Column("term_months", sa.Integer(), nullable=False),
        sa.Column("first_due_on", sa.Date(), nullable=False),
        sa.Column("repaid_amount", sa.BigInteger(), nullable=False),
        sa.Column("repayment_count", sa.Integer(), nullable=False),
        sa.Column("lender_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("defaulted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("repaid_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "annual_rate_ppm >= 0 AND annual_rate_ppm <= 1000000", name=op.f("ck_loans_loan_rate_range")
        ),
        sa.CheckConstraint("principal_amount > 0", name=op.f("ck_loans_loan_principal_positive")),
        sa.CheckConstraint("repaid_amount >= 0", name=op.f("ck_loans_loan_repaid_not_negative")),
        sa.CheckConstraint("term_months > 0", name=op.f("ck_loans_loan_term_positive")),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_loans_campaign_id_campaigns")
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"], ["organisations.id"], name=op.f("fk_loans_organisation_id_organisations")
        ),
        sa.ForeignKeyConstraint(
            ["settlement_id"], ["settlements.id"], name=op.f("fk_loans_settlement_id_settlements")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loans")),
        sa.UniqueConstraint("campaign_id", name=op.f("uq_loans_campaign_id")),
        sa.UniqueConstraint("settlement_id", name=op.f("uq_loans_settlement_id")),
    )
    with op.batch_alter_table("loans", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_loans_organisation_id"), ["organisation_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_loans_state"), ["state"], unique=False)

    op.create_table(
        "reconfirmations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("amendment_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("pledge_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "pending",
                "confirmed",
                "declined",
                "lapsed",
                "superseded",
                name="reconfirmation_state",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["amendment_id"],
            ["round_amendments.id"],
            name=op.f("fk_reconfirmations_amendment_id_round_amendments"),
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_reconfirmations_campaign_id_campaigns")
        ),
        sa.ForeignKeyConstraint(
            ["pledge_id"], ["pledges.id"], name=op.f("fk_reconfirmations_pledge_id_pledges")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_reconfirmations_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconfirmations")),
        sa.UniqueConstraint("amendment_id", "pledge_id", name=op.f("uq_reconfirmations_amendment_id")),
    )
    with op.batch_alter_table("reconfirmations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reconfirmations_campaign_id"), ["campaign_id"], unique=False)
        batch_op.create_index("ix_reconfirmations_due", ["state", "deadline"], unique=False)
        batch_op.create_index(batch_op.f("ix_reconfirmations_pledge_id"), ["pledge_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_reconfirmations_user_id"), ["user_id"], unique=False)

    op.create_table(
        "settlement_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("settlement_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("pledge_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "pending",
                "charging",
                "charged",
                "failed",
                "action_required",
                "hard_declined",
                "unknown",
                "dropped",
                "released",
                "refunding",
                "refunded",
                name="settlement_item_state",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("amount_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("charged_amount", sa.BigInteger(), nullable=False),
        sa.Column("refunded_amount", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("charge_key", sa.String(length=200), nullable=True),
        sa.Column("payment_operation_id", sa.Integer(), nullable=True),
        sa.Column("on_session", sa.Boolean(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failure_code", sa.String(length=60), nullable=True),
        sa.Column("failure_params", sa.JSON(), nullable=True),
        sa.Column("gateway_code", sa.String(length=60), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_amount > 0", name=op.f("ck_settlement_items_item_amount_positive")),
        sa.CheckConstraint("attempt >= 0", name=op.f("ck_settlement_items_attempt_not_negative")),
        sa.CheckConstraint("charged_amount >= 0", name=op.f("ck_settlement_items_charged_not_negative")),
        sa.CheckConstraint(
            "refunded_amount >= 0", name=op.f("ck_settlement_items_item_refunded_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_settlement_items_campaign_id_campaigns")
        ),
        sa.ForeignKeyConstraint(
            ["payment_operation_id"],
            ["payment_operations.id"],
            name=op.f("fk_settlement_items_payment_operation_id_payment_operations"),
        ),
        sa.ForeignKeyConstraint(
            ["pledge_id"], ["pledges.id"], name=op.f("fk_settlement_items_pledge_id_pledges")
        ),
        sa.ForeignKeyConstraint(
            ["settlement_id"], ["settlements.id"], name=op.f("fk_settlement_items_settlement_id_settlements")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_settlement_items_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_items")),
        sa.UniqueConstraint("pledge_id", name=op.f("uq_settlement_items_pledge_id")),
    )
    with op.batch_alter_table("settlement_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_settlement_items_campaign_id"), ["campaign_id"], unique=False)
        batch_op.create_index("ix_settlement_items_due", ["state", "next_attempt_at"], unique=False)
        batch_op.create_index(
            "ix_settlement_items_settlement_state", ["settlement_id", "state"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_settlement_items_user_id"), ["user_id"], unique=False)

    op.create_table(
        "share_issues",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("settlement_id", sa.Integer(), nullable=False),
        sa.Column("price_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("shares_issued", sa.BigInteger(), nullable=False),
        sa.Column("holder_count", sa.Integer(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("price_amount > 0", name=op.f("ck_share_issues_issue_price_positive")),
        sa.CheckConstraint("shares_issued >= 0", name=op.f("ck_share_issues_shares_issued_not_negative")),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_share_issues_campaign_id_campaigns")
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_share_issues_organisation_id_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["settlement_id"], ["settlements.id"], name=op.f("fk_share_issues_settlement_id_settlements")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_share_issues")),
        sa.UniqueConstraint("campaign_id", name=op.f("uq_share_issues_campaign_id")),
        sa.UniqueConstraint("settlement_id", name=op.f("uq_share_issues_settlement_id")),
    )
    with op.batch_alter_table("share_issues", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_share_issues_organisation_id"), ["organisation_id"], unique=False
        )

    op.create_table(
        "loan_instalments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("loan_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("principal_amount", sa.BigInteger(), nullable=False),
        sa.Column("interest_amount", sa.BigInteger(), nullable=False),
        sa.Column("fee_amount", sa.BigInteger(), nullable=False),
        sa.Column("penalty_amount", sa.BigInteger(), nullable=False),
        sa.Column("penalty_months", sa.Integer(), nullable=False),
        sa.Column("paid_principal_amount", sa.BigInteger(), nullable=False),
        sa.Column("paid_interest_amount", sa.BigInteger(), nullable=False),
        sa.Column("paid_fee_amount", sa.BigInteger(), nullable=False),
        sa.Column("paid_penalty_amount", sa.BigInteger(), nullable=False),
        sa.Column("late_fee_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "paid_principal_amount BETWEEN 0 AND principal_amount AND paid_interest_amount BETWEEN 0 AND interest_amount AND paid_fee_amount BETWEEN 0 AND fee_amount AND paid_penalty_amount BETWEEN 0 AND penalty_amount",
            name=op.f("ck_loan_instalments_instalment_paid_within_due"),
        ),
        sa.CheckConstraint(
            "principal_amount >= 0 AND interest_amount >= 0 AND fee_amount >= 0 AND penalty_amount >= 0",
            name=op.f("ck_loan_instalments_instalment_amounts_not_negative"),
        ),
        sa.ForeignKeyConstraint(["loan_id"], ["loans.id"], name=op.f("fk_loan_instalments_loan_id_loans")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_instalments")),
        sa.UniqueConstraint("loan_id", "number", name="uq_loan_instalment_number"),
    )
    with op.batch_alter_table("loan_instalments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_loan_instalments_loan_id"), ["loan_id"], unique=False)

    op.create_table(
        "loan_lenders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("loan_id", sa.Integer(), nullable=False),
        sa.Column("pledge_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("lent_amount", sa.BigInteger(), nullable=False),
        sa.Column("received_amount", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("lent_amount > 0", name=op.f("ck_loan_lenders_lender_lent_positive")),
        sa.CheckConstraint("received_amount >= 0", name=op.f("ck_loan_lenders_lender_received_not_negative")),
        sa.ForeignKeyConstraint(["loan_id"], ["loans.id"], name=op.f("fk_loan_lenders_loan_id_loans")),
        sa.ForeignKeyConstraint(
            ["pledge_id"], ["pledges.id"], name=op.f("fk_loan_lenders_pledge_id_pledges")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_loan_lenders_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_lenders")),
        sa.UniqueConstraint("pledge_id", name=op.f("uq_loan_lenders_pledge_id")),
    )
    with op.batch_alter_table("loan_lenders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_loan_lenders_loan_id"), ["loan_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_loan_lenders_user_id"), ["user_id"], unique=False)

    op.create_table(
        "loan_notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("loan_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=60), nullable=False),
        sa.Column("subject", sa.String(length=60), nullable=False),
        sa.Column("params", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["loan_id"], ["loans.id"], name=op.f("fk_loan_notices_loan_id_loans")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_loan_notices_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_notices")),
        sa.UniqueConstraint("loan_id", "user_id", "code", "subject", name="uq_loan_notice"),
    )
    with op.batch_alter_table("loan_notices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_loan_notices_loan_id"), ["loan_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_loan_notices_user_id"), ["user_id"], unique=False)

    op.create_table(
        "loan_repayments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("loan_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "pending",
                "split",
                "failed",
                "reversing",
                "reversed",
                name="loan_repayment_state",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "method",
            sa.Enum(
                "card",
                "bank_transfer",
                name="loan_repayment_method",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("amount_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("request_key", sa.String(length=200), nullable=False),
        sa.Column("charge_key", sa.String(length=200), nullable=False),
        sa.Column("payment_operation_id", sa.Integer(), nullable=True),
        sa.Column("payment_method_id", sa.Integer(), nullable=True),
        sa.Column("reference", sa.String(length=100), nullable=True),
        sa.Column("recorded_by_id", sa.Integer(), nullable=True),
        sa.Column("allocation", sa.JSON(), nullable=True),
        sa.Column("repaid_after_amount", sa.BigInteger(), nullable=True),
        sa.Column("failure_code", sa.String(length=60), nullable=True),
        sa.Column("failure_params", sa.JSON(), nullable=True),
        sa.Column("reversal_code", sa.String(length=60), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reversed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("amount_amount > 0", name=op.f("ck_loan_repayments_repayment_amount_positive")),
        sa.ForeignKeyConstraint(["loan_id"], ["loans.id"], name=op.f("fk_loan_repayments_loan_id_loans")),
        sa.ForeignKeyConstraint(
            ["payment_method_id"],
            ["payment_methods.id"],
            name=op.f("fk_loan_repayments_payment_method_id_payment_methods"),
        ),
        sa.ForeignKeyConstraint(
            ["payment_operation_id"],
            ["payment_operations.id"],
            name=op.f("fk_loan_repayments_payment_operation_id_payment_operations"),
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"], ["users.id"], name=op.f("fk_loan_repayments_recorded_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_repayments")),
        sa.UniqueConstraint("charge_key", name=op.f("uq_loan_repayments_charge_key")),
        sa.UniqueConstraint("loan_id", "request_key", name="uq_loan_repayment_request_key"),
    )
    with op.batch_alter_table("loan_repayments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_loan_repayments_loan_id"), ["loan_id"], unique=False)
        batch_op.create_index("ix_loan_repayments_state", ["state", "updated_at"], unique=False)

    op.create_table(
        "share_holdings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("pledge_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("certificate_number", sa.String(length=40), nullable=False),
        sa.Column("holder_name", sa.String(length=200), nullable=False),
        sa.Column("shares", sa.BigInteger(), nullable=False),
        sa.Column("price_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("paid_amount", sa.BigInteger(), nullable=False),
        sa.Column("ledger_transaction_id", sa.Integer(), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("price_amount > 0", name=op.f("ck_share_holdings_holding_price_positive")),
        sa.CheckConstraint("shares > 0", name=op.f("ck_share_holdings_holding_shares_positive")),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_share_holdings_campaign_id_campaigns")
        ),
        sa.ForeignKeyConstraint(
            ["issue_id"], ["share_issues.id"], name=op.f("fk_share_holdings_issue_id_share_issues")
        ),
        sa.ForeignKeyConstraint(
            ["ledger_transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_share_holdings_ledger_transaction_id_ledger_transactions"),
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_share_holdings_organisation_id_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["pledge_id"], ["pledges.id"], name=op.f("fk_share_holdings_pledge_id_pledges")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_share_holdings_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_share_holdings")),
        sa.UniqueConstraint("certificate_number", name=op.f("uq_share_holdings_certificate_number")),
        sa.UniqueConstraint("pledge_id", name=op.f("uq_share_holdings_pledge_id")),
    )
    with op.batch_alter_table("share_holdings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_share_holdings_campaign_id"), ["campaign_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_share_holdings_issue_id"), ["issue_id"], unique=False)
        batch_op.create_index("ix_share_holdings_org_issued", ["organisation_id", "issued_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_share_holdings_user_id"), ["user_id"], unique=False)

    op.create_table(
        "loan_repayment_shares",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repayment_id", sa.Integer(), nullable=False),
        sa.Column("lender_id", sa.Integer(), nullable=False),
        sa.Column("amount_amount", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "amount_amount > 0", name=op.f("ck_loan_repayment_shares_repayment_share_positive")
        ),
        sa.ForeignKeyConstraint(
            ["lender_id"], ["loan_lenders.id"], name=op.f("fk_loan_repayment_shares_lender_id_loan_lenders")
        ),
        sa.ForeignKeyConstraint(
            ["repayment_id"],
            ["loan_repayments.id"],
            name=op.f("fk_loan_repayment_shares_repayment_id_loan_repayments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loan_repayment_shares")),
        sa.UniqueConstraint("repayment_id", "lender_id", name="uq_loan_repayment_share"),
    )
    with op.batch_alter_table("loan_repayment_shares", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_loan_repayment_shares_lender_id"), ["lender_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_loan_repayment_shares_repayment_id"), ["repayment_id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("loan_repayment_shares", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_loan_repayment_shares_repayment_id"))
        batch_op.drop_index(batch_op.f("ix_loan_repayment_shares_lender_id"))

    op.drop_table("loan_repayment_shares")
    with op.batch_alter_table("share_holdings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_share_holdings_user_id"))
        batch_op.drop_index("ix_share_holdings_org_issued")
        batch_op.drop_index(batch_op.f("ix_share_holdings_issue_id"))
        batch_op.drop_index(batch_op.f("ix_share_holdings_campaign_id"))

    op.drop_table("share_holdings")
    with op.batch_alter_table("loan_repayments", schema=None) as batch_op:
        batch_op.drop_index("ix_loan_repayments_state")
        batch_op.drop_index(batch_op.f("ix_loan_repayments_loan_id"))

    op.drop_table("loan_repayments")
    with op.batch_alter_table("loan_notices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_loan_notices_user_id"))
        batch_op.drop_index(batch_op.f("ix_loan_notices_loan_id"))

    op.drop_table("loan_notices")
    with op.batch_alter_table("loan_lenders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_loan_lenders_user_id"))
        batch_op.drop_index(batch_op.f("ix_loan_lenders_loan_id"))

    op.drop_table("loan_lenders")
    with op.batch_alter_table("loan_instalments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_loan_instalments_loan_id"))

    op.drop_table("loan_instalments")
    with op.batch_alter_table("share_issues", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_share_issues_organisation_id"))

    op.drop_table("share_issues")
    with op.batch_alter_table("settlement_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_settlement_items_user_id"))
        batch_op.drop_index("ix_settlement_items_settlement_state")
        batch_op.drop_index("ix_settlement_items_due")
        batch_op.drop_index(batch_op.f("ix_settlement_items_campaign_id"))

    op.drop_table("settlement_items")
    with op.batch_alter_table("reconfirmations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reconfirmations_user_id"))
        batch_op.drop_index(batch_op.f("ix_reconfirmations_pledge_id"))
        batch_op.drop_index("ix_reconfirmations_due")
        batch_op.drop_index(batch_op.f("ix_reconfirmations_campaign_id"))

    op.drop_table("reconfirmations")
    with op.batch_alter_table("loans", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_loans_state"))
        batch_op.drop_index(batch_op.f("ix_loans_organisation_id"))

    op.drop_table("loans")
    with op.batch_alter_table("investor_notices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_investor_notices_user_id"))

    op.drop_table("investor_notices")
    with op.batch_alter_table("hidden_donor_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hidden_donor_messages_campaign_id"))

    op.drop_table("hidden_donor_messages")
    with op.batch_alter_table("settlements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_settlements_state"))
        batch_op.drop_index(batch_op.f("ix_settlements_organisation_id"))

    op.drop_table("settlements")
    with op.batch_alter_table("round_amendments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_round_amendments_campaign_id"))

    op.drop_table("round_amendments")
    op.drop_table("pre_round_shares")
    _checks(ACCOUNT_PURPOSES.format(""), CARD_BEHAVIOURS.format(""))
