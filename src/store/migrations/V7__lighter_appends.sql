-- jifen schema, version 7: less written per append (docs/BENCHMARKS.md, twelfth session).
--
-- No Merkle node is stored any more. A server's tree keeps its upper levels (subtrees of 256
-- records and more) and its frontier; a proof that needs a lower node computes it from the
-- stored record_hash column of the (at most 128) records under it, and is served only if it
-- leads to the root the log signed. The nodes were two rows per record, each with its index
-- entry and its foreign-key check.
DROP TABLE merkle_nodes;

-- The read models are derived rows, rebuilt from the records and checked against a replay on
-- every load and by VerifyLedger: their foreign keys guarded nothing those checks do not, and
-- cost a lookup per written row. (The ledger's own tables keep theirs.)
DO $$
DECLARE c record;
BEGIN
    FOR c IN SELECT conrelid::regclass AS t, conname FROM pg_constraint
             WHERE contype = 'f' AND conrelid::regclass::text LIKE 'rm\_%' LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', c.t, c.conname);
    END LOOP;
END
$$;

-- The keys of the acts' index, as one expression PostgreSQL inlines (the body of version 5 had
-- subqueries, so it ran as a SQL function, planned again for every statement and called for
-- every row). Ids are `[A-Za-z0-9._:-]` (docs/RULES.md), never a space or a line feed, so each signer and
-- household gives one key, as before.
CREATE OR REPLACE FUNCTION jifen_act_keys(ledger text, signers text, households text) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN signers = '' THEN '{}'::text[]
                ELSE string_to_array(ledger || ' a ' || replace(signers, ' ', E'\n' || ledger || ' a '), E'\n') END
        || CASE WHEN households = '' THEN '{}'::text[]
                ELSE string_to_array(ledger || ' h ' || replace(households, ' ', E'\n' || ledger || ' h '), E'\n') END
$$;
REINDEX INDEX rm_acts_subjects;
