-- The event log. Column names match postgres-es 0.5 so its repository can load aggregates from it;
-- position, tx_id, event_id, recorded_at and the hashes are FAFCab's additions (DESIGN.md §2).
CREATE TABLE events (
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        jsonb                        NOT NULL,
    metadata       jsonb                        NOT NULL,
    position       bigint GENERATED ALWAYS AS IDENTITY,
    -- the writing transaction: readers only take rows whose transaction ended before their snapshot
    tx_id          xid8                         NOT NULL DEFAULT pg_current_xact_id(),
    event_id       uuid                         NOT NULL,
    recorded_at    timestamptz                  NOT NULL,
    payload_hash   bytea                        NOT NULL,
    hash           bytea                        NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE INDEX events_log_idx ON events (tx_id, position);
CREATE INDEX events_position_idx ON events (position);

-- Set-based invariants (unique item names, SKUs) claimed in the same transaction as the append.
CREATE TABLE claims (
    scope text NOT NULL,
    value text NOT NULL,
    owner text NOT NULL,
    PRIMARY KEY (scope, value)
);

-- Idempotency-Key replay store, written in the same transaction as the events it answers for.
CREATE TABLE idempotency_keys (
    user_id      text        NOT NULL,
    key          text        NOT NULL,
    request_hash text        NOT NULL,
    status       integer     NOT NULL,
    body         text        NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (user_id, key)
);

-- Where each projection (and the relay) has read the log up to: (tx_id, position) of the last event.
CREATE TABLE projection_checkpoints (
    name       text        PRIMARY KEY,
    tx_id      bigint      NOT NULL,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Wake readers in other processes when an append commits (NOTIFY is delivered at commit).
CREATE FUNCTION fafcab_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fafcab_events', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION fafcab_notify_events();
