-- Retention (seed 000 §9): redaction of expired message texts in the log, and the chats' retention
-- period as a column the read side can query.
--
-- hash_version 1: payload_hash = SHA-256(canonical(payload)) (every row written before this
-- migration); 2: payload_hash is the root of a Merkle hash over the payload's JSON tree, so one value
-- can be blanked and its subtree hash recorded (see ARCHITECTURE.md, "Redaction").
ALTER TABLE events ADD COLUMN hash_version smallint NOT NULL DEFAULT 1;
-- What was redacted in this row, when and why: {"paths": {"/submission/text": "<hex>"}, "at", "reason"}.
ALTER TABLE events ADD COLUMN redaction jsonb;

ALTER TABLE chats ADD COLUMN retention_days bigint NOT NULL DEFAULT 90;

-- The retention job's look-ups: old messages per chat, rejected submissions per chat.
CREATE INDEX chat_messages_chat_created_idx ON chat_messages (chat_id, created_at);
CREATE INDEX chat_operations_chat_status_idx ON chat_operations (chat_id, status, created_at);
