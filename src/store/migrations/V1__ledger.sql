-- jifen ledger schema, version 1 (docs/adr/0004-store-schema.md).
--
-- Ledger data (ledgers, records, merkle_nodes, checkpoints, cosignatures) is append-only:
-- triggers refuse UPDATE, DELETE and TRUNCATE for everyone, and the service's role
-- jifen_app is granted INSERT and SELECT only. Personal data lives in profiles, the one
-- table whose rows may change or be erased.

CREATE TABLE ledgers (
    ledger_id   text PRIMARY KEY CHECK (ledger_id ~ '^[0-9]{12}$'),
    origin      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE records (
    -- Global position across all ledgers, for catch-up readers.
    position     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ledger_id    text   NOT NULL REFERENCES ledgers (ledger_id),
    seq          bigint NOT NULL CHECK (seq >= 0),
    prev_hash    bytea  NOT NULL CHECK (length(prev_hash) = 32),
    recorded_at  bigint NOT NULL,
    body         bytea  NOT NULL CHECK (length(body) <= 65536),
    -- n × (32-byte public key || 64-byte signature), keys ascending (docs/FORMAT.md §4).
    signatures   bytea  NOT NULL CHECK (length(signatures) % 96 = 0 AND length(signatures) BETWEEN 96 AND 1536),
    record_hash  bytea  NOT NULL CHECK (length(record_hash) = 32),
    UNIQUE (ledger_id, seq)
);

-- Complete Merkle subtrees: hash of leaves [idx·2^level, (idx+1)·2^level) (docs/FORMAT.md §5).
CREATE TABLE merkle_nodes (
    ledger_id  text     NOT NULL REFERENCES ledgers (ledger_id),
    level      smallint NOT NULL CHECK (level BETWEEN 0 AND 63),
    idx        bigint   NOT NULL CHECK (idx >= 0),
    hash       bytea    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (ledger_id, level, idx)
);

CREATE TABLE checkpoints (
    ledger_id   text   NOT NULL REFERENCES ledgers (ledger_id),
    tree_size   bigint NOT NULL CHECK (tree_size > 0),
    root_hash   bytea  NOT NULL CHECK (length(root_hash) = 32),
    -- The signed note as the log signed it (docs/FORMAT.md §6).
    note        text   NOT NULL,
    signed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ledger_id, tree_size)
);

CREATE TABLE cosignatures (
    ledger_id   text   NOT NULL,
    tree_size   bigint NOT NULL,
    key_name    text   NOT NULL,
    key_id      bigint NOT NULL,
    signature   bytea  NOT NULL,
    added_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ledger_id, tree_size, key_name, key_id),
    FOREIGN KEY (ledger_id, tree_size) REFERENCES checkpoints (ledger_id, tree_size)
);

-- Display data for pseudonymous ids (公示 shows 户主 names). Never hashed or signed; erasable.
CREATE TABLE profiles (
    ledger_id     text NOT NULL,
    subject_id    text NOT NULL,
    display_name  text NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ledger_id, subject_id)
);

CREATE FUNCTION jifen_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'jifen: % on % refused: ledger data is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['ledgers', 'records', 'merkle_nodes', 'checkpoints', 'cosignatures'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION jifen_refuse_change()', t || '_append_only', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION jifen_refuse_change()', t || '_no_truncate', t);
    END LOOP;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'jifen_app') THEN
        CREATE ROLE jifen_app LOGIN;
    END IF;
END
$$;

GRANT SELECT, INSERT ON ledgers, records, merkle_nodes, checkpoints, cosignatures TO jifen_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON profiles TO jifen_app;
