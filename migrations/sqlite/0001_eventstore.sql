-- The event log. SQLite has one writer at a time, so position (rowid) order is commit order.
CREATE TABLE events (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    aggregate_type TEXT    NOT NULL,
    aggregate_id   TEXT    NOT NULL,
    sequence       INTEGER NOT NULL CHECK (sequence >= 0),
    event_type     TEXT    NOT NULL,
    event_version  TEXT    NOT NULL,
    payload        TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    event_id       TEXT    NOT NULL,
    recorded_at    TEXT    NOT NULL,
    payload_hash   BLOB    NOT NULL,
    hash           BLOB    NOT NULL,
    UNIQUE (aggregate_type, aggregate_id, sequence)
);

CREATE TABLE claims (
    scope TEXT NOT NULL,
    value TEXT NOT NULL,
    owner TEXT NOT NULL,
    PRIMARY KEY (scope, value)
);

CREATE TABLE idempotency_keys (
    user_id      TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    status       INTEGER NOT NULL,
    body         TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    PRIMARY KEY (user_id, key)
);

CREATE TABLE projection_checkpoints (
    name       TEXT    PRIMARY KEY,
    tx_id      INTEGER NOT NULL,
    position   INTEGER NOT NULL,
    updated_at TEXT    NOT NULL
);
