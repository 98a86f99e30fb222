-- jifen schema, version 6: sealed snapshots of a village's decision state (ADR 0005 step 6).
-- A snapshot is derived data, like the read models: the write-model state, the server's views
-- and the upper levels of the Merkle tree after the first tree_size records, serialised
-- (body), and a note signed by the log key (seal) naming the origin, the size, the root and
-- the SHA-256 of the body. A load starts from the latest one whose seal opens and replays only
-- the records after it; a newer snapshot replaces the older ones.
CREATE TABLE snapshots (
    ledger_id  text   NOT NULL,
    tree_size  bigint NOT NULL CHECK (tree_size > 0),
    seal       text   NOT NULL,
    body       bytea  NOT NULL,
    PRIMARY KEY (ledger_id, tree_size)
);
-- The body is mostly digests, which do not compress: stored out of line, uncompressed.
ALTER TABLE snapshots ALTER COLUMN body SET STORAGE EXTERNAL;

GRANT SELECT, INSERT, UPDATE, DELETE ON snapshots TO jifen_app;
