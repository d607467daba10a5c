-- Read receipts (read model of the `chat` projection): the last message each user read per chat.
CREATE TABLE chat_reads (
    chat_id                 text        NOT NULL,
    user_id                 text        NOT NULL,
    last_read_message_id    text        NOT NULL,
    last_read_message_at    timestamptz NOT NULL,
    last_read_at            timestamptz NOT NULL,
    PRIMARY KEY (chat_id, user_id)
);
CREATE INDEX chat_messages_chat_time_idx ON chat_messages (chat_id, created_at, id);

-- Presence is ephemeral: one row per open /ws connection, refreshed by its process every few
-- seconds; a row not refreshed for 30 s (its process died) no longer counts, and is swept.
CREATE TABLE live_connections (
    id           text        PRIMARY KEY,
    user_id      text        NOT NULL,
    process_id   text        NOT NULL,
    -- Unix milliseconds: compared in SQL the same way on both backends.
    opened_ms    bigint      NOT NULL,
    refreshed_ms bigint      NOT NULL
);
CREATE INDEX live_connections_user_idx ON live_connections (user_id, refreshed_ms);
CREATE INDEX live_connections_process_idx ON live_connections (process_id);
