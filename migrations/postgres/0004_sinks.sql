-- Notification inbox: one row per (event, audience); a user's inbox is what is addressed to them,
-- to one of their roles, or to everyone. The unique key deduplicates redelivered CloudEvents.
CREATE TABLE notifications (
    id            text        PRIMARY KEY,
    event_id      text        NOT NULL,
    audience_kind text        NOT NULL CHECK (audience_kind IN ('user', 'role', 'all')),
    audience      text        NOT NULL,
    type          text        NOT NULL,
    title         text        NOT NULL,
    body          text        NOT NULL,
    data          text        NOT NULL,
    created_at    timestamptz NOT NULL,
    seq           bigint      NOT NULL,
    UNIQUE (event_id, audience_kind, audience)
);
CREATE INDEX notifications_audience_idx ON notifications (audience_kind, audience, seq);

CREATE TABLE notification_reads (
    notification_id text        NOT NULL,
    user_id         text        NOT NULL,
    read_at         timestamptz NOT NULL,
    PRIMARY KEY (notification_id, user_id)
);

CREATE TABLE notification_deletions (
    notification_id text        NOT NULL,
    user_id         text        NOT NULL,
    deleted_at      timestamptz NOT NULL,
    PRIMARY KEY (notification_id, user_id)
);

-- Events the Discord sink has posted: a redelivered message is not posted twice.
CREATE TABLE discord_posted (
    event_id  text        PRIMARY KEY,
    posted_at timestamptz NOT NULL
);

-- Dead letters of sinks driven from the log (without RabbitMQ, which keeps its own DLQs).
CREATE TABLE dead_letters (
    sink      text        NOT NULL,
    event_id  text        NOT NULL,
    type      text        NOT NULL,
    reason    text        NOT NULL,
    body      text        NOT NULL,
    failed_at timestamptz NOT NULL,
    PRIMARY KEY (sink, event_id)
);
