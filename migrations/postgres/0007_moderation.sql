-- Moderation and reactions (read models of the `chat` projection), and full-text search.
CREATE TABLE chat_sanctions (
    id          text        PRIMARY KEY,
    user_id     text        NOT NULL,
    type        text        NOT NULL,
    scope       text        NOT NULL,
    chat_id     text,
    reason      text,
    applied_by  text        NOT NULL,
    applied_at  timestamptz NOT NULL,
    until       timestamptz,
    revoked_at  timestamptz,
    revoked_by  text,
    seq         bigint      NOT NULL
);
CREATE INDEX chat_sanctions_user_idx ON chat_sanctions (user_id, seq);
CREATE INDEX chat_sanctions_chat_idx ON chat_sanctions (chat_id, seq);

CREATE TABLE chat_reactions (
    id         text        PRIMARY KEY,
    message_id text        NOT NULL,
    user_id    text        NOT NULL,
    emoji      text        NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX chat_reactions_message_idx ON chat_reactions (message_id, created_at);

CREATE TABLE chat_reports (
    id               text        PRIMARY KEY,
    reporter_id      text        NOT NULL,
    message_id       text,
    chat_id          text,
    reported_user_id text,
    reason           text        NOT NULL,
    evidence         text        NOT NULL,
    status           text        NOT NULL,
    resolution_notes text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    seq              bigint      NOT NULL
);
CREATE INDEX chat_reports_status_idx ON chat_reports (status, seq);

CREATE TABLE chat_notices (
    id         text        PRIMARY KEY,
    title      text        NOT NULL,
    body       text        NOT NULL,
    created_by text        NOT NULL,
    chat_ids   text        NOT NULL,
    roles      text        NOT NULL,
    created_at timestamptz NOT NULL,
    seq        bigint      NOT NULL
);

-- Full-text search over message text ('simple': no language-specific stemming; the lab writes in
-- several languages).
CREATE INDEX chat_messages_fts_idx ON chat_messages USING gin (to_tsvector('simple', text));
