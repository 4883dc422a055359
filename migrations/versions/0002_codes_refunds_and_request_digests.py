"""Codes instead of stored sentences, refunds on pledges, request digests, account identity in the hash.

- campaign_events: `code` and `params` (system events are stored as a code, not English).
- payment_operations: `failure_message` becomes `gateway_message` (the gateway's own words,
  for operators); what a backer reads is rendered from `failure_code`.
- pledges: `failure_code`/`failure_params` replace `failure_message`; `refunded_amount`
  (with a check that it stays within the amount); `request_digest` (a replayed key must
  carry the same request).
- ledger: each transaction's hash now covers the identity of every account it touches,
  so the existing chain is hashed again in order (verify it with the old code before
  upgrading, and publish the old and new heads side by side: heads kept from before
  this migration no longer match).
- PostgreSQL: the guards are installed again (account identity, no escrow-to-escrow
  movement, append-only campaign_events).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from crowdfund.ledger.guards import POSTGRES_GUARDS_SQL

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("campaign_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("params", sa.JSON(), nullable=True))

    with op.batch_alter_table("payment_operations", schema=None) as batch_op:
        batch_op.alter_column("failure_message", new_column_name="gateway_message")

    with op.batch_alter_table("pledges", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failure_code", sa.String(length=60), nullable=True))
        batch_op.add_column(sa.Column("failure_params", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("refunded_amount", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("request_digest", sa.String(length=64), nullable=True))
    op.execute("UPDATE pledges SET failure_code = 'payment_declined' WHERE failure_message IS NOT NULL")
    with op.batch_alter_table("pledges", schema=None) as batch_op:
        batch_op.drop_column("failure_message")
        batch_op.create_check_constraint(
            "refunded_within_amount", "refunded_amount >= 0 AND refunded_amount <= amount_amount"
        )

    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    if postgres:
        bind.exec_driver_sql("ALTER TABLE ledger_transactions DISABLE TRIGGER ledger_transactions_append_only")
    _rehash_ledger(bind)
    if postgres:
        bind.exec_driver_sql("ALTER TABLE ledger_transactions ENABLE TRIGGER ledger_transactions_append_only")
        bind.exec_driver_sql(POSTGRES_GUARDS_SQL)


def _rehash_ledger(bind) -> None:
    """Hash every transaction again, in order, with the identity of its accounts."""
    from crowdfund.ledger.models import GENESIS_HASH, account_sha256, canonical_content, sha256_hex

    codes = dict(bind.execute(sa.text("SELECT id, code FROM ledger_accounts")).all())
    entries_of: dict[int, list] = {}
    for txn_id, account_id, side, amount, currency in bind.execute(
        sa.text("SELECT transaction_id, account_id, side, amount, currency FROM ledger_entries")
    ):
        entries_of.setdefault(txn_id, []).append(
            (account_id, account_sha256(codes[account_id]), side, int(amount), currency)
        )
    prev = GENESIS_HASH
    transactions = sa.table(
        "ledger_transactions",
        sa.column("id"),
        sa.column("sequence"),
        sa.column("key"),
        sa.column("created_at"),
        sa.column("kind"),
        sa.column("description"),
        sa.column("campaign_id"),
        sa.column("reverses_id"),
        sa.column("prev_hash"),
        sa.column("hash"),
    )
    rows = bind.execute(sa.select(transactions).order_by(transactions.c.sequence)).all()
    for t in rows:
        created_at = t.created_at
        if isinstance(created_at, str):  # SQLite hands back text
            from datetime import datetime

            created_at = datetime.fromisoformat(created_at)
        if created_at.tzinfo is None:
            from datetime import UTC

            created_at = created_at.replace(tzinfo=UTC)
        digest = sha256_hex(
            canonical_content(
                sequence=t.sequence,
                key=t.key,
                created_at=created_at,
                kind=t.kind,
                description=t.description,
                campaign_id=t.campaign_id,
                reverses_id=t.reverses_id,
                entries=entries_of.get(t.id, []),
                prev_hash=prev,
            )
        )
        bind.execute(
            sa.update(transactions).where(transactions.c.id == t.id).values(prev_hash=prev, hash=digest)
        )
        prev = digest
    if rows:
        bind.execute(sa.text("UPDATE ledger_chain_head SET head_hash = :h"), {"h": prev})


def downgrade():
    with op.batch_alter_table("pledges", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_pledges_refunded_within_amount"), type_="check")
        batch_op.add_column(sa.Column("failure_message", sa.VARCHAR(length=300), nullable=True))
    op.execute(
        "UPDATE pledges SET failure_message = 'The payment was declined.' WHERE failure_code IS NOT NULL"
    )
    with op.batch_alter_table("pledges", schema=None) as batch_op:
        batch_op.drop_column("request_digest")
        batch_op.drop_column("refunded_amount")
        batch_op.drop_column("failure_params")
        batch_op.drop_column("failure_code")

    with op.batch_alter_table("payment_operations", schema=None) as batch_op:
        batch_op.alter_column("gateway_message", new_column_name="failure_message")

    with op.batch_alter_table("campaign_events", schema=None) as batch_op:
        batch_op.drop_column("params")
        batch_op.drop_column("code")
    # The ledger keeps the new hashes: the old code cannot verify them (upgrade again).
