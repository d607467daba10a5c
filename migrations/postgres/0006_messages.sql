-- Messages and the operations that submit them (read models of the `chat` projection).
CREATE TABLE chat_messages (
    id             text        PRIMARY KEY,
    chat_id        text        NOT NULL,
    type           text        NOT NULL,
    author_id      text        NOT NULL,
    text           text        NOT NULL,
    metadata       text        NOT NULL,
    attachments    text        NOT NULL,
    created_at     timestamptz NOT NULL,
    edited_at      timestamptz,
    deleted_at     timestamptz,
    filtered       boolean     NOT NULL,
    filter_matches text        NOT NULL,
    flagged_at     timestamptz,
    seq            bigint      NOT NULL
);
CREATE INDEX chat_messages_chat_idx ON chat_messages (chat_id, seq);

CREATE TABLE chat_operations (
    id         text        PRIMARY KEY,
    user_id    text        NOT NULL,
    chat_id    text        NOT NULL,
    status     text        NOT NULL,
    message_id text,
    error      text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
