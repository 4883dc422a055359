"""Patient aid paid to hospitals; equity rounds waiting for reconfirmations.

New tables: hospitals (providers with their own verified payout account),
patient_aid_tranches and patient_aid_invoice_items (payouts against itemised invoices),
patient_aid_reports (a report holds a tranche), patient_aid_surplus_returns and
patient_aid_surplus_refunds (what an appeal did not need, returned pro rata).
equity_terms.reconfirm_until: while investors are asked to reconfirm a changed round, it
neither closes early nor settles.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "hospitals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("licence_number", sa.String(length=60), nullable=False),
        sa.Column("city", sa.String(length=100), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("gateway", sa.String(length=20), nullable=False),
        sa.Column("account_id", sa.String(length=100), nullable=False),
        sa.Column("bank_name", sa.String(length=120), nullable=True),
        sa.Column("last4", sa.String(length=4), nullable=True),
        sa.Column("payouts_enabled", sa.Boolean(), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verified_by_id", sa.Integer(), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_hospitals_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["verified_by_id"], ["users.id"], name=op.f("fk_hospitals_verified_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hospitals")),
        sa.UniqueConstraint("account_id", name=op.f("uq_hospitals_account_id")),
        sa.UniqueConstraint("licence_number", name=op.f("uq_hospitals_licence_number")),
    )
    op.create_table(
        "patient_aid_surplus_returns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column(
            "reason",
            sa.Enum(
                "treatment_finished",
                "period_over",
                name="surplus_reason",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("ended_by_id", sa.Integer(), nullable=True),
        sa.Column("surplus_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_patient_aid_surplus_returns_campaign_id_campaigns"),
        ),
        sa.ForeignKeyConstraint(
            ["ended_by_id"], ["users.id"], name=op.f("fk_patient_aid_surplus_returns_ended_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_aid_surplus_returns")),
        sa.UniqueConstraint("campaign_id", name=op.f("uq_patient_aid_surplus_returns_campaign_id")),
    )
    op.create_table(
        "patient_aid_tranches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("hospital_id", sa.Integer(), nullable=False),
        sa.Column("request_key", sa.String(length=100), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "requested",
                "in_notice",
                "held",
                "paying",
                "paid",
                "rejected",
                name="tranche_state",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("amount_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("purpose", sa.String(length=300), nullable=False),
        sa.Column("invoice_number", sa.String(length=60), nullable=False),
        sa.Column("invoice_file", sa.String(length=100), nullable=False),
        sa.Column("invoice_content_type", sa.String(length=40), nullable=False),
        sa.Column("requested_by_id", sa.Integer(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rejection_reason", sa.Text(), nullable=True),
        sa.Column("notice_ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payout_operation_id", sa.Integer(), nullable=True),
        sa.Column("status_code", sa.String(length=60), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_amount > 0", name=op.f("ck_patient_aid_tranches_amount_positive")),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_patient_aid_tranches_campaign_id_campaigns")
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"], ["users.id"], name=op.f("fk_patient_aid_tranches_decided_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["hospital_id"], ["hospitals.id"], name=op.f("fk_patient_aid_tranches_hospital_id_hospitals")
        ),
        sa.ForeignKeyConstraint(
            ["payout_operation_id"],
            ["payment_operations.id"],
            name=op.f("fk_patient_aid_tranches_payout_operation_id_payment_operations"),
        ),
        sa.ForeignKeyConstraint(
            ["requested_by_id"], ["users.id"], name=op.f("fk_patient_aid_tranches_requested_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_aid_tranches")),
        sa.UniqueConstraint("request_key", name=op.f("uq_patient_aid_tranches_request_key")),
    )
    with op.batch_alter_table("patient_aid_tranches", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_patient_aid_tranches_campaign_id"), ["campaign_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_patient_aid_tranches_hospital_id"), ["hospital_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_patient_aid_tranches_notice_ends_at"), ["notice_ends_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_patient_aid_tranches_state"), ["state"], unique=False)

    op.create_table(
        "patient_aid_invoice_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tranche_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("amount_amount", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount_amount > 0", name=op.f("ck_patient_aid_invoice_items_amount_positive")),
        sa.ForeignKeyConstraint(
            ["tranche_id"],
            ["patient_aid_tranches.id"],
            name=op.f("fk_patient_aid_invoice_items_tranche_id_patient_aid_tranches"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_aid_invoice_items")),
    )
    with op.batch_alter_table("patient_aid_invoice_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_patient_aid_invoice_items_tranche_id"), ["tranche_id"], unique=False
        )

    op.create_table(
        "patient_aid_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tranche_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cleared_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["cleared_by_id"], ["users.id"], name=op.f("fk_patient_aid_reports_cleared_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["tranche_id"],
            ["patient_aid_tranches.id"],
            name=op.f("fk_patient_aid_reports_tranche_id_patient_aid_tranches"),
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_patient_aid_reports_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_aid_reports")),
        sa.UniqueConstraint("tranche_id", "user_id", name="one_report_per_user"),
    )
    with op.batch_alter_table("patient_aid_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_patient_aid_reports_tranche_id"), ["tranche_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_patient_aid_reports_user_id"), ["user_id"], unique=False)

    op.create_table(
        "patient_aid_surplus_refunds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("surplus_return_id", sa.Integer(), nullable=False),
        sa.Column("pledge_id", sa.Integer(), nullable=False),
        sa.Column("amount_amount", sa.BigInteger(), nullable=False),
        sa.Column("refund_operation_id", sa.Integer(), nullable=True),
        sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status_code", sa.String(length=60), nullable=True),
        sa.CheckConstraint("amount_amount > 0", name=op.f("ck_patient_aid_surplus_refunds_amount_positive")),
        sa.ForeignKeyConstraint(
            ["pledge_id"], ["pledges.id"], name=op.f("fk_patient_aid_surplus_refunds_pledge_id_pledges")
        ),
        sa.ForeignKeyConstraint(
            ["refund_operation_id"],
            ["payment_operations.id"],
            name=op.f("fk_patient_aid_surplus_refunds_refund_operation_id_payment_operations"),
        ),
        sa.ForeignKeyConstraint(
            ["surplus_return_id"],
            ["patient_aid_surplus_returns.id"],
            name=op.f("fk_patient_aid_surplus_refunds_surplus_return_id_patient_aid_surplus_returns"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_aid_surplus_refunds")),
        sa.UniqueConstraint("surplus_return_id", "pledge_id", name="one_part_per_pledge"),
    )
    with op.batch_alter_table("patient_aid_surplus_refunds", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_patient_aid_surplus_refunds_pledge_id"), ["pledge_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_patient_aid_surplus_refunds_surplus_return_id"),
            ["surplus_return_id"],
            unique=False,
        )

    with op.batch_alter_table("equity_terms", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reconfirm_until", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE equity_terms SET reconfirm_until = (SELECT max(r.deadline) FROM reconfirmations r "
        "WHERE r.campaign_id = equity_terms.campaign_id AND r.state = 'pending') "
        "WHERE EXISTS (SELECT 1 FROM reconfirmations r "
        "WHERE r.campaign_id = equity_terms.campaign_id AND r.state = 'pending')"
    )


def downgrade():
    with op.batch_alter_table("equity_terms", schema=None) as batch_op:
        batch_op.drop_column("reconfirm_until")

    with op.batch_alter_table("patient_aid_surplus_refunds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patient_aid_surplus_refunds_surplus_return_id"))
        batch_op.drop_index(batch_op.f("ix_patient_aid_surplus_refunds_pledge_id"))

    op.drop_table("patient_aid_surplus_refunds")
    with op.batch_alter_table("patient_aid_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patient_aid_reports_user_id"))
        batch_op.drop_index(batch_op.f("ix_patient_aid_reports_tranche_id"))

    op.drop_table("patient_aid_reports")
    with op.batch_alter_table("patient_aid_invoice_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patient_aid_invoice_items_tranche_id"))

    op.drop_table("patient_aid_invoice_items")
    with op.batch_alter_table("patient_aid_tranches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patient_aid_tranches_state"))
        batch_op.drop_index(batch_op.f("ix_patient_aid_tranches_notice_ends_at"))
        batch_op.drop_index(batch_op.f("ix_patient_aid_tranches_hospital_id"))
        batch_op.drop_index(batch_op.f("ix_patient_aid_tranches_campaign_id"))

    op.drop_table("patient_aid_tranches")
    op.drop_table("patient_aid_surplus_returns")
    op.drop_table("hospitals")
