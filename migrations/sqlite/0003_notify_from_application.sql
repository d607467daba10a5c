-- Kept in step with the PostgreSQL migrations; SQLite is single-process and never notified.
SELECT 1;
