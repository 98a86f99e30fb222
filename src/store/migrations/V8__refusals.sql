-- jifen schema, version 8: the refusal log. A signed event the write-model (or the deployment's
-- rule on who may open a village) refused is kept here with its signatures and the rule it
-- broke, outside the ledger: the supervision group sees attempts, not only successes. Like the
-- records, its rows are never changed or removed. Bounded (Store::log_refusal): only for
-- ledgers that exist, at most REFUSALS_PER_SIGNER a day per ledger and signer, and
-- REFUSALS_PER_LEDGER a day per ledger; past either, a refusal is only logged.
CREATE TABLE refusals (
    id           bigint   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ledger_id    text     NOT NULL CHECK (ledger_id ~ '^[0-9]{12}$'),
    -- The server's clock when it refused (µs since the Unix epoch).
    refused_at   bigint   NOT NULL,
    -- The key of the event's first signature (32 zero bytes if it had none).
    signer       bytea    NOT NULL CHECK (length(signer) = 32),
    -- The reason the client's ErrorInfo named, and its message.
    reason       text     NOT NULL,
    message      text     NOT NULL,
    -- The event's place in its request.
    event_index  integer  NOT NULL CHECK (event_index >= 0),
    body         bytea    NOT NULL CHECK (length(body) <= 65536),
    -- n × (32-byte public key || 64-byte signature), as submitted.
    signatures   bytea    NOT NULL CHECK (length(signatures) % 96 = 0 AND length(signatures) <= 1536)
);
CREATE INDEX refusals_by_signer ON refusals (ledger_id, signer, refused_at);
CREATE INDEX refusals_by_time ON refusals (ledger_id, refused_at);
CREATE TRIGGER refusals_append_only BEFORE UPDATE OR DELETE ON refusals FOR EACH ROW EXECUTE FUNCTION jifen_refuse_change();
CREATE TRIGGER refusals_no_truncate BEFORE TRUNCATE ON refusals FOR EACH STATEMENT EXECUTE FUNCTION jifen_refuse_change();
GRANT SELECT, INSERT ON refusals TO jifen_app;
