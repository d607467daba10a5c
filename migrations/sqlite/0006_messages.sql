-- Messages and the operations that submit them (read models of the `chat` projection).
CREATE TABLE chat_messages (
    id             TEXT        PRIMARY KEY,
    chat_id        TEXT        NOT NULL,
    type           TEXT        NOT NULL,
    author_id      TEXT        NOT NULL,
    text           TEXT        NOT NULL,
    metadata       TEXT        NOT NULL,
    attachments    TEXT        NOT NULL,
    created_at     TEXT        NOT NULL,
    edited_at      TEXT       ,
    deleted_at     TEXT       ,
    filtered       INTEGER     NOT NULL,
    filter_matches TEXT        NOT NULL,
    flagged_at     TEXT       ,
    seq            INTEGER     NOT NULL
);
CREATE INDEX chat_messages_chat_idx ON chat_messages (chat_id, seq);

CREATE TABLE chat_operations (
    id         TEXT        PRIMARY KEY,
    user_id    TEXT        NOT NULL,
    chat_id    TEXT        NOT NULL,
    status     TEXT        NOT NULL,
    message_id TEXT,
    error      TEXT,
    created_at TEXT        NOT NULL,
    updated_at TEXT        NOT NULL
);
