-- Retention (seed 000 §9): redaction of expired message texts in the log, and the chats' retention
-- period as a column the read side can query. See the PostgreSQL version for the meaning.
ALTER TABLE events ADD COLUMN hash_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE events ADD COLUMN redaction TEXT;

ALTER TABLE chats ADD COLUMN retention_days INTEGER NOT NULL DEFAULT 90;

-- The retention job's look-ups: old messages per chat, rejected submissions per chat.
CREATE INDEX chat_messages_chat_created_idx ON chat_messages (chat_id, created_at);
CREATE INDEX chat_operations_chat_status_idx ON chat_operations (chat_id, status, created_at);
