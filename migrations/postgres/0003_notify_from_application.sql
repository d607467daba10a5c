-- Wake-ups move from a per-statement trigger (one NOTIFY per append: about a quarter of the
-- command path's CPU on 2 cores) to the application, which coalesces them to at most one
-- NOTIFY per channel every few milliseconds, sent after commit. See eventstore/src/notify.rs.
DROP TRIGGER IF EXISTS events_notify ON events;
DROP FUNCTION IF EXISTS fafcab_notify_events();
