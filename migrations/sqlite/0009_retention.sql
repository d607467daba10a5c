-- Retention (seed 000 §9): redaction of expired message texts in the log, and the chats' retention
-- period as a column the read side can query. See the PostgreSQL version for the meaning.
ALTER TABLE events ADD COLUMN hash_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE events ADD COLUMN redaction TEXT;

ALTER TABLE chats ADD COLUMN retention_days INTEGER NOT NULL DEFAULT 90;
