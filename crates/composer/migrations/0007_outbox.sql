-- Accepted and scheduled messages now reach the bus through the outbox, written in the
-- transaction that stores them: nothing is left to re-publish, so the re-publisher's
-- bookkeeping goes.
DROP INDEX messages_unpublished_schedules;
DROP INDEX messages_accepted;
ALTER TABLE messages DROP COLUMN schedule_published;
