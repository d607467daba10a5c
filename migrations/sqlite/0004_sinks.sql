-- Notification inbox: one row per (event, audience); a user's inbox is what is addressed to them,
-- to one of their roles, or to everyone. The unique key deduplicates redelivered CloudEvents.
CREATE TABLE notifications (
    id            TEXT        PRIMARY KEY,
    event_id      TEXT        NOT NULL,
    audience_kind TEXT        NOT NULL CHECK (audience_kind IN ('user', 'role', 'all')),
    audience      TEXT        NOT NULL,
    type          TEXT        NOT NULL,
    title         TEXT        NOT NULL,
    body          TEXT        NOT NULL,
    data          TEXT        NOT NULL,
    created_at    TEXT        NOT NULL,
    seq           INTEGER     NOT NULL,
    UNIQUE (event_id, audience_kind, audience)
);
CREATE INDEX notifications_audience_idx ON notifications (audience_kind, audience, seq);

CREATE TABLE notification_reads (
    notification_id TEXT        NOT NULL,
    user_id         TEXT        NOT NULL,
    read_at         TEXT        NOT NULL,
    PRIMARY KEY (notification_id, user_id)
);

CREATE TABLE notification_deletions (
    notification_id TEXT        NOT NULL,
    user_id         TEXT        NOT NULL,
    deleted_at      TEXT        NOT NULL,
    PRIMARY KEY (notification_id, user_id)
);

-- Events the Discord sink has posted: a redelivered message is not posted twice.
CREATE TABLE discord_posted (
    event_id  TEXT        PRIMARY KEY,
    posted_at TEXT        NOT NULL
);

-- Dead letters of sinks driven from the log (without RabbitMQ, which keeps its own DLQs).
CREATE TABLE dead_letters (
    sink      TEXT        NOT NULL,
    event_id  TEXT        NOT NULL,
    type      TEXT        NOT NULL,
    reason    TEXT        NOT NULL,
    body      TEXT        NOT NULL,
    failed_at TEXT        NOT NULL,
    PRIMARY KEY (sink, event_id)
);
