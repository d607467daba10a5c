-- Read receipts (read model of the `chat` projection): the last message each user read per chat.
CREATE TABLE chat_reads (
    chat_id                 TEXT        NOT NULL,
    user_id                 TEXT        NOT NULL,
    last_read_message_id    TEXT        NOT NULL,
    last_read_message_at    TEXT        NOT NULL,
    last_read_at            TEXT        NOT NULL,
    PRIMARY KEY (chat_id, user_id)
);
CREATE INDEX chat_messages_chat_time_idx ON chat_messages (chat_id, created_at, id);

-- Presence is ephemeral: one row per open /ws connection, refreshed by its process every few
-- seconds; a row not refreshed for 30 s (its process died) no longer counts, and is swept.
CREATE TABLE live_connections (
    id           TEXT        PRIMARY KEY,
    user_id      TEXT        NOT NULL,
    process_id   TEXT        NOT NULL,
    -- Unix milliseconds: compared in SQL the same way on both backends.
    opened_ms    INTEGER     NOT NULL,
    refreshed_ms INTEGER     NOT NULL
);
CREATE INDEX live_connections_user_idx ON live_connections (user_id, refreshed_ms);
CREATE INDEX live_connections_process_idx ON live_connections (process_id);
