"""PostgreSQL rules for the ledger that no code path can get around.

`POSTGRES_GUARDS_SQL` is run by `crowdfund.models.create_schema()` (tests) and by the
migration that creates the ledger tables. It is idempotent, and contains no '%' (it is
sent through the driver, where '%' would start a placeholder).

- ledger_entries and ledger_transactions refuse UPDATE and DELETE (append-only).
- ledger_accounts refuse DELETE and any UPDATE of what says whose account it is (code,
  purpose, type, currency, owner, overdraft rule); only the running balance and the
  entry count change.
- A deferred constraint trigger checks, at COMMIT, that every transaction touched has at
  least two entries and that its debits equal its credits in every currency.
- Another refuses a transaction that touches two campaign escrows: one campaign's
  backers' money never pays into another campaign.
- campaign_events (lifecycle moves and review decisions) refuse UPDATE and DELETE.

Triggers stop every role but one that may disable them (a superuser or the table owner);
what they cannot stop, the hash chain and a head published outside the database detect.
"""

POSTGRES_GUARDS_SQL = r"""
CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING
        MESSAGE = 'ledger history is append-only: ' || TG_OP || ' on ' || TG_TABLE_NAME
                  || ' refused; post a reversing transaction instead',
        ERRCODE = 'restrict_violation';
END;
$$;

DROP TRIGGER IF EXISTS ledger_entries_append_only ON ledger_entries;
CREATE TRIGGER ledger_entries_append_only
    BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

DROP TRIGGER IF EXISTS ledger_transactions_append_only ON ledger_transactions;
CREATE TRIGGER ledger_transactions_append_only
    BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE OR REPLACE FUNCTION ledger_refuse_account_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE'
       OR NEW.id IS DISTINCT FROM OLD.id
       OR NEW.code IS DISTINCT FROM OLD.code
       OR NEW.purpose IS DISTINCT FROM OLD.purpose
       OR NEW.type IS DISTINCT FROM OLD.type
       OR NEW.currency IS DISTINCT FROM OLD.currency
       OR NEW.owner_type IS DISTINCT FROM OLD.owner_type
       OR NEW.owner_id IS DISTINCT FROM OLD.owner_id
       OR NEW.non_negative IS DISTINCT FROM OLD.non_negative
       OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        RAISE EXCEPTION USING
            MESSAGE = 'ledger accounts keep their identity: ' || TG_OP || ' of account ' || OLD.id
                      || ' refused',
            ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS ledger_accounts_identity ON ledger_accounts;
CREATE TRIGGER ledger_accounts_identity
    BEFORE UPDATE OR DELETE ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_account_change();

CREATE OR REPLACE FUNCTION ledger_check_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    txn_id bigint;
    entry_count integer;
    bad record;
BEGIN
    IF TG_TABLE_NAME = 'ledger_transactions' THEN
        txn_id := NEW.id;
    ELSE
        txn_id := NEW.transaction_id;
        -- A transaction written by this same database transaction is checked once, by the
        -- trigger on its ledger_transactions row; only entries added to an older
        -- transaction are checked here (else a 10,000-leg posting reads 10,000^2 rows).
        IF EXISTS (SELECT 1 FROM ledger_transactions t
                    WHERE t.id = txn_id AND t.xmin = pg_current_xact_id()::xid) THEN
            RETURN NULL;
        END IF;
    END IF;
    SELECT count(*) INTO entry_count FROM ledger_entries WHERE transaction_id = txn_id;
    IF entry_count < 2 THEN
        RAISE EXCEPTION USING
            MESSAGE = 'ledger transaction ' || txn_id || ' has ' || entry_count
                      || ' entries; at least two are needed',
            ERRCODE = 'check_violation';
    END IF;
    SELECT currency,
           SUM(CASE WHEN side = 'debit' THEN amount ELSE -amount END) AS difference
      INTO bad
      FROM ledger_entries
     WHERE transaction_id = txn_id
     GROUP BY currency
    HAVING SUM(CASE WHEN side = 'debit' THEN amount ELSE -amount END) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING
            MESSAGE = 'ledger transaction ' || txn_id || ' does not balance in ' || bad.currency
                      || ' (debits minus credits = ' || bad.difference || ')',
            ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS ledger_entries_balanced ON ledger_entries;
CREATE CONSTRAINT TRIGGER ledger_entries_balanced
    AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();

DROP TRIGGER IF EXISTS ledger_transactions_balanced ON ledger_transactions;
CREATE CONSTRAINT TRIGGER ledger_transactions_balanced
    AFTER INSERT ON ledger_transactions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();

CREATE OR REPLACE FUNCTION ledger_check_escrow_movement() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    txn_id bigint;
    escrows integer;
BEGIN
    IF TG_TABLE_NAME = 'ledger_transactions' THEN
        txn_id := NEW.id;
    ELSE
        txn_id := NEW.transaction_id;
        IF EXISTS (SELECT 1 FROM ledger_transactions t
                    WHERE t.id = txn_id AND t.xmin = pg_current_xact_id()::xid) THEN
            RETURN NULL;  -- checked once, by the trigger on the transaction's own row
        END IF;
    END IF;
    SELECT count(DISTINCT a.id) INTO escrows
      FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id
     WHERE e.transaction_id = txn_id AND a.purpose = 'campaign_escrow';
    IF escrows > 1 THEN
        RAISE EXCEPTION USING
            MESSAGE = 'ledger transaction ' || txn_id
                      || ' moves money between campaign escrows; that is never allowed',
            ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS ledger_entries_one_escrow ON ledger_entries;
CREATE CONSTRAINT TRIGGER ledger_entries_one_escrow
    AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_escrow_movement();

DROP TRIGGER IF EXISTS ledger_transactions_one_escrow ON ledger_transactions;
CREATE CONSTRAINT TRIGGER ledger_transactions_one_escrow
    AFTER INSERT ON ledger_transactions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_escrow_movement();

CREATE OR REPLACE FUNCTION campaign_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING
        MESSAGE = 'campaign events are append-only: ' || TG_OP || ' on campaign_events refused',
        ERRCODE = 'restrict_violation';
END;
$$;

DROP TRIGGER IF EXISTS campaign_events_append_only ON campaign_events;
CREATE TRIGGER campaign_events_append_only
    BEFORE UPDATE OR DELETE ON campaign_events
    FOR EACH ROW EXECUTE FUNCTION campaign_events_refuse_change();
"""
