-- Moderation and reactions (read models of the `chat` projection), and full-text search.
CREATE TABLE chat_sanctions (
    id          TEXT        PRIMARY KEY,
    user_id     TEXT        NOT NULL,
    type        TEXT        NOT NULL,
    scope       TEXT        NOT NULL,
    chat_id     text,
    reason      text,
    applied_by  TEXT        NOT NULL,
    applied_at  TEXT        NOT NULL,
    until       TEXT       ,
    revoked_at  TEXT       ,
    revoked_by  text,
    seq         INTEGER      NOT NULL
);
CREATE INDEX chat_sanctions_user_idx ON chat_sanctions (user_id, seq);
CREATE INDEX chat_sanctions_chat_idx ON chat_sanctions (chat_id, seq);

CREATE TABLE chat_reactions (
    id         TEXT        PRIMARY KEY,
    message_id TEXT        NOT NULL,
    user_id    TEXT        NOT NULL,
    emoji      TEXT        NOT NULL,
    created_at TEXT        NOT NULL
);
CREATE INDEX chat_reactions_message_idx ON chat_reactions (message_id, created_at);

CREATE TABLE chat_reports (
    id               TEXT        PRIMARY KEY,
    reporter_id      TEXT        NOT NULL,
    message_id       text,
    chat_id          text,
    reported_user_id text,
    reason           TEXT        NOT NULL,
    evidence         TEXT        NOT NULL,
    status           TEXT        NOT NULL,
    resolution_notes text,
    created_at       TEXT        NOT NULL,
    updated_at       TEXT        NOT NULL,
    seq              INTEGER      NOT NULL
);
CREATE INDEX chat_reports_status_idx ON chat_reports (status, seq);

CREATE TABLE chat_notices (
    id         TEXT        PRIMARY KEY,
    title      TEXT        NOT NULL,
    body       TEXT        NOT NULL,
    created_by TEXT        NOT NULL,
    chat_ids   TEXT        NOT NULL,
    roles      TEXT        NOT NULL,
    created_at TEXT        NOT NULL,
    seq        INTEGER      NOT NULL
);

-- Full-text search over message text: an FTS5 index kept in step with chat_messages by triggers.
CREATE VIRTUAL TABLE chat_messages_fts USING fts5(text, message_id UNINDEXED, tokenize = 'unicode61');
CREATE TRIGGER chat_messages_fts_ai AFTER INSERT ON chat_messages BEGIN
    INSERT INTO chat_messages_fts (rowid, text, message_id) VALUES (new.rowid, new.text, new.id);
END;
CREATE TRIGGER chat_messages_fts_au AFTER UPDATE OF text ON chat_messages BEGIN
    DELETE FROM chat_messages_fts WHERE rowid = old.rowid;
    INSERT INTO chat_messages_fts (rowid, text, message_id) VALUES (new.rowid, new.text, new.id);
END;
CREATE TRIGGER chat_messages_fts_ad AFTER DELETE ON chat_messages BEGIN
    DELETE FROM chat_messages_fts WHERE rowid = old.rowid;
END;
