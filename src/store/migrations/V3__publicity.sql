-- jifen schema, version 3: the 公示 boards as read models (docs/adr/0005-serving-from-postgresql.md),
-- written with the records like the balances of V2: each publication, its entries in board
-- order, and its objections in the order they were filed. Derived rows, checked against a
-- replay by every load and VerifyLedger, rebuilt by `jifen rebuild`.

CREATE TABLE rm_publications (
    ledger_id       text    NOT NULL REFERENCES read_models (ledger_id),
    publication_id  text    NOT NULL,
    period          text    NOT NULL CHECK (period ~ '^[0-9]{4}-[0-9]{2}$'),
    window_start    bigint  NOT NULL,
    window_end      bigint  NOT NULL,
    closed          boolean NOT NULL,
    PRIMARY KEY (ledger_id, publication_id)
);

-- category: 0 basic, 1 contribution, 2 deduction. status: 0 公示中, 1 有异议, 2 异议成立,
-- 3 异议不成立, 4 已生效, 5 已作废.
CREATE TABLE rm_board_entries (
    ledger_id       text     NOT NULL,
    publication_id  text     NOT NULL,
    position        integer  NOT NULL CHECK (position >= 0),
    entry_id        text     NOT NULL,
    household_id    text     NOT NULL,
    item_code       text     NOT NULL,
    item_name       text     NOT NULL,
    category        smallint NOT NULL CHECK (category BETWEEN 0 AND 2),
    occurred_on     text     NOT NULL,
    scored_points   bigint   NOT NULL,
    points          bigint   NOT NULL,
    status          smallint NOT NULL CHECK (status BETWEEN 0 AND 5),
    PRIMARY KEY (ledger_id, publication_id, position),
    FOREIGN KEY (ledger_id, publication_id) REFERENCES rm_publications (ledger_id, publication_id)
);

-- outcome: NULL while undecided, else the ObjectionOutcome number (1 upheld, 2 dismissed).
CREATE TABLE rm_objections (
    ledger_id       text     NOT NULL,
    publication_id  text     NOT NULL,
    position        integer  NOT NULL CHECK (position >= 0),
    objection_id    text     NOT NULL,
    entry_id        text     NOT NULL,
    objector        text     NOT NULL,
    reason          text     NOT NULL,
    filed_at        bigint   NOT NULL,
    outcome         smallint,
    finding         text     NOT NULL,
    decided_at      bigint,
    correction      text,
    PRIMARY KEY (ledger_id, publication_id, position),
    FOREIGN KEY (ledger_id, publication_id) REFERENCES rm_publications (ledger_id, publication_id)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON rm_publications, rm_board_entries, rm_objections TO jifen_app;

-- The read models written before this version have no boards: they are cleared, and each
-- ledger's next load builds its read model again from the records (the path a ledger stored
-- before V2 takes). Records, checkpoints and Merkle nodes are not touched.
DELETE FROM rm_balances;
DELETE FROM rm_period_figures;
DELETE FROM rm_rulebooks;
DELETE FROM read_models;
