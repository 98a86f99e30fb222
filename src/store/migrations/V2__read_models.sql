-- jifen schema, version 2: read models in PostgreSQL (docs/adr/0005-serving-from-postgresql.md).
--
-- Derived tables, not records: every row is a function of a ledger's records, written in the
-- transaction that appends the records it reflects, checked against a replay by VerifyLedger
-- and by every load, and rebuilt from the records by `jifen rebuild`. They may therefore change
-- (the service's role updates them), unlike the ledger tables.

-- One row per ledger: the tree the read model reflects. The checkpoint of that size is stored
-- in the same transaction, so every answer names a tree with a signed checkpoint.
CREATE TABLE read_models (
    ledger_id         text   PRIMARY KEY REFERENCES ledgers (ledger_id),
    tree_size         bigint NOT NULL CHECK (tree_size > 0),
    root_hash         bytea  NOT NULL CHECK (length(root_hash) = 32),
    -- The recorded_at of the last record (µs): a query judges balances no earlier than it.
    last_recorded_at  bigint NOT NULL,
    -- The calendar year the balances' available figures belong to (annual expiry).
    book_year         integer
);

-- Each household's balance (docs/FORMAT.md §7 figures), as the write-model's book holds it.
CREATE TABLE rm_balances (
    ledger_id           text   NOT NULL REFERENCES read_models (ledger_id),
    household_id        text   NOT NULL,
    basic               bigint NOT NULL,
    contribution        bigint NOT NULL,
    deducted            bigint NOT NULL,
    redeemed            bigint NOT NULL,
    carried_in          bigint NOT NULL,
    carried_out         bigint NOT NULL,
    earned_carried_in   bigint NOT NULL,
    earned_carried_out  bigint NOT NULL,
    expired             bigint NOT NULL,
    PRIMARY KEY (ledger_id, household_id)
);

-- Each household's figures per month ("YYYY-MM").
CREATE TABLE rm_period_figures (
    ledger_id     text   NOT NULL REFERENCES read_models (ledger_id),
    household_id  text   NOT NULL,
    period        text   NOT NULL CHECK (period ~ '^[0-9]{4}-[0-9]{2}$'),
    basic         bigint NOT NULL,
    contribution  bigint NOT NULL,
    deducted      bigint NOT NULL,
    redeemed      bigint NOT NULL,
    returned      bigint NOT NULL,
    PRIMARY KEY (ledger_id, household_id, period)
);

-- The rulebooks adopted, for what a query needs of the one in force on a day (annual expiry).
CREATE TABLE rm_rulebooks (
    ledger_id       text    NOT NULL REFERENCES read_models (ledger_id),
    -- The seq of the record that adopted it (0: the genesis).
    adopted_at      bigint  NOT NULL,
    effective_from  text    NOT NULL CHECK (effective_from ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'),
    annual_expiry   boolean NOT NULL,
    PRIMARY KEY (ledger_id, adopted_at)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON read_models, rm_balances, rm_period_figures, rm_rulebooks TO jifen_app;

-- An append moves each read-model head from the tree size its writer decided on. If a head is
-- not there (another process appended first, or the row was removed), the whole transaction
-- fails with SQLSTATE JF409, which the service reads as a concurrent writer.
CREATE FUNCTION jifen_heads_moved(moved bigint, expected integer) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    IF moved <> expected THEN
        RAISE EXCEPTION 'jifen: % of % read-model heads were at the tree size their writer decided on', moved, expected
            USING ERRCODE = 'JF409';
    END IF;
    RETURN moved;
END
$$;
