-- jifen schema, version 4: the supermarket ledger (积分超市管理台账) as a read model
-- (docs/adr/0005-serving-from-postgresql.md), written with the records like the balances and the
-- 公示 boards: each month with activity, its receipts in the order recorded, and every goods
-- known at its end with the month's movements.

CREATE TABLE rm_supermarket_months (
    ledger_id        text    NOT NULL REFERENCES read_models (ledger_id),
    period           text    NOT NULL CHECK (period ~ '^[0-9]{4}-[0-9]{2}$'),
    exchanges        bigint  NOT NULL,
    reversals        bigint  NOT NULL,
    points           bigint  NOT NULL,
    points_returned  bigint  NOT NULL,
    PRIMARY KEY (ledger_id, period)
);

CREATE TABLE rm_supermarket_receipts (
    ledger_id    text     NOT NULL,
    period       text     NOT NULL,
    position     integer  NOT NULL CHECK (position >= 0),
    receipt_id   text     NOT NULL,
    goods_code   text     NOT NULL,
    quantity     bigint   NOT NULL,
    -- The StockSource number.
    source       integer  NOT NULL,
    donor        text     NOT NULL,
    recorded_at  bigint   NOT NULL,
    PRIMARY KEY (ledger_id, period, position),
    FOREIGN KEY (ledger_id, period) REFERENCES rm_supermarket_months (ledger_id, period)
);

-- net_out: units handed out net of returns in the month, NULL if the month moved none.
CREATE TABLE rm_supermarket_goods (
    ledger_id        text    NOT NULL,
    period           text    NOT NULL,
    goods_code       text    NOT NULL,
    name             text    NOT NULL,
    stock            bigint  NOT NULL,
    price            bigint,
    received         bigint  NOT NULL,
    out_units        bigint  NOT NULL,
    returned         bigint  NOT NULL,
    points           bigint  NOT NULL,
    points_returned  bigint  NOT NULL,
    net_out          bigint,
    PRIMARY KEY (ledger_id, period, goods_code),
    FOREIGN KEY (ledger_id, period) REFERENCES rm_supermarket_months (ledger_id, period)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON rm_supermarket_months, rm_supermarket_receipts, rm_supermarket_goods TO jifen_app;

-- The read models written before this version have no supermarket: they are cleared, and each
-- ledger's next load builds its read model again from the records.
DELETE FROM rm_board_entries;
DELETE FROM rm_objections;
DELETE FROM rm_publications;
DELETE FROM rm_balances;
DELETE FROM rm_period_figures;
DELETE FROM rm_rulebooks;
DELETE FROM read_models;
