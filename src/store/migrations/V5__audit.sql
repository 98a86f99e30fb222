-- jifen schema, version 5: the audit trail (acts by actor, household and entry; red flags) as a
-- read model (docs/adr/0005-serving-from-postgresql.md), written with the records like the
-- balances, the 公示 boards and the supermarket.

-- The keys an act is found by: 'ledger a actor' for each signer, 'ledger h household' for each
-- household it concerns. Ids never contain a space (docs/FORMAT.md: [A-Za-z0-9._:-]).
CREATE FUNCTION jifen_act_keys(ledger text, signers text, households text) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY(SELECT ledger || ' a ' || s FROM unnest(string_to_array(signers, ' ')) AS s
                 UNION ALL
                 SELECT ledger || ' h ' || h FROM unnest(string_to_array(households, ' ')) AS h)
$$;

-- One row per record: who signed it, what it concerns, and the red flag it raises alone
-- (flag: 0 back-dated, with flag_days; 1 correction without objection; 2 uncheckable scorer,
-- with flag_actor). No foreign key: one row per record, and the check would cost every append;
-- the head's checks (load, VerifyLedger) cover it.
CREATE TABLE rm_acts (
    ledger_id    text     NOT NULL,
    seq          bigint   NOT NULL CHECK (seq >= 0),
    kind         text     NOT NULL,
    author       text     NOT NULL,
    -- Actor ids, separated by one space.
    signers      text     NOT NULL,
    recorded_at  bigint   NOT NULL,
    occurred_at  bigint   NOT NULL,
    -- Household ids, separated by one space; the first is the one the act is about.
    households   text     NOT NULL,
    entry_id     text,
    flag         smallint,
    flag_days    integer,
    flag_actor   text,
    PRIMARY KEY (ledger_id, seq)
);
CREATE INDEX rm_acts_entry ON rm_acts (ledger_id, entry_id, seq) WHERE entry_id IS NOT NULL;
CREATE INDEX rm_acts_flagged ON rm_acts (ledger_id, seq) WHERE flag IS NOT NULL;
-- fastupdate off: an append updates the index itself, rather than a pending list that some
-- later append (or every query) pays for.
CREATE INDEX rm_acts_subjects ON rm_acts USING gin (jifen_act_keys(ledger_id, signers, households)) WITH (fastupdate = off);

-- What the monthly red flags need of each month: its scores, and the spread of its positive
-- points (households with a gain, the top tenth of them, their points and all points).
CREATE TABLE rm_audit_months (
    ledger_id   text     NOT NULL REFERENCES read_models (ledger_id),
    period      text     NOT NULL CHECK (period ~ '^[0-9]{4}-[0-9]{2}$'),
    scores      bigint   NOT NULL,
    gainers     integer  NOT NULL,
    top         integer  NOT NULL,
    top_points  bigint   NOT NULL,
    points      bigint   NOT NULL,
    PRIMARY KEY (ledger_id, period)
);

-- Scores signed by one panel member alone, per month and member.
CREATE TABLE rm_audit_alone (
    ledger_id  text    NOT NULL REFERENCES read_models (ledger_id),
    period     text    NOT NULL CHECK (period ~ '^[0-9]{4}-[0-9]{2}$'),
    actor_id   text    NOT NULL,
    scores     bigint  NOT NULL,
    PRIMARY KEY (ledger_id, period, actor_id)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON rm_acts, rm_audit_months, rm_audit_alone TO jifen_app;

-- The read models written before this version have no audit trail: they are cleared, and each
-- ledger's next load builds its read model again from the records.
DELETE FROM rm_supermarket_receipts;
DELETE FROM rm_supermarket_goods;
DELETE FROM rm_supermarket_months;
DELETE FROM rm_board_entries;
DELETE FROM rm_objections;
DELETE FROM rm_publications;
DELETE FROM rm_balances;
DELETE FROM rm_period_figures;
DELETE FROM rm_rulebooks;
DELETE FROM read_models;
