"""PostgreSQL rules for the ledger that no code path can get around.

`POSTGRES_GUARDS_SQL` is run by `crowdfund.database.create_schema()` (tests) and by the
migration that creates the ledger tables. It is idempotent, and contains no '%' (it is
sent through the driver, where '%' would start a placeholder).

- ledger_entries and ledger_transactions refuse UPDATE and DELETE (append-only).
- A deferred constraint trigger checks, at COMMIT, that every transaction touched has at
  least two entries and that its debits equal its credits in every currency.
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
"""
